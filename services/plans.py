"""PRESERVE plans over the bus: the device side (a synchronous provider) of the planner service.

Device components call their plan provider synchronously inside ``step()`` (the core stays
free of asyncio). In a device service that step runs in a worker thread, so the provider can
block on a request that the service's event loop carries out. A plan is a pure function of
(step model, shape), so caching it locally and asking any planner gives the same results as
computing it in-process.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Hashable

from llmtwin.errors import BusError, ProtocolError
from proto import subjects
from proto.codec import Codec
from proto.control import PlanReply, PlanRequest, RunConfig
from services.bus import Bus


class RemotePlanProvider:
    """``provider(shape) -> {op index: L2 bytes}``, answered by the planner service, LRU-cached."""

    def __init__(
        self,
        bus: Bus,
        codec: Codec,
        loop: asyncio.AbstractEventLoop,
        cfg: RunConfig,
        timeout_s: float = 60.0,
        cache_size: int = 4096,
    ) -> None:
        self.bus, self.codec, self.loop, self.cfg = bus, codec, loop, cfg
        self.timeout_s = timeout_s
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, dict[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0

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
        self.requests += 1
        req = PlanRequest(self.cfg.spec, self.codec.raw(shape))
        data = await self.bus.request(subjects.plan(), self.codec.encode(req), self.timeout_s)
        reply = self.codec.decode(data, PlanReply)
        if reply.error:
            raise ProtocolError(f"planner: {reply.error}")
        return reply.l2_bytes


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
