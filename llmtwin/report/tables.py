"""Plain aligned text tables for the terminal: one run, policies side by side, a load sweep."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmtwin.report.summary import Summary


@dataclass(frozen=True, slots=True)
class Metric:
    """One table row: how to read it from a summary and how to print it."""

    label: str
    get: Callable[[Summary], float | int | None]
    scale: float = 1.0
    fmt: str = "{:.3g}"
    points: bool = False
    """A percentage: changes are differences in percentage points, not ratios (an idle fraction
    going from 2% to 20% is "+18.0 pp", not "+900%")."""

    def value(self, s: Summary) -> float | None:
        v = self.get(s)
        return None if v is None else float(v) * self.scale

    def text(self, s: Summary) -> str:
        v = self.value(s)
        return "-" if v is None else self.fmt.format(v)

    def delta(self, s: Summary, base: Summary) -> float | None:
        """Change of ``s`` against ``base``: a ratio (0.1 = +10%), or percentage points."""
        v, b = self.value(s), self.value(base)
        if v is None or b is None:
            return None
        if self.points:
            return v - b
        return None if b == 0 else (v - b) / abs(b)

    def change(self, s: Summary, base: Summary) -> str:
        """``+12.3%`` or ``+4.5 pp``; empty when undefined."""
        d = self.delta(s, base)
        if d is None:
            return ""
        return f"{d:+.1f} pp" if self.points else f"{d * 100.0:+.1f}%"


def _busy(role: str) -> Callable[[Summary], float | None]:
    return lambda s: s.busy_fraction.get(role)


def _idle(role: str) -> Callable[[Summary], float | None]:
    return lambda s: s.idle_fraction_by_role.get(role)


METRICS: tuple[Metric, ...] = (
    Metric("requests completed", lambda s: s.requests_completed, fmt="{:.0f}"),
    Metric("requests failed", lambda s: s.requests_failed, fmt="{:.0f}"),
    Metric("TTFT p50 (ms)", lambda s: s.ttft_s.p50, 1e3, "{:.1f}"),
    Metric("TTFT p90 (ms)", lambda s: s.ttft_s.p90, 1e3, "{:.1f}"),
    Metric("TTFT p99 (ms)", lambda s: s.ttft_s.p99, 1e3, "{:.1f}"),
    Metric("TTFT mean (ms)", lambda s: s.ttft_s.mean, 1e3, "{:.1f}"),
    Metric("TBT p50 (ms)", lambda s: s.tbt_s.p50, 1e3, "{:.2f}"),
    Metric("TBT p90 (ms)", lambda s: s.tbt_s.p90, 1e3, "{:.2f}"),
    Metric("TBT p99 (ms)", lambda s: s.tbt_s.p99, 1e3, "{:.2f}"),
    Metric("TBT mean (ms)", lambda s: s.tbt_s.mean, 1e3, "{:.2f}"),
    Metric("E2E p50 (s)", lambda s: s.e2e_s.p50, fmt="{:.3f}"),
    Metric("E2E p90 (s)", lambda s: s.e2e_s.p90, fmt="{:.3f}"),
    Metric("E2E p99 (s)", lambda s: s.e2e_s.p99, fmt="{:.3f}"),
    Metric("E2E mean (s)", lambda s: s.e2e_s.mean, fmt="{:.3f}"),
    Metric("throughput (tok/s)", lambda s: s.throughput_tokens_per_s, fmt="{:.1f}"),
    Metric("throughput (req/s)", lambda s: s.throughput_requests_per_s, fmt="{:.3f}"),
    Metric("goodput (req/s)", lambda s: s.goodput_requests_per_s, fmt="{:.3f}"),
    Metric("SLO attainment (%)", lambda s: s.slo_attainment, 100.0, "{:.1f}", points=True),
    Metric("idle fraction (%)", lambda s: s.idle_fraction, 100.0, "{:.1f}", points=True),
    Metric("busy prefill (%)", _busy("prefill"), 100.0, "{:.1f}", points=True),
    Metric("busy decode (%)", _busy("decode"), 100.0, "{:.1f}", points=True),
    Metric("busy mixed (%)", _busy("mixed"), 100.0, "{:.1f}", points=True),
    Metric("idle as prefill (%)", _idle("prefill"), 100.0, "{:.1f}", points=True),
    Metric("idle as decode (%)", _idle("decode"), 100.0, "{:.1f}", points=True),
    Metric("tokens / device-s", lambda s: s.tokens_per_device_s, fmt="{:.2f}"),
    Metric("tokens / USD", lambda s: s.tokens_per_usd, fmt="{:.0f}"),
    Metric("preemptions", lambda s: s.preemptions, fmt="{:.0f}"),
    Metric("KV moved (GB)", lambda s: s.kv_bytes_moved, 1e-9, "{:.2f}"),
    Metric("role switches", lambda s: s.role_switches, fmt="{:.0f}"),
    Metric("mean batch size", lambda s: s.mean_batch_size, fmt="{:.1f}"),
    Metric("span (s)", lambda s: s.span_s, fmt="{:.1f}"),
    Metric("requests hit by faults", lambda s: s.faults.get("requests_affected"), fmt="{:.0f}"),
    Metric("  recomputed", lambda s: s.faults.get("requests_recomputed"), fmt="{:.0f}"),
    Metric("  recomputed KV (k tokens)", lambda s: s.faults.get("recomputed_kv_tokens"), 1e-3, "{:.1f}"),
    Metric("  kept (no recompute)", lambda s: s.faults.get("requests_kept"), fmt="{:.0f}"),
    Metric("down (device-s)", lambda s: s.faults.get("down_device_s"), fmt="{:.1f}"),
)
"""Rows of the run and compare tables, in order."""

SWEEP_METRICS: tuple[Metric, ...] = tuple(
    m
    for m in METRICS
    if m.label
    in {
        "TTFT p50 (ms)",
        "TTFT p99 (ms)",
        "TBT p50 (ms)",
        "TBT p99 (ms)",
        "E2E p50 (s)",
        "E2E p99 (s)",
        "throughput (tok/s)",
        "goodput (req/s)",
        "idle fraction (%)",
    }
)
"""Columns of the sweep table."""


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, markdown: bool = False
) -> str:
    """Columns padded to their widest cell; the first ``left`` left-aligned (labels), the rest
    right-aligned (numbers). ``markdown`` gives a GitHub-flavoured Markdown table instead."""
    table = [list(header), *(list(r) for r in rows)]
    if markdown:
        align = ["---" if i < left else "---:" for i in range(len(header))]
        return "\n".join("| " + " | ".join(r) + " |" for r in [table[0], align, *table[1:]])
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(table[0]), rule, *(line(r) for r in table[1:])])


def _shown(metrics: Sequence[Metric], summaries: Sequence[Summary]) -> list[Metric]:
    # A row that is empty for every run (a role no policy uses, no price) is noise.
    return [m for m in metrics if any(m.value(s) is not None for s in summaries)]


def summary_table(s: Summary, markdown: bool = False) -> str:
    """One run: metric, value."""
    rows = [[m.label, m.text(s)] for m in _shown(METRICS, [s])]
    return format_table([f"{s.scenario} / {s.policy}", "value"], rows, markdown=markdown)


def compare_table(summaries: Sequence[Summary], markdown: bool = False) -> str:
    """Rows = metrics, columns = policies, each after the first followed by its change vs the first."""
    base = summaries[0]
    header = ["metric", base.policy]
    for s in summaries[1:]:
        header += [s.policy, f"vs {base.policy}"]
    rows = []
    for m in _shown(METRICS, summaries):
        row = [m.label, m.text(base)]
        for s in summaries[1:]:
            row += [m.text(s), m.change(s, base)]
        rows.append(row)
    return format_table(header, rows, markdown=markdown)


def sweep_table(points: Sequence[tuple[float, Summary]], markdown: bool = False) -> str:
    """One row per (rate, policy): the headline latency, throughput and idle figures."""
    header = ["rate (req/s)", "policy", *(m.label for m in SWEEP_METRICS)]
    rows = [[f"{rate:g}", s.policy, *(m.text(s) for m in SWEEP_METRICS)] for rate, s in points]
    return format_table(header, rows, left=2, markdown=markdown)


def versus_table(points: Sequence[tuple[float, Summary]], policy: str, markdown: bool = False) -> str:
    """At each rate, ``policy``'s change against every other policy, for the sweep's metrics.

    ``-20.0%`` in a latency column means ``policy`` is 20% faster than that baseline at that rate.
    """
    at: dict[tuple[float, str], Summary] = {(rate, s.policy): s for rate, s in points}
    header = ["rate (req/s)", f"{policy} vs", *(m.label for m in SWEEP_METRICS)]
    rows = []
    for rate, base in points:
        mine = at.get((rate, policy))
        if mine is None or base.policy == policy:
            continue
        changes = (m.change(mine, base) or "-" for m in SWEEP_METRICS)
        rows.append([f"{rate:g}", base.policy, *changes])
    return format_table(header, rows, left=2, markdown=markdown)


def slo_capacity(points: Sequence[tuple[float, Summary]], target: float) -> dict[str, float | None]:
    """Per policy: the highest swept rate up to which every swept rate kept at least ``target``
    (a fraction) of the requests within both SLOs; ``None`` when even the lowest rate did not."""
    by_policy: dict[str, list[tuple[float, Summary]]] = {}
    for rate, s in points:
        by_policy.setdefault(s.policy, []).append((rate, s))
    out: dict[str, float | None] = {}
    for policy, pts in by_policy.items():
        best: float | None = None
        for rate, s in sorted(pts, key=lambda p: p[0]):
            if s.slo_attainment is None or s.slo_attainment < target:
                break
            best = rate
        out[policy] = best
    return out


def capacity_table(points: Sequence[tuple[float, Summary]], target: float, markdown: bool = False) -> str:
    """Per policy: its SLO capacity (see :func:`slo_capacity`; ``>= r`` when the policy still met
    the target at the highest swept rate ``r``) and its peaks over the sweep."""
    cap = slo_capacity(points, target)
    header = [
        "policy",
        f"max rate with >= {target * 100:g}% in SLO (req/s)",
        "peak throughput (tok/s)",
        "peak goodput (req/s)",
    ]
    rows = []
    for policy, rate in cap.items():
        top = max(r for r, s in points if s.policy == policy)
        mine = [s for _, s in points if s.policy == policy]
        tput = [v for s in mine if (v := s.throughput_tokens_per_s) is not None]
        good = [v for s in mine if (v := s.goodput_requests_per_s) is not None]
        rows.append(
            [
                policy,
                # At the highest swept rate the capacity is only a lower bound.
                "none" if rate is None else f">= {rate:g}" if rate == top else f"{rate:g}",
                f"{max(tput):.1f}" if tput else "-",
                f"{max(good):.3f}" if good else "-",
            ]
        )
    return format_table(header, rows, markdown=markdown)
