"""The five shipped dashboards, defined once: Grafana JSON and PNG pictures are both made from these.

* **Fleet overview**: latency quantiles, throughput, queues, KV use, SLO attainment, goodput, cost.
* **Instances**: role over time, KV primary vs redundant, busy and idle time, batch sizes.
* **AcceLLM pairs**: role switches, redundant KV, hand-overs, KV moved over links, pairs.
* **Device and PRESERVE**: HBM and L2 use, prefetched bytes, time saved, allreduce share.
* **Twin health**: virtual time, speed and lag, windows per second, bus traffic and rejections.

Every query names only metrics of the catalogue (:mod:`llmtwin.observe.families`) or series of
the recording rules (:mod:`llmtwin.observe.recording_rules`); ``llmtwin dashboards --check``
enforces it. Latency panels read the recorded quantiles, which Prometheus computes from the
fleet's histograms every evaluation interval.
"""

from __future__ import annotations

from llmtwin.observe.catalog import Owner
from llmtwin.observe.families import family
from llmtwin.observe.panels import Dashboard, Panel, Query, Row
from llmtwin.observe.promql import series
from llmtwin.observe.recording_rules import QUANTILES, quantile_name
from llmtwin.observe.twin_families import BUSY_ROLES

M = 'model_name=~"$model_name"'
ME = 'model_name=~"$model_name", engine=~"$engine"'
RI = "[$__rate_interval]"


def _rate(name: str, matchers: str = ME, suffix: str = "") -> str:
    return f"rate({series(name, suffix, matchers)}{RI})"


def _per_virtual_s(name: str, matchers: str = ME) -> str:
    """A counter's increase per *virtual* second: the fleet's rate, at any ``--speed`` (a plain
    ``rate()`` is per wall second, ``--speed`` times the fleet's). It divides by the increase of
    the virtual time covered by the metrics of the same target (an instance's for a device
    family, the cluster's for a balancer family): both come from one update and one scrape, so
    a fraction never exceeds 1 however the services' updates and scrapes interleave."""
    if family(name).owner is Owner.DEVICE:
        clock, on = (
            series("twin_instance_virtual_seconds_total", "", matchers),
            "instance, model_name, engine",
        )
    else:
        clock, on = series("twin_cluster_virtual_seconds_total", "", M), "instance, model_name"
    return f"increase({series(name, '', matchers)}{RI}) / on({on}) group_left increase({clock}{RI})"


def _by_engine(expr: str) -> str:
    return f"sum by (engine) ({expr})"


ROLE_CODES = ((0.0, "idle"), *((float(k), r) for k, r in enumerate(BUSY_ROLES, 1)))
"""The numbers the role panel shows for each role."""


def _role_code() -> str:
    """One number per instance for a state timeline: see :data:`ROLE_CODES`."""
    terms = [f'{k:g} * twin_instance_role{{{ME}, role="{r}"}}' for k, r in ROLE_CODES[1:]]
    return "max by (engine) (" + " + ignoring(role) ".join(terms) + ")"


def _quantiles(title: str, family: str, description: str) -> Panel:
    return Panel(
        title,
        tuple(
            Query(f"{quantile_name(family, q)}{{{M}}}", f"p{round(q * 100)} {{{{model_name}}}}")
            for q in QUANTILES
        ),
        unit="s",
        description=description,
        width=6,
    )


def _engine_panel(
    title: str,
    expr: str,
    unit: str,
    description: str,
    *,
    kind: str = "timeseries",
    width: int = 12,
    value_names: tuple[tuple[float, str], ...] = (),
) -> Panel:
    """A panel of one query with a series per instance."""
    return Panel(title, (Query(expr, "{{engine}}"),), unit, kind, description, width, value_names=value_names)


