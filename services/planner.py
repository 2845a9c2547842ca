"""PRESERVE plans over the bus: the planner service, and the devices' provider that asks it.

The planner answers ``PlanRequest`` on the plan subject (queue group ``planner``). It is
stateless from the devices' point of view: each request carries the run's spec, so any planner
process in the group can answer, a restarted planner answers the next request, and several
planners share the load.

Device components call their plan provider synchronously inside ``step()`` (the core stays free
of asyncio). In a device service that step runs in a worker thread, so
:class:`RemotePlanProvider` can block on a request that the service's event loop carries out.
A plan is a pure function of (step model, shape), so caching it on either side and asking any
planner gives the same results as computing it in-process, and asking again is always safe: a
request nobody answers (no planner, or one that died with it) is asked again every
``plan_retry_s`` until ``plan_timeout_s``, so a planner restarted by its supervisor just
answers late.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

from llmtwin.errors import BusError, ProtocolError, TwinError
from proto import subjects
from proto.codec import Codec
from proto.control import PlanReply, PlanRequest, RunSpec
from services.base import Service
from services.bus import Bus
from services.config import PlannerConfig
from services.factory import PlanFunction
from services.metrics import PlannerMetrics


class PlannerService(Service[PlannerConfig]):
    """Answers ``PlanRequest`` with plans cached by (run spec, shape), kept encoded (about 2 KB a
    plan, against 13 KB as a dict of Python floats: the cache of a long run stays small)."""

    def setup(self) -> None:
        self.pmetrics = PlannerMetrics(self.registry)
        self._functions: dict[RunSpec, PlanFunction] = {}
        self._cache: OrderedDict[tuple[RunSpec, bytes], bytes] = OrderedDict()

    async def on_start(self) -> None:
        await self.respond(subjects.plan(), PlanRequest, self._on_plan, queue=subjects.PLANNER_QUEUE)

    async def _on_plan(self, req: PlanRequest) -> PlanReply | bytes:
        key = (req.spec, bytes(req.shape))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.pmetrics.requests.labels("hit").inc()
            return cached
        try:
            fn = self._function(req.spec)
            t0 = time.perf_counter()
            # A plan takes milliseconds to seconds: off the loop, so heartbeats keep going.
            plan = await asyncio.to_thread(fn, key[1])
            self.pmetrics.plan_duration.observe(time.perf_counter() - t0)
        except TwinError as exc:
            self.pmetrics.requests.labels("error").inc()
            return PlanReply(error=str(exc))
        self.pmetrics.requests.labels("miss").inc()
        encoded = self._cache[key] = self.codec.encode(PlanReply(plan))
        if len(self._cache) > self.cfg.cache_size:
            self._cache.popitem(last=False)
        return encoded

    def _function(self, spec: RunSpec) -> PlanFunction:
        fn = self._functions.get(spec)
        if fn is None:
            factory = self.factories.get(spec.factory)
            if factory is None:
                raise TwinError(f"unknown component factory {spec.factory!r}")
            fn = self._functions[spec] = factory.plan_function(spec)
        return fn


class RemotePlanProvider:
    """``provider(shape) -> {op index: L2 bytes}``, answered by the planner service, with a small
    LRU cache: the engine's iteration-cost cache (``llmtwin/cluster/cost.py``) already keeps each
    shape bucket's time, so a process asks for each shape about once."""

    def __init__(
        self,
        bus: Bus,
        codec: Codec,
        loop: asyncio.AbstractEventLoop,
        spec: RunSpec,
        timeout_s: float,
        retry_s: float = 5.0,
        cache_size: int = 256,
    ) -> None:
        self.bus, self.codec, self.loop, self.spec = bus, codec, loop, spec
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, dict[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, shape: Hashable) -> dict[int, float]:
        with self._lock:
            hit = self._cache.get(shape)
            if hit is not None:
                self._cache.move_to_end(shape)
                return hit
        if _running_loop() is self.loop:
            raise ProtocolError(
                "the remote plan provider blocks: call it from a worker thread, not the event loop"
            )
        future = asyncio.run_coroutine_threadsafe(self._ask(shape), self.loop)
        try:
            plan = future.result(self.timeout_s + 1.0)
        except TimeoutError:
            future.cancel()
            raise BusError(f"the planner did not answer within {self.timeout_s:g} s") from None
        with self._lock:
            self._cache[shape] = plan
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return plan

    async def _ask(self, shape: Hashable) -> dict[int, float]:
        req = self.codec.encode(PlanRequest(self.spec, self.codec.raw(shape)))
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                data = await self.bus.request(subjects.plan(), req, max(0.01, min(self.retry_s, left)))
                break
            except BusError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        reply = self.codec.decode(data, PlanReply)
        if reply.error:
            raise ProtocolError(f"planner: {reply.error}")
        return reply.l2_bytes


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
