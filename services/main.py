"""Run one service as a process: ``llmtwin service ROLE ...`` and ``python -m services ROLE ...``.

Always the same few steps: read the config (flags, TWIN_* environment), connect to NATS, start
the service (async context manager), wait for SIGTERM/SIGINT or for the NATS connection to be
lost for good, then stop gracefully (unsubscribe, drain). Exit code 0 on a requested stop, 1
when the connection was lost, 2 on a configuration error (printed on one line).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

try:
    import uvloop
except ImportError:  # optional (no Windows build): asyncio's loop does the same, slower
    uvloop = None  # type: ignore[assignment]

from llmtwin.errors import TwinError
from proto.codec import Codec
from services import config as cfgmod
from services.base import Service
from services.bus import Bus, NatsBus, connect
from services.conductor import Conductor
from services.factory import Factory
from services.host import HostService
from services.planner import PlannerService
from services.registry import factories
from services.selection import for_role

log = logging.getLogger("services")


def build_service(
    cfg: cfgmod.ServiceConfig, bus: Bus, registry: CollectorRegistry, codec: Codec, known: dict[str, Factory]
) -> Service:
    """The service ``cfg`` describes, on ``bus``."""
    common = {
        "registry": registry,
        "codec": codec,
        "heartbeat_s": cfg.heartbeat_s,
        "http_host": cfg.http_host,
        "http_port": None if cfg.http_port < 0 else cfg.http_port,
    }
    if isinstance(cfg, cfgmod.ConductorConfig):
        return Conductor(
            cfg.service_name,
            bus,
            factories=known,
            ready_timeout_s=cfg.ready_timeout_s,
            dead_after_s=cfg.dead_after_s,
            window_timeout_s=cfg.window_timeout_s,
            collect_timeout_s=cfg.collect_timeout_s,
            progress_interval_s=cfg.progress_interval_s,
            **common,
        )
    if isinstance(cfg, cfgmod.PlannerConfig):
        return PlannerService(cfg.service_name, bus, factories=known, cache_size=cfg.cache_size, **common)
    assert isinstance(cfg, cfgmod.HostConfig)
    selector = for_role(
        cfg.role, components=cfg.components, instances=cfg.instances, shard=cfg.shard, follow=cfg.follow
    )
    return HostService(
        cfg.service_name,
        bus,
        role=cfg.role,
        selector=selector,
        factories=known,
        plan_timeout_s=cfg.plan_timeout_s,
        **common,
    )


async def serve(cfg: cfgmod.ServiceConfig) -> int:
    """Run the service until SIGTERM/SIGINT (0) or until NATS is gone for good (1)."""
    bus = await connect(cfg.nats_url, cfg.service_name)
    service = build_service(cfg, bus, CollectorRegistry(), Codec(), factories())
    quit_ = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, quit_.set)
    async with service:
        log.info("%s (%s) ready: %s", cfg.service_name, cfg.role, cfg)
        lost = asyncio.ensure_future(_closed(bus))
        stop = asyncio.ensure_future(quit_.wait())
        await asyncio.wait([lost, stop], return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        stop.cancel()
        code = 0 if quit_.is_set() else 1
        if code:
            log.error("%s: lost the NATS connection to %s for good", cfg.service_name, cfg.nats_url)
    log.info("%s stopped", cfg.service_name)
    return code


async def _closed(bus: NatsBus) -> None:
    await bus.closed.wait()


def add_service_args(parser: argparse.ArgumentParser) -> None:
    """ROLE and every config flag of every role (each role ignores the others' flags)."""
    parser.add_argument("role", choices=cfgmod.ROLES, help="which service to run")
    cfgmod.add_arguments(parser, (cfgmod.HostConfig, cfgmod.ConductorConfig, cfgmod.PlannerConfig))


def run_from_args(args: argparse.Namespace) -> int:
    cfg = cfgmod.from_args(args.role, args)
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format=f"%(asctime)s {cfg.service_name} %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return run_loop(serve(cfg))


def run_loop(main: Coroutine[Any, Any, int], fast: bool = True) -> int:
    """Run ``main`` on uvloop where it is installed (a faster event loop; ``fast=False``: never),
    else on asyncio's own."""
    factory = uvloop.new_event_loop if uvloop is not None and fast else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services", description="run one twin service")
    add_service_args(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except TwinError as exc:
        print(str(exc), file=sys.stderr)
        return 2
