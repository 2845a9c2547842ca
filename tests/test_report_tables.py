"""Terminal tables and the progress bar."""

from __future__ import annotations

import dataclasses

from report_builders import make_result

from llmtwin.report.summary import summarize
from llmtwin.report.tables import (
    METRICS,
    capacity_table,
    compare_table,
    format_table,
    slo_capacity,
    summary_table,
    sweep_table,
    versus_table,
)
from llmtwin.scenario.spec import SLOSpec


def test_format_table_aligns_columns() -> None:
    """First column left-aligned, others right-aligned, a rule under the header."""
    text = format_table(["name", "v"], [["a", "1"], ["long name", "12.5"]])
    assert text.splitlines() == ["name          v", "---------  ----", "a             1", "long name  12.5"]


def test_summary_table_shows_values_and_hides_empty_rows() -> None:
    """Milliseconds for TTFT/TBT; rows empty for this run (no 'mixed' role, no price) are dropped."""
    text = summary_table(summarize(make_result(usd=None), SLOSpec()))
    assert "TTFT p50 (ms)" in text
    assert "750.0" in text
    assert "busy mixed" not in text
    assert "tokens / USD" not in text


def test_changes_are_ratios_or_percentage_points() -> None:
    """Most metrics change by a ratio; metrics in % change by percentage points."""
    a = summarize(make_result(), SLOSpec())
    b = dataclasses.replace(a, span_s=a.span_s * 0.7, idle_fraction=0.6)
    span = next(m for m in METRICS if m.label == "span (s)")
    idle = next(m for m in METRICS if m.label == "idle fraction (%)")
    assert span.change(b, a) == "-30.0%"
    assert idle.change(b, a) == f"{60.0 - 100 * (1 - 5.6 / 9.6):+.1f} pp"
    c = dataclasses.replace(a, span_s=0.0)
    assert span.change(b, c) == ""


def test_compare_table_has_a_change_column_per_policy() -> None:
    """Columns: metric, first policy, then each other policy with its change vs the first."""
    a = summarize(make_result(policy="colocated"), SLOSpec())
    b = dataclasses.replace(
        summarize(make_result(policy="accellm"), SLOSpec()),
        throughput_tokens_per_s=a.throughput_tokens_per_s * 1.3,  # type: ignore[operator]
    )
    lines = compare_table([a, b]).splitlines()
    assert lines[0].split() == ["metric", "colocated", "accellm", "vs", "colocated"]
    row = next(line for line in lines if line.startswith("throughput (tok/s)"))
    assert row.endswith("+30.0%")


def test_slo_capacity_is_the_last_rate_of_the_unbroken_run_from_the_lowest() -> None:
    """A policy's capacity stops at the first rate below target, even if a higher rate recovers."""
    s = summarize(make_result(), SLOSpec())
    good, bad = dataclasses.replace(s, slo_attainment=0.95), dataclasses.replace(s, slo_attainment=0.5)
    other = dataclasses.replace(bad, policy="accellm")
    points = [(1.0, good), (2.0, good), (3.0, bad), (4.0, good), (1.0, other), (2.0, other)]
    assert slo_capacity(points, 0.9) == {"colocated": 2.0, "accellm": None}
    rows = capacity_table(points, 0.9).splitlines()[2:]
    assert [r.split()[:2] for r in rows] == [["colocated", "2"], ["accellm", "none"]]
    rows = capacity_table([(1.0, good), (2.0, good)], 0.9).splitlines()[2:]
    assert rows[0].split()[:3] == ["colocated", ">=", "2"]


def test_sweep_table_has_one_row_per_point() -> None:
    """One row per (rate, policy)."""
    s = summarize(make_result(), SLOSpec())
    lines = sweep_table([(1.0, s), (2.5, s)]).splitlines()
    assert len(lines) == 4
    assert lines[3].startswith("2.5")


def test_markdown_table_aligns_numbers_right() -> None:
    """Markdown output: a header, an alignment row (labels left, numbers right), one line per row."""
    text = format_table(["rate", "policy", "x"], [["1", "a", "2.0"]], left=2, markdown=True)
    assert text.splitlines() == ["| rate | policy | x |", "| --- | --- | ---: |", "| 1 | a | 2.0 |"]


def test_versus_table_compares_one_policy_with_each_other_at_each_rate() -> None:
    """One row per (rate, other policy); the change is of the chosen policy against that one."""
    a = summarize(make_result(policy="colocated"), SLOSpec())
    b = dataclasses.replace(
        summarize(make_result(policy="accellm"), SLOSpec()),
        throughput_tokens_per_s=a.throughput_tokens_per_s * 0.8,  # type: ignore[operator]
    )
    lines = versus_table([(1.0, a), (1.0, b)], "accellm").splitlines()
    assert len(lines) == 3
    assert lines[2].split()[:2] == ["1", "colocated"]
    header = lines[0]
    col = header.index("throughput (tok/s)")
    assert lines[2][col : col + len("throughput (tok/s)")].strip() == "-20.0%"
