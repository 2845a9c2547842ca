"""Results are assembled while the run goes: the same figures as assembling everything at the
end (what the NATS path does), with the engines' logs handed over and forgotten in chunks."""

from __future__ import annotations

import pytest

from llmtwin.cluster import assemble
from llmtwin.cluster.assemble import RunEnd
from llmtwin.cluster.engine_log import EngineLog
from llmtwin.cluster.messages import BalancerExport, InstanceExport
from llmtwin.cluster.run import request_table, run_scenario
from llmtwin.errors import ConfigurationError
from llmtwin.report.assemble_worker import AssemblerProcess
from llmtwin.report.summary import summarize
from llmtwin.report.writers import instances_csv, requests_csv
from llmtwin.scenario.loader import load_scenario
from llmtwin.workload.request import RequestSpec

PRESSURE = ["model=llama-3-70b", "cluster.tp=2"]
"""KV memory under pressure: preemptions, evicted replicas, unfinished requests."""


@pytest.mark.parametrize("policy", ["colocated", "disaggregated", "accellm"])
@pytest.mark.parametrize("overrides", [[], PRESSURE], ids=["demo", "pressure"])
def test_drained_runs_give_the_same_outputs_as_one_assembly(policy: str, overrides: list[str]) -> None:
    """Logs handed over every few completions (segments dropped once no request needs their
    times) or all at the end: byte-identical requests.csv and instances.csv, the same summary."""
    s = load_scenario("demo", [*overrides, "workload.requests=150"], policy)

    def outputs(every: int) -> tuple[str, str, dict[str, object]]:
        r = run_scenario(s, drain_every=every, detail=False)
        doc = summarize(r, s.slo).to_dict()
        doc.pop("run")  # wall-clock figures
        return requests_csv(r, s.slo), instances_csv(r), doc

    whole = outputs(1 << 30)
    assert outputs(1) == whole
    assert outputs(9) == whole


def test_logs_are_handed_over_in_small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a drain every 20 completions, no chunk of any instance's log holds the whole run."""
    sizes: list[int] = []
    add = assemble.Assembler.add

    def spy(self: assemble.Assembler, x: InstanceExport, first_open_it: int | None = None) -> None:
        sizes.append(len(x.seg_k))
        add(self, x, first_open_it)

    monkeypatch.setattr(assemble.Assembler, "add", spy)
    s = load_scenario("demo", [], "colocated")
    r = run_scenario(s, drain_every=20, detail=False)
    total = int(r.stats["segments"])
    assert len(sizes) > 4 * 10
    assert max(sizes) < total / 5


def test_a_run_without_detail_keeps_no_token_times() -> None:
    s = load_scenario("demo", ["workload.requests=30"])
    r = run_scenario(s, detail=False)
    assert r.token_times is None
    assert all(not i.batch_sizes and not i.kv_timeline and not i.role_timeline for i in r.instances)
    with pytest.raises(ConfigurationError, match="detail"):
        r.requests  # noqa: B018 - the property raises
    assert len(r.table) == 30


def test_engine_log_drains_only_what_is_final_and_marks_survive_drains() -> None:
    log = EngineLog()
    log.tokens(1, 0, 3)
    log.kv(0.0, 5, 0)
    mark = log.mark()
    log.tokens(2, 4, 6)
    chunk = log.drain()
    assert chunk["range_rid"] == [1]
    assert chunk["kv_t"] == [0.0]
    assert list(log.range_rid) == [2]  # logged after the mark: not final yet
    log.rewind(mark)  # the mark counts entries ever logged, so it still applies
    assert list(log.range_rid) == []
    log.kv(1.0, 5, 0)  # unchanged from the last (drained) entry: not logged again
    assert list(log.kv_t) == []
    with pytest.raises(AssertionError, match="drained"):
        log.rewind((0, 0, 0, 0, 0, 0))


def test_assembling_in_a_worker_process_gives_the_same_result() -> None:
    """The command line assembles large runs in a forked worker: same files as in-process."""
    s = load_scenario("demo", ["workload.requests=120"], "accellm")
    here = run_scenario(s, drain_every=10, detail=False)
    there = run_scenario(s, drain_every=10, detail=False, sink=AssemblerProcess)
    assert requests_csv(there, s.slo) == requests_csv(here, s.slo)
    assert instances_csv(there) == instances_csv(here)


def test_a_failure_in_the_assembling_worker_is_raised_here() -> None:
    """A chunk the assembler refuses (a token from an iteration it has no time for) fails the run
    with that error, raised in the simulating process."""
    sink = AssemblerProcess(request_table([RequestSpec(0, 0.0, 10, 2)]), False)
    lists: dict[str, list[object]] = {f: [] for f in InstanceExport.__struct_fields__[4:]}
    lists.update(range_rid=[0], range_first=[5], range_last=[5])
    sink.add(InstanceExport(0, 1, 10, 1.0, **lists))  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="dropped"):
        sink.result(RunEnd("colocated", "x", 0, BalancerExport([], [], 0, 0), 1.0, {}))
