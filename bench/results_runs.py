"""The runs behind bench/paper_results.py: one run's figures, a cache of them, tables and plots."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from llmtwin.cli.commands.faults import impact_of
from llmtwin.cluster.run import run_scenario
from llmtwin.report.summary import summarize
from llmtwin.report.tables import format_table
from llmtwin.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parent.parent

Run = tuple[str, str, tuple[str, ...]]
"""(scenario, policy, overrides)."""


def source_hash() -> str:
    """Hash of everything a result depends on: llmtwin's code and shipped data."""
    h = hashlib.sha256()
    for p in sorted((ROOT / "llmtwin").rglob("*")):
        if p.is_file() and p.suffix in (".py", ".toml", ".csv", ".json") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(ROOT)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def measure(run: Run) -> dict[str, float]:
    """One run's figures (in a worker process)."""
    scenario, policy, overrides = run
    s = load_scenario(scenario, list(overrides), policy)
    t0 = time.perf_counter()
    res = run_scenario(s)
    sm = summarize(res, s.slo)
    gaps = [
        float(np.max(np.diff(r.token_times_s))) if len(r.token_times_s) > 1 else 0.0 for r in res.requests
    ]
    peak = max(
        (
            max((p + q) / i.kv_capacity_bytes for _, p, q in i.kv_timeline)
            for i in res.instances
            if i.kv_timeline
        ),
        default=0.0,
    )
    return {
        "e2e_p50": sm.e2e_s.p50 or 0.0,
        "e2e_p99": sm.e2e_s.p99 or 0.0,
        "e2e_mean": sm.e2e_s.mean or 0.0,
        "ttft_p50": sm.ttft_s.p50 or 0.0,
        "ttft_p99": sm.ttft_s.p99 or 0.0,
        "tbt_p99": sm.tbt_s.p99 or 0.0,
        "gap_p99": float(np.percentile(gaps, 99)) if gaps else 0.0,
        "slo": sm.slo_attainment or 0.0,
        "tput": sm.throughput_tokens_per_s or 0.0,
        "goodput": sm.goodput_requests_per_s or 0.0,
        "idle": sm.idle_fraction or 0.0,
        "tok_dev_s": sm.tokens_per_device_s or 0.0,
        "tok_usd": sm.tokens_per_usd or 0.0,
        "preempted": float(sm.preempted_requests),
        "kv_moved_gb": sm.kv_bytes_moved / 1e9,
        "peak_kv": peak,
        "unfinished": float(sm.requests_failed),
        "wall_s": time.perf_counter() - t0,
    }


def fault_run(job: tuple[str, str, tuple[str, ...]]) -> dict[str, Any]:
    scenario, policy, overrides = job
    impact = impact_of(load_scenario(scenario, list(overrides), policy))
    return dataclasses.asdict(impact)


class Cache:
    def __init__(self, root: Path, jobs: int) -> None:
        self.dir = root / "cache" / source_hash()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jobs = jobs

    def _path(self, kind: str, key: object) -> Path:
        return self.dir / f"{kind}-{hashlib.sha256(repr(key).encode()).hexdigest()[:20]}.json"

    def many(self, kind: str, fn: Callable[[Any], Any], keys: Sequence[Any]) -> list[Any]:
        """``fn(key)`` for every key, cached, the missing ones on worker processes."""
        todo = [k for k in dict.fromkeys(keys) if not self._path(kind, k).exists()]
        if todo:
            t0 = time.perf_counter()
            print(
                f"  {kind}: {len(todo)} runs ({len(keys) - len(todo)} cached) ...",
                file=sys.stderr,
                flush=True,
            )
            with ProcessPoolExecutor(self.jobs) as pool:
                for k, v in zip(todo, pool.map(fn, todo), strict=True):
                    self._path(kind, k).write_text(json.dumps(v))
            print(f"  {kind}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        return [json.loads(self._path(kind, k).read_text()) for k in keys]

    def one(self, kind: str, key: object, fn: Callable[[], Any]) -> Any:
        p = self._path(kind, key)
        if not p.exists():
            p.write_text(json.dumps(fn()))
        return json.loads(p.read_text())


# -- tables ---------------------------------------------------------------------------------------

ROWS = [
    ("E2E p50 (s)", "e2e_p50", 1.0, "{:.2f}"),
    ("E2E p99 (s)", "e2e_p99", 1.0, "{:.2f}"),
    ("E2E mean (s)", "e2e_mean", 1.0, "{:.2f}"),
    ("TTFT p50 (s)", "ttft_p50", 1.0, "{:.3f}"),
    ("TTFT p99 (s)", "ttft_p99", 1.0, "{:.3f}"),
    ("TBT p99, all gaps (ms)", "tbt_p99", 1e3, "{:.1f}"),
    ("longest gap per request, p99 (s)", "gap_p99", 1.0, "{:.3f}"),
    ("SLO attainment (%)", "slo", 100.0, "{:.1f}"),
    ("throughput (tok/s)", "tput", 1.0, "{:.0f}"),
    ("idle (% of device time)", "idle", 100.0, "{:.1f}"),
    ("tokens / device-s", "tok_dev_s", 1.0, "{:.1f}"),
]
EXTRA_ROWS = [
    ("peak KV use (% of an instance)", "peak_kv", 100.0, "{:.0f}"),
    ("requests preempted", "preempted", 1.0, "{:.0f}"),
    ("KV moved (GB)", "kv_moved_gb", 1.0, "{:.0f}"),
]


def spread(values: Sequence[float], scale: float, fmt: str) -> str:
    v = np.asarray(values, dtype=np.float64) * scale
    if len(v) == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format((v.max() - v.min()) / 2)}"


def compare_md(
    by_policy: dict[str, list[dict[str, float]]], rows: Sequence[tuple[str, str, float, str]]
) -> str:
    header = ["metric", *by_policy]
    body = [
        [label, *(spread([r[key] for r in runs], scale, fmt) for runs in by_policy.values())]
        for label, key, scale, fmt in rows
    ]
    return format_table(header, body, markdown=True)


def mean(runs: Sequence[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in runs]))


def change(mine: float, theirs: float) -> str:
    return f"{(mine - theirs) / theirs * 100:+.0f}%" if theirs else "-"


# -- the parts ------------------------------------------------------------------------------------


def save_png(fig: Any, path: Path) -> None:
    """A 32-colour PNG (the plots stay small in the repository)."""
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    buf.seek(0)
    img = (
        Image.open(buf)
        .convert("RGB")
        .quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)


def write_tables(doc: Path, tables: dict[str, str]) -> list[str]:
    """Replace each generated table of ``doc``; the names that had no marker."""
    text = doc.read_text()
    missing = []
    for name, body in tables.items():
        pattern = re.compile(
            rf"(<!-- generated:{re.escape(name)} -->\n).*?(<!-- /generated:{re.escape(name)} -->)", re.S
        )
        if not pattern.search(text):
            missing.append(name)
            continue
        text = pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)  # noqa: B023
    doc.write_text(text)
    return missing
