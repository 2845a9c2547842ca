"""Run loaded scenarios for the CLI: one after another with a progress bar, or in worker processes.

Runs are deterministic functions of their scenario, so running them in parallel changes only
the wall time: results come back in the order the scenarios were given, whatever order the
workers finish in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import TextIO, TypeVar

from llmtwin.cluster.run import run_scenario
from llmtwin.report.assemble_worker import assembler
from llmtwin.report.outputs import RunOutput
from llmtwin.report.progress import Progress, RunProgress
from llmtwin.report.summary import Summary, summarize
from llmtwin.scenario.dump import dump_scenario, scenario_toml
from llmtwin.scenario.spec import Scenario

T = TypeVar("T")


def run_output(scenario: Scenario, progress: Progress | None = None) -> RunOutput:
    """Run one scenario and keep what its outputs need (the request table, instance records,
    summary, effective scenario; not every token time)."""
    result = run_scenario(scenario, progress=progress, detail=False, sink=assembler)
    return RunOutput(
        result, summarize(result, scenario.slo), dump_scenario(scenario), scenario_toml(scenario)
    )


def run_summary(scenario: Scenario, progress: Progress | None = None) -> Summary:
    """Run one scenario and keep only its summary (sweeps)."""
    result = run_scenario(scenario, progress=progress, detail=False, sink=assembler)
    return summarize(result, scenario.slo)


def run_all(
    fn: Callable[[Scenario, Progress | None], T],
    scenarios: Sequence[tuple[str, Scenario]],
    *,
    jobs: int,
    stream: TextIO,
    show_progress: bool = True,
) -> list[T]:
    """``fn`` on every (label, scenario), in order; ``jobs > 1`` uses that many processes.

    Progress ("run k of n", time left) goes to ``stream``; runs in worker processes are reported
    as they finish.
    """
    with RunProgress(len(scenarios), stream, enabled=show_progress) as progress:
        if jobs <= 1 or len(scenarios) <= 1:
            out: list[T] = []
            for label, scenario in scenarios:
                out.append(fn(scenario, progress.start(label, scenario.workload.requests)))
                progress.done()
            return out
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures: dict[Future[T], int] = {
                pool.submit(fn, s, None): i for i, (_, s) in enumerate(scenarios)
            }
            results: dict[int, T] = {}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    progress.done(scenarios[i][0])
            except BaseException:
                # One failed (or Ctrl-C): do not start the runs still queued.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return [results[i] for i in range(len(scenarios))]
