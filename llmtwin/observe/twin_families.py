"""The twin's own families for the simulated fleet: what vLLM has no name for.

Per instance (exported by the device service that leads it, labels ``model_name`` and
``engine`` as on the vLLM families): its role, busy and idle time by role, role switches, KV
bytes (primary and AcceLLM's redundant copies), KV moved over links, HBM and L2, PRESERVE
prefetching and the allreduce share of step time. Per cluster (exported by the balancer): SLO
attainment, goodput, cost so far, failed requests, AcceLLM pair membership. Byte gauges of
memory (KV, HBM, L2) are per device of the instance, as a device's memory is what fills up.
"""

from __future__ import annotations

from llmtwin.observe.catalog import Clock, Kind, MetricDef, Owner
from llmtwin.observe.vllm_families import ENGINE_LABELS

ROLE_STATES = ("prefill", "decode", "mixed", "idle")
"""Values of ``twin_instance_role``'s ``role`` label: the instance's scheduling role, or
``idle`` while it has nothing to run (no running, waiting or held sequence)."""

BUSY_ROLES = ("prefill", "decode", "mixed")
"""Roles an instance computes (or idles) in: ``prefill`` and ``decode`` (AcceLLM,
disaggregated) and ``mixed`` (colocated batching: prefill and decode in one iteration)."""

KV_COPIES = ("primary", "redundant")
"""``copy`` label: the KV an instance decodes from, and AcceLLM's replicas of its partner's."""

SLO_NAMES = ("ttft", "tbt")

BATCH_SEQUENCE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
"""Sequences per iteration."""

CLUSTER_LABELS = ("model_name",)

C, G, H = Kind.COUNTER, Kind.GAUGE, Kind.HISTOGRAM
V, N = Clock.VIRTUAL, Clock.NONE


def _instance(
    name: str,
    kind: Kind,
    help: str,
    unit: str,
    clock: Clock,
    *,
    extra: tuple[tuple[str, tuple[str, ...]], ...] = (),
    buckets: tuple[float, ...] | None = None,
) -> MetricDef:
    return MetricDef(
        name,
        kind,
        help,
        ENGINE_LABELS + tuple(label for label, _ in extra),
        Owner.DEVICE,
        clock,
        unit,
        buckets=buckets,
        label_values=tuple((label, vs) for label, vs in extra if vs),
    )


def _cluster(
    name: str, kind: Kind, help: str, unit: str, clock: Clock, extra: tuple[str, ...] = ()
) -> MetricDef:
    return MetricDef(name, kind, help, CLUSTER_LABELS + extra, Owner.BALANCER, clock, unit)


