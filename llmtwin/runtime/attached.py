"""``llmtwin run``'s engine: one run on services already attached to a NATS server.

It connects as a controller (:class:`~services.config.ControllerConfig`: URL, nkey seed, TLS),
waits until a service of every role the run needs has been heard from (hello or heartbeat;
otherwise a ServiceFailure naming the missing roles and the services heard), starts the run
on the conductor, shows the same live progress as ``llmtwin up`` and returns the outcome.
Ctrl-C or SIGTERM stops the run on the conductor (the services stay up for the next one) and
ends with KeyboardInterrupt. It never starts, restarts or stops a service: they are someone
else's (compose, an operator).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from typing import TextIO, TypeVar

from llmtwin.errors import TwinError
from llmtwin.runtime.progress_line import ProgressLine
from llmtwin.runtime.runs import UpRun, check_not_stopped, run_id
from proto.control import RunOutcome, RunRequest
from services.client import RunClient
from services.config import ControllerConfig
from services.nats_bus import connect

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attached:
    """Where and how to drive the run."""

    cfg: ControllerConfig
    roles: Collection[str]
    """Roles a service of which must be there (conductor, generator, balancer, device, planner)."""
    speed: float
    metrics: str = ""
    wait_s: float = 15.0
    """Wall seconds to wait for the services (they announce themselves every heartbeat_s)."""
    server_timeout_s: float = 300.0


async def drive(at: Attached, run: UpRun, stream: TextIO, quiet: bool = False) -> RunOutcome:
    """Do ``run`` on the attached services; see the module docstring."""
    bus = await connect(at.cfg.nats_options(drain_timeout_s=2.0))
    client = RunClient(bus, name=at.cfg.service_name, server_timeout_s=at.server_timeout_s)
    await client.start()
    quit_ = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, quit_.set)
    # A random part: a compose `run` container is pid 1 every time, and a run id names one run.
    req = RunRequest(f"{run_id(run.label, 0)}-{secrets.token_hex(3)}", run.spec, at.speed, metrics=at.metrics)
    try:
        await _unless_quit(client.wait_for_roles(at.roles, at.wait_s, at.cfg.nats_url), quit_)
        client.conductor = min(s for s, r in client.roles.items() if r == "conductor")
        line = None if quiet else ProgressLine(stream, label=run.label, total=run.total_requests)
        try:
            outcome = await _unless_quit(client.run(req, line), quit_)
        except KeyboardInterrupt:
            with contextlib.suppress(TwinError, TimeoutError):
                await client.control(req.run, "stop")
            raise
        finally:
            if line is not None:
                line.close()
        check_not_stopped(run.label, outcome)
        return outcome
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.close(), 5.0)
        await bus.close()


async def _unless_quit(work: Awaitable[T], quit_: asyncio.Event) -> T:
    """``work``'s result, or KeyboardInterrupt when a signal came first."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(quit_.wait())
    try:
        done, _ = await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise KeyboardInterrupt
    finally:
        for t in (task, stop):
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait([task], timeout=5.0)
