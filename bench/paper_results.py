"""Regenerate every table and plot of docs/results.md with one command (a benchmark, not a test).

    .venv/bin/python bench/paper_results.py                     # everything, 3 seeds
    .venv/bin/python bench/paper_results.py --only compare,fig5  # some parts
    .venv/bin/python bench/paper_results.py --quick             # 1 seed, coarser: a smoke run, not for the docs

Parts (``--only``): ``compare`` (the four paper scenarios, four policies, at each scenario's rate),
``sweep`` (their [sweep] rates; plots), ``capacity`` (``llmtwin capacity``: tuned and fixed
baselines), ``extra`` (pressure, bursty and mix scenarios), ``routing`` (AcceLLM's pair routing
rules), ``faults`` (``llmtwin faults`` on paper-h100-conv), ``fig5`` (the step times behind the
AcceLLM paper's Figure 5 caption), ``preserve`` (PRESERVE's step speedup, L2 optimum, performance
per cost, and end to end), ``claims`` (both papers' claims against the figures above).

Each run's figures are cached in ``out/paper-results/cache/<hash of llmtwin's code and data>/``, so
an interrupted run resumes and a change to the model starts afresh. Tables go between the markers
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` of docs/results.md, plots to
docs/img/results/, every figure to out/paper-results/results.json. The prose of docs/results.md is
written by hand from those figures: after a change to the model, re-run this and re-read it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from results_runs import (
    EXTRA_ROWS,
    ROOT,
    ROWS,
    Cache,
    Run,
    change,
    compare_md,
    fault_run,
    mean,
    measure,
    save_png,
    spread,
    write_tables,
)

from llmtwin.capacity.driver import run_study
from llmtwin.capacity.study import make_study
from llmtwin.capacity.table import study_document, study_heading, study_table
from llmtwin.cli.commands.faults import impact_table
from llmtwin.cluster.cost import causal_pairs
from llmtwin.cluster.run import step_model
from llmtwin.faults.impact import FaultImpact
from llmtwin.physics.graph import BatchShape
from llmtwin.report.tables import format_table
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import fault_override

PAPER = ["paper-h100-conv", "paper-h100-code", "paper-910b2-conv", "paper-910b2-code"]
EXTRA = ["pressure-h100-conv", "bursty-h100-conv", "mix-h100-conv-code"]
POLICIES = ["colocated", "colocated-chunked", "disaggregated", "accellm"]
FAULTS = {"decode-side": "engine=5@60s,recover=120s", "prefill-side": "engine=0@60s,recover=120s"}
PARTS = ("compare", "sweep", "capacity", "extra", "routing", "faults", "fig5", "preserve", "claims")


class Results:
    def __init__(self, args: argparse.Namespace) -> None:
        self.quick = args.quick
        self.seeds = (0,) if args.quick else (0, 1, 2)
        self.cache = Cache(
            ROOT / "out" / ("paper-results-quick" if args.quick else "paper-results"), args.jobs
        )
        self.jobs = args.jobs
        self.tables: dict[str, str] = {}
        self.data: dict[str, Any] = {}

    def runs(
        self, scenario: str, policies: Sequence[str], extra: Sequence[str] = ()
    ) -> dict[str, list[dict[str, float]]]:
        keys: list[Run] = [(scenario, p, (*extra, f"seed={s}")) for p in policies for s in self.seeds]
        got = self.cache.many("run", measure, keys)
        n = len(self.seeds)
        return {p: got[i * n : (i + 1) * n] for i, p in enumerate(policies)}

    def compare(self) -> None:
        for s in PAPER:
            by = self.runs(s, POLICIES)
            self.data[f"compare/{s}"] = by
            self.tables[f"compare-{s}"] = compare_md(by, ROWS)

    def sweep(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for s in PAPER:
            rates = list(load_scenario(s).sweep.rate_rps)
            if self.quick:
                rates = rates[::2]
            keys: list[Run] = [
                (s, p, (f"workload.rate_rps={r!r}", f"seed={sd}"))
                for r in rates
                for p in POLICIES
                for sd in self.seeds
            ]
            got = self.cache.many("run", measure, keys)
            table = {(k[0], k[1], k[2][0]): [] for k in keys}  # type: ignore[var-annotated]
            for k, v in zip(keys, got, strict=True):
                table[(k[0], k[1], k[2][0])].append(v)
            self.data[f"sweep/{s}"] = {
                f"{p}@{r}": table[(s, p, f"workload.rate_rps={r!r}")] for p in POLICIES for r in rates
            }
            fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
            for ax, (key, label, scale, logy) in zip(
                axes,
                [("e2e_p99", "E2E p99 (s)", 1, True), ("ttft_p99", "TTFT p99 (s)", 1, True),
                 ("gap_p99", "longest gap per request, p99 (s)", 1, True), ("slo", "SLO attainment (%)", 100, False)],
                strict=True,
            ):  # fmt: skip
                for p in POLICIES:
                    vals = np.array(
                        [[v[key] * scale for v in table[(s, p, f"workload.rate_rps={r!r}")]] for r in rates]
                    )
                    ax.plot(rates, vals.mean(axis=1), marker="o", ms=3, label=p)
                    ax.fill_between(rates, vals.min(axis=1), vals.max(axis=1), alpha=0.2)
                ax.set_xlabel("arrival rate (req/s)")
                ax.set_title(label, fontsize=10)
                if logy:
                    ax.set_yscale("log")
                ax.grid(alpha=0.3)
            axes[0].legend(fontsize=8)
            fig.suptitle(
                f"{s}: mean over seeds {', '.join(map(str, self.seeds))} (band: min-max)", fontsize=11
            )
            fig.tight_layout()
            save_png(fig, ROOT / "docs" / "img" / "results" / f"{s}-sweep.png")
            plt.close(fig)

    def capacity(self) -> None:
        for s in PAPER:

            def run(s: str = s) -> dict[str, Any]:
                study, rows, base = make_study(
                    s, [], POLICIES, target=0.9, seeds=len(self.seeds), tolerance=0.1 if self.quick else 0.05
                )
                t0 = time.perf_counter()
                results, runs = run_study(study, rows, jobs=self.jobs)
                wall = time.perf_counter() - t0
                return {
                    "markdown": study_heading(base, study, runs, wall)
                    + "\n\n"
                    + study_table(base, study, results, True),
                    "doc": study_document(study, results, runs, wall),
                }

            print(f"  capacity {s} ...", file=sys.stderr, flush=True)
            got = self.cache.one("capacity", (s, self.seeds), run)
            self.data[f"capacity/{s}"] = got["doc"]
            self.tables[f"capacity-{s}"] = got["markdown"]

    def extra(self) -> None:
        for s in EXTRA:
            seeds = self.seeds if s != "mix-h100-conv-code" else (0,)  # a replay: every seed is the same
            keys: list[Run] = [(s, p, (f"seed={sd}",)) for p in POLICIES for sd in seeds]
            got = self.cache.many("run", measure, keys)
            by = {p: got[i * len(seeds) : (i + 1) * len(seeds)] for i, p in enumerate(POLICIES)}
            self.data[f"extra/{s}"] = by
            self.tables[f"extra-{s}"] = compare_md(by, [*ROWS, *EXTRA_ROWS])

    def routing(self) -> None:
        rows = []
        for s in PAPER:
            new = self.runs(s, ["accellm"])["accellm"]
            old = self.runs(s, ["accellm"], ("policies.accellm.pair_routing=least_outstanding_tokens",))[
                "accellm"
            ]
            self.data[f"routing/{s}"] = {"prefill_aware": new, "least_outstanding_tokens": old}
            for label, key, scale, fmt in ROWS[:7]:
                rows.append(
                    [
                        s,
                        label,
                        spread([r[key] for r in old], scale, fmt),
                        spread([r[key] for r in new], scale, fmt),
                    ]
                )
        self.tables["routing"] = format_table(
            ["scenario", "metric", "least_outstanding_tokens", "prefill_aware (default)"],
            rows,
            left=2,
            markdown=True,
        )

    def faults(self) -> None:
        for name, spec in FAULTS.items():
            keys = [
                ("paper-h100-conv", p, (fault_override([spec]), f"seed={sd}"))
                for p in POLICIES
                for sd in self.seeds
            ]
            got = self.cache.many("fault", fault_run, keys)
            n = len(self.seeds)
            by = [
                [
                    FaultImpact(**{**g, **{k: tuple(v) for k, v in g.items() if isinstance(v, list)}})
                    for g in got[i * n : (i + 1) * n]
                ]
                for i in range(len(POLICIES))
            ]
            self.data[f"faults/{name}"] = got
            self.tables[f"faults-{name}"] = f"`--fault {spec}` on paper-h100-conv\n\n" + impact_table(
                by, markdown=True
            )

    def fig5(self) -> None:
        rows = []
        for s in ("paper-h100-conv", "paper-910b2-conv"):
            sc = load_scenario(s)
            step = step_model(sc)
            ctx = 1155 + 211 // 2  # mean prompt plus half the mean output (azure-conv)
            d40 = step.time(BatchShape.decode(40, ctx))
            d20 = step.time(BatchShape.decode(20, ctx))
            p = 1020  # the median conversation prompt
            mixed = step.time(BatchShape(p, 1, float(causal_pairs(p, 0)), 0, 40, 40 * ctx))
            rows.append(
                [
                    s,
                    f"{d20 * 1e3:.1f}",
                    f"{d40 * 1e3:.1f}",
                    f"{(d40 - d20) * 1e3:.1f}",
                    f"{mixed * 1e3:.1f}",
                    f"{(mixed / d40 - 1) * 100:+.0f}%",
                ]
            )
            self.data[f"fig5/{s}"] = {"decode20_s": d20, "decode40_s": d40, "mixed40_s": mixed}
        self.tables["fig5"] = format_table(
            ["scenario", "decode step, 20 seqs (ms)", "40 seqs (ms)", "40 - 20 (ms)", "40 seqs + a 1,020-token prompt (ms)", "token latency added by the prompt"],
            rows, markdown=True,
        )  # fmt: skip

    def preserve(self) -> None:
        def cli(*args: str) -> Any:
            out = subprocess.run(
                [sys.executable, "-m", "llmtwin.cli.main", *args, "--json"],
                check=True,
                capture_output=True,
                text=True,
            )
            return json.loads(out.stdout)

        base = ["--hardware", "ascend-910b2", "--model", "llama-3-70b", "--tp", "4"]
        step = self.cache.one(
            "preserve-step",
            1,
            lambda: cli("preserve", *base, "--batch", "8", "--context", "16384", "--precision", "int8"),
        )

        def sweep(precision: str) -> Callable[[], Any]:
            return lambda: cli("l2-sweep", *base, "--precision", precision)

        sweeps = {pr: self.cache.one("l2-sweep", pr, sweep(pr)) for pr in ("bf16", "int8")}
        # End to end twice: with the scenario's engine profile (on the 910B2's slower host a
        # decode step is launch-bound, so a shorter GPU step gains little), and on the pure device
        # physics, as PRESERVE's own simulator models it.
        e2e = {}
        for engine, extra in (("engine profile", ()), ("pure physics", ("cluster.engine=none",))):
            for p in ("accellm", "colocated-chunked"):
                off = self.runs("paper-910b2-conv", [p], extra)[p]
                on = self.runs("paper-910b2-conv", [p], (*extra, "engine.preserve=true"))[p]
                e2e[f"{p}, {engine}"] = (off, on)
        self.data["preserve"] = {
            "step": {k: v for k, v in step.items() if not isinstance(v, list | dict)},
            "l2": {k: v["optimum"] for k, v in sweeps.items()},
        }
        rows = [
            [
                "decode step, 910B2 TP4, Llama-3-70B int8, batch 8, context 16,384",
                "speedup",
                f"{step['speedup']:.3f}x (fused GEMM+allreduce alone {step['fused_speedup']:.3f}x)",
            ]
        ]
        for pr, sw in sweeps.items():
            o = sw["optimum"]
            rows.append(
                [
                    f"L2 design sweep, {pr}",
                    "L2 optimum: without / with prefetch",
                    f"{o['without_prefetch_mb']:g} / {o['with_prefetch_mb']:g} MiB",
                ]
            )
            rows.append(
                [
                    f"L2 design sweep, {pr}",
                    "performance per cost at the optimum",
                    f"{o['perf_per_cost_gain']:.3f}x",
                ]
            )
        for p, (off, on) in e2e.items():
            for label, key in (
                ("E2E mean", "e2e_mean"),
                ("E2E p99", "e2e_p99"),
                ("TBT p99", "tbt_p99"),
                ("throughput", "tput"),
            ):
                rows.append(
                    [
                        f"paper-910b2-conv, {p}: engine.preserve",
                        f"{label}: off -> on",
                        f"{mean(off, key):.3g} -> {mean(on, key):.3g} ({change(mean(on, key), mean(off, key))})",
                    ]
                )
        self.tables["preserve"] = format_table(["setting", "figure", "ours"], rows, left=2, markdown=True)

    def claims(self) -> None:
        """Both papers' claims against our figures (the verdicts are written in the prose)."""
        rows = []
        for s in PAPER:
            c = self.data.get(f"compare/{s}") or self.runs(s, POLICIES)
            acc = c["accellm"]
            for base in ("colocated", "colocated-chunked", "disaggregated"):
                b = c[base]
                rows.append([
                    s, f"vs {base} at the scenario's rate",
                    f"E2E mean {change(mean(acc, 'e2e_mean'), mean(b, 'e2e_mean'))}, p99 {change(mean(acc, 'e2e_p99'), mean(b, 'e2e_p99'))}; "
                    f"TTFT p99 {change(mean(acc, 'ttft_p99'), mean(b, 'ttft_p99'))}; longest gap p99 {change(mean(acc, 'gap_p99'), mean(b, 'gap_p99'))}; "
                    f"idle {mean(acc, 'idle') * 100:.1f}% vs {mean(b, 'idle') * 100:.1f}%",
                ])  # fmt: skip
            cap = self.data.get(f"capacity/{s}")
            if cap:
                caps = {
                    r["label"]: np.nanmean([np.nan if h is None else h for h in r["holds"]])
                    for r in cap["rows"]
                }
                a = caps.get("accellm", np.nan)
                rows.append(
                    [
                        s,
                        "SLO capacity, AcceLLM vs each baseline",
                        "; ".join(f"{k} {change(a, v)}" for k, v in caps.items() if k != "accellm"),
                    ]
                )
        self.tables["claims"] = format_table(
            ["scenario", "comparison", "AcceLLM's change (mean over seeds)"], rows, left=2, markdown=True
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="one seed, coarser searches (a smoke run)")
    p.add_argument(
        "--no-write", action="store_true", help="print the tables instead of writing docs/results.md"
    )
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}")
    r = Results(args)
    t0 = time.perf_counter()
    for part in PARTS:
        if part in parts:
            print(f"{part} ...", file=sys.stderr, flush=True)
            getattr(r, part)()
    out = r.cache.dir.parent.parent
    (out / "results.json").write_text(json.dumps(r.data, indent=1, default=str) + "\n")
    if args.no_write or args.quick:
        for name, table in r.tables.items():
            print(f"\n## {name}\n\n{table}")
    else:
        missing = write_tables(ROOT / "docs" / "results.md", r.tables)
        if missing:
            print(f"no marker in docs/results.md for: {', '.join(missing)}", file=sys.stderr)
    print(f"done in {time.perf_counter() - t0:.0f} s; figures in {out}/results.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
