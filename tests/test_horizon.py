"""Horizon grants: a host steps its own components' windows by itself until another service's
component could act, and nothing else changes (docs/architecture.md, "Horizon grants")."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from run_state_builders import first_window, two_host_state
from service_builders import TOY_SPLIT, Connect, host, run_once, same_as_local, start_services

from llmtwin.sim.windows import WindowPlanner
from proto.control import AheadWindow, DoneBatch, DoneItem, RunSpec
from services.run_failed import RunFailed

pytestmark = pytest.mark.timeout(60)

FAN = RunSpec("toy", "fan", ("jobs=30",))
PINGPONG = RunSpec("toy", "pingpong", ("balls=30",))


async def test_a_host_runs_its_own_windows_ahead_with_the_same_results(transport: Connect) -> None:
    """The fan toy on two hosts: fewer round trips than windows, and LocalRunner's results."""
    out = await run_once(transport, TOY_SPLIT, FAN)
    same_as_local(out, FAN)
    assert 0 < out.stats["rounds"] < out.stats["windows"]


async def test_one_host_runs_the_whole_run_in_few_round_trips(transport: Connect) -> None:
    """Alone, a host is bounded only by the cap on windows per grant."""
    out = await run_once(transport, [host("h1", "*")], FAN)
    same_as_local(out, FAN)
    assert out.stats["rounds"] <= 1 + out.stats["windows"] // 256


async def test_ping_pong_between_two_hosts_cannot_run_ahead(transport: Connect) -> None:
    """Every window sends the ball to the other host at once: one round trip per window."""
    out = await run_once(transport, TOY_SPLIT, PINGPONG)
    same_as_local(out, PINGPONG)
    assert out.stats["rounds"] == out.stats["windows"]


async def test_replicated_components_get_no_horizon(transport: Connect) -> None:
    """A follower must see every window of what it replicates: no host runs ahead."""
    svc = await start_services(transport, [host("h1", "*")])
    try:
        await svc.add_host(host("h2", role="device", follow="worker-1"))
        out = await asyncio.wait_for(svc.run(FAN), 20)
    finally:
        await svc.stop()
    same_as_local(out, FAN)
    assert out.stats["rounds"] == out.stats["windows"]


# -- the conductor's books ---------------------------------------------------------------------


def test_the_horizon_is_the_earliest_wake_of_the_other_services_components() -> None:
    state = two_host_state()
    first_window(state)
    batches = state.open_window(state.planner.next_window())
    assert list(batches) == ["h1"]
    assert batches["h1"].horizon_s == 5.0


def test_the_earliest_wake_outside_a_few_components_walks_the_heap_to_the_same_answer() -> None:
    """``WindowPlanner.earliest_except`` (a balancer's horizon: every instance is another
    service's) gives what scanning every other component gives, between windows, through random
    steps, messages, and wakes moving both ways."""
    rng = random.Random(5)
    comps = [f"c{i:02d}" for i in range(40)]
    planner = WindowPlanner(comps)
    checked = 0
    for _ in range(3000):
        grants = planner.next_window()
        if not grants:
            break
        now = grants[0].time
        for g in grants:
            sent = [
                (rng.choice(comps), now + rng.choice((0.0, rng.random()))) for _ in range(rng.randint(0, 2))
            ]
            planner.report(g.component, rng.choice((now + rng.random() * 3, math.inf)), sent)
        if rng.random() < 0.2:
            planner.expect(rng.choice(comps), now + rng.random())
        excluded = frozenset(rng.sample(comps, rng.randint(0, 3)))
        others = [c for c in comps if c not in excluded]
        assert planner.earliest_except(excluded) == planner.earliest(others)
        checked += 1
    assert checked > 1000


