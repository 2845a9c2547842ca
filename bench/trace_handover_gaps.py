"""Where AcceLLM's token-gap tail comes from, under both pair routings (an analysis, not a test).

    .venv/bin/python bench/trace_handover_gaps.py paper-910b2-conv
    .venv/bin/python bench/trace_handover_gaps.py paper-h100-conv --seed 1

Runs the scenario under AcceLLM with ``pair_routing`` = ``least_outstanding_tokens`` and
``prefill_aware`` (the default), in process with every token time kept, and a second time
component by component to record every hand-over (``Handover`` of requests already decoding,
not the fresh ones that follow a prefill) with its virtual time; the runs are deterministic, so
both see the same events. For the gaps between a request's tokens after its first decode token,
it prints the p99 over all of them (the ``TBT p99, all gaps`` of docs/results.md), how many span
a hand-over of their own request, how much of the tail above that p99 they make, and the p99 of
the gaps that span none. docs/results.md ("Prefill-aware pair routing") quotes its output.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import sys
from collections import defaultdict

import numpy as np

from llmtwin.cluster.messages import Handover
from llmtwin.cluster.run import build_components, run_scenario, scenario_requests
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import Scenario
from llmtwin.sim.local import LocalRunner

ROUTINGS = ("least_outstanding_tokens", "prefill_aware")


def handovers(scenario: Scenario) -> dict[int, list[float]]:
    """Request id -> virtual times at which a decoding request was handed to the partner."""
    runner = LocalRunner(build_components(scenario, scenario_requests(scenario)))
    planner, out = runner.planner, defaultdict(list)
    while grants := planner.next_window():
        produced = []
        for g in grants:
            comp = runner.components[g.component]
            comp.step(g.time, runner.mailbox(g.component).take(g.time))
            sent = comp.outbox.drain()
            produced += sent
            for env in sent:
                if isinstance(env.body, Handover) and not env.body.fresh:
                    for rid in env.body.rids:
                        out[rid].append(g.time)
            planner.report(g.component, comp.next_time(), [(e.dst, e.time) for e in sent])
        for env in produced:
            runner.mailbox(env.dst).add(env)
    return {rid: sorted(ts) for rid, ts in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for routing in ROUTINGS:
        sets = [f"policies.accellm.pair_routing={routing}", f"seed={args.seed}"]
        scenario = load_scenario(args.scenario, sets, "accellm")
        result = run_scenario(scenario)
        moved = handovers(scenario)
        gaps, spans = [], []
        for req in result.requests:
            times = req.token_times_s
            at = moved.get(req.rid, [])
            for a, b in itertools.pairwise(times[1:]):  # after the first decode token
                i = bisect.bisect_left(at, a)
                gaps.append(b - a)
                spans.append(i < len(at) and at[i] < b)
        g, s = np.array(gaps), np.array(spans)
        p99 = float(np.percentile(g, 99))
        tail = g > p99
        switches = sum(inst.role_switches for inst in result.instances)
        print(
            f"{args.scenario} seed {args.seed}, {routing}: role switches {switches}, hand-overs "
            f"{sum(map(len, moved.values()))}; gaps {len(g)}, p99 {p99 * 1e3:.1f} ms; spanning a "
            f"hand-over: {int(s.sum())} gaps, {100 * s[tail].mean():.0f}% of those above the p99; "
            f"p99 of the others {np.percentile(g[~s], 99) * 1e3:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
