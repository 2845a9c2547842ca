"""The twin's own health: virtual time and pacing (conductor), transport (every service), planner.

These describe the twin's processes, not the simulated fleet: seconds here are wall-clock
seconds except the conductor's virtual time. They carry no ``model_name``/``engine`` labels;
Prometheus's ``job``/``instance`` target labels tell the services apart.
``services/metrics.py`` registers most of them today; ``tests/test_observe_catalog.py`` checks
that what it registers is exactly what is defined here.
"""

from __future__ import annotations

from llmtwin.observe.catalog import Clock, Kind, MetricDef, Owner

WALL_BUCKETS_S = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Histogram buckets for wall-clock durations, seconds (10 us to 10 s)."""

REJECT_REASONS = ("malformed", "oversized", "forged", "unknown_run", "stale", "flood", "handler")
"""Why a message was rejected: it does not decode (garbage, truncated, wrong type or protocol
version), is larger than its subject allows (never decoded), speaks for another service than
the one its subject names, names a run the service does not know, belongs to a window already
closed (or repeats an answer already taken), exceeds a per-run budget (result chunks), or its
handler failed."""

REFUSED_OPERATIONS = ("publish", "subscribe")
"""Operations of a service that the NATS server refused (permissions violations)."""

RECOVERY_KINDS = ("reissue", "rejoin", "failover")
"""How the conductor recovered a window: grants sent again (lost messages), a restarted service
caught up by replay and rejoined, a standby replica promoted to leader."""

DIRECTIONS = ("in", "out")
RUN_OUTCOMES = ("completed", "stopped", "failed")
PLAN_RESULTS = ("hit", "miss", "error")
RUN_INFO_LABELS = ("run_id", "scenario", "policy", "model_name", "hardware")

C, G, H = Kind.COUNTER, Kind.GAUGE, Kind.HISTOGRAM
V, W, N = Clock.VIRTUAL, Clock.WALL, Clock.NONE


def _m(
    name: str,
    kind: Kind,
    help: str,
    owner: Owner,
    unit: str,
    clock: Clock,
    label: tuple[str, tuple[str, ...]] | None = None,
    buckets: tuple[float, ...] | None = None,
) -> MetricDef:
    labels = (label[0],) if label else ()
    values = (label,) if label and label[1] else ()
    return MetricDef(name, kind, help, labels, owner, clock, unit, buckets=buckets, label_values=values)


TRANSPORT_FAMILIES: tuple[MetricDef, ...] = (
    # -- every service --------------------------------------------------------------------------------
    _m("twin_service_up", G, "1 while the service is started", Owner.EVERY, "boolean", N),
    _m(
        "twin_bus_messages_total",
        C,
        "Bus messages handled, by direction",
        Owner.EVERY,
        "messages",
        N,
        ("direction", DIRECTIONS),
    ),
    _m(
        "twin_bus_rejected_total",
        C,
        "Bus messages rejected, by reason",
        Owner.EVERY,
        "messages",
        N,
        ("reason", REJECT_REASONS),
    ),
    _m(
        "twin_bus_refused_total",
        C,
        "Operations of this service the NATS server refused (permissions violations), by operation",
        Owner.EVERY,
        "operations",
        N,
        ("operation", REFUSED_OPERATIONS),
    ),
    _m(
        "twin_bus_reconnects_total",
        C,
        "Times this service's NATS connection came back after a loss",
        Owner.EVERY,
        "reconnections",
        N,
    ),
    # -- conductor --------------------------------------------------------------------------------------
    MetricDef(
        "twin_run_info",
        G,
        "1 while a run is in progress; its labels name it",
        RUN_INFO_LABELS,
        Owner.CONDUCTOR,
        N,
        "boolean",
    ),
    _m(
        "twin_conductor_virtual_time_seconds",
        G,
        "Virtual time of the current window",
        Owner.CONDUCTOR,
        "seconds",
        V,
    ),
    _m(
        "twin_conductor_realtime_lag_seconds",
        G,
        "Wall seconds the run is behind its pace (--speed); 0 at --speed max",
        Owner.CONDUCTOR,
        "seconds",
        W,
    ),
    _m(
        "twin_conductor_pace_ratio",
        G,
        "Requested virtual seconds per wall second (--speed; 0 = as fast as possible)",
        Owner.CONDUCTOR,
        "ratio",
        N,
    ),
    _m(
        "twin_conductor_speed_ratio",
        G,
        "Achieved virtual seconds per wall second over the latest second of windows",
        Owner.CONDUCTOR,
        "ratio",
        N,
    ),
    _m("twin_conductor_windows_total", C, "Time windows opened", Owner.CONDUCTOR, "windows", N),
    _m(
        "twin_conductor_window_duration_seconds",
        H,
        "Wall time from opening a window to the last Done",
        Owner.CONDUCTOR,
        "seconds",
        W,
        buckets=WALL_BUCKETS_S,
    ),
    _m(
        "twin_conductor_envelopes_total",
        C,
        "Envelopes the components reported sending",
        Owner.CONDUCTOR,
        "envelopes",
        N,
    ),
    _m(
        "twin_conductor_runs_total",
        C,
        "Runs ended, by outcome",
        Owner.CONDUCTOR,
        "runs",
        N,
        ("outcome", RUN_OUTCOMES),
    ),
    _m("twin_conductor_paused", G, "1 while the run is paused", Owner.CONDUCTOR, "boolean", N),
    _m(
        "twin_conductor_recoveries_total",
        C,
        "Windows recovered, by kind (reissue, rejoin, failover)",
        Owner.CONDUCTOR,
        "recoveries",
        N,
        ("kind", RECOVERY_KINDS),
    ),
    # -- component hosts (generator, balancer, devices) -----------------------------------------------
    _m("twin_host_steps_total", C, "Component steps taken", Owner.HOST, "steps", N),
    _m(
        "twin_host_step_duration_seconds",
        H,
        "Wall time of one component step",
        Owner.HOST,
        "seconds",
        W,
        buckets=WALL_BUCKETS_S,
    ),
    _m(
        "twin_host_envelopes_total",
        C,
        "Envelopes received and sent, by direction",
        Owner.HOST,
        "envelopes",
        N,
        ("direction", DIRECTIONS),
    ),
    _m("twin_host_components", G, "Components hosted in the current run", Owner.HOST, "components", N),
    # -- planner ----------------------------------------------------------------------------------------
    _m(
        "twin_planner_requests_total",
        C,
        "Plan requests, by result (hit, miss, error)",
        Owner.PLANNER,
        "requests",
        N,
        ("result", PLAN_RESULTS),
    ),
    _m(
        "twin_planner_plan_duration_seconds",
        H,
        "Wall time to compute one plan (cache misses)",
        Owner.PLANNER,
        "seconds",
        W,
        buckets=WALL_BUCKETS_S,
    ),
)
"""The twin's process families; ``twin_run_info``, ``twin_conductor_pace_ratio`` and
``twin_conductor_speed_ratio`` are new with the fleet metrics (phase 2 wires them)."""
