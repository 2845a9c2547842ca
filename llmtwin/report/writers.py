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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from llmtwin.cluster.records import RequestTable, RunResult
from llmtwin.report.summary import meets_slo, run_span
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


def float_cells(values: npt.NDArray[np.float64]) -> list[str]:
    """:func:`cell` of every value of a float column (``repr``; empty for NaN and infinities)."""
    out = list(map(float.__repr__, values.tolist()))
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = ""
    return out


def int_cells(values: npt.NDArray[np.integer[Any]]) -> list[str]:
    return list(map(str, values.tolist()))


def quoted(text: str) -> str:
    """A text field as ``csv.writer`` writes it (minimal quoting)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def instance_cells(instances: npt.NDArray[np.int32]) -> list[str]:
    """The ``instances`` column: each row's instance ids joined by ``;`` (-1 padding dropped)."""
    out = int_cells(instances[:, 0])
    for i in np.flatnonzero(instances[:, 0] < 0).tolist():
        out[i] = ""
    for k in range(1, instances.shape[1]):
        col = instances[:, k]
        for i in np.flatnonzero(col >= 0).tolist():
            out[i] += f";{col[i]}"
    return out


def request_columns(table: RequestTable, slo: SLOSpec, first_rid: int = 0) -> list[list[str]]:
    """requests.csv's cells, column by column (:data:`REQUEST_COLUMNS`), for a table whose rows
    are requests ``first_rid``, ``first_rid + 1``, ..."""
    t = table
    reasons = np.array(["", *map(quoted, t.reasons)], dtype=object)
    return [
        int_cells(np.arange(first_rid, first_rid + len(t))),
        float_cells(t.arrival_s),
        int_cells(t.prompt_tokens),
        int_cells(t.output_tokens),
        int_cells(t.generated_tokens),
        float_cells(t.first_token_s),
        float_cells(t.completion_s),
        float_cells(t.ttft_s),
        float_cells(t.e2e_s),
        float_cells(t.tbt_mean_s),
        float_cells(t.tbt_p90_s),
        float_cells(t.tbt_p99_s),
        float_cells(t.tbt_max_s),
        instance_cells(t.instances),
        int_cells(t.preemptions),
        float_cells(t.kv_bytes_moved),
        np.where(meets_slo(t, slo), "1", "0").tolist(),
        reasons[t.failure + 1].tolist(),
    ]


ROWS_PER_WRITE = 65536
"""requests.csv is formatted and written this many rows at a time (bounded memory)."""


def write_requests_csv(f: TextIO, result: RunResult, slo: SLOSpec) -> None:
    """requests.csv into an open text file: one row per request, sorted by request id.

    Formatted column by column and joined row by row, rather than through ``csv.writer`` (ten
    times slower for a million rows); the text is the same: only the failure reason can need
    quoting, and :func:`quoted` quotes it as ``csv.writer`` does."""
    f.write(",".join(REQUEST_COLUMNS) + "\n")
    t = result.table
    for lo in range(0, len(t), ROWS_PER_WRITE):
        columns = request_columns(t.rows(lo, lo + ROWS_PER_WRITE), slo, first_rid=lo)
        f.write("\n".join(map(",".join, zip(*columns, strict=True))) + "\n")


def requests_csv(result: RunResult, slo: SLOSpec) -> str:
    """requests.csv as text."""
    buf = io.StringIO()
    write_requests_csv(buf, result, slo)
    return buf.getvalue()


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
                inst.mean_batch_size,
                inst.max_batch_size,
                inst.tokens_generated,
                inst.prefill_tokens,
                inst.preemptions,
                float(inst.kv_capacity_bytes),
                inst.kv_peak_primary_bytes,
                inst.kv_peak_redundant_bytes,
                inst.kv_peak_total_bytes,
                inst.kv_mean_total_bytes,
            ]
        )
    return csv_text(header, rows)


def json_text(obj: Any) -> str:
    """Indented JSON with a final newline; NaN/inf are not valid JSON and are refused."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` as UTF-8 with ``\\n`` line ends, creating parent folders."""
    return write_with(path, lambda f: f.write(text))


def write_with(path: Path, write: Callable[[TextIO], object]) -> Path:
    """Call ``write`` on ``path`` opened for UTF-8 text with ``\\n`` line ends (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        write(f)
    return path
