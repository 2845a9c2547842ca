"""``llmtwin simulate --band``: the run again at the edges of the device model's uncertainty band.

Each iteration's time has a band from the calibration residuals of its region
(:mod:`llmtwin.physics.bands`). The engine profile ``NAME@low`` / ``NAME@high`` prices every
iteration at that edge, and the whole cluster is simulated again with it, so queueing, batching
and SLO attainment respond as they would on a device that fast or that slow. The range of each
headline metric is then quoted next to its nominal value. Both edges are the same direction for
every iteration of a run (fully correlated errors), which bounds, rather than samples, the outcome.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from llmtwin.report.execute import run_all, run_output
from llmtwin.report.outputs import RunOutput
from llmtwin.scenario.loader import load_scenario

BAND_METRICS = (("ttft_s", "p50"), ("ttft_s", "p99"), ("tbt_s", "p50"), ("tbt_s", "p99"), ("e2e_s", "p50"),
                ("e2e_s", "p99"), ("throughput_tokens_per_s", ""), ("goodput_requests_per_s", ""),
                ("slo_attainment", ""))  # fmt: skip
"""Headline metrics ``simulate --band`` quotes as nominal [low, high]."""


def band_runs(
    name: str, overrides: Sequence[str], policy: str | None, engine: str, quiet: bool
) -> dict[str, RunOutput]:
    """The scenario again with every iteration at the low, then the high, edge of its band: the
    queueing responds to the slower or faster device, which scaling the nominal results would miss."""
    out: dict[str, RunOutput] = {}
    for edge in ("low", "high"):
        scenario = load_scenario(name, [*overrides, f"cluster.engine={engine}@{edge}"], policy)
        label = f"{scenario.name}/{scenario.policy.name}@{edge}"
        (out[edge],) = run_all(
            run_output, [(label, scenario)], jobs=1, stream=sys.stderr, show_progress=not quiet
        )
    return out


def band_table(nominal: dict[str, Any], edges: dict[str, dict[str, Any]]) -> str:
    """Each headline metric as ``nominal [low edge, high edge]``."""

    def value(doc: dict[str, Any], key: str, stat: str) -> float:
        return float(doc[key][stat] if stat else doc[key])

    lines = ["", "uncertainty band (every iteration at the low / high edge of its calibration band):"]
    for key, stat in BAND_METRICS:
        name = f"{key}.{stat}" if stat else key
        lo, hi = (value(edges[e], key, stat) for e in ("low", "high"))
        lines.append(
            f"  {name:28s} {value(nominal, key, stat):12.5g}  [{min(lo, hi):.5g}, {max(lo, hi):.5g}]"
        )
    return "\n".join(lines)
