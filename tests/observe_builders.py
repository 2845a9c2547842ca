"""An in-process run with the services' fleet metrics attached: observers, tracker, exporters.

The same loop as :class:`llmtwin.sim.local.LocalRunner` (so the same results), with what a
hosting service does around each step: hand the :class:`~services.fleet_observer.FleetObserver`
the step's inputs and outputs, and every ``every`` windows read the instances and pass their
token pieces to the tracker (as the bus would, here in order or reversed). The exporters'
samples then go to :func:`llmtwin.observe.agreement.summary_mismatches`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from llmtwin.cluster.records import RunResult
from llmtwin.cluster.run import assemble_result, build_components, scenario_requests, step_model
from llmtwin.observe.catalog import Owner
from llmtwin.observe.observations import ConductorWindow, TokenPieces
from llmtwin.observe.run_info import run_info
from llmtwin.preserve import plan_step_l2
from llmtwin.report.summary import summarize
from llmtwin.scenario.spec import Scenario
from llmtwin.sim.mailbox import Mailbox
from llmtwin.sim.windows import WindowPlanner
from services.exposition import classic_text, samples_from_text
from services.fleet_metrics import FleetMetrics
from services.fleet_observer import FleetObserver, RecordingPlans


@dataclass
class ObservedRun:
    result: RunResult
    summary: dict[str, Any]
    registry: CollectorRegistry
    observer: FleetObserver

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return samples_from_text(classic_text(self.registry).decode())


def observed_run(
    scenario: Scenario,
    every: int = 1,
    *,
    mode: str = "vllm+twin",
    lose: int = -1,
    reverse: bool = False,
    until: float = math.inf,
    registry: CollectorRegistry | None = None,
    on_reading: Callable[[], None] | None = None,
) -> ObservedRun:
    """Run ``scenario`` in this process with the fleet metrics of every component, reading the
    instances every ``every`` windows (``lose``: the device records of that reading are dropped;
    ``reverse``: each reading's token reports reach the tracker in reverse order; ``until``: the
    run is cut there, requests still in flight; ``on_reading``: called after each reading, e.g.
    to let a Prometheus scrape)."""
    requests = scenario_requests(scenario)
    step = step_model(scenario)
    plans = RecordingPlans(lambda shape: plan_step_l2(step, shape)) if scenario.engine.preserve else None
    comps = {c.id: c for c in build_components(scenario, requests, plan_provider=plans)}
    registry = registry or CollectorRegistry()
    info = run_info("test-0", scenario)
    device = FleetMetrics(registry, Owner.DEVICE, mode)
    conductor = FleetMetrics(registry, Owner.CONDUCTOR, mode)
    conductor.start_run(info)
    fleet = FleetObserver(
        info,
        comps,
        (),
        requests,
        scenario.slo,
        device=device,
        balancer=FleetMetrics(registry, Owner.BALANCER, mode),
        interval_s=0.0,
        plans=plans,
    )

    def deliver(pieces: list[TokenPieces]) -> None:
        for p in reversed(pieces) if reverse else pieces:
            fleet.report(p)

    planner, mail = WindowPlanner(comps), {c: Mailbox() for c in comps}
    now, windows = 0.0, 0
    while grants := planner.next_window(until):
        now = grants[0].time
        windows += 1
        fleet.granted([g.component for g in grants], (), now)
        produced = []
        for g in grants:
            comp = comps[g.component]
            inbox = mail[g.component].take(g.time)
            fleet.received(comp.id, now, [e.body for e in inbox])
            comp.step(g.time, inbox)
            sent = comp.outbox.drain()
            fleet.sent(comp.id, [e.body for e in sent])
            produced.extend(sent)
            planner.report(g.component, comp.next_time(), [(e.dst, e.time) for e in sent])
        for env in produced:
            mail[env.dst].add(env)
        if windows % every == 0:
            fleet.device = None if windows // every == lose else device
            deliver(fleet.observe(now))
            fleet.device = device
            conductor.observe_conductor(ConductorWindow(now, 1.0, 1.0))
            if on_reading is not None:
                on_reading()
    for comp in comps.values():
        comp.finish(now)
    deliver(fleet.observe(now, final=True))
    conductor.end_run()
    parts = {cid: c.export() for cid, c in comps.items()}
    result = assemble_result(scenario, scenario.policy.name, parts, now, {"windows": float(windows)})
    return ObservedRun(result, summarize(result, scenario.slo).to_dict(), registry, fleet)
