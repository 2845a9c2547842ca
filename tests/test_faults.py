"""Simulated accelerator failures: every policy serves every request whole, AcceLLM's copies keep
its partner's requests alive, the in-flight iteration dies with the instance, and the spec."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_cluster_colocated import check_conservation, make_requests, make_scenario, run_checked
from test_engine import load, make_engine

from llmtwin.cluster.components import Instance
from llmtwin.cluster.engine_events import Finished
from llmtwin.cluster.policies.accellm_agent import AcceLLMAgent
from llmtwin.cluster.records import RunResult
from llmtwin.cluster.run import build_components, run_scenario
from llmtwin.cluster.seqs import Role
from llmtwin.errors import ScenarioError
from llmtwin.faults.figures import fault_figures
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import fault_override
from llmtwin.scenario.spec import EngineConfig, FaultSpec, Scenario
from llmtwin.sim.kernel import Outbox
from llmtwin.sim.local import LocalRunner
from llmtwin.workload.request import RequestSpec

POLICIES = ["colocated", "colocated-chunked", "disaggregated", "accellm"]


def with_faults(s: Scenario, *faults: FaultSpec) -> Scenario:
    return dataclasses.replace(s, faults=faults)


def loaded(policy: str, params: dict[str, object] | None = None) -> Scenario:
    """Four instances under enough load that every instance holds requests at any time."""
    return make_scenario(policy, params, instances=4, engine=EngineConfig())


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("fault", [FaultSpec(1, 1.5, 3.0), FaultSpec(2, 0.8, None), FaultSpec(3, 2.0, 2.01)])
def test_every_request_is_served_whole_despite_a_failure(policy: str, fault: FaultSpec) -> None:
    """With one instance down for a while (or for good), every request still completes exactly
    once with all its tokens, KV accounting balances after every step, and what the failed
    instance held is in the fault log."""
    reqs = make_requests(150, rate_rps=40.0, seed=3)
    s = with_faults(loaded(policy), fault)
    res, insts = run_checked(s, reqs)
    check_conservation(res, reqs)
    down = insts[fault.instance].engine.log
    assert "down" in down.roles
    assert res.faults.down == [(fault.instance, fault.at_s, fault.recover_s)]
    if policy != "disaggregated" or fault.instance >= 1:  # a busy instance held something
        assert res.faults.affected


@dataclasses.dataclass(frozen=True)
class Moment:
    """A virtual time at which an AcceLLM instance decodes only requests its decoding partner
    holds a current copy of, and holds nothing else."""

    iid: int
    at_s: float
    copied: frozenset[int]


def copied_decode_moments(s: Scenario, reqs: list[RequestSpec]) -> list[Moment]:
    """Every such moment of a fault-free run of ``s``, one per interval between two steps of an
    instance, taken halfway through it (between its steps an instance only runs decode
    iterations: a finished request, a message or a released batch is a step); the partner must be
    decoding too, holding nothing but copied decodes, so a failure then recomputes nothing."""
    comps = build_components(s, reqs)
    seen: dict[int, list[tuple[float, bool, dict[int, float]]]] = {}
    for c in comps:
        if isinstance(c, Instance):
            agent = c.agent
            assert isinstance(agent, AcceLLMAgent)
            seen[c.iid] = []
            agent.end_step = functools.partial(record_step, agent, seen[c.iid], agent.end_step)  # type: ignore[method-assign]
    LocalRunner(comps).run()

    def clean_at(iid: int, t: float) -> dict[int, float] | None:
        """The decodes of ``iid`` at ``t`` if all have a copy landed by then and nothing else is held."""
        state = [(decodes, only) for at, only, decodes in seen[iid] if at <= t]
        if not state or not state[-1][1]:
            return None
        decodes = state[-1][0]
        return decodes if all(lands <= t for lands in decodes.values()) else None

    moments = []
    for iid, steps in seen.items():
        for (t0, _, _), (t1, _, _) in itertools.pairwise(steps):
            mid = (t0 + t1) / 2
            decodes = clean_at(iid, mid)
            if t1 > t0 and decodes and clean_at(iid ^ 1, mid) is not None:
                moments.append(Moment(iid, mid, frozenset(decodes)))
    return moments


def record_step(
    agent: AcceLLMAgent,
    into: list[tuple[float, bool, dict[int, float]]],
    end_step: Callable[[float, Outbox], None],
    now: float,
    out: Outbox,
) -> None:
    """After ``end_step`` (the engine settled at ``now``, not yet projected ahead): whether the
    instance decodes and holds nothing but running requests, and when each one's copy lands."""
    end_step(now, out)
    eng = agent.engine
    only = agent.role == Role.DECODE and not (eng.held or eng.waiting or agent.landing or agent.prompts)
    into.append((now, only, {r: agent.peer.get(r, math.inf) for r in eng.running}))