FLEET = Dashboard(
    "llmtwin-fleet",
    "llmtwin / Fleet overview",
    "The simulated fleet as a vLLM operator sees it: latency quantiles, throughput, queues, KV use, SLOs.",
    (
        Row(
            "Latency (virtual seconds)",
            (
                _quantiles(
                    "Time to first token", "vllm:time_to_first_token_seconds", "TTFT quantiles over 1 m"
                ),
                _quantiles("Inter-token latency", "vllm:inter_token_latency_seconds", "Gap between tokens"),
                _quantiles("End-to-end latency", "vllm:e2e_request_latency_seconds", "Arrival to last token"),
                _quantiles("Queue time", "vllm:request_queue_time_seconds", "Arrival to first iteration"),
            ),
        ),
        Row(
            "Throughput and SLOs",
            (
                Panel(
                    "Tokens per second",
                    (
                        Query(f"sum({_per_virtual_s('vllm:prompt_tokens_total', M)})", "prompt"),
                        Query(f"sum({_per_virtual_s('vllm:generation_tokens_total', M)})", "generated"),
                    ),
                    unit="short",
                    description="Prompt tokens prefilled and tokens generated per virtual second",
                    width=8,
                ),
                Panel(
                    "Requests per second",
                    (
                        Query(f"sum({_per_virtual_s('vllm:request_success_total', M)})", "finished"),
                        Query(f"sum({_per_virtual_s('twin_slo_met_requests_total', M)})", "met both SLOs"),
                        Query(f"sum({_per_virtual_s('twin_requests_arrived_total', M)})", "arrived"),
                    ),
                    unit="reqps",
                    description="Arrivals, completions and goodput, per virtual second",
                    width=8,
                ),
                Panel(
                    "SLO attainment",
                    (Query(f"twin_cluster_slo_attainment_ratio{{{M}}}", "{{model_name}}"),),
                    unit="percentunit",
                    kind="stat",
                    description="Requests that met both SLOs / requests that have ended",
                    width=4,
                ),
                Panel(
                    "Cost so far",
                    (Query(f"twin_cluster_cost_usd_total{{{M}}}", "{{model_name}}"),),
                    unit="currencyUSD",
                    kind="stat",
                    description="Devices x virtual hours x the catalog's price",
                    width=4,
                ),
            ),
        ),
        Row(
            "Queues and KV cache",
            (
                Panel(
                    "Requests running and waiting",
                    (
                        Query(f"sum({series('vllm:num_requests_running', '', M)})", "running"),
                        Query(f"sum({series('vllm:num_requests_waiting', '', M)})", "waiting"),
                    ),
                    description="Over all instances",
                    width=8,
                ),
                _engine_panel(
                    "KV-cache use",
                    series("vllm:kv_cache_usage_perc", "", ME),
                    "percentunit",
                    "Blocks held / blocks available, per instance",
                    width=8,
                ),
                Panel(
                    "Goodput",
                    (Query(f"twin_cluster_goodput_requests_per_second{{{M}}}", "{{model_name}}"),),
                    unit="reqps",
                    kind="stat",
                    description="Requests that met both SLOs per virtual second since the first arrival",
                    width=4,
                ),
                Panel(
                    "Preemptions per second",
                    (Query(f"sum({_per_virtual_s('vllm:num_preemptions_total', M)})", "preemptions"),),
                    description="Running sequences evicted to be recomputed, per virtual second",
                    width=4,
                ),
            ),
        ),
    ),
)

