"""Prometheus metrics of the services: one class per service, registered on an injected registry.

Names follow ``twin_<component>_<noun>_<unit>`` (counters end in ``_total``) and label sets are
fixed, so dashboards can be written against this file alone. Every process has its own
registry (tests build a fresh one each time); Prometheus adds ``job``/``instance`` labels when
it scrapes, so no metric carries the service name itself.

Metrics are kept in plain numbers (:class:`PlainCounter`, :class:`PlainGauge`,
:class:`PlainHistogram`) and turned into Prometheus samples only when scraped:
prometheus-client's own metrics take a lock on every update, which cost several microseconds
per window. The services update metrics from their event loop's thread only (the /metrics
endpoint runs on that loop too), so plain numbers need no lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from llmtwin.observe.transport_families import (
    PLAN_RESULTS,
    RECOVERY_KINDS,
    REFUSED_OPERATIONS,
    REJECT_REASONS,
    RUN_OUTCOMES,
    WALL_BUCKETS_S,
)


class PlainCounter:
    """A counter, optionally with one label whose values are fixed up front."""

    __slots__ = ("_children", "doc", "label", "name", "value")

    def __init__(
        self, registry: CollectorRegistry, name: str, doc: str, label: str = "", values: Sequence[str] = ()
    ) -> None:
        self.name, self.doc, self.label = name, doc, label
        self.value = 0.0
        self._children = {v: PlainCounter.child() for v in values}
        registry.register(self)

    @staticmethod
    def child() -> PlainCounter:
        """An unregistered counter: one label value of a labelled counter."""
        c = PlainCounter.__new__(PlainCounter)
        c.value = 0.0
        return c

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def labels(self, value: str) -> PlainCounter:
        return self._children[value]

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.doc, labels=[self.label] if self.label else None)

    def collect(self) -> Iterator[Metric]:
        if not self.label:
            yield CounterMetricFamily(self.name, self.doc, value=self.value)
            return
        family = CounterMetricFamily(self.name, self.doc, labels=[self.label])
        for v, c in self._children.items():
            family.add_metric([v], c.value)
        yield family


class PlainGauge:
    """A gauge."""

    __slots__ = ("doc", "name", "value")

    def __init__(self, registry: CollectorRegistry, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.value = 0.0
        registry.register(self)

    def set(self, value: float) -> None:
        self.value = value

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.doc)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.doc, value=self.value)


class PlainHistogram:
    """A histogram with fixed upper bounds (``le``), seconds."""

    __slots__ = ("bounds", "counts", "doc", "name", "total")

    def __init__(self, registry: CollectorRegistry, name: str, doc: str, buckets: Sequence[float]) -> None:
        self.name, self.doc = name, doc
        self.bounds = sorted(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        """Observations per bucket (not cumulative); the last one is +Inf."""
        self.total = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self.total += value
        self.counts[bisect_left(self.bounds, value)] += 1

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.doc)

    def collect(self) -> Iterator[Metric]:
        cumulative, running = [], 0
        for bound, n in zip([*map(floatToGoString, self.bounds), "+Inf"], self.counts, strict=True):
            running += n
            cumulative.append((bound, float(running)))
        yield HistogramMetricFamily(self.name, self.doc, buckets=cumulative, sum_value=self.total)


def by_direction(registry: CollectorRegistry, name: str, doc: str) -> tuple[PlainCounter, PlainCounter]:
    """The ``direction="in"`` and ``direction="out"`` counters of one family."""
    family = PlainCounter(registry, name, doc, "direction", ("in", "out"))
    return family.labels("in"), family.labels("out")


class BusMetrics:
    """What every service counts: messages in and out, the ones it rejected, the operations the
    server refused it, its reconnections."""

    __slots__ = ("messages_in", "messages_out", "reconnects", "refused", "rejected", "up")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_in, self.messages_out = by_direction(
            registry, "twin_bus_messages_total", "Bus messages handled, by direction"
        )
        self.rejected = PlainCounter(
            registry, "twin_bus_rejected_total", "Bus messages rejected, by reason", "reason", REJECT_REASONS
        )
        self.up = PlainGauge(registry, "twin_service_up", "1 while the service is started")
        self.refused = PlainCounter(
            registry,
            "twin_bus_refused_total",
            "Operations of this service the NATS server refused (permissions violations), by operation",
            "operation",
            REFUSED_OPERATIONS,
        )
        self.reconnects = PlainCounter(
            registry,
            "twin_bus_reconnects_total",
            "Times this service's NATS connection came back after a loss",
        )

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()


class ConductorMetrics:
    """Virtual time, windows and pacing of the conductor."""

    __slots__ = (
        "envelopes",
        "lag",
        "paused",
        "recoveries",
        "runs",
        "virtual_time",
        "window_duration",
        "windows",
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.windows = PlainCounter(registry, "twin_conductor_windows_total", "Time windows opened")
        self.virtual_time = PlainGauge(
            registry, "twin_conductor_virtual_time_seconds", "Virtual time of the current window"
        )
        self.lag = PlainGauge(
            registry,
            "twin_conductor_realtime_lag_seconds",
            "Wall seconds the run is behind its pace (--speed); 0 at --speed max",
        )
        self.window_duration = PlainHistogram(
            registry,
            "twin_conductor_window_duration_seconds",
            "Wall time from opening a window to the last Done",
            WALL_BUCKETS_S,
        )
        self.envelopes = PlainCounter(
            registry, "twin_conductor_envelopes_total", "Envelopes the components reported sending"
        )
        self.runs = PlainCounter(
            registry, "twin_conductor_runs_total", "Runs ended, by outcome", "outcome", RUN_OUTCOMES
        )
        self.paused = PlainGauge(registry, "twin_conductor_paused", "1 while the run is paused")
        self.recoveries = PlainCounter(
            registry,
            "twin_conductor_recoveries_total",
            "Windows recovered, by kind (reissue, rejoin, failover)",
            "kind",
            RECOVERY_KINDS,
        )


class HostMetrics:
    """Steps of the components a generator, balancer or device service hosts."""

    __slots__ = ("components", "envelopes_in", "envelopes_out", "step_duration", "steps")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.steps = PlainCounter(registry, "twin_host_steps_total", "Component steps taken")
        self.step_duration = PlainHistogram(
            registry, "twin_host_step_duration_seconds", "Wall time of one component step", WALL_BUCKETS_S
        )
        self.envelopes_in, self.envelopes_out = by_direction(
            registry, "twin_host_envelopes_total", "Envelopes received and sent, by direction"
        )
        self.components = PlainGauge(registry, "twin_host_components", "Components hosted in the current run")


class PlannerMetrics:
    """PRESERVE plan requests served by the planner service."""

    __slots__ = ("plan_duration", "requests")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = PlainCounter(
            registry, "twin_planner_requests_total", "Plan requests, by result", "result", PLAN_RESULTS
        )
        self.plan_duration = PlainHistogram(
            registry,
            "twin_planner_plan_duration_seconds",
            "Wall time to compute one plan (cache misses)",
            WALL_BUCKETS_S,
        )
