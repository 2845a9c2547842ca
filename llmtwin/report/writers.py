"""summary.json, requests.csv and instances.csv.

requests.csv is part of the determinism contract (same scenario and seed, byte-identical
file): fixed column order, rows sorted by request id, every float written with ``repr`` (the
shortest string that round-trips), empty cells for missing values, ``\\n`` line ends, and no
wall-clock value, path or timestamp. instances.csv follows the same rules. Wall-clock figures
only ever appear under summary.json's ``"run"`` key.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmtwin.cluster.records import InstanceRecord, RunResult
from llmtwin.report.summary import meets_slo, request_tbt, run_span
from llmtwin.scenario.spec import SLOSpec

Cell = str | int | float | None

REQUEST_COLUMNS = (
    "rid",
    "arrival_s",
    "prompt_tokens",
    "output_tokens",
    "generated_tokens",
    "first_token_s",
    "completion_s",
    "ttft_s",
    "e2e_s",
    "tbt_mean_s",
    "tbt_p90_s",
    "tbt_p99_s",
    "tbt_max_s",
    "instances",
    "preemptions",
    "kv_bytes_moved",
    "meets_slo",
    "failed_reason",
)
"""requests.csv columns, in order; ``instances`` is ``;``-separated instance ids in order of use."""

ROLES = ("prefill", "decode", "mixed")
"""Roles that always get busy and idle columns in instances.csv (others seen in a run are appended)."""


def cell(value: Cell) -> str:
    """One CSV cell: ``repr`` for floats (round-trips exactly), empty for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        # float(): numpy scalars subclass float but repr as "np.float64(...)".
        return repr(float(value)) if math.isfinite(value) else ""
    return str(value)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A CSV document with ``\\n`` line ends and minimal quoting."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([cell(v) for v in row])
    return buf.getvalue()


def requests_csv(result: RunResult, slo: SLOSpec) -> str:
    """requests.csv: one row per request, sorted by request id."""
    rows: list[list[Cell]] = []
    for r in sorted(result.requests, key=lambda r: r.rid):
        t = request_tbt(r)
        rows.append(
            [
                r.rid,
                float(r.arrival_s),
                r.prompt_tokens,
                r.output_tokens,
                r.generated_tokens,
                r.first_token_s,
                r.completion_s,
                r.ttft_s,
                r.e2e_s,
                t.mean,
                t.p90,
                t.p99,
                t.max,
                ";".join(str(i) for i in r.instances),
                r.preemptions,
                float(r.kv_bytes_moved),
                meets_slo(r, t, slo),
                r.failed_reason,
            ]
        )
    return csv_text(REQUEST_COLUMNS, rows)


def kv_stats(inst: InstanceRecord, start_s: float, end_s: float) -> tuple[float, float, float, float]:
    """(peak primary, peak redundant, peak total, time-weighted mean total) KV bytes per device.

    The timeline is piecewise constant (each point holds until the next); the mean is taken
    over [start_s, end_s].
    """
    if not inst.kv_timeline:
        return 0.0, 0.0, 0.0, 0.0
    tl = np.asarray(inst.kv_timeline, dtype=np.float64)
    total = tl[:, 1] + tl[:, 2]
    peaks = (float(tl[:, 1].max()), float(tl[:, 2].max()), float(total.max()))
    if end_s <= start_s:
        return (*peaks, float(total[-1]))
    bounds = np.clip(np.append(tl[:, 0], end_s), start_s, end_s)
    mean = float(np.sum(total * np.diff(bounds)) / (end_s - start_s))
    return (*peaks, mean)


def instances_csv(result: RunResult) -> str:
    """instances.csv: one row per instance, sorted by instance id."""
    extra = sorted({role for i in result.instances for role in (*i.busy_s, *i.idle_s_by_role)} - set(ROLES))
    roles = (*ROLES, *extra)
    start, end = run_span(result)
    span = end - start
    header = [
        "iid",
        "devices",
        *(f"busy_{role}_s" for role in roles),
        "busy_s",
        *(f"idle_{role}_s" for role in roles),
        "idle_s",
        "busy_fraction",
        "iterations",
        "role_switches",
        "mean_batch_size",
        "max_batch_size",
        "tokens_generated",
        "prefill_tokens",
        "preemptions",
        "kv_capacity_bytes",
        "kv_peak_primary_bytes",
        "kv_peak_redundant_bytes",
        "kv_peak_total_bytes",
        "kv_mean_total_bytes",
    ]
    rows: list[list[Cell]] = []
    for inst in sorted(result.instances, key=lambda i: i.iid):
        busy = sum(inst.busy_s.values())
        batches = inst.batch_sizes
        rows.append(
            [
                inst.iid,
                inst.devices,
                *(float(inst.busy_s.get(role, 0.0)) for role in roles),
                float(busy),
                *(float(inst.idle_s_by_role.get(role, 0.0)) for role in roles),
                float(inst.idle_s),
                busy / span if span > 0 else None,
                inst.iterations,
                inst.role_switches,
                float(np.mean(batches)) if batches else None,
                max(batches) if batches else None,
                inst.tokens_generated,
                inst.prefill_tokens,
                inst.preemptions,
                float(inst.kv_capacity_bytes),
                *kv_stats(inst, start, end),
            ]
        )
    return csv_text(header, rows)


def json_text(obj: Any) -> str:
    """Indented JSON with a final newline; NaN/inf are not valid JSON and are refused."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` as UTF-8 with ``\\n`` line ends, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return path
