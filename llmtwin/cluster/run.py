"""Assemble a run from a scenario and run it in one process.

``build_components`` makes the generator, the balancer (hosting the policy) and one instance
per replica; every process of a distributed run calls it with the same scenario and requests
and keeps the components it hosts. ``assemble_result`` merges their exports; ``run_scenario``
does all of it with :class:`~llmtwin.sim.local.LocalRunner`, handing the instances' logs to the
assembler in chunks as the run goes (every :data:`DRAIN_REQUESTS` completions), so that memory
stays flat however many requests the run has.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import msgspec
import numpy as np

from llmtwin.cluster.assemble import Assembler, ResultSink, RunEnd, make_result
from llmtwin.cluster.components import Balancer, Generator, Instance
from llmtwin.cluster.context import ClusterContext, LinkModel
from llmtwin.cluster.cost import IterationCost, PlanProvider
from llmtwin.cluster.engine import Engine
from llmtwin.cluster.messages import InstanceExport
from llmtwin.cluster.policies import create_policy
from llmtwin.cluster.records import RequestTable, RunResult
from llmtwin.errors import ConfigurationError
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

DRAIN_REQUESTS = 16384
"""Completed requests between two hand-overs of the instances' logs to the assembler: few enough
that the logs stay small, many enough that the per-chunk overhead stays negligible."""


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
    scenario: Scenario,
    policy: str,
    parts: dict[str, object],
    end_s: float,
    stats: dict[str, float],
    *,
    detail: bool = True,
) -> RunResult:
    """Merge the components' exports (``{component id: export}``) into the run's records."""
    return _describe(
        scenario, make_result(policy, scenario.name, scenario.seed, parts, end_s, stats, detail=detail)
    )


def _describe(scenario: Scenario, result: RunResult) -> RunResult:
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


def request_table(requests: list[RequestSpec]) -> RequestTable:
    """The table of a run's requests (ids 0..n-1), filled in as they finish."""
    n = len(requests)
    rid = np.fromiter((r.rid for r in requests), dtype=np.int64, count=n)
    order = np.argsort(rid, kind="stable")
    if not np.array_equal(rid[order], np.arange(n)):
        raise ConfigurationError("request ids must be 0..n-1")
    arrival = np.fromiter((r.arrival_s for r in requests), dtype=np.float64, count=n)
    prompt = np.fromiter((r.prompt_tokens for r in requests), dtype=np.int64, count=n)
    output = np.fromiter((r.output_tokens for r in requests), dtype=np.int64, count=n)
    return RequestTable.empty(arrival[order], prompt[order], output[order])


def first_open_iteration(inst: Instance) -> int:
    """The first iteration whose time an instance's future log entries may still need: the start
    of every sequence running now, and of those stopped since its last snapshot (their token
    ranges are logged but not yet final)."""
    eng = inst.engine
    starts = [r.start_it for r in eng.running.values()]
    return min([*starts, *eng.log.range_first, eng.it])


def drain(asm: ResultSink, insts: list[Instance], templates: dict[int, InstanceExport], now: float) -> None:
    """Hand every instance's final log entries (and KV moves) to the assembler, after the
    window at ``now``."""
    for c in insts:
        moved = len(c.agent.moved_rids)
        chunk = msgspec.structs.replace(
            templates[c.iid],
            **c.engine.log.drain(),
            moved_rids=c.agent.moved_rids[:moved].tolist(),
            moved_bytes=c.agent.moved_bytes[:moved].tolist(),
        )
        del c.agent.moved_rids[:moved], c.agent.moved_bytes[:moved]
        asm.add(chunk, first_open_iteration(c))
    asm.settle(now)


def run_scenario(
    scenario: Scenario,
    *,
    requests: list[RequestSpec] | None = None,
    progress: Progress | None = None,
    detail: bool = True,
    drain_every: int = DRAIN_REQUESTS,
    sink: Callable[[RequestTable, bool], ResultSink] = Assembler,
) -> RunResult:
    """Generate the requests (unless given), run every component in this process, assemble.

    ``detail`` keeps every token time, batch size and KV or role change in the result (tests and
    small studies); without it, memory grows with the requests in flight, not with the run.
    ``drain_every``: completions between hand-overs of the logs (results never depend on it).
    ``sink(table, detail)`` makes what assembles the result (an :class:`Assembler` here, or one in
    a worker process: ``report/assemble_worker.py``).
    """
    if requests is None:
        requests = scenario_requests(scenario)
    wall0 = time.perf_counter()
    comps = build_components(scenario, requests)
    balancer = next(c for c in comps if isinstance(c, Balancer))
    insts = [c for c in comps if isinstance(c, Instance)]
    asm = sink(request_table(requests), detail)
    # Each instance's constants (sizes); the chunks replace every list.
    templates = {c.iid: c.export() for c in insts}
    runner = LocalRunner(comps)
    next_drain = [drain_every]

    def on_window(now: float) -> None:
        if balancer.completed >= next_drain[0]:
            drain(asm, insts, templates, now)
            next_drain[0] = balancer.completed + drain_every
        if progress is not None and not runner.windows & 255:
            progress(now, balancer.completed)

    end = runner.run(on_window=on_window)
    if progress is not None:
        progress(end, balancer.completed)
    for c in insts:  # the rest of every log
        asm.add(c.export())
    stats = {
        "wall_s": time.perf_counter() - wall0,
        "windows": float(runner.windows),
        "messages": float(runner.messages),
        "instance_steps": float(sum(c.steps for c in insts)),
        "segments": float(sum(c.engine.log.segments for c in insts)),
        "iterations": float(sum(c.engine.it for c in insts)),
        "cost_evaluations": float(insts[0].engine.cost.evaluations) if insts else 0.0,
    }
    stats["events"] = stats["messages"] + stats["segments"]
    bal = balancer.export()
    return _describe(
        scenario, asm.result(RunEnd(scenario.policy.name, scenario.name, scenario.seed, bal, end, stats))
    )
