"""Run one service as a process: ``llmtwin service ROLE ...`` and ``python -m services ROLE ...``.

Always the same few steps: read the config (flags, TWIN_* environment), connect to NATS, start
the service (async context manager), wait for SIGTERM/SIGINT or for the NATS connection to be
lost for good, then stop gracefully (drain the service's subscriptions, then the connection).
Exit code 0 on a requested stop, 1 when the connection was lost, 2 on a configuration error
(printed on one line).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

try:
    import uvloop
except ImportError:  # optional (no Windows build): asyncio's loop does the same, slower
    uvloop = None  # type: ignore[assignment]

from llmtwin.errors import TwinError
from services import config as cfgmod
from services.base import Service
from services.bus import Bus
from services.cluster import ClusterFactory
from services.conductor import Conductor
from services.factory import Factory
from services.host import HostService
from services.nats_bus import connect
from services.planner import PlannerService

log = logging.getLogger("services")


def build_service(cfg: cfgmod.ServiceConfig, bus: Bus, factories: Mapping[str, Factory]) -> Service[Any]:
    """The service ``cfg`` describes, on ``bus``."""
    if isinstance(cfg, cfgmod.ConductorConfig):
        return Conductor(cfg, bus, factories)
    if isinstance(cfg, cfgmod.PlannerConfig):
        return PlannerService(cfg, bus, factories)
    assert isinstance(cfg, cfgmod.HostConfig)
    return HostService(cfg, bus, factories)


async def serve(cfg: cfgmod.ServiceConfig) -> int:
    """Run the service until SIGTERM/SIGINT (0) or until NATS is gone for good (1)."""
    bus = await connect(cfg.nats_options())
    try:
        service = build_service(cfg, bus, {"cluster": ClusterFactory(limits=cfg.run_limits())})
        quit_ = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, quit_.set)
        async with service:
            log.info("%s (%s) ready: %s", cfg.service_name, cfg.role, cfg)
            lost = asyncio.ensure_future(bus.closed.wait())
            stop = asyncio.ensure_future(quit_.wait())
            await asyncio.wait([lost, stop], return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            stop.cancel()
            code = 0 if quit_.is_set() else 1
            if code:
                log.error("%s: lost the NATS connection to %s for good", cfg.service_name, cfg.nats_url)
    finally:
        await bus.close()
    log.info("%s stopped", cfg.service_name)
    return code


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


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop where it is installed (a faster event loop), else on asyncio's own."""
    factory = uvloop.new_event_loop if uvloop is not None else None
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
