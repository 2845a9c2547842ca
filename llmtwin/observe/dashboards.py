"""The five shipped dashboards, defined once: Grafana JSON and PNG pictures are both made from these.

* **Fleet overview**: latency quantiles, throughput, queues, KV use, SLO attainment, goodput, cost.
* **Instances**: role over time, KV primary vs redundant, busy and idle time, batch sizes.
* **AcceLLM pairs**: role switches, redundant KV, hand-overs, KV moved over links, pairs.
* **Device and PRESERVE**: HBM and L2 use, prefetched bytes, time saved, allreduce share.
* **Twin health**: virtual time, speed and lag, windows per second, bus traffic and rejections
  (:mod:`llmtwin.observe.health_dashboard`: the twin's own processes, not the simulated fleet).

The queries and the panel shapes used again and again are built by
:mod:`llmtwin.observe.panel_builders`.

Every query names only metrics of the catalogue (:mod:`llmtwin.observe.families`) or series of
the recording rules (:mod:`llmtwin.observe.recording_rules`); ``llmtwin dashboards --check``
enforces it. Latency panels read the recorded quantiles, which Prometheus computes from the
fleet's histograms every evaluation interval.
"""

from __future__ import annotations

from llmtwin.observe.health_dashboard import HEALTH
from llmtwin.observe.panel_builders import (
    ME,
    ROLE_CODES,
    M,
    by_engine,
    engine_panel,
    per_virtual_s,
    quantile_panel,
    rate,
    role_code,
)
from llmtwin.observe.panels import Dashboard, Panel, Query, Row
from llmtwin.observe.promql import series

FLEET = Dashboard(
    "llmtwin-fleet",
    "llmtwin / Fleet overview",
    "The simulated fleet as a vLLM operator sees it: latency quantiles, throughput, queues, KV use, SLOs.",
    (
        Row(
            "Latency (virtual seconds)",
            (
                quantile_panel(
                    "Time to first token", "vllm:time_to_first_token_seconds", "TTFT quantiles over 1 m"
                ),
                quantile_panel(
                    "Inter-token latency", "vllm:inter_token_latency_seconds", "Gap between tokens"
                ),
                quantile_panel(
                    "End-to-end latency", "vllm:e2e_request_latency_seconds", "Arrival to last token"
                ),
                quantile_panel("Queue time", "vllm:request_queue_time_seconds", "Arrival to first iteration"),
            ),
        ),
        Row(
            "Throughput and SLOs",
            (
                Panel(
                    "Tokens per second",
                    (
                        Query(f"sum({per_virtual_s('vllm:prompt_tokens_total', M)})", "prompt"),
                        Query(f"sum({per_virtual_s('vllm:generation_tokens_total', M)})", "generated"),
                    ),
                    unit="short",
                    description="Prompt tokens prefilled and tokens generated per virtual second",
                    width=8,
                ),
                Panel(
                    "Requests per second",
                    (
                        Query(f"sum({per_virtual_s('vllm:request_success_total', M)})", "finished"),
                        Query(f"sum({per_virtual_s('twin_slo_met_requests_total', M)})", "met both SLOs"),
                        Query(f"sum({per_virtual_s('twin_requests_arrived_total', M)})", "arrived"),
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
                engine_panel(
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
                    (Query(f"sum({per_virtual_s('vllm:num_preemptions_total', M)})", "preemptions"),),
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
                engine_panel(
                    "Role",
                    role_code(),
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
                            f"sum by (engine, role) ({per_virtual_s('twin_instance_busy_seconds_total')})",
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
                            f"sum by (engine, role) ({per_virtual_s('twin_instance_idle_seconds_total')})",
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
                engine_panel(
                    "Mean batch size",
                    f"{by_engine(rate('twin_instance_batch_sequences', suffix='_sum'))} / "
                    f"{by_engine(rate('twin_instance_batch_sequences', suffix='_count'))}",
                    "short",
                    "Sequences per iteration",
                ),
                engine_panel(
                    "Running requests",
                    by_engine(series("vllm:num_requests_running", "", ME)),
                    "short",
                    "Sequences in the running batch",
                ),
                engine_panel(
                    "Tokens per iteration (median)",
                    f"histogram_quantile(0.5, sum by (engine, le) ({rate('vllm:iteration_tokens_total', suffix='_bucket')}))",
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
                engine_panel(
                    "Role switches per second",
                    by_engine(per_virtual_s("twin_instance_role_switches_total")),
                    "short",
                    "Role changes per virtual second",
                ),
                engine_panel(
                    "Redundant KV per device",
                    f'sum by (engine) (twin_instance_kv_cache_bytes{{{ME}, copy="redundant"}})',
                    "bytes",
                    "Copies of the partner's requests, kept so either can decode them",
                ),
                engine_panel(
                    "Hand-overs per second",
                    by_engine(per_virtual_s("twin_instance_handovers_total")),
                    "short",
                    "Requests handed to the partner (or to a decode instance), per virtual second",
                ),
                engine_panel(
                    "KV moved over links",
                    by_engine(per_virtual_s("twin_instance_kv_moved_bytes_total")),
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
                engine_panel(
                    "Prefetched bytes per second",
                    by_engine(per_virtual_s("twin_preserve_prefetched_bytes_total")),
                    "Bps",
                    "Weights and KV moved from HBM into L2 during allreduces, per virtual second",
                    width=8,
                ),
                engine_panel(
                    "Step time saved",
                    f"{by_engine(rate('twin_preserve_saved_seconds_total'))} / "
                    f"{by_engine(rate('twin_instance_busy_seconds_total'))}",
                    "percentunit",
                    "Time PRESERVE saved / time computing",
                    width=8,
                ),
                engine_panel(
                    "Allreduce share of step time",
                    by_engine(f"twin_instance_allreduce_share_ratio{{{ME}}}"),
                    "percentunit",
                    "Over the latest window's iterations",
                    width=8,
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (FLEET, INSTANCES, PAIRS, DEVICE, HEALTH)
