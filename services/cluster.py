"""The ``cluster`` factory: the twin's own components, built identically in every process.

Each process loads the scenario (same reference, overrides and policy), generates the same
requests with :func:`llmtwin.cluster.run.scenario_requests`, and calls
:func:`llmtwin.cluster.run.build_components`, as :func:`llmtwin.cluster.run.run_scenario` does in
one process. Instances whose decode steps use
PRESERVE get their plans from the planner service (``services/plans.py``); the planner computes
them with :func:`llmtwin.preserve.plan_step_l2` on the scenario's step model.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmtwin.cluster.records import RunResult
from llmtwin.cluster.run import assemble_result, build_components, scenario_requests, step_model
from llmtwin.errors import ProtocolError
from llmtwin.physics.graph import BatchShape
from llmtwin.preserve import plan_step_l2
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario
from llmtwin.sim.kernel import Component
from proto.codec import Codec
from proto.control import RunOutcome, RunSpec
from services.factory import PlanFunction, PlanProvider


class ClusterFactory:
    """Builds generator, balancer and instance-<i> from a scenario reference."""

    def __init__(self) -> None:
        # Loading a scenario reads catalogs and traces: once per spec and process.
        self._scenarios: dict[RunSpec, Scenario] = {}

    def scenario(self, spec: RunSpec) -> Scenario:
        found = self._scenarios.get(spec)
        if found is None:
            found = self._scenarios[spec] = load_scenario(spec.scenario, spec.overrides, spec.policy)
        return found

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        scenario = self.scenario(spec)
        return build_components(scenario, scenario_requests(scenario), plan_provider=plan_provider)

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

    def result(self, spec: RunSpec, outcome: RunOutcome, codec: Codec) -> RunResult:
        """The RunResult of a finished run, from its exports (what ``run_scenario`` returns)."""
        scenario = self.scenario(spec)
        parts: dict[str, Any] = {cid: codec.decode_body(raw) for cid, raw in outcome.parts.items()}
        return assemble_result(scenario, scenario.policy.name, parts, outcome.end_s, dict(outcome.stats))
