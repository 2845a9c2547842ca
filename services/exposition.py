"""/metrics in Prometheus's classic text format, so that ``vllm:`` names survive the scrape.

prometheus-client's own aiohttp handler negotiates OpenMetrics with Prometheus 2.x, and then
writes ``vllm:num_requests_running`` as ``vllm_num_requests_running`` in the samples (the
``escaping=underscores`` default): every vLLM dashboard would find nothing. The classic format
(``text/plain; version=0.0.4``) allows colons, so this handler always serves it
(../shared/reference/observability-security.md section 2, "Pitfall").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.parser import text_string_to_metric_families

CLASSIC_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""``text/plain; version=0.0.4; charset=utf-8``."""


def classic_text(registry: CollectorRegistry) -> bytes:
    """The registry in the classic text format, names unescaped."""
    return generate_latest(registry, escaping="allow-utf-8")


def metrics_handler(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp GET handler serving ``registry`` as classic text, whatever the Accept header."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=classic_text(registry), headers={"Content-Type": CLASSIC_CONTENT_TYPE})

    return handle


def samples_from_text(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of an exposition (classic text), as (name, labels, value): the input of
    :func:`llmtwin.observe.agreement.summary_mismatches`."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]
