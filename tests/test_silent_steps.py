"""What a component says it takes silently, it does: on whole in-process runs of every policy,
every step that takes only such messages (and has no event of its own) sends nothing and leaves
its next event where it was."""

from __future__ import annotations

import asyncio
import math

import msgspec
import pytest
from run_state_builders import first_window, two_host_state
from service_builders import TOY_SPLIT, Connect, host, run_cluster, run_once, same_as_local, start_services
from toy_components import ToyFactory

from llmtwin.cluster.messages import Done, PrefillDone, RoleChanged
from llmtwin.cluster.policies.registry import POLICIES
from llmtwin.cluster.run import build_components, run_scenario, scenario_requests
from llmtwin.errors import ServiceFailure
from llmtwin.report.writers import requests_csv
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import fault_override
from llmtwin.sim.local import LocalRunner
from proto.codec import Codec
from proto.control import (
    AheadWindow,
    DeferredStep,
    DoneBatch,
    DoneItem,
    RunSpec,
    WireEnvelope,
)
from services.cluster import ClusterFactory
from services.held_steps import MAX_HELD
from services.run_failed import RunFailed
from services.run_state import RunState

DEMO = ["workload.requests=300"]


def silent_steps(policy: str, overrides: list[str]) -> int:
    """Run ``policy`` window by window; check every silent step; how many there were."""
    scenario = load_scenario("demo", [*DEMO, *overrides], policy)
    runner = LocalRunner(build_components(scenario, scenario_requests(scenario)))
    planner, checked = runner.planner, 0
    while grants := planner.next_window():
        produced = []
        for g in grants:
            comp = runner.components[g.component]
            inbox = runner.mailbox(g.component).take(g.time)
            before = comp.next_time()
            kinds = comp.silent_kinds()
            silent = bool(inbox) and before > g.time and all(isinstance(e.body, kinds) for e in inbox)
            comp.step(g.time, inbox)
            sent = comp.outbox.drain()
            if silent:
                checked += 1
                assert sent == [], f"{g.component} sent {sent} taking {[e.body for e in inbox]} at {g.time}"
                assert comp.next_time() == before, f"{g.component} moved its next event at {g.time}"
            produced += sent
            planner.report(g.component, comp.next_time(), [(e.dst, e.time) for e in sent])
        for env in produced:
            runner.mailbox(env.dst).add(env)
    return checked


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_keeps_its_silence(policy: str) -> None:
    checked = silent_steps(policy, [])
    if POLICIES[policy].SILENT:
        assert checked > 100  # the claim was really put to the test
    else:
        assert checked == 0


def test_silence_holds_through_failures() -> None:
    """An instance that fails and comes back: completions around it are still only counted."""
    for policy in ("colocated", "disaggregated"):
        assert silent_steps(policy, [fault_override(["engine=1@4s,recover=8s"])]) > 100


def test_the_silent_kinds_are_the_policies_claims() -> None:
    claims = {name: cls.SILENT for name, cls in POLICIES.items()}
    assert claims == {
        "colocated": (Done,),
        "colocated-chunked": (Done,),
        "disaggregated": (PrefillDone, Done),
        "accellm": (Done, PrefillDone, RoleChanged),
    }


# -- over the services ---------------------------------------------------------------------------

FAN = RunSpec("toy", "fan", ("jobs=40",))


async def test_held_back_steps_give_the_local_results(transport: Connect) -> None:
    """The fan toy's sink takes results silently: the conductor holds its steps back (no round
    trip each), its host takes them later, in order, and every export is LocalRunner's."""
    out = await run_once(transport, TOY_SPLIT, FAN)
    same_as_local(out, FAN)
    assert out.stats["held"] > 10


async def test_a_component_less_silent_than_it_claims_fails_the_run_naming_its_host(
    transport: Connect,
) -> None:
    """A sink that claims silence but sets itself a timer: its host refuses to go on."""
    with pytest.raises(ServiceFailure, match=r"\(h1\).*sink took \['Result'\].*its silent_kinds are wrong"):
        await run_once(transport, TOY_SPLIT, RunSpec("toy", "fan", ("jobs=40", "liar=1")))


async def test_the_twin_holds_back_the_balancers_completions(transport: Connect) -> None:
    """Every policy over the services: the balancer's completions are held-back steps, and the
    requests are the in-process run's."""
    for policy in ("colocated", "disaggregated", "accellm"):
        spec = RunSpec("cluster", "demo", tuple(DEMO), policy)
        outcome, _ = await run_cluster(transport, spec)
        scenario = load_scenario("demo", DEMO, policy)
        local = run_scenario(scenario)
        assert requests_csv(ClusterFactory().result(spec, outcome), scenario.slo) == requests_csv(
            local, scenario.slo
        )
        assert outcome.stats["windows"] == local.stats["windows"]
        assert outcome.stats["held"] > 100


