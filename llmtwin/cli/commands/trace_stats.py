"""``llmtwin trace-stats``: arrival and length statistics of traces, or of a scenario's workload."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.common import print_json
from llmtwin.models import ModelCatalog
from llmtwin.scenario.loader import load_scenario, scenario_path
from llmtwin.scenario.saturation import SaturationEstimate, estimate_saturation
from llmtwin.workload.generate import generate_requests
from llmtwin.workload.stats import StreamStats, Summary, request_stats, trace_stats
from llmtwin.workload.traces import load_trace, trace_names


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trace-stats",
        help=COMMANDS["trace-stats"].help,
        description="Print count, duration, arrival rate, inter-arrival CV and prompt/output token "
        "statistics of traces (names or CSV paths; all named traces by default), or of the requests "
        "a scenario generates together with a physics-only estimate of its saturation load.",
    )
    p.add_argument("traces", nargs="*", metavar="FILE", help="trace name (e.g. azure-conv) or CSV path")
    p.add_argument("--scenario", help="also describe the workload this scenario (name or path) generates")
    p.add_argument(
        "--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
        help="override a scenario field by dotted path (with --scenario; repeatable)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    refs: list[str] = args.traces or ([] if args.scenario else trace_names())
    entries: list[dict[str, Any]] = []
    for ref in refs:
        trace = load_trace(ref)
        entries.append({"name": trace.name, "path": str(trace.path), "stats": trace_stats(trace)})
    if args.scenario:
        s = load_scenario(args.scenario, args.overrides)
        context = ModelCatalog().get(s.model).max_context
        requests = generate_requests(s.workload, s.seed, context)
        entries.append(
            {
                "name": f"scenario {s.name}",
                "path": str(scenario_path(args.scenario)),
                "stats": request_stats(requests),
                "capacity": estimate_saturation(s),
                "engine": s.cluster.engine,
            }
        )
    if args.json:
        print_json([_jsonable(e) for e in entries])
        return 0
    for i, e in enumerate(entries):
        if i:
            print()
        _print_entry(e)
    return 0


def _jsonable(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
        for k, v in entry.items()
    }


def _print_entry(entry: dict[str, Any]) -> None:
    st: StreamStats = entry["stats"]
    print(f"{entry['name']}  ({_shown(Path(entry['path']))})")
    print(f"  requests            {st.count}")
    print(f"  duration            {st.duration_s:.1f} s")
    print(f"  arrival rate        {st.rate_rps:.3f} req/s")
    print(f"  inter-arrival CV    {st.interarrival_cv:.3f}")
    header = "".join(f"{h:>10s}" for h in ("min", "mean", "median", "p90", "p99", "max", "std"))
    print(f"  {'':16s}{header}")
    for label, summary in (("prompt tokens", st.prompt_tokens), ("output tokens", st.output_tokens)):
        print(f"  {label:16s}{_row(summary)}")
    cap: SaturationEstimate | None = entry.get("capacity")
    if cap is not None:
        print(
            f"  saturation estimate (device physics, engine {entry['engine']!r}, no queueing; scenario/saturation.py):"
        )
        print(f"    KV capacity per instance      {cap.kv_capacity_tokens} tokens")
        print(
            f"    decode batch at saturation    {cap.decode_batch} seqs, {cap.decode_step_s * 1e3:.1f} ms/step"
        )
        print(f"    prefill per request (mean)    {cap.prefill_s_mean * 1e3:.1f} ms")
        print(f"    decode per request (mean)     {cap.decode_s_mean * 1e3:.1f} ms of instance time")
        print(f"    saturation load               {cap.saturation_rps:.1f} req/s")
        print(f"    prefill of the median prompt  {cap.median_prefill_s * 1e3:.1f} ms")
        print(f"    decode step, 32 seqs          {cap.light_decode_step_s * 1e3:.1f} ms")


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (shorter to read)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def _row(s: Summary) -> str:
    values = (s.min, s.mean, s.median, s.p90, s.p99, s.max, s.std)
    return "".join(f"{v:10.1f}" for v in values)
