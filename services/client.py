"""The controller side: start a run on the conductor, follow its progress, receive its outcome.

``llmtwin up``, the benchmark and the tests drive runs through this client; it is what a
future ``llmtwin run --nats URL`` against a compose deployment would use as well. It uses the
bus it is given and leaves closing it to whoever opened it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from llmtwin.errors import BusError, ServiceFailure
from proto import subjects
from proto.chunks import Reassembler
from proto.codec import Codec
from proto.control import Chunk, Heartbeat, Hello, Progress, Reply, RunControl, RunOutcome, RunRequest
from services.bus import Bus, Msg, Subscription

ProgressCallback = Callable[[Progress], None]


class RunClient:
    """Talks to the conductor; tracks which services are present (hello and heartbeats)."""

    def __init__(self, bus: Bus, request_timeout_s: float = 120.0) -> None:
        self.bus, self.codec = bus, Codec()
        self.request_timeout_s = request_timeout_s
        self.present: dict[str, float] = {}
        """Service name -> monotonic time it was last heard from."""
        self.hellos: dict[str, Hello] = {}
        self._changed = asyncio.Event()
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        """Start listening for services (before starting them, to hear their hello)."""
        self._subs.append(await self.bus.subscribe(subjects.hello(), self._on_hello))
        self._subs.append(await self.bus.subscribe(subjects.heartbeat(), self._on_heartbeat))

    async def close(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.drain()

    async def _on_hello(self, msg: Msg) -> None:
        hello = self.codec.decode(msg.data, Hello)
        self.hellos[hello.service] = hello
        self.present[hello.service] = time.monotonic()
        self._changed.set()

    async def _on_heartbeat(self, msg: Msg) -> None:
        self.present[self.codec.decode(msg.data, Heartbeat).service] = time.monotonic()
        self._changed.set()

    async def wait_for(self, names: Iterable[str], timeout_s: float) -> None:
        """Return once every named service has been heard from; ServiceFailure on timeout."""
        wanted = set(names)
        deadline = time.monotonic() + timeout_s
        while not wanted <= set(self.present):
            self._changed.clear()
            left = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._changed.wait(), max(left, 0.0))
            except TimeoutError:
                missing = ", ".join(sorted(wanted - set(self.present)))
                raise ServiceFailure(f"services not up after {timeout_s:g} s: {missing}") from None

    async def run(self, req: RunRequest, on_progress: ProgressCallback | None = None) -> RunOutcome:
        """Start ``req`` and return its outcome (ServiceFailure if the run failed)."""
        outcome: asyncio.Future[RunOutcome] = asyncio.get_running_loop().create_future()
        parts = Reassembler()

        async def on_outcome(msg: Msg) -> None:
            data = parts.add(self.codec.decode(msg.data, Chunk))
            if data is not None and not outcome.done():
                outcome.set_result(self.codec.decode(data, RunOutcome))

        async def on_progress_msg(msg: Msg) -> None:
            if on_progress is not None:
                on_progress(self.codec.decode(msg.data, Progress))

        subs = [
            await self.bus.subscribe(subjects.outcome(req.run), on_outcome),
            await self.bus.subscribe(subjects.progress(req.run), on_progress_msg),
        ]
        try:
            await self.bus.flush()
            data = await self.bus.request(
                subjects.run_start(), self.codec.encode(req), self.request_timeout_s
            )
            reply = self.codec.decode(data, Reply)
            if not reply.ok:
                raise ServiceFailure(f"the conductor refused run {req.run}: {reply.error}")
            result = await outcome
        finally:
            for sub in subs:
                await sub.drain()
        if result.error:
            who = f" ({result.failed_service})" if result.failed_service else ""
            raise ServiceFailure(f"run {req.run} failed{who}: {result.error}")
        return result

    async def control(self, run: str, action: str) -> None:
        """Pause, resume or stop a run."""
        cmd = RunControl(run, action)  # type: ignore[arg-type]  # validated by the conductor's decoder
        data = await self.bus.request(subjects.run_control(), self.codec.encode(cmd), 10.0)
        reply = self.codec.decode(data, Reply)
        if not reply.ok:
            raise BusError(f"{action} {run}: {reply.error}")