def test_accellm_partner_decodes_the_failed_instances_requests_without_recompute() -> None:
    """Eager copies: every request the failed instance owned and had copied goes on at its
    partner from the token it had reached (nothing recomputed), while colocated serving prefills
    every one of its lost requests again. The failure hits the instance and moment of the
    fault-free run that decodes the most copied requests (not a time that depends on iteration
    lengths)."""
    reqs = make_requests(150, rate_rps=40.0, seed=3)
    best = max(copied_decode_moments(loaded("accellm"), reqs), key=lambda m: (len(m.copied), -m.at_s))
    assert len(best.copied) >= 20
    fault = FaultSpec(best.iid, best.at_s, best.at_s + 1.5)
    acc = run_scenario(with_faults(loaded("accellm"), fault), requests=reqs)
    col = run_scenario(with_faults(loaded("colocated"), fault), requests=reqs)
    kept = set(acc.faults.affected) - set(acc.faults.recomputed_kv_tokens)
    assert kept == best.copied
    assert not acc.faults.recomputed_kv_tokens
    for rid in kept:  # decoding went on at the partner within a few steps
        t = acc.requests[rid].token_times_s
        assert max(b - a for a, b in itertools.pairwise(t)) < 0.1
        assert best.iid ^ 1 in acc.requests[rid].instances
    assert col.faults.affected
    assert set(col.faults.affected) == set(col.faults.recomputed_kv_tokens)
    assert sum(col.faults.recomputed_kv_tokens.values()) > 0
    figs = fault_figures(acc, acc.end_s)
    assert figs["requests_kept"] == len(kept)


def test_the_iteration_in_flight_dies_with_the_instance() -> None:
    """Failing mid-iteration commits only the iterations that ended by then: no token comes out
    of the one in flight, and the lost requests carry the tokens produced before."""
    e = make_engine()
    load(e, 12)
    e.advance(0.3)
    e.advance_to_failure(0.3)
    ends = [ev.time for ev in e.events if isinstance(ev, Finished)]
    assert all(t <= 0.3 for t in ends)
    lost, copies = e.wipe(0.3)
    assert not copies
    assert lost
    assert e.free == e.capacity
    assert not e.running
    assert not e.waiting
    e.check()


def test_fault_specs_parse_and_are_checked(tmp_path: Path) -> None:
    assert fault_override(["engine=3@30s,recover=90s", "engine=1@2.5"]) == (
        "faults=[{instance = 3, at_s = 30.0, recover_s = 90.0}, {instance = 1, at_s = 2.5}]"
    )
    with pytest.raises(ScenarioError, match="expected engine=INSTANCE"):
        fault_override(["engine=x@3s"])
    s = load_scenario("demo", [fault_override(["engine=3@3s,recover=9s"])])
    assert s.faults == (FaultSpec(3, 3.0, 9.0),)
    for spec, message in (
        ("engine=4@3s", "faults[0].instance' = 4 is not an instance"),
        ("engine=1@5s,recover=4s", "faults[0].recover_s' (4.0) must be after at_s"),
    ):
        with pytest.raises(ScenarioError, match=re.escape(message)):
            load_scenario("demo", [fault_override([spec])])
    with pytest.raises(ScenarioError, match="overlaps another fault of instance 1"):
        load_scenario("demo", [fault_override(["engine=1@2s,recover=6s", "engine=1@5s"])])


def test_no_failure_no_fault_figures() -> None:
    res: RunResult = run_scenario(loaded("colocated"), requests=make_requests(20))
    assert fault_figures(res, res.end_s) == {}


def test_a_prefill_instance_full_of_pinned_requests_does_not_wait_forever() -> None:
    """Memory pressure after failures (70B at TP2: little KV; pair 0 lost, all load on pair 1):
    the prefill instance whose next prompt no longer fits, full of paused requests without copies,
    hands them to its decoding partner (whole KV over the link) or goes back to decoding; every
    request completes. (Found by a randomized search: it used to stop with 41 requests stuck.)"""
    s = make_scenario("accellm", instances=4, engine=EngineConfig(), model="llama-3-70b", tp=2)
    s = with_faults(s, FaultSpec(1, 0.98, None), FaultSpec(0, 0.58, 3.36))
    reqs = make_requests(80, rate_rps=5.0, seed=0)
    res, _ = run_checked(s, reqs)
    check_conservation(res, reqs)
