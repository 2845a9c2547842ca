"""Assemble a run from a scenario and run it in one process.

``build_components`` makes the generator, the balancer (hosting the policy) and one instance
per replica; every process of a distributed run calls it with the same scenario and requests
and keeps the components it hosts. ``assemble_result`` merges their exports; ``run_scenario``
does all of it with :class:`~llmtwin.sim.local.LocalRunner`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from llmtwin.cluster.assemble import make_result
from llmtwin.cluster.components import Balancer, Generator, Instance
from llmtwin.cluster.context import ClusterContext, LinkModel
from llmtwin.cluster.cost import IterationCost, PlanProvider
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.policies import create_policy
from llmtwin.cluster.records import RunResult
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.graph import BatchShape
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.precision import Precision
from llmtwin.physics.step import StepModel
from llmtwin.preserve import plan_step_l2
from llmtwin.scenario.spec import Scenario
from llmtwin.sim.kernel import Component
from llmtwin.sim.local import LocalRunner
from llmtwin.workload.generate import generate_requests
from llmtwin.workload.request import RequestSpec

Progress = Callable[[float, int], None]
"""``progress(virtual_time_s, completed_requests)``."""

PLAN_CACHE_SIZE = 4096
"""PRESERVE plans kept per run (one per decode shape bucket in use)."""


def step_model(scenario: Scenario) -> StepModel:
    """The cost model of one instance of the scenario's cluster."""
    c = scenario.cluster
    hw = HardwareCatalog().get(c.hardware)
    model = ModelCatalog().get(scenario.model)
    engine = EngineCatalog().get(c.engine)
    return StepModel(hw, model, c.tp, Precision.parse(c.precision), engine)


def cluster_context(scenario: Scenario, step: StepModel) -> ClusterContext:
    c = scenario.cluster
    return ClusterContext(
        instances=c.instances,
        tp=c.tp,
        layers=step.model.layers,
        capacity_blocks=step.kv_capacity_tokens() // scenario.engine.block_size_tokens,
        engine=scenario.engine,
        routing_latency_s=scenario.routing_latency_s,
        kv_bytes_per_token=step.kv_bytes_per_token_per_device() * c.tp,
        link=LinkModel(step.hw, c.tp, c.inter_instance_link),
        faults=scenario.faults,
    )


def build_components(
    scenario: Scenario, requests: list[RequestSpec], *, plan_provider: PlanProvider | None = None
) -> list[Component]:
    """Every component of the run, deterministically (generator, balancer, instance-0..n-1)."""
    step = step_model(scenario)
    ctx = cluster_context(scenario, step)
    policy = create_policy(scenario.policy.name, scenario.policy.params, ctx)
    plan: PlanProvider | None = None
    if scenario.engine.preserve:
        plan = plan_provider or _local_plans(step)
    # One cost cache for every instance of this process: its values depend only on the bucket.
    cost = IterationCost(step, scenario.engine.shape_bucket, plan)
    comps: list[Component] = [Generator(requests), Balancer(policy, ctx)]
    for i in range(ctx.instances):
        engine = Engine(cost, scenario.engine, ctx.capacity_blocks, policy.role(i), policy.evict_threshold())
        comps.append(Instance(i, engine, policy.agent(i, engine), scenario.cluster.tp))
    return comps


def _local_plans(step: StepModel) -> PlanProvider:
    @functools.lru_cache(maxsize=PLAN_CACHE_SIZE)
    def plan(shape: BatchShape) -> dict[int, float]:
        return plan_step_l2(step, shape)

    return plan


def assemble_result(
    scenario: Scenario, policy: str, parts: dict[str, object], end_s: float, stats: dict[str, float]
) -> RunResult:
    """Merge the components' exports (``{component id: export}``) into the run's records."""
    result = make_result(policy, scenario.name, scenario.seed, parts, end_s, stats)
    step = step_model(scenario)
    result.hardware = step.hw.name
    result.model = step.model.name
    result.tp = scenario.cluster.tp
    result.usd_per_device_hour = step.hw.usd_per_hour
    result.faults.down = [(f.instance, f.at_s, f.recover_s) for f in scenario.faults]
    return result


def scenario_requests(scenario: Scenario) -> list[RequestSpec]:
    """The run's requests: the scenario's workload, generated from its seed and clipped to the
    model's context. Every process of a distributed run calls this and gets the same list."""
    model = ModelCatalog().get(scenario.model)
    return generate_requests(scenario.workload, scenario.seed, model.max_context)


def run_scenario(
    scenario: Scenario, *, requests: list[RequestSpec] | None = None, progress: Progress | None = None
) -> RunResult:
    """Generate the requests (unless given), run every component in this process, assemble."""
    if requests is None:
        requests = scenario_requests(scenario)
    wall0 = time.perf_counter()
    comps = build_components(scenario, requests)
    balancer = next(c for c in comps if isinstance(c, Balancer))
    runner = LocalRunner(comps)
    on_window = None
    if progress is not None:
        counter = [0]

        def on_window(now: float) -> None:
            counter[0] += 1
            if counter[0] % 256 == 0:
                progress(now, balancer.completed)

    end = runner.run(on_window=on_window)
    if progress is not None:
        progress(end, balancer.completed)
    parts = {c.id: c.export() for c in comps}
    insts = [c for c in comps if isinstance(c, Instance)]
    stats = {
        "wall_s": time.perf_counter() - wall0,
        "windows": float(runner.windows),
        "messages": float(runner.messages),
        "instance_steps": float(sum(c.steps for c in insts)),
        "segments": float(sum(len(c.engine.log.seg_k) for c in insts)),
        "iterations": float(sum(c.engine.it for c in insts)),
        "cost_evaluations": float(insts[0].engine.cost.evaluations) if insts else 0.0,
    }
    stats["events"] = stats["messages"] + stats["segments"]
    return assemble_result(scenario, scenario.policy.name, parts, end, stats)
