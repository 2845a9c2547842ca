"""Assemble a large run's results in a worker process, on the second core, while it simulates.

The simulation hands its instances' logs to an assembler every few thousand completions
(``cluster/run.py``); for a large run assembling is about a tenth of the work. The command line
forks a worker process at the start of such a run that holds the
:class:`~llmtwin.cluster.assemble.Assembler`; the simulation only sends it the log chunks through
a pipe, and gets the finished :class:`~llmtwin.cluster.records.RunResult` back at the end. The
figures are the same (the assembler is the same code, fed the same chunks in the same order).
Used where it pays and where processes can be forked: runs of at least
:data:`WORKER_FROM_REQUESTS` requests, on Linux, outside daemonic worker processes.
"""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from llmtwin.cluster.assemble import Assembler, ResultSink, RunEnd
from llmtwin.cluster.messages import InstanceExport
from llmtwin.cluster.records import RequestTable, RunResult

WORKER_FROM_REQUESTS = 50_000
"""Smaller runs assemble in the simulating process (a worker would cost more than it saves)."""


def _serve(conn: Connection, holder: list[RequestTable], detail: bool) -> None:
    asm = Assembler(holder.pop(), detail)
    try:
        while True:
            kind, *args = conn.recv()
            if kind == "add":
                asm.add(*args)
            elif kind == "settle":
                asm.settle(*args)
            else:
                conn.send(("ok", asm.result(*args)))
                return
    except BaseException as exc:  # reported to the simulating process, which raises it
        conn.send(("error", exc))
    finally:
        conn.close()


class AssemblerProcess:
    """A :class:`~llmtwin.cluster.assemble.ResultSink` whose assembler runs in a forked process."""

    def __init__(self, table: RequestTable, detail: bool) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        holder = [table]
        self._proc = ctx.Process(target=_serve, args=(child, holder, detail), daemon=True)
        self._proc.start()
        holder.clear()  # the table lives on in the worker only
        child.close()

    def _send(self, *message: Any) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, EOFError):
            self._receive()  # the worker failed: raise its error

    def _receive(self) -> RunResult:
        try:
            kind, value = self._conn.recv()
        except EOFError:
            raise RuntimeError("the assembling worker process died") from None
        finally:
            self._proc.join()
        if kind == "error":
            raise value
        result: RunResult = value
        return result

    def add(self, x: InstanceExport, first_open_it: int | None = None) -> None:
        self._send("add", x, first_open_it)

    def settle(self, now: float = np.inf) -> None:
        self._send("settle", now)

    def result(self, end: RunEnd) -> RunResult:
        self._send("result", end)
        return self._receive()


def assembler(table: RequestTable, detail: bool) -> ResultSink:
    """What assembles a run of ``len(table)`` requests (see the module docstring); a
    ``sink`` for :func:`~llmtwin.cluster.run.run_scenario`."""
    if (
        len(table) >= WORKER_FROM_REQUESTS
        and sys.platform.startswith("linux")
        and not multiprocessing.current_process().daemon
    ):
        return AssemblerProcess(table, detail)
    return Assembler(table, detail)