# -- the conductor's books -----------------------------------------------------------------------


def books(until_s: float = math.inf) -> RunState:
    """:func:`two_host_state` with window 1 (t=0) closed: a next at 1, b at 2, c at 5."""
    state = two_host_state(until_s=until_s)
    first_window(state)
    return state


def to_c(t: float, seq: int = 0) -> WireEnvelope:
    return WireEnvelope(t, 20, "a", seq, "c", msgspec.Raw(b"\x80"))


def test_a_window_of_silent_steps_only_is_closed_at_once_and_handed_over_later() -> None:
    state = books()
    state.open_window(state.planner.next_window())  # a at t=1
    state.dones = {
        "h1": DoneBatch("r", 2, "h1", [DoneItem("a", 9.0, ["c"], [1.5], 0, [True])], envelopes=[to_c(1.5)])
    }
    state.close_window()
    assert state.open_window(state.planner.next_window()) == {}  # c at t=1.5: held back
    assert state.held.queued["h2"] == [DeferredStep(3, 1.5, "c", 1, [to_c(1.5)])]
    assert (state.window, state.held.count, state.planner.next_time("c")) == (3, 1, 5.0)
    assert list(state.open_window(state.planner.next_window())) == ["h1"]  # b at t=2
    state.dones = {"h1": DoneBatch("r", 4, "h1", [DoneItem("b", 8.0, [], [])])}
    state.close_window()
    batch = state.open_window(state.planner.next_window())["h2"]  # c's own event at t=5
    assert (batch.window, batch.components, batch.envelopes) == (5, ["c"], [])
    assert batch.deferred == [DeferredStep(3, 1.5, "c", 1, [to_c(1.5)])]
    assert state.held.queued == {}


@pytest.mark.parametrize("case", ["loud", "own event", "catching up"])
def test_a_step_is_held_back_only_if_it_takes_only_silent_envelopes_and_nothing_else_waits(case: str) -> None:
    state = books()
    state.open_window(state.planner.next_window())  # a at t=1
    quiet = [True, False] if case == "loud" else [True, True]
    at = 5.0 if case == "own event" else 1.5
    item = DoneItem("a", 9.0, ["c", "c"], [at, at], 0, quiet)
    state.dones = {"h1": DoneBatch("r", 2, "h1", [item], envelopes=[to_c(at), to_c(at, 1)])}
    state.close_window()
    if case == "catching up":
        state.lost["h1"] = 0.0
    if case == "own event":  # b at t=2 first, then c at 5: its own event and the envelopes
        state.open_window(state.planner.next_window())
        state.dones = {"h1": DoneBatch("r", 3, "h1", [DoneItem("b", 8.0, [], [])])}
        state.close_window()
    batches = state.open_window(state.planner.next_window())
    assert list(batches) == ["h2"]
    assert batches["h2"].deferred == []
    assert state.held.count == 0


def test_windows_run_ahead_past_a_silent_send_hold_the_receivers_step_in_order() -> None:
    """h1 runs ahead past what it sent c silently: the conductor's replay holds c's step (with
    the envelopes sent before it, not those after) between h1's windows."""
    state = books()
    state.open_window(state.planner.next_window())  # a at t=1, horizon 5
    ahead = [
        AheadWindow(2.0, [DoneItem("b", 3.0, ["c"], [2.5], 0, [True])], [to_c(2.5)]),
        AheadWindow(3.0, [DoneItem("b", 4.0, ["c"], [3.5], 0, [True])], [to_c(3.5, 1)]),
    ]
    state.dones = {"h1": DoneBatch("r", 2, "h1", [DoneItem("a", 9.0, [], [])], ahead=ahead)}
    assert state.close_window() == (4, 2)  # windows 2, 3 (b), 4 (c held), 5 (b)
    assert state.held.queued["h2"] == [DeferredStep(4, 2.5, "c", 1, [to_c(2.5)])]
    assert state.relay["h2"] == [to_c(3.5, 1)]
    assert state.open_window(state.planner.next_window()) == {}  # c at t=3.5: held too
    assert [d.window for d in state.held.queued["h2"]] == [4, 6]
    assert state.held.queued["h2"][1].envelopes == [to_c(3.5, 1)]


