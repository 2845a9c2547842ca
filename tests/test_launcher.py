"""``llmtwin up``'s launcher without processes: what it makes of a run's outcome."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import ClassVar

import pytest

from llmtwin.errors import ServiceFailure
from llmtwin.runtime.layout import cluster_layout
from llmtwin.runtime.progress_line import ProgressLine
from llmtwin.runtime.runs import UpRun
from llmtwin.runtime.up import Launcher
from proto.control import RunOutcome, RunRequest, RunSpec


class StoppedRuns:
    """A controller whose runs someone else stopped at t = 4.2 s."""

    ports: ClassVar[dict[str, int]] = {}

    async def wait_for(self, names: Iterable[str], timeout_s: float) -> None:
        pass

    async def run(self, req: RunRequest, on_progress: ProgressLine | None) -> RunOutcome:
        return RunOutcome(req.run, 4.2, {}, {"stopped": 1.0}, stopped_by="ops-console")


async def test_a_stopped_run_fails_up_naming_who_stopped_it() -> None:
    """Partial results are not written as if they were a run's: up fails (exit 2) naming who
    stopped it and when."""
    launcher = Launcher(cluster_layout(1, planner=False), quiet=True, stream=io.StringIO())
    with pytest.raises(ServiceFailure, match=r"run demo/colocated was stopped by ops-console at t=4\.200 s"):
        await launcher._work(StoppedRuns(), [UpRun("demo/colocated", RunSpec())], "nats://127.0.0.1:4222")  # type: ignore[arg-type]
