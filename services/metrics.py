"""Prometheus metrics of the services: one class per service, registered on an injected registry.

Names follow ``twin_<component>_<noun>_<unit>`` (counters end in ``_total``) and label sets are
fixed, so dashboards can be written against this file alone. Every process has its own
registry (tests build a fresh one each time); Prometheus adds ``job``/``instance`` labels when
it scrapes, so no metric carries the service name itself.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WALL_BUCKETS_S = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Histogram buckets for wall-clock durations, seconds (10 us to 10 s)."""

REJECT_REASONS = ("malformed", "unknown_run", "stale", "handler")
"""Why a message was rejected: it does not decode, names a run the service does not know,
belongs to a window already closed, or its handler failed."""


class BusMetrics:
    """What every service counts: messages in and out, and the ones it rejected."""

    __slots__ = ("messages_in", "messages_out", "rejected", "up")

    def __init__(self, registry: CollectorRegistry) -> None:
        messages = Counter(
            "twin_bus_messages_total", "Bus messages handled, by direction", ["direction"], registry=registry
        )
        self.messages_in = messages.labels("in")
        self.messages_out = messages.labels("out")
        self.rejected = Counter(
            "twin_bus_rejected_total", "Bus messages rejected, by reason", ["reason"], registry=registry
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.up = Gauge("twin_service_up", "1 while the service is started", registry=registry)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()


class ConductorMetrics:
    """Virtual time, windows and pacing of the conductor."""

    __slots__ = ("envelopes", "lag", "paused", "runs", "virtual_time", "window_duration", "windows")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.windows = Counter("twin_conductor_windows_total", "Time windows opened", registry=registry)
        self.virtual_time = Gauge(
            "twin_conductor_virtual_time_seconds", "Virtual time of the current window", registry=registry
        )
        self.lag = Gauge(
            "twin_conductor_realtime_lag_seconds",
            "Wall seconds the run is behind its pace (--speed); 0 at --speed max",
            registry=registry,
        )
        self.window_duration = Histogram(
            "twin_conductor_window_duration_seconds",
            "Wall time from opening a window to the last Done",
            buckets=WALL_BUCKETS_S,
            registry=registry,
        )
        self.envelopes = Counter(
            "twin_conductor_envelopes_total", "Envelopes the components reported sending", registry=registry
        )
        self.runs = Counter(
            "twin_conductor_runs_total", "Runs ended, by outcome", ["outcome"], registry=registry
        )
        for outcome in ("completed", "stopped", "failed"):
            self.runs.labels(outcome)
        self.paused = Gauge("twin_conductor_paused", "1 while the run is paused", registry=registry)


class HostMetrics:
    """Steps of the components a generator, balancer or device service hosts."""

    __slots__ = ("components", "envelopes_in", "envelopes_out", "input_wait", "step_duration", "steps")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.steps = Counter("twin_host_steps_total", "Component steps taken", registry=registry)
        self.step_duration = Histogram(
            "twin_host_step_duration_seconds",
            "Wall time of one component step",
            buckets=WALL_BUCKETS_S,
            registry=registry,
        )
        self.input_wait = Histogram(
            "twin_host_input_wait_seconds",
            "Wall time a granted component waited for its messages to arrive",
            buckets=WALL_BUCKETS_S,
            registry=registry,
        )
        envelopes = Counter(
            "twin_host_envelopes_total",
            "Envelopes received and sent, by direction",
            ["direction"],
            registry=registry,
        )
        self.envelopes_in = envelopes.labels("in")
        self.envelopes_out = envelopes.labels("out")
        self.components = Gauge(
            "twin_host_components", "Components hosted in the current run", registry=registry
        )


class PlannerMetrics:
    """PRESERVE plan requests served by the planner service."""

    __slots__ = ("plan_duration", "requests")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "twin_planner_requests_total",
            "Plan requests, by result (hit, miss, error)",
            ["result"],
            registry=registry,
        )
        for result in ("hit", "miss", "error"):
            self.requests.labels(result)
        self.plan_duration = Histogram(
            "twin_planner_plan_duration_seconds",
            "Wall time to compute one plan (cache misses)",
            buckets=WALL_BUCKETS_S,
            registry=registry,
        )