@pytest.mark.parametrize(
    ("speed", "until_s", "most"),
    [(1.0, math.inf, 0.5), (math.inf, 3.0, math.nextafter(3.0, math.inf))],
    ids=["paced", "until"],
)
def test_the_pace_and_the_end_of_the_run_bound_the_horizon(speed: float, until_s: float, most: float) -> None:
    state = two_host_state(speed, until_s)
    first_window(state)
    state.pacer.restart()
    batches = state.open_window(state.planner.next_window())
    assert batches["h1"].horizon_s <= most


def test_windows_run_ahead_are_checked_against_the_planner() -> None:
    """The conductor replays each window a host ran ahead; one it would not have opened fails
    the run naming the host."""
    state = two_host_state()
    first_window(state)
    state.open_window(state.planner.next_window())  # a at t=1, horizon 5
    good = [AheadWindow(2.0, [DoneItem("b", 3.0, [], [])]), AheadWindow(3.0, [DoneItem("b", 4.0, [], [])])]
    state.dones = {"h1": DoneBatch("r", 2, "h1", [DoneItem("a", 9.0, [], [])], ahead=good)}
    assert state.close_window() == (3, 0)
    assert (state.window, state.now_s) == (4, 3.0)

    state.open_window(state.planner.next_window())  # b at t=4, horizon 5
    wrong = [AheadWindow(4.5, [DoneItem("a", 9.5, [], [])])]  # a's next event is at 9
    state.dones = {"h1": DoneBatch("r", 5, "h1", [DoneItem("b", 8.0, [], [])], ahead=wrong)}
    with pytest.raises(RunFailed, match=r"h1 ran \['a'\] at t=4.5 ahead of window 5") as err:
        state.close_window()
    assert err.value.service == "h1"


def test_an_empty_window_run_ahead_fails_the_run_naming_the_host() -> None:
    state = two_host_state()
    first_window(state)
    state.open_window(state.planner.next_window())  # a at t=1, horizon 5
    state.dones = {"h1": DoneBatch("r", 2, "h1", [DoneItem("a", 9.0, [], [])], ahead=[AheadWindow(9.5, [])])}
    with pytest.raises(RunFailed, match=r"h1 ran \[\] at t=9.5 ahead of window 2") as err:
        state.close_window()
    assert err.value.service == "h1"


def test_running_ahead_without_a_horizon_fails_the_run() -> None:
    state = two_host_state()
    state.open_window(state.planner.next_window())  # window 1: both hosts, no horizon
    ahead = [AheadWindow(1.0, [DoneItem("a", 2.0, [], [])])]
    state.dones = {
        "h1": DoneBatch("r", 1, "h1", [DoneItem("a", 1.0, [], []), DoneItem("b", 2.0, [], [])], ahead=ahead),
        "h2": DoneBatch("r", 1, "h2", [DoneItem("c", 5.0, [], [])]),
    }
    with pytest.raises(RunFailed, match="h1 ran ahead of window 1 without a horizon grant"):
        state.close_window()


# -- the planner ---------------------------------------------------------------------------------


def test_a_hosts_planner_of_its_own_components_opens_the_same_windows() -> None:
    """``subset`` plus ``expect`` (for what other services send) keeps a host's planner in step
    with the conductor's for the host's components."""
    full = WindowPlanner(["a", "b", "c"])
    full.next_window()
    full.report("a", 1.0, [("b", 1.0)])
    full.report("b", math.inf, [])
    full.report("c", 0.5, [("a", 3.0)])
    mine = full.subset(["a", "b"])
    assert mine.next_window_time() == 1.0
    assert mine.earliest(["a", "b"]) == 1.0 == full.earliest(["a", "b"])
    assert [(g.component, g.expect) for g in full.next_window()] == [("c", 0)]
    full.report("c", math.inf, [("b", 2.0)])
    mine.expect("b", 2.0)
    for _ in range(3):
        want = [(g.time, g.component, g.expect) for g in full.next_window()]
        got = [(g.time, g.component, g.expect) for g in mine.next_window()]
        assert want == got
        for _, comp, _ in want:
            full.report(comp, math.inf, [])
            mine.report(comp, math.inf, [])
    assert mine.next_window_time() == math.inf == full.next_window_time()