def test_the_steps_still_held_back_at_the_end_go_out_in_a_last_round() -> None:
    state = books(until_s=3.0)
    state.open_window(state.planner.next_window())  # a at t=1
    state.dones = {
        "h1": DoneBatch("r", 2, "h1", [DoneItem("a", 9.0, ["c"], [1.5], 0, [True])], envelopes=[to_c(1.5)])
    }
    state.close_window()
    assert state.open_window(state.planner.next_window()) == {}
    batches = state.open_flush()
    assert list(batches) == ["h2"]
    assert (batches["h2"].components, batches["h2"].window) == ([], 3)
    assert [d.component for d in batches["h2"].deferred] == ["c"]
    state.dones = {"h2": DoneBatch("r", 3, "h2", [])}
    assert state.close_window() == (1, 0)
    assert (state.held.queued, state.open, state.flushing) == ({}, False, False)


def test_a_report_of_silence_that_does_not_match_its_messages_fails_the_run() -> None:
    state = books()
    state.open_window(state.planner.next_window())
    state.dones = {"h1": DoneBatch("r", 2, "h1", [DoneItem("a", 9.0, ["c"], [1.5], 0, [True, True])])}
    with pytest.raises(RunFailed, match="h1 reported a's messages inconsistently"):
        state.close_window()


def test_a_window_with_a_step_to_grant_holds_nothing_back() -> None:
    """c's silent step shares t=2 with b's own event: the window opens whole, so a held step
    never belongs to the open window (a restarted service replays only the windows before it)."""
    state = books()
    state.open_window(state.planner.next_window())  # a at t=1
    state.dones = {
        "h1": DoneBatch("r", 2, "h1", [DoneItem("a", 9.0, ["c"], [2.0], 0, [True])], envelopes=[to_c(2.0)])
    }
    state.close_window()
    batches = state.open_window(state.planner.next_window())
    assert sorted(batches) == ["h1", "h2"]
    assert (batches["h2"].components, batches["h2"].deferred, state.held.count) == (["c"], [], 0)


async def test_a_full_queue_of_held_back_steps_goes_out_in_a_round_of_its_own(transport: Connect) -> None:
    """h1 runs everything but the sink, 256 windows at a time, each result to the sink held
    back: the sink's host gets them in rounds of their own once 256 or more wait, and at the
    end; the exports are still LocalRunner's."""
    spec = RunSpec("toy", "fan", ("jobs=700", "period_s=0.001"))
    hosts = [host("h1", "ping,pong,source,worker-*"), host("h3", "sink")]
    out = await run_once(transport, hosts, spec, 60.0)
    same_as_local(out, spec)
    assert out.stats["held"] > 4 * MAX_HELD  # the queue filled up again and again
    assert out.stats["rounds"] < 40


def test_a_service_with_a_full_queue_gets_no_more_held_back_steps_until_it_is_handed_over() -> None:
    state = books()
    state.held.queued["h2"] = [DeferredStep(1, 0.5, "c", 1)] * MAX_HELD
    assert state.held.due() == ["h2"]
    state.open_window(state.planner.next_window())  # a at t=1
    item = DoneItem("a", 9.0, ["c"], [1.5], 0, [True])
    state.dones = {"h1": DoneBatch("r", 2, "h1", [item], envelopes=[to_c(1.5)])}
    state.close_window()
    batches = state.open_window(state.planner.next_window())  # c at t=1.5: granted, not held
    assert (batches["h2"].components, len(batches["h2"].deferred)) == (["c"], MAX_HELD)
    assert state.held.due() == []


async def test_a_stopped_run_exports_every_window_it_closed_held_steps_included(transport: Connect) -> None:
    """Stopped midway at a pace: the exports are LocalRunner's after the same windows, so the
    steps still held back at the stop were handed over before the exports."""
    spec = RunSpec("toy", "fan", ("jobs=400",))
    svc = await start_services(transport, [host("h1", "ping,pong,source,worker-*"), host("h3", "sink")])
    try:
        task = asyncio.ensure_future(svc.run(spec, speed=5.0, run_id="stopped"))
        while svc.conductor.active is None or len(svc.conductor.active.held.queued.get("h3", ())) < 20:
            await asyncio.sleep(0.01)
        await svc.client.control("stopped", "stop")
        out = await asyncio.wait_for(task, 20)
    finally:
        await svc.stop()
    assert out.stats["stopped"] == 1.0
    runner = LocalRunner(ToyFactory().build(spec))
    runner.advance(math.inf, int(out.stats["windows"]))
    codec = Codec(ToyFactory().body_types())
    for comp in runner.components.values():
        comp.finish(out.end_s)
    local = {cid: codec.encode(c.export()) for cid, c in sorted(runner.components.items())}
    assert {k: bytes(v) for k, v in out.parts.items()} == local
