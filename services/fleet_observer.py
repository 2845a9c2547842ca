"""A hosting service's view of the simulated fleet, turned into its metrics as virtual time advances.

One :class:`FleetObserver` per hosted run of the twin's cluster. Its host tells it what each
hosted component is handed and sends (:meth:`received`, :meth:`sent`) and, after each grant,
the window's time; at most every ``metrics_interval_s`` of wall time (and at the run's end) it
reads every instance the host *leads* (followers stay silent, so no series is exported twice)
with :class:`~llmtwin.cluster.observer.InstanceObserver`, updates the device families and
returns the instances' token pieces, which the host publishes. Where the balancer is hosted,
the pieces of every device feed the :class:`~llmtwin.observe.request_tracker.RequestTracker`,
which gives the request families (TTFT, gaps, per-request latencies, finished requests) and,
with the balancer's own arrivals and failures, the cluster families (SLO attainment, goodput,
cost). Nothing here changes what the components do: results never depend on the metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from llmtwin.cluster.components import Balancer, Generator, Instance
from llmtwin.cluster.cost import PlanProvider
from llmtwin.cluster.messages import Arrival
from llmtwin.cluster.observer import InstanceObserver
from llmtwin.observe.catalog import Owner
from llmtwin.observe.observations import ClusterWindow, RunInfo, TokenPieces
from llmtwin.observe.request_tracker import RequestTracker
from llmtwin.observe.run_info import run_info
from llmtwin.physics.graph import BatchShape
from llmtwin.scenario.spec import SLOSpec
from llmtwin.sim.kernel import Component
from llmtwin.workload.request import RequestSpec
from proto.control import RunConfig
from services.cluster import ClusterFactory
from services.factory import Factory
from services.fleet_metrics import FleetExporters, FleetMetrics


class RecordingPlans:
    """A PRESERVE plan provider that remembers, per step shape, what each plan prefetches."""

    def __init__(self, inner: PlanProvider) -> None:
        self.inner = inner
        self.stats: dict[BatchShape, tuple[float, float]] = {}
        """Shape -> (bytes read from L2 per step, largest one op's)."""

    def __call__(self, shape: BatchShape) -> dict[int, float]:
        plan = self.inner(shape)
        self.stats[shape] = (float(sum(plan.values())), float(max(plan.values(), default=0.0)))
        return plan


class FleetObserver:
    """See the module docstring."""

    def __init__(
        self,
        info: RunInfo,
        comps: dict[str, Component],
        followers: Iterable[str],
        requests: Sequence[RequestSpec],
        slo: SLOSpec,
        *,
        device: FleetMetrics | None,
        balancer: FleetMetrics | None,
        interval_s: float,
        plans: RecordingPlans | None = None,
    ) -> None:
        self.info = info
        self.device, self.balancer_metrics = device, balancer
        self.interval_s = interval_s
        stats = plans.stats if plans is not None else None
        self.observers = {
            cid: InstanceObserver(c, stats) for cid, c in comps.items() if isinstance(c, Instance)
        }
        self.following = set(followers)
        self.balancer = next((c for c in comps.values() if isinstance(c, Balancer)), None)
        self.tracker: RequestTracker | None = None
        if self.balancer is not None:
            rs = sorted(requests, key=lambda r: r.rid)
            self.tracker = RequestTracker(
                np.asarray([r.arrival_s for r in rs], dtype=np.float64),
                np.asarray([r.prompt_tokens for r in rs], dtype=np.int64),
                np.asarray([r.output_tokens for r in rs], dtype=np.int64),
                slo,
                info.engines,
            )
        self.last_wall = -math.inf
        self.now = 0.0
        self.arrived = 0
        self.first_arrival: float | None = None
        self.failed_seen = 0
        self.ended = False
        for m in (device, balancer):
            if m is not None:
                m.start_run(info)

    @property
    def active(self) -> bool:
        return bool(self.observers) or self.tracker is not None

    # -- what the host's steps see --------------------------------------------------------------------
    def received(self, cid: str, now: float, bodies: Sequence[Any]) -> None:
        obs = self.observers.get(cid)
        if obs is not None:
            obs.received(now, bodies)
        elif self.balancer is not None and cid == self.balancer.id:
            for b in bodies:
                if isinstance(b, Arrival):
                    self.arrived += 1
                    if self.first_arrival is None:
                        self.first_arrival = b.arrival_s

    def sent(self, cid: str, bodies: Sequence[Any]) -> None:
        obs = self.observers.get(cid)
        if obs is not None:
            obs.sent(bodies)

    def granted(self, components: Sequence[str], follow: Sequence[str], now: float) -> None:
        """A grant at ``now``: who leads what from now on (the conductor may promote a follower)."""
        self.now = now
        self.following.difference_update(components)
        self.following.update(follow)

    # -- records --------------------------------------------------------------------------------------
    def due(self) -> bool:
        return not self.ended and time.monotonic() - self.last_wall >= self.interval_s

    def observe(self, t: float, final: bool = False) -> list[TokenPieces]:
        """Read every led instance at window time ``t`` (``final``: the run ended at ``t`` and
        the components have finished); update the device families; the pieces to publish."""
        self.last_wall = time.monotonic()
        out = []
        for cid, obs in self.observers.items():
            if cid in self.following:
                continue
            window, pieces = obs.observe(t, final)
            if self.device is not None:
                self.device.observe_instance(window)
            if pieces.rid or pieces.scheduled_rid or final:
                out.append(pieces)
        if self.tracker is not None:
            self.update_requests(t)
        if final:
            self.ended = True
        return out

    def report(self, pieces: TokenPieces) -> None:
        """A device's token report (for the tracker, where the balancer is hosted)."""
        if self.tracker is None:
            return
        self.tracker.add(pieces)
        if self.tracker.complete or time.monotonic() - self.last_wall >= self.interval_s:
            self.update_requests(self.now)

    def update_requests(self, t: float) -> None:
        """The tracker's news into the request and cluster families."""
        tracker, metrics = self.tracker, self.balancer_metrics
        if tracker is None or metrics is None:
            return
        engines, settled = tracker.take()
        for r in engines:
            metrics.observe_requests(r)
        failed: dict[str, int] = {}
        if self.balancer is not None:
            for _, reason in self.balancer.failed[self.failed_seen :]:
                failed[reason] = failed.get(reason, 0) + 1
            self.failed_seen = len(self.balancer.failed)
        last = settled.last_completion_s
        metrics.observe_cluster(
            ClusterWindow(
                at_s=last if last is not None else (self.first_arrival or 0.0),
                arrived=self.arrived,
                finished=settled.finished,
                slo_met=settled.slo_met,
                failed=failed,
                first_arrival_s=self.first_arrival,
                last_completion_s=last,
            )
        )
        self.arrived = 0


def hosted_fleet_observer(
    cfg: RunConfig,
    factory: Factory,
    built: Sequence[Component],
    hosted: dict[str, Component],
    followers: Iterable[str],
    plans: RecordingPlans | None,
    *,
    exporters: FleetExporters,
    mode: str,
    interval_s: float,
) -> FleetObserver | None:
    """The fleet observer of a run of the twin's cluster whose host holds an instance or the
    balancer (``built``: every component of the run, ``hosted``: the host's); None for any other
    run. It feeds the host's exporters of the families it owns, named as ``mode`` says."""
    if not isinstance(factory, ClusterFactory) or not any(
        isinstance(c, Instance | Balancer) for c in hosted.values()
    ):
        return None
    scenario = factory.scenario(cfg.spec)
    gen = next(c for c in built if isinstance(c, Generator))
    has = {type(c) for c in hosted.values()}
    return FleetObserver(
        run_info(cfg.run, scenario),
        hosted,
        followers,
        gen.requests,
        scenario.slo,
        device=exporters.get(Owner.DEVICE, mode) if Instance in has else None,
        balancer=exporters.get(Owner.BALANCER, mode) if Balancer in has else None,
        interval_s=interval_s,
        plans=plans,
    )