INSTANCES = Dashboard(
    "llmtwin-instances",
    "llmtwin / Instances",
    "Each simulated instance: its role over time, KV cache, busy and idle time, batches.",
    (
        Row(
            "Roles and time",
            (
                _engine_panel(
                    "Role",
                    _role_code(),
                    "short",
                    "The role each instance holds (idle: nothing to run)",
                    kind="state-timeline",
                    width=24,
                    value_names=ROLE_CODES,
                ),
                Panel(
                    "Busy fraction by role",
                    (
                        Query(
                            f"sum by (engine, role) ({_per_virtual_s('twin_instance_busy_seconds_total')})",
                            "{{engine}} {{role}}",
                        ),
                    ),
                    unit="percentunit",
                    description="Virtual seconds computing per virtual second, by what the iterations computed",
                    stacked=True,
                ),
                Panel(
                    "Idle fraction by role",
                    (
                        Query(
                            f"sum by (engine, role) ({_per_virtual_s('twin_instance_idle_seconds_total')})",
                            "{{engine}} {{role}}",
                        ),
                    ),
                    unit="percentunit",
                    description="Virtual seconds with nothing to run per virtual second, by the role held",
                    stacked=True,
                ),
            ),
        ),
        Row(
            "KV cache and batches",
            (
                Panel(
                    "KV cache per device: primary and redundant",
                    (
                        Query(
                            f"sum by (engine, copy) (twin_instance_kv_cache_bytes{{{ME}}})",
                            "{{engine}} {{copy}}",
                        ),
                    ),
                    unit="bytes",
                    description="Primary KV (decoded here) and AcceLLM's redundant copies",
                    stacked=True,
                ),
                _engine_panel(
                    "Mean batch size",
                    f"{_by_engine(_rate('twin_instance_batch_sequences', suffix='_sum'))} / "
                    f"{_by_engine(_rate('twin_instance_batch_sequences', suffix='_count'))}",
                    "short",
                    "Sequences per iteration",
                ),
                _engine_panel(
                    "Running requests",
                    _by_engine(series("vllm:num_requests_running", "", ME)),
                    "short",
                    "Sequences in the running batch",
                ),
                _engine_panel(
                    "Tokens per iteration (median)",
                    f"histogram_quantile(0.5, sum by (engine, le) ({_rate('vllm:iteration_tokens_total', suffix='_bucket')}))",
                    "short",
                    "Prefill tokens plus one per decoding sequence",
                ),
            ),
        ),
    ),
)

PAIRS = Dashboard(
    "llmtwin-pairs",
    "llmtwin / AcceLLM pairs",
    "AcceLLM's paired instances: role switches, redundant KV, hand-overs, KV moved over links.",
    (
        Row(
            "Pairs",
            (
                Panel(
                    "Pair membership",
                    (Query(f"twin_instance_pair_info{{{M}}}", "pair {{pair}}: {{engine}} + {{partner}}"),),
                    kind="stat",
                    description="1 for each instance of each pair (0, pair '-', under other policies)",
                    width=24,
                ),
                _engine_panel(
                    "Role switches per second",
                    _by_engine(_per_virtual_s("twin_instance_role_switches_total")),
                    "short",
                    "Role changes per virtual second",
                ),
                _engine_panel(
                    "Redundant KV per device",
                    f'sum by (engine) (twin_instance_kv_cache_bytes{{{ME}, copy="redundant"}})',
                    "bytes",
                    "Copies of the partner's requests, kept so either can decode them",
                ),
                _engine_panel(
                    "Hand-overs per second",
                    _by_engine(_per_virtual_s("twin_instance_handovers_total")),
                    "short",
                    "Requests handed to the partner (or to a decode instance), per virtual second",
                ),
                _engine_panel(
                    "KV moved over links",
                    _by_engine(_per_virtual_s("twin_instance_kv_moved_bytes_total")),
                    "Bps",
                    "Bytes of KV moved per virtual second",
                ),
            ),
        ),
    ),
)

