"""The controller side: start a run on the conductor, follow its progress, receive its outcome.

``llmtwin up``, the benchmark and the tests drive runs through this client; ``llmtwin run
--nats URL`` (against a compose deployment) uses it as well, connected as a ``controller``
user (``services.config.ControllerConfig``: its seed from a file or ``TWIN_NKEY_SEED``). It
uses the bus it is given and leaves closing it to whoever opened it.

While a run is in progress it watches what could make it wait forever: a nats-server that does
not answer (``ServiceFailure`` "nats-server ... not answering" after ``server_timeout_s``), a
conductor that restarted (a new process has no run: the run is lost) or went silent, and an
outcome lost with a connection (asked for again after reconnecting). Messages it cannot decode
are counted in :attr:`RunClient.rejected` and never end a subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from llmtwin.errors import BusError, ServiceFailure, TwinError
from proto import subjects
from proto.chunks import Reassembler
from proto.codec import Codec
from proto.control import Chunk, Heartbeat, Hello, Progress, Reply, RunControl, RunOutcome, RunRequest
from proto.limits import CONTROL_MAX_BYTES, RESULT_MAX_BYTES
from proto.subjects import ANY
from services.bus import Bus, Msg, Subscription
from services.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]

T = TypeVar("T")


class RunClient:
    """Talks to the conductor; tracks which services are present (hello and heartbeats)."""

    def __init__(
        self,
        bus: Bus,
        request_timeout_s: float = 120.0,
        *,
        name: str = "controller",
        conductor: str = "conductor",
        server_timeout_s: float = 300.0,
        conductor_silent_s: float = 30.0,
        max_result_bytes: int = RESULT_MAX_BYTES,
    ) -> None:
        self.bus, self.codec = bus, Codec()
        self.name = name
        """Who this controller is (recorded by the conductor with a stop)."""
        self.conductor = conductor
        """The conductor's service name."""
        self.request_timeout_s = request_timeout_s
        self.server_timeout_s = server_timeout_s
        """A nats-server silent this long during a run fails it."""
        self.conductor_silent_s = conductor_silent_s
        """A conductor without heartbeat this long (the server answering) fails the run."""
        self.max_result_bytes = max_result_bytes
        self.present: dict[str, float] = {}
        """Service name -> monotonic time it was last heard from."""
        self.ports: dict[str, int] = {}
        """Service name -> its /metrics port, as announced (hello, heartbeats)."""
        self.roles: dict[str, str] = {}
        """Service name -> its role, as announced (hello, heartbeats)."""
        self.boots: dict[str, str] = {}
        """Service name -> its process start, as last heard."""
        self.rejected: Counter[str] = Counter()
        """Messages refused, by reason (malformed, oversized, forged)."""
        self.server_silent_since: float | None = None
        self._changed = asyncio.Event()
        self._subs: list[Subscription] = []
        self._waiting: set[str] = set()
        """Runs whose outcome has not arrived."""
        self._log = RateLimitedLog(log)

    async def start(self) -> None:
        """Start listening for services (before starting them, to hear their hello)."""
        self.bus.listen(self)
        self._subs.append(await self.bus.subscribe(subjects.hello(ANY), self._on_hello))
        self._subs.append(await self.bus.subscribe(subjects.heartbeat(ANY), self._on_heartbeat))

    async def close(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.drain()
        self.bus.unlisten(self)

    def _decode(self, msg: Msg, kind: type[T], max_bytes: int = CONTROL_MAX_BYTES) -> T | None:
        """``msg`` as ``kind``, or None (counted, logged at a limited rate)."""
        if len(msg.data) > max_bytes:
            self._reject(msg, "oversized", f"{len(msg.data)} bytes")
            return None
        try:
            return self.codec.decode(msg.data, kind)
        except TwinError as exc:
            self._reject(msg, "malformed", str(exc.args[0]))
            return None

    def _reject(self, msg: Msg, reason: str, why: str) -> None:
        self.rejected[reason] += 1
        self._log.warn(reason, f"{self.name}: rejected a message on {msg.subject} ({reason}): {why}")

    async def _on_hello(self, msg: Msg) -> None:
        hello = self._decode(msg, Hello)
        if hello is not None and self._from(msg, hello.service):
            self._heard(hello.service, hello.boot, hello.role, hello.http_port)

    async def _on_heartbeat(self, msg: Msg) -> None:
        beat = self._decode(msg, Heartbeat)
        if beat is not None and self._from(msg, beat.service):
            self._heard(beat.service, beat.boot, beat.role, beat.http_port)

    def _from(self, msg: Msg, service: str) -> bool:
        """Whether a message's service is its subject's (nobody speaks for another)."""
        if service == subjects.service_of(msg.subject):
            return True
        self._reject(msg, "forged", f"a message of {service!r}")
        return False

    def _heard(self, service: str, boot: str, role: str, http_port: int) -> None:
        self.present[service] = time.monotonic()
        if boot:
            self.boots[service] = boot
        if role:
            self.roles[service] = role
        if http_port:
            self.ports[service] = http_port
        self._changed.set()

    # -- the bus's news ---------------------------------------------------------------------------

    async def bus_reconnected(self) -> None:
        """The outcome of a run may have been published while we were away: ask again."""
        for run in sorted(self._waiting):
            with contextlib.suppress(TwinError):
                await self.control(run, "outcome")

    def bus_refused(self, operation: str, detail: str) -> None:
        self.rejected[f"refused_{operation}"] += 1

    # -- runs -------------------------------------------------------------------------------------

    async def wait_for(self, names: Iterable[str], timeout_s: float) -> None:
        """Return once every named service has been heard from; ServiceFailure on timeout."""
        wanted = set(names)
        if not await self._until(lambda: wanted <= set(self.present), timeout_s):
            missing = ", ".join(sorted(wanted - set(self.present)))
            raise ServiceFailure(f"services not up after {timeout_s:g} s: {missing}")

    async def wait_for_roles(self, roles: Iterable[str], timeout_s: float, where: str) -> None:
        """Return once a service of every role in ``roles`` has been heard from; else
        ServiceFailure naming the roles missing on ``where`` and the services heard."""
        wanted = set(roles)
        if not await self._until(lambda: wanted <= set(self.roles.values()), timeout_s):
            missing = ", ".join(sorted(wanted - set(self.roles.values())))
            heard = ", ".join(f"{s} ({r})" for s, r in sorted(self.roles.items())) or "none"
            raise ServiceFailure(
                f"no {missing} service on {where} after {timeout_s:g} s (heard: {heard}); start them "
                "first (`llmtwin service ROLE --nats URL`, or `docker compose up`)"
            )

    async def _until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``done()`` holds, checking whenever a service is heard from; False if it
        still does not after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                return False
        return True

    async def run(self, req: RunRequest, on_progress: ProgressCallback | None = None) -> RunOutcome:
        """Start ``req`` and return its outcome (ServiceFailure if the run failed, or if the
        server or the conductor stops answering for good)."""
        outcome: asyncio.Future[RunOutcome] = asyncio.get_running_loop().create_future()
        parts = Reassembler(max_bytes=self.max_result_bytes)

        async def on_outcome(msg: Msg) -> None:
            chunk = self._decode(msg, Chunk, self.bus.max_payload)
            if chunk is None:
                return
            try:
                data = parts.add(chunk)
                if data is not None and not outcome.done():
                    outcome.set_result(self.codec.decode(data, RunOutcome))
            except TwinError as exc:
                self.rejected["malformed"] += 1
                self._log.warn("malformed", f"{self.name}: rejected an outcome chunk: {exc.args[0]}")

        async def on_progress_msg(msg: Msg) -> None:
            progress = self._decode(msg, Progress)
            if progress is not None and on_progress is not None:
                on_progress(progress)

        subs = [
            await self.bus.subscribe(subjects.outcome(req.run), on_outcome),
            await self.bus.subscribe(subjects.progress(req.run), on_progress_msg),
        ]
        self._waiting.add(req.run)
        conductor = self.boots.get(self.conductor, "")
        try:
            await self.bus.flush()
            data = await self.bus.request(
                subjects.run_start(), self.codec.encode(req), self.request_timeout_s
            )
            reply = self.codec.decode(data, Reply)
            if not reply.ok:
                raise ServiceFailure(f"the conductor refused run {req.run}: {reply.error}")
            watch = asyncio.ensure_future(self._watch(req.run, conductor))
            waits: list[asyncio.Future[Any]] = [outcome, watch]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
            if not outcome.done():
                watch.result()  # raises why the run cannot end
            result = outcome.result()
        finally:
            self._waiting.discard(req.run)
            if not outcome.done():
                outcome.cancel()
            for sub in subs:
                await sub.drain()
        if result.error:
            who = f" ({result.failed_service})" if result.failed_service else ""
            raise ServiceFailure(f"run {req.run} failed{who}: {result.error}")
        return result

    async def _watch(self, run: str, conductor: str) -> None:
        """Return (with ServiceFailure) when the run can no longer end: the server silent for
        ``server_timeout_s``, the conductor restarted or silent for ``conductor_silent_s``."""
        url = getattr(getattr(self.bus, "options", None), "url", "the NATS server")
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.bus.flush(2.0)
            except BusError as exc:
                now = time.monotonic()
                if self.server_silent_since is None:
                    self.server_silent_since = now
                    log.warning("%s: nats-server at %s not answering (%s)", self.name, url, exc)
                elif now - self.server_silent_since > self.server_timeout_s:
                    raise ServiceFailure(
                        f"nats-server at {url} not answering for {now - self.server_silent_since:.0f} s"
                    ) from None
                continue
            if self.server_silent_since is not None:
                log.warning("%s: nats-server at %s answers again", self.name, url)
                self.server_silent_since = None
                self.present[self.conductor] = time.monotonic()  # its silence was the server's
                await self.bus_reconnected()
            now_boot = self.boots.get(self.conductor, "")
            if conductor and now_boot and now_boot != conductor:
                raise ServiceFailure(
                    f"the conductor restarted during run {run}: a new conductor has no run, the run is lost"
                )
            silent = time.monotonic() - self.present.get(self.conductor, time.monotonic())
            if silent > self.conductor_silent_s:
                raise ServiceFailure(
                    f"the conductor stopped answering ({silent:.0f} s without a heartbeat) in run {run}"
                )

    async def control(self, run: str, action: str) -> None:
        """Pause, resume or stop a run, or ask for its outcome again."""
        cmd = RunControl(run, action, self.name)  # type: ignore[arg-type]  # validated by the conductor's decoder
        data = await self.bus.request(subjects.run_control(), self.codec.encode(cmd), 10.0)
        reply = self.codec.decode(data, Reply)
        if not reply.ok:
            raise BusError(f"{action} {run}: {reply.error}")
