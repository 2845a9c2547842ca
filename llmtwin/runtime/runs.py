"""One run a controller (``llmtwin up``, ``llmtwin run``) asks the conductor for: its label and
size, its id on the bus, and the check that nobody stopped it before its results are written."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from llmtwin.errors import ServiceFailure
from proto.control import RunOutcome, RunSpec


@dataclass(frozen=True, slots=True)
class UpRun:
    """One run to do: its label (progress, run id), spec and request count (progress)."""

    label: str
    spec: RunSpec
    total_requests: int | None = None


def run_id(label: str, index: int) -> str:
    """A subject-safe run id, unique per controller process."""
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', label).strip('-')}-{os.getpid()}-{index}"


def check_not_stopped(label: str, outcome: RunOutcome) -> None:
    """ServiceFailure if someone stopped the run (its results are partial: never written)."""
    if outcome.stats.get("stopped"):
        raise ServiceFailure(
            f"run {label} was stopped by {outcome.stopped_by or 'a controller'} at "
            f"t={outcome.end_s:.3f} s (virtual); its partial results are not written"
        )
