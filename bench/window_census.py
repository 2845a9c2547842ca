"""How a run's windows fall on the services of `llmtwin up` (an analysis, not a test).

    .venv/bin/python bench/window_census.py w1
    .venv/bin/python bench/window_census.py w1 --policy accellm --device-processes 2

Runs the scenario in process, window by window (the same ``WindowPlanner`` as the services),
with the components placed as ``llmtwin up`` placed them before device-1 acted for the balancer
(generator, balancer, instances sharded over ``--device-processes`` device services: what
``bench/bench_nats.py --lockstep`` runs; with device-1 acting, the rounds are those of its
256-window horizon grants and of the balancer's steps behind it, docs/architecture.md "The
balancer's decisions beside the instances", which this does not count), and counts the windows, those granted to
more than one service, those in which a component sends a message to another service's
component, and the conductor round trips horizon grants leave: a window opens a round unless it
and the window before it are both granted to the same single service, and nothing in between
went to another service; a step that takes only what its component takes silently
(``Component.silent_kinds``) is held back and opens no round, and sending it such a message
does not end a horizon grant (docs/architecture.md, "Silent steps"). With ``--kinds``, it also
classifies the rounds by the step that opens them (component kind, what it took, whether it
sent to another service) and, for the windows in which an instance takes a ``Dispatch``, how
soon the next window opens (what a promise reaching one iteration ahead could overlap).
docs/performance.md quotes its output.
"""

from __future__ import annotations

import argparse
import collections
import sys

from llmtwin.cluster.messages import Dispatch
from llmtwin.cluster.run import build_components, scenario_requests
from llmtwin.scenario.loader import load_scenario
from llmtwin.sim.local import LocalRunner


def service_of(component: str, device_processes: int) -> str:
    """The service ``llmtwin up`` runs a component in (``--shard k/n``: instance i on i % n + 1)."""
    if component.startswith("instance-"):
        return f"device-{int(component.split('-')[1]) % device_processes + 1}"
    return component


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario")
    ap.add_argument("--policy")
    ap.add_argument("--device-processes", type=int, default=1)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--kinds", action="store_true", help="classify the rounds by the step opening them")
    args = ap.parse_args()
    scenario = load_scenario(args.scenario, args.overrides, args.policy)
    runner = LocalRunner(build_components(scenario, scenario_requests(scenario)))
    planner = runner.planner
    windows = shared = crossing = rounds = held = 0
    run_by: str | None = None  # the service running ahead, while one may
    owed: set[str] = set()  # services with steps held back for their next grant
    kinds: collections.Counter[str] = collections.Counter()
    after_dispatch: list[float] = []  # seconds from an instance's Dispatch window to the next window
    dispatched_at: float | None = None
    comps = runner.components

    def where(cid: str) -> str:
        return service_of(cid, args.device_processes)

    while grants := planner.next_window():
        windows += 1
        inboxes = {g.component: runner.mailbox(g.component).take(g.time) for g in grants}
        quiet = {  # steps the conductor holds back (HeldSteps.hold)
            g.component
            for g in grants
            if inboxes[g.component]
            and comps[g.component].next_time() > g.time
            and all(isinstance(e.body, comps[g.component].silent_kinds()) for e in inboxes[g.component])
        }
        busy = {where(g.component) for g in grants if g.component not in quiet}
        quiet = {c for c in quiet if where(c) not in busy}
        held += len(quiet)
        owed |= {where(c) for c in quiet}
        services = {where(g.component) for g in grants}
        shared += len(services) > 1
        opens = bool(busy) and (len(busy) > 1 or busy != {run_by})
        rounds += opens
        owed -= busy
        if busy:
            run_by = next(iter(busy)) if len(busy) == 1 else None
        if dispatched_at is not None:
            after_dispatch.append(grants[0].time - dispatched_at)
            dispatched_at = None
        produced, crosses, steps = [], False, []
        for g in grants:
            comp, inbox = comps[g.component], inboxes[g.component]
            comp.step(g.time, inbox)
            sent = comp.outbox.drain()
            produced += sent
            here = where(g.component)
            out = sorted({type(e.body).__name__ for e in sent if where(e.dst) != here})
            # What the receiver takes silently does not end a horizon grant.
            crosses |= any(
                where(e.dst) != here and not isinstance(e.body, comps[e.dst].silent_kinds()) for e in sent
            )
            took = sorted({type(e.body).__name__ for e in inbox})
            steps.append(
                f"{g.component.split('-')[0]} takes {'+'.join(took) or 'nothing'}, sends {'+'.join(out) or 'nothing'}"
            )
            if g.component.startswith("instance-") and any(isinstance(e.body, Dispatch) for e in inbox):
                dispatched_at = g.time
            planner.report(g.component, comp.next_time(), [(e.dst, e.time) for e in sent])
        if opens:
            kinds["; ".join(steps) if len(steps) == 1 else f"{len(steps)} components at once"] += 1
        crossing += crosses
        if crosses:
            run_by = None  # the receiver may answer at once: the conductor must open the next window
        for env in produced:
            runner.mailbox(env.dst).add(env)
    rounds += bool(owed)  # the last hand-over of steps still held back
    print(
        f"{scenario.name}/{scenario.policy.name}, {args.device_processes} device process(es): "
        f"{windows:,} windows, {shared:,} granted to more than one service, {crossing:,} sending to "
        f"another service (not taken silently); {held:,} steps held back; {rounds:,} conductor round trips with horizon "
        "grants and held-back steps"
    )
    if args.kinds:
        print("rounds by the step that opens them:")
        for kind, n in kinds.most_common():
            print(f"  {n:8,}  {kind}")
        if after_dispatch:
            gaps = sorted(after_dispatch)
            for ms in (5, 10, 20):
                within = sum(g <= ms / 1000 for g in gaps)
                print(
                    f"  the next window opens within {ms} ms after {within:,} of {len(gaps):,} instance Dispatch windows"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
