"""The /metrics (Prometheus, classic text format) and /healthz endpoint every service serves on its own port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.exposition import metrics_handler


class HttpEndpoint:
    """An aiohttp server for one service; ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(
        self, registry: CollectorRegistry, health: Callable[[], dict[str, Any]], host: str, port: int
    ) -> None:
        self.host, self.requested_port = host, port
        self.port = 0
        self._health = health
        app = web.Application()
        app.router.add_get(
            "/metrics", metrics_handler(registry)
        )  # classic text: vllm: names keep their colon
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)

    async def _healthz(self, request: web.Request) -> web.Response:
        body = self._health()
        # 503 until ready and while stopping, so an orchestrator only routes to a ready service.
        return web.json_response(body, status=200 if body.get("status") == "ready" else 503)

    async def start(self) -> int:
        """Start serving; the bound port."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
