"""The ``cluster`` factory: the twin's own components, built identically in every process.

Each process loads the scenario (same reference, overrides and policy), generates the same
requests with :func:`llmtwin.cluster.run.scenario_requests`, and calls
:func:`llmtwin.cluster.run.build_components`, as :func:`llmtwin.cluster.run.run_scenario` does in
one process. Instances whose decode steps use PRESERVE get their plans from the planner service
(``services/planner.py``); the planner computes them with :func:`llmtwin.preserve.plan_step_l2`
on the scenario's step model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec

from llmtwin.cluster import messages
from llmtwin.cluster.records import RunResult
from llmtwin.cluster.run import assemble_result, build_components, scenario_requests, step_model
from llmtwin.errors import ProtocolError
from llmtwin.physics.graph import BatchShape
from llmtwin.preserve import plan_step_l2
from llmtwin.runtime.run_size import RunLimits, check_files, check_run_size
from llmtwin.scenario.dump import dump_scenario
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario
from llmtwin.sim.kernel import Component
from llmtwin.workload.request import RequestSpec
from proto.codec import Codec, tagged_structs
from proto.control import RunOutcome, RunSpec
from services.factory import PlanFunction, PlanProvider, content_digest


class ClusterFactory:
    """Builds generator, balancer and instance-<i> from a scenario reference, within ``limits``
    (files only from the configured scenario directories, bounded requests and instances:
    checked before anything is generated)."""

    def __init__(self, cache_size: int = 8, limits: RunLimits | None = None) -> None:
        # Loading a scenario reads catalogs and traces, and the requests are megabytes: the
        # last few specs are kept (a service builds, digests and collects each run's).
        self._loaded: OrderedDict[RunSpec, tuple[Scenario, list[RequestSpec]]] = OrderedDict()
        self._cache_size = cache_size
        self.limits = limits or RunLimits()
        self.codec = Codec(self.body_types())

    def _load(self, spec: RunSpec) -> tuple[Scenario, list[RequestSpec]]:
        found = self._loaded.get(spec)
        if found is None:
            check_files(spec.scenario, spec.overrides, self.limits.scenario_dirs)
            scenario = load_scenario(spec.scenario, spec.overrides, spec.policy)
            check_run_size(scenario, self.limits)
            requests = scenario_requests(scenario)
            check_run_size(scenario, self.limits, len(requests))
            found = self._loaded[spec] = (scenario, requests)
            if len(self._loaded) > self._cache_size:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(spec)
        return found

    def scenario(self, spec: RunSpec) -> Scenario:
        return self._load(spec)[0]

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        scenario, requests = self._load(spec)
        return build_components(scenario, requests, plan_provider=plan_provider)

    def digest(self, spec: RunSpec) -> str:
        scenario, requests = self._load(spec)
        step = step_model(scenario)
        resolved = {
            "scenario": dump_scenario(scenario),
            "hardware": step.hw,
            "model": step.model,
            "engine": step.engine,
            "precision": step.prec,
            "requests": requests,
        }
        return content_digest(resolved)

    def body_types(self) -> Sequence[type[msgspec.Struct]]:
        return tagged_structs(messages)

    def needs_planner(self, spec: RunSpec) -> bool:
        return bool(self.scenario(spec).engine.preserve)

    def may_block(self, spec: RunSpec, component: str) -> bool:
        return component.startswith("instance-") and self.needs_planner(spec)

    def plan_function(self, spec: RunSpec) -> PlanFunction:
        step = step_model(self.scenario(spec))
        decoder = msgspec.msgpack.Decoder(BatchShape)

        def plan(shape: bytes) -> dict[int, float]:
            try:
                decoded = decoder.decode(shape)
            except msgspec.DecodeError as exc:
                raise ProtocolError(f"malformed BatchShape: {exc}") from None
            return plan_step_l2(step, decoded)

        return plan

    def result(self, spec: RunSpec, outcome: RunOutcome, *, detail: bool = True) -> RunResult:
        """The RunResult of a finished run, from its exports (what ``run_scenario`` returns).
        ``detail=False``: without every token time, batch size and KV or role change, which no
        output file needs (as ``simulate`` assembles; the files are the same)."""
        scenario = self.scenario(spec)
        parts: dict[str, Any] = {cid: self.codec.decode_body(raw) for cid, raw in outcome.parts.items()}
        return assemble_result(
            scenario, scenario.policy.name, parts, outcome.end_s, dict(outcome.stats), detail=detail
        )
