"""The planner service: PRESERVE prefetch plans on request, cached by (run spec, shape).

Stateless from the devices' point of view: each request carries the run's spec, so any planner
process in the ``planner`` queue group can answer, a restarted planner answers the next request,
and several planners share the load. A plan is a pure function of (step model, shape), which is
why caching never changes a result.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from llmtwin.errors import TwinError
from proto import subjects
from proto.control import PlanReply, PlanRequest, RunSpec
from services.base import Service
from services.bus import Msg
from services.factory import Factory, PlanFunction
from services.metrics import PlannerMetrics


class PlannerService(Service):
    """Answers ``PlanRequest`` on the plan subject (queue group ``planner``)."""

    role = "planner"

    def __init__(
        self, name: str, bus: Any, *, factories: Mapping[str, Factory], cache_size: int = 65536, **kwargs: Any
    ) -> None:
        super().__init__(name, bus, **kwargs)
        self.factories = factories
        self.cache_size = cache_size
        self.pmetrics = PlannerMetrics(self.registry)
        self._functions: dict[RunSpec, PlanFunction] = {}
        self._cache: OrderedDict[tuple[RunSpec, bytes], dict[int, float]] = OrderedDict()

    async def on_start(self) -> None:
        await self.subscribe(subjects.plan(), self._on_plan, queue=subjects.PLANNER_QUEUE)

    async def _on_plan(self, msg: Msg) -> None:
        req = self.codec.decode(msg.data, PlanRequest)
        key = (req.spec, bytes(req.shape))
        plan = self._cache.get(key)
        if plan is not None:
            self._cache.move_to_end(key)
            self.pmetrics.requests.labels("hit").inc()
        else:
            try:
                fn = self._function(req.spec)
                t0 = time.perf_counter()
                # A plan takes milliseconds to seconds: off the loop, so heartbeats keep going.
                plan = await asyncio.to_thread(fn, key[1])
                self.pmetrics.plan_duration.observe(time.perf_counter() - t0)
            except TwinError as exc:
                self.pmetrics.requests.labels("error").inc()
                await self._answer(msg, PlanReply(error=str(exc)))
                return
            self.pmetrics.requests.labels("miss").inc()
            self._cache[key] = plan
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        await self._answer(msg, PlanReply(plan))

    def _function(self, spec: RunSpec) -> PlanFunction:
        fn = self._functions.get(spec)
        if fn is None:
            factory = self.factories.get(spec.factory)
            if factory is None:
                raise TwinError(f"unknown component factory {spec.factory!r}")
            fn = self._functions[spec] = factory.plan_function(spec)
        return fn

    async def _answer(self, msg: Msg, reply: PlanReply) -> None:
        if msg.reply:
            await self.publish(msg.reply, reply)
