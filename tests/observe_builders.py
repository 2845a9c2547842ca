"""Per-window observation records cut from a finished in-process run (for the exporter's tests).

Phase 2 builds these records in the services as virtual time advances; here the same records are
reconstructed after the fact from a :class:`RunResult`, cut at arbitrary window edges, which is
enough to test that the exporter's totals agree with the summary whatever the windows.
"""

from __future__ import annotations

import bisect
from collections import Counter

from llmtwin.cluster.records import RunResult
from llmtwin.observe.observations import (
    ClusterWindow,
    FinishedRequest,
    InstanceWindow,
    RunInfo,
    weighted,
)
from llmtwin.report.summary import meets_slo, run_span
from llmtwin.scenario.spec import Scenario


def run_info(scenario: Scenario, result: RunResult) -> RunInfo:
    return RunInfo(
        run_id="test-0",
        scenario=scenario.name,
        policy=result.policy,
        model_name=result.model,
        hardware=result.hardware,
        devices=sum(i.devices for i in result.instances),
        usd_per_device_hour=result.usd_per_device_hour,
        slo_ttft_s=scenario.slo.ttft_s,
        slo_tbt_s=scenario.slo.tbt_s,
        slo_tbt_stat=scenario.slo.tbt_stat,
        pairs=tuple((f"instance-{k}", f"instance-{k + 1}") for k in range(0, len(result.instances), 2))
        if result.policy == "accellm"
        else (),
    )


def instance_windows(result: RunResult, edges: list[float]) -> list[list[InstanceWindow]]:
    """Per window (ending at each edge; the last edge must be >= every token) the records of every
    instance. Tokens go to the last instance a request used; instance totals go to the last window."""
    n = len(edges)
    per: dict[tuple[int, int], dict[str, list[float] | int]] = {}

    def slot(iid: int, k: int) -> dict[str, list[float] | int]:
        return per.setdefault((iid, k), {"ttft": [], "gaps": [], "prompt": 0, "gen": 0, "pre": 0})

    finished: dict[tuple[int, int], list[FinishedRequest]] = {}
    for r in result.requests:
        iid = r.instances[-1] if r.instances else 0
        times = r.token_times_s
        for j, t in enumerate(times):
            s = slot(iid, bisect.bisect_left(edges, t))
            s["gen"] += 1  # type: ignore[operator]
            if j == 0:
                s["ttft"].append(t - r.arrival_s)  # type: ignore[union-attr]
                s["prompt"] += r.prompt_tokens  # type: ignore[operator]
            else:
                s["gaps"].append(t - times[j - 1])  # type: ignore[union-attr]
        slot(iid, n - 1)["pre"] += r.preemptions  # type: ignore[operator]
        if r.completion_s is not None and r.failed_reason is None and r.first_token_s is not None:
            k = bisect.bisect_left(edges, r.completion_s)
            finished.setdefault((iid, k), []).append(
                FinishedRequest(
                    r.rid,
                    r.arrival_s,
                    r.arrival_s,
                    r.first_token_s,
                    r.completion_s,
                    r.prompt_tokens,
                    r.generated_tokens,
                )
            )
    moved = Counter[int]()
    for r in result.requests:
        moved[r.instances[0] if r.instances else 0] += r.kv_bytes_moved  # type: ignore[assignment]
    out: list[list[InstanceWindow]] = []
    for k, at in enumerate(edges):
        last = k == n - 1
        row = []
        for inst in result.instances:
            s = slot(inst.iid, k)
            row.append(
                InstanceWindow(
                    engine=f"instance-{inst.iid}",
                    at_s=at,
                    role="idle" if last else "mixed",
                    running=0,
                    waiting=0,
                    kv_primary_bytes=1.0,
                    kv_redundant_bytes=1.0,
                    kv_capacity_bytes=inst.kv_capacity_bytes,
                    hbm_used_bytes=1.0,
                    hbm_capacity_bytes=80e9,
                    l2_capacity_bytes=50e6,
                    prompt_tokens=int(s["prompt"]),  # type: ignore[arg-type]
                    generation_tokens=int(s["gen"]),  # type: ignore[arg-type]
                    preemptions=int(s["pre"]),  # type: ignore[arg-type]
                    ttft_s=tuple(s["ttft"]),  # type: ignore[arg-type]
                    token_gaps_s=weighted(s["gaps"]),  # type: ignore[arg-type]
                    batch_sequences=weighted(map(float, inst.batch_sizes)) if last else (),
                    busy_s=dict(inst.busy_s) if last else {},
                    idle_s=dict(inst.idle_s_by_role) if last else {},
                    role_switches=inst.role_switches if last else 0,
                    kv_moved_bytes=float(moved[inst.iid]) if last else 0.0,
                    finished=tuple(finished.get((inst.iid, k), ())),
                )
            )
        out.append(row)
    return out


def cluster_windows(scenario: Scenario, result: RunResult, edges: list[float]) -> list[ClusterWindow]:
    """The balancer's records for the same windows (the last edge is the run's end)."""
    start, _ = run_span(result)
    arrived = Counter(bisect.bisect_left(edges, r.arrival_s) for r in result.requests)
    done = [r for r in result.requests if r.completion_s is not None and r.failed_reason is None]
    fin = Counter(bisect.bisect_left(edges, r.completion_s or 0.0) for r in done)
    ok = meets_slo(result.table, scenario.slo)
    met = Counter(bisect.bisect_left(edges, r.completion_s or 0.0) for r in done if ok[r.rid])
    failed = Counter(
        (bisect.bisect_left(edges, r.arrival_s), r.failed_reason) for r in result.requests if r.failed_reason
    )
    out, last = [], None
    for k, at in enumerate(edges):
        times = [r.completion_s for r in done if r.completion_s is not None and r.completion_s <= at]
        last = max(times) if times else last
        out.append(
            ClusterWindow(
                at_s=at,
                arrived=arrived[k],
                finished=fin[k],
                slo_met=met[k],
                failed={reason: c for (kk, reason), c in failed.items() if kk == k and reason},
                first_arrival_s=start,
                last_completion_s=last,
            )
        )
    return out
