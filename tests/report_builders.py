"""Small hand-built run results for the report tests (no simulation involved)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmtwin.cluster.assemble import result_from_records
from llmtwin.cluster.instance_stats import KvUse
from llmtwin.cluster.records import InstanceRecord, RequestRecord, RunResult
from llmtwin.cluster.timebins import OccupancyBins


def make_request(
    rid: int,
    arrival: float,
    token_times: Sequence[float],
    *,
    prompt: int = 10,
    output: int | None = None,
    instances: Sequence[int] = (0,),
    preemptions: int = 0,
    kv_moved: float = 0.0,
    failed: str | None = None,
) -> RequestRecord:
    """A request that produced ``token_times`` (completed when it produced all ``output`` tokens)."""
    times = list(token_times)
    out = len(times) if output is None else output
    done = failed is None and len(times) == out and bool(times)
    return RequestRecord(
        rid=rid,
        arrival_s=arrival,
        prompt_tokens=prompt,
        output_tokens=out,
        generated_tokens=len(times),
        first_token_s=times[0] if times else None,
        completion_s=times[-1] if done else None,
        token_times_s=times,
        instances=list(instances),
        preemptions=preemptions,
        kv_bytes_moved=kv_moved,
        failed_reason=failed,
    )


def make_instance(
    iid: int,
    *,
    devices: int = 2,
    busy: dict[str, float] | None = None,
    idle: dict[str, float] | None = None,
    batches: Sequence[int] = (1, 2),
    kv: Sequence[tuple[float, float, float]] = (),
    roles: Sequence[tuple[float, str]] = (),
    role_switches: int = 0,
    span: tuple[float, float] = (0.0, 2.4),
) -> InstanceRecord:
    """An instance record with its statistics computed from the given timelines, as a run would."""
    use = KvUse(span[0], detail=True)
    if kv:
        tl = np.asarray(kv, dtype=np.float64)
        use.add(tl[:, 0], tl[:, 1], tl[:, 2], settled_s=-np.inf)
    peak_p, peak_r, peak_t, mean_t = use.finish(span[1])
    env_t, env = use.envelope.points()
    bins = OccupancyBins()
    if roles:
        t = np.asarray([r[0] for r in roles] + [span[1]])
        bins.add(t[:-1], t[1:], [r[1] for r in roles])
    return InstanceRecord(
        iid=iid,
        devices=devices,
        busy_s=dict(busy or {}),
        idle_s=sum((idle or {}).values()),
        idle_s_by_role=dict(idle or {}),
        iterations=len(batches),
        role_switches=role_switches,
        batch_counts=np.bincount(np.asarray(batches, dtype=np.int64)).tolist() if batches else [],
        kv_capacity_bytes=4.0e9,
        kv_peak_primary_bytes=peak_p,
        kv_peak_redundant_bytes=peak_r,
        kv_peak_total_bytes=peak_t,
        kv_mean_total_bytes=mean_t,
        tokens_generated=sum(batches),
        kv_envelope=tuple(zip(env_t.tolist(), env[0].tolist(), env[1].tolist(), strict=True)),
        role_stretches=tuple(bins.stretches(span[1])),
        batch_sizes=list(batches),
        kv_timeline=list(kv),
        role_timeline=list(roles),
    )


def make_result(
    *, policy: str = "colocated", usd: float | None = 2.4, requests: Sequence[RequestRecord] | None = None
) -> RunResult:
    """Three requests (two complete, one failed) on two 2-device instances, span 0..2.4 s.

    TTFTs 1.0 and 0.5 s; gaps 0.5, 0.5 (rid 0) and 0.1, 0.2, 0.6 (rid 1); 7 output tokens.
    Busy device-seconds (1.0 + 0.6 + 1.2) x 2 = 5.6 of 4 x 2.4 = 9.6; idle 0.3 s as prefill,
    0.5 + 1.2 s as decode (x 2 devices).
    """
    if requests is None:
        requests = [
            make_request(0, 0.0, [1.0, 1.5, 2.0], instances=(0, 1), kv_moved=1.5e6),
            make_request(1, 1.0, [1.5, 1.6, 1.8, 2.4], preemptions=2),
            make_request(2, 2.0, [], output=5, failed="prompt too long"),
        ]
    instances = [
        make_instance(
            0,
            busy={"prefill": 1.0, "decode": 0.6},
            idle={"prefill": 0.3, "decode": 0.5},
            kv=[(0.0, 0.0, 0.0), (1.0, 1.0e9, 0.0), (2.0, 1.0e9, 5.0e8)],
            roles=[(0.0, "prefill"), (1.0, "decode"), (1.5, "decode"), (2.0, "prefill")],
            role_switches=2,
        ),
        make_instance(1, busy={"decode": 1.2}, idle={"decode": 1.2}, batches=(3,)),
    ]
    return result_from_records(
        policy,
        "hand-built",
        7,
        list(requests),
        instances,
        2.4,
        hardware="h100-sxm",
        model="llama-2-7b",
        tp=2,
        usd_per_device_hour=usd,
        stats={"wall_s": 0.123, "events": 42.0},
    )


def make_big_result(n: int, *, tokens: int = 50, instances: int = 4, policy: str = "accellm") -> RunResult:
    """``n`` regular requests (fixed lengths) with long KV and role timelines, for size/speed checks."""
    reqs = []
    for rid in range(n):
        arrival = rid * 0.1
        times = [arrival + 0.2 + 0.02 * k + 0.001 * (rid % 7) for k in range(tokens)]
        reqs.append(make_request(rid, arrival, times, instances=(rid % instances,)))
    end = reqs[-1].token_times_s[-1]
    insts = []
    for iid in range(instances):
        steps = 20 * n
        kv = [(end * k / steps, 1e9 * (1 + (k % 50)) / 50, 2e8 * (k % 3)) for k in range(steps)]
        roles = [(end * k / 200, "prefill" if k % 2 else "decode") for k in range(200)]
        insts.append(
            make_instance(
                iid,
                busy={"mixed": end * 0.5},
                batches=[k % 64 for k in range(n)],
                kv=kv,
                roles=roles,
                span=(0.0, end),
            )
        )
    return result_from_records(policy, "big", 0, reqs, insts, end, usd_per_device_hour=None)