INSTANCE_FAMILIES: tuple[MetricDef, ...] = (
    _instance(
        "twin_instance_role",
        G,
        "1 for the instance's current role, 0 for the others (idle: nothing to run)",
        "boolean",
        N,
        extra=(("role", ROLE_STATES),),
    ),
    _instance(
        "twin_instance_busy_seconds_total",
        C,
        "Time the instance computed, by what its iterations computed (prefill, decode, or both: mixed)",
        "seconds",
        V,
        extra=(("role", BUSY_ROLES),),
    ),
    _instance(
        "twin_instance_idle_seconds_total",
        C,
        "Time the instance had nothing to compute, by the role it held",
        "seconds",
        V,
        extra=(("role", BUSY_ROLES),),
    ),
    _instance("twin_instance_role_switches_total", C, "Changes of the instance's role", "switches", N),
    _instance("twin_instance_iterations_total", C, "Engine iterations run", "iterations", N),
    _instance(
        "twin_instance_virtual_seconds_total",
        C,
        "Virtual time the instance's busy and idle seconds cover (up to the window time its device service "
        "last read it at, or the end of the iteration then in flight): the instance's rates and fractions "
        "divide by its increase, from the same scrape",
        "seconds",
        V,
    ),
    _instance(
        "twin_instance_batch_sequences",
        H,
        "Sequences per iteration (decoding sequences plus prefill chunks)",
        "sequences",
        N,
        buckets=BATCH_SEQUENCE_BUCKETS,
    ),
    _instance(
        "twin_instance_kv_cache_bytes",
        G,
        "KV cache held, per device: primary (decoded here) and "
        "redundant (AcceLLM's copies of the partner's requests)",
        "bytes",
        N,
        extra=(("copy", KV_COPIES),),
    ),
    _instance(
        "twin_instance_kv_cache_capacity_bytes",
        G,
        "KV cache capacity, per device (HBM left after weights and activations)",
        "bytes",
        N,
    ),
    _instance("twin_instance_hbm_used_bytes", G, "HBM in use, per device: weights and KV cache", "bytes", N),
    _instance("twin_instance_hbm_capacity_bytes", G, "HBM capacity, per device", "bytes", N),
    _instance("twin_instance_l2_capacity_bytes", G, "L2 (last-level cache) capacity, per device", "bytes", N),
    _instance(
        "twin_instance_kv_moved_bytes_total",
        C,
        "KV bytes moved between instances over links for its requests (disaggregated "
        "transfers, AcceLLM replicas and hand-overs), each transfer counted once, by the side "
        "that knows when it happens",
        "bytes",
        N,
    ),
    _instance(
        "twin_instance_handovers_total",
        C,
        "Requests whose decoding the instance handed to another "
        "instance (AcceLLM partner, disaggregated decode instance)",
        "requests",
        N,
    ),
    _instance(
        "twin_instance_allreduce_seconds_total",
        C,
        "Time spent in tensor-parallel allreduces (part of busy time)",
        "seconds",
        V,
    ),
    _instance(
        "twin_instance_allreduce_share_ratio",
        G,
        "Allreduce time / step time over the iterations of its latest update that had any",
        "ratio",
        N,
    ),
    _instance(
        "twin_preserve_prefetched_bytes_total",
        C,
        "Weight and KV bytes PRESERVE prefetched from HBM into L2 during allreduces, per device",
        "bytes",
        N,
    ),
    _instance(
        "twin_preserve_saved_seconds_total",
        C,
        "Step time PRESERVE saved against the same steps without prefetching",
        "seconds",
        V,
    ),
    _instance(
        "twin_preserve_l2_prefetch_bytes",
        G,
        "Bytes the latest decode step's PRESERVE plan placed in L2 (its peak), per device",
        "bytes",
        N,
    ),
)
"""Families of one simulated instance, exported by the device service that leads it."""

CLUSTER_FAMILIES: tuple[MetricDef, ...] = (
    _cluster(
        "twin_instance_pair_info",
        G,
        "1 for each instance of an AcceLLM pair (pair: the pair's number; partner: the other "
        "instance); 0 for an instance in no pair (pair and partner '-')",
        "boolean",
        N,
        ("engine", "pair", "partner"),
    ),
    _cluster("twin_cluster_devices", G, "Accelerators in the cluster", "devices", N),
    _cluster(
        "twin_cluster_virtual_seconds_total",
        C,
        "Virtual time the balancer's metrics cover (up to the window time it last read them at): the "
        "cluster's rates divide by its increase, from the same scrape",
        "seconds",
        V,
    ),
    _cluster("twin_requests_arrived_total", C, "Requests that reached the balancer", "requests", N),
    _cluster(
        "twin_requests_failed_total",
        C,
        "Requests the twin could not serve, by reason (e.g. a prompt that can never fit the KV cache)",
        "requests",
        N,
        ("reason",),
    ),
    _cluster(
        "twin_slo_met_requests_total",
        C,
        "Finished requests that met both SLOs (TTFT and the scenario's per-request TBT statistic)",
        "requests",
        N,
    ),
    _cluster(
        "twin_slo_target_seconds",
        G,
        "The scenario's SLO thresholds: ttft, and tbt (on the statistic named by the stat label)",
        "seconds",
        V,
        ("slo", "stat"),
    ),
    _cluster(
        "twin_cluster_slo_attainment_ratio",
        G,
        "Requests that met both SLOs / requests that have ended "
        "(finished or failed); at the end of a run, summary.json's slo_attainment",
        "ratio",
        N,
    ),
    _cluster(
        "twin_cluster_goodput_requests_per_second",
        G,
        "Requests that met both SLOs / time from the first "
        "arrival to the latest completion; at the end of a run, summary.json's goodput",
        "requests/s",
        V,
    ),
    _cluster(
        "twin_cluster_cost_usd_total",
        C,
        "Cost of the cluster so far: devices x time since the first "
        "arrival x the catalog's price per device-hour (absent without a price)",
        "USD",
        V,
    ),
)
"""Cluster-wide families, exported by the balancer."""
