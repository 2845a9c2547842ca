"""The calibration report as markdown: fitted values and every fit-error table."""

from __future__ import annotations

from llmtwin.calibrate.report import (
    TP_DEGREES,
    ErrorRow,
    collective_errors,
    config_errors,
    iteration_errors,
    iteration_errors_by_region,
    markdown_table,
    op_errors,
    op_errors_by_region,
    pct,
)
from llmtwin.calibrate.run import Result
from llmtwin.physics.precision import Precision

MAX_MEASURED_TOKENS = 1 << 20


def _op_table(rows: list[ErrorRow]) -> str:
    by_op: dict[str, dict[str, ErrorRow]] = {}
    for r in rows:
        by_op.setdefault(r.label[0], {})[r.label[1]] = r
    headers = ["op", "points", "all TP", *(f"TP{t}" for t in TP_DEGREES), "p90 (all)"]
    body = []
    for op, cells in by_op.items():
        every = cells["all"]
        if every.count == 0:
            continue
        body.append(
            [op, str(every.count), pct(every.median_pct), *(pct(cells[str(t)].median_pct) for t in TP_DEGREES),
             pct(every.p90_pct)]
        )  # fmt: skip
    return markdown_table(headers, body)


def _region_table(rows: list[ErrorRow], first: str, sizes: str) -> str:
    """Rows (class, range, TP) as one line per (class, range): median/p90 per TP and pooled."""
    cells: dict[tuple[str, str], dict[str, ErrorRow]] = {}
    for r in rows:
        cells.setdefault((r.label[0], r.label[1]), {})[r.label[2]] = r
    tps = sorted({r.label[2] for r in rows if r.label[2] != "all"}, key=int)
    headers = [first, sizes, "points", "all TP", *(f"TP{t}" for t in tps)]
    empty = ErrorRow((), 0, float("nan"), float("nan"))

    def cell(r: ErrorRow) -> str:
        return "-" if r.count == 0 else f"{pct(r.median_pct)} / {pct(r.p90_pct)}"

    body = [
        [key, rng, str(c["all"].count), cell(c["all"]), *(cell(c.get(t, empty)) for t in tps)]
        for (key, rng), c in cells.items()
        if c["all"].count
    ]
    return markdown_table(headers, body)


def render(result: Result, prec: Precision, max_tokens: int) -> str:
    """Markdown text: fitted fields, then operator, collective and iteration error tables."""
    out: list[str] = [f"## Calibration of {result.hardware.name}", ""]
    if result.fitted:
        out += ["Fitted efficiency fields:", ""]
        out += [markdown_table(["field", "value"], [[k, f"{v:g}"] for k, v in result.fitted.items()]), ""]
    if result.groups:
        out += [
            f"Operators, tokens 1-{max_tokens} (fitted): median |predicted/measured - 1| in %", "",
            _op_table(op_errors(result.hardware, result.groups, prec, 1, max_tokens)), "",
        ]  # fmt: skip
        out += [
            "Operators by class and region (the regions of the bands): median / p90 "
            "|predicted/measured - 1| in %", "",
            _region_table(op_errors_by_region(result.hardware, result.groups, prec), "class", "tokens"), "",
        ]  # fmt: skip
        beyond = op_errors(result.hardware, result.groups, prec, max_tokens + 1, MAX_MEASURED_TOKENS)
        if any(r.count for r in beyond):
            out += [
                f"Operators, tokens > {max_tokens} (not fitted: extrapolation), same measure", "",
                _op_table(beyond), "",
            ]  # fmt: skip
    if result.collectives:
        rows = collective_errors(result.hardware, result.collectives)
        body = [[*r.label, str(r.count), pct(r.median_pct), pct(r.p90_pct)] for r in rows]
        out += [
            "Collectives (scale-up fields fitted on intra-node rows, scale-out fields on the rest): median and p90 |predicted/measured - 1| in %", "",
            markdown_table(["collective", "world", "scope", "points", "median %", "p90 %"], body), "",
        ]  # fmt: skip
    if result.engine is not None:
        e = result.engine
        out += [
            f"Engine profile `{e.name}`: iteration {e.iteration_overhead_s * 1e3:.3g} ms, "
            f"per-kernel dispatch {e.per_kernel_launch_s * 1e6:.3g} us, per sequence "
            f"{e.per_sequence_overhead_s * 1e3:.3g} ms + {e.per_sequence_vocab_s * 1e9:.3g} ns per vocabulary "
            f"entry, prefill {e.prefill_overhead_s * 1e3:.3g} ms, {e.prefill_pair_bytes:.3g} bytes per layer "
            f"per pair of prompt tokens (host speed {e.host_speed:g})",
            "",
            "Iterations (every measured row): median and p90 |predicted/measured - 1| in %",
            "",
        ]
        rows = iteration_errors(result.configs, e, result.iterations)
        body = [[*r.label, str(r.count), pct(r.median_pct), pct(r.p90_pct)] for r in rows]
        out += [markdown_table(["phase", "model", "TP", "rows", "median %", "p90 %"], body), ""]
        out += [
            "Iterations by region (prefill: prompt tokens of the iteration; decode: sequences): "
            "median / p90 |predicted/measured - 1| in %, every measured row", "",
            _region_table(iteration_errors_by_region(result.configs, e, result.iterations), "phase", "size"), "",
        ]  # fmt: skip
        out += ["Every measured configuration (duplicates merged by median), times in ms:", ""]
        body = [
            [c.phase, c.model, str(c.tp), str(c.batch), str(c.prompt), str(c.generated or ""),
             f"{c.measured_s * 1e3:.1f}", f"{p * 1e3:.1f}", f"{err * 100:+.1f}"]
            for c, p, err in config_errors(result.configs, e)
        ]  # fmt: skip
        headers = ["phase", "model", "TP", "batch", "prompt", "generated", "measured", "predicted", "error %"]
        out += [markdown_table(headers, body), ""]
    return "\n".join(out)
