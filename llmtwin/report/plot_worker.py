"""A worker process that renders plots while the main process simulates and writes files.

Rendering the four per-run PNGs and importing matplotlib cost about as much as simulating w1.
``simulate``, ``compare``, ``up`` and ``run`` start this worker before their runs: it imports
matplotlib while the simulation runs, then renders each run's plots (from a small :class:`~llmtwin.report.plot_data.
RunPlots`) while the main process writes the CSV and JSON files. The PNGs are byte-identical to
rendering them in the main process. Where processes cannot be forked (not Linux), plots are
rendered in the main process instead.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager


def _warm_up() -> None:
    import llmtwin.report.plots  # noqa: F401 - imports matplotlib


@contextmanager
def plot_worker(enabled: bool = True) -> Iterator[Executor | None]:
    """One worker process, already importing matplotlib, for the ``with`` block; None when not
    ``enabled`` or where fork is unavailable (plots are then rendered in this process)."""
    if not enabled or not sys.platform.startswith("linux"):
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    try:
        pool.submit(_warm_up)
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)