DEVICE = Dashboard(
    "llmtwin-device",
    "llmtwin / Device and PRESERVE",
    "Memory of the simulated accelerators and PRESERVE's prefetching into L2 during allreduces.",
    (
        Row(
            "Memory",
            (
                Panel(
                    "HBM per device",
                    (
                        Query(f"sum by (engine) (twin_instance_hbm_used_bytes{{{ME}}})", "{{engine}} used"),
                        Query(f"max(twin_instance_hbm_capacity_bytes{{{ME}}})", "capacity"),
                    ),
                    unit="bytes",
                    description="Weights and KV cache against the device's HBM",
                ),
                Panel(
                    "L2 per device",
                    (
                        Query(
                            f"sum by (engine) (twin_preserve_l2_prefetch_bytes{{{ME}}})",
                            "{{engine}} prefetched",
                        ),
                        Query(f"max(twin_instance_l2_capacity_bytes{{{ME}}})", "capacity"),
                    ),
                    unit="bytes",
                    description="Bytes PRESERVE's latest plan placed in L2, against its size",
                ),
            ),
        ),
        Row(
            "PRESERVE and allreduce",
            (
                _engine_panel(
                    "Prefetched bytes per second",
                    _by_engine(_per_virtual_s("twin_preserve_prefetched_bytes_total")),
                    "Bps",
                    "Weights and KV moved from HBM into L2 during allreduces, per virtual second",
                    width=8,
                ),
                _engine_panel(
                    "Step time saved",
                    f"{_by_engine(_rate('twin_preserve_saved_seconds_total'))} / "
                    f"{_by_engine(_rate('twin_instance_busy_seconds_total'))}",
                    "percentunit",
                    "Time PRESERVE saved / time computing",
                    width=8,
                ),
                _engine_panel(
                    "Allreduce share of step time",
                    _by_engine(f"twin_instance_allreduce_share_ratio{{{ME}}}"),
                    "percentunit",
                    "Over the latest window's iterations",
                    width=8,
                ),
            ),
        ),
    ),
)

HEALTH = Dashboard(
    "llmtwin-health",
    "llmtwin / Twin health",
    "The twin's own processes: virtual time, pace and lag, windows, bus traffic, rejections.",
    (
        Row(
            "Virtual time",
            (
                Panel(
                    "Virtual time",
                    (Query("max(twin_conductor_virtual_time_seconds)", "virtual time"),),
                    unit="s",
                    description="Virtual time of the current window",
                    width=8,
                ),
                Panel(
                    "Speed",
                    (
                        Query("max(twin_conductor_speed_ratio)", "achieved"),
                        Query("max(twin_conductor_pace_ratio)", "requested (0 = max)"),
                    ),
                    description="Virtual seconds per wall second",
                    width=8,
                ),
                Panel(
                    "Lag behind the pace",
                    (Query("max(twin_conductor_realtime_lag_seconds)", "lag"),),
                    unit="s",
                    description="Wall seconds the run is behind --speed",
                    width=8,
                ),
            ),
        ),
        Row(
            "Windows and bus",
            (
                Panel(
                    "Windows per second",
                    (Query(f"sum(rate(twin_conductor_windows_total{RI}))", "windows/s"),),
                    description="Virtual-time windows opened per wall second",
                    width=8,
                ),
                Panel(
                    "Window duration (p99)",
                    (
                        Query(
                            f"histogram_quantile(0.99, sum by (le) (rate(twin_conductor_window_duration_seconds_bucket{RI})))",
                            "p99",
                        ),
                    ),
                    unit="s",
                    description="Wall time from opening a window to the last Done",
                    width=8,
                ),
                Panel(
                    "Bus rejections per second",
                    (
                        Query(
                            f"sum by (service, reason) (rate(twin_bus_rejected_total{RI}))",
                            "{{service}} {{reason}}",
                        ),
                    ),
                    description="Messages rejected, by service and reason",
                    width=8,
                ),
                Panel(
                    "Bus messages per second",
                    (
                        Query(
                            f"sum by (service, direction) (rate(twin_bus_messages_total{RI}))",
                            "{{service}} {{direction}}",
                        ),
                    ),
                    description="Messages handled, by service and direction",
                ),
                Panel(
                    "Services up",
                    (Query("twin_service_up", "{{service}}"),),
                    kind="stat",
                    description="1 while each service is started",
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (FLEET, INSTANCES, PAIRS, DEVICE, HEALTH)
