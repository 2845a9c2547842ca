"""Child processes of ``llmtwin up``: start, watch, stop -- and never leave one behind.

Each child runs in its own process group (so a terminal's Ctrl-C reaches only ``up``, which
then stops the children in order) and, on Linux, gets SIGTERM if ``up`` dies without cleaning
up (``PR_SET_PDEATHSIG``). Its stdout and stderr go to ``<log_dir>/<name>.log``, whose last
lines are shown when it fails; :meth:`Supervisor.respawn` starts a child that died again with
the same command and environment, appending to its log. A child whose command this process can
also run itself (``main``) is forked from it where that is safe (``runtime/forked.py``: no
interpreter start); restarts always start the command. ``stop_all`` sends SIGTERM to every
group, waits, then SIGKILLs whatever is left. Children may be confined to a set of CPUs (``--cpus``; see
docs/architecture.md for why one CPU can be faster).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llmtwin.errors import ConfigurationError
from llmtwin.runtime.forked import can_fork, fork_child
from services.selection import parse_ranges

PR_SET_PDEATHSIG = 1
"""prctl option: signal to receive when the parent thread exits (linux/prctl.h)."""


def _load_prctl() -> ctypes._NamedFuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        return ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
"""Loaded once, before any fork: nothing may be loaded between fork and exec."""


def child_preexec(cpus: frozenset[int] | None = None) -> None:
    """Runs in the child between fork and exec: die with the parent (Linux only), stay on ``cpus``."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
    if cpus:
        os.sched_setaffinity(0, cpus)


def preexec(cpus: frozenset[int] | None) -> functools.partial[None]:
    """The ``preexec_fn`` of a child confined to ``cpus`` (None: wherever the OS puts it)."""
    return functools.partial(child_preexec, cpus)


def parse_cpus(text: str) -> frozenset[int] | None:
    """``--cpus``: ``all`` -> None (the OS places the processes); ``0`` or ``0-1,3`` -> those CPUs,
    which must be ones this process may use (Linux only)."""
    if text.strip().lower() == "all":
        return None
    cpus = parse_ranges(text, "CPU")
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigurationError("--cpus needs Linux (sched_setaffinity); use --cpus all")
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ConfigurationError(
            f"--cpus {text}: CPU(s) {sorted(cpus - allowed)} not available (allowed: {sorted(allowed)})"
        )
    return cpus


class Process(Protocol):
    """What the supervisor uses of a child: ``subprocess.Popen`` or a forked child."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...


@dataclass(slots=True)
class Child:
    """One supervised process."""

    name: str
    proc: Process
    log_path: Path
    argv: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    restarts: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        """The last lines it wrote (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


class Supervisor:
    """Starts children, reports the first one that exits, stops them all."""

    def __init__(self, log_dir: Path, cpus: frozenset[int] | None = None) -> None:
        self.log_dir = log_dir
        self.cpus = cpus
        self.children: list[Child] = []
        self.stopping = False

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        main: Callable[[], int] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> Child:
        """Start ``argv`` as child ``name``. ``main``: what ``argv`` runs, as a call in this
        process; the child is then forked and calls it, where this process may fork, keeping
        ``pass_fds`` open (a started command keeps none)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        environ = dict(os.environ if env is None else env)
        proc: Process
        if main is not None and can_fork():
            proc = fork_child(
                main,
                env=environ,
                log_path=log_path,
                title=argv,
                prepare=preexec(self.cpus),
                pass_fds=pass_fds,
            )
            if self.cpus:  # as the child does: whichever runs first, it is there on return
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(proc.pid, self.cpus)
        else:
            proc = self._popen(argv, environ, log_path, "wb")
        child = Child(name, proc, log_path, tuple(argv), environ)
        self.children.append(child)
        return child

    def respawn(self, child: Child) -> None:
        """Start ``child`` again (same command and environment; its log goes on)."""
        child.proc = self._popen(child.argv, child.env, child.log_path, "ab")
        child.restarts += 1

    def _popen(
        self, argv: Sequence[str], env: Mapping[str, str] | None, log_path: Path, mode: str
    ) -> subprocess.Popen[bytes]:
        with log_path.open(mode) as log:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                process_group=0,
                preexec_fn=preexec(self.cpus),
            )

    def exited(self) -> Child | None:
        """The first child that has exited, if any (none once stopping: they are meant to)."""
        if self.stopping:
            return None
        for child in self.children:
            if child.proc.poll() is not None:
                return child
        return None

    def pids(self) -> list[int]:
        return [c.pid for c in self.children]

    def terminate_all(self) -> None:
        """SIGTERM every child's group without waiting (they exit while the caller goes on;
        :meth:`stop_all` later waits for them)."""
        self.stopping = True
        for child in self.children:
            _signal_group(child, signal.SIGTERM)

    def stop_all(self, grace_s: float = 10.0) -> list[str]:
        """SIGTERM every child's group, wait up to ``grace_s``, SIGKILL the rest; names of the killed."""
        self.terminate_all()
        deadline = time.monotonic() + grace_s
        killed = []
        for child in self.children:
            try:
                child.proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                killed.append(child.name)
                _signal_group(child, signal.SIGKILL)
                child.proc.wait()
        return killed


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = 5.0, wake: bool = False) -> None:
    """Terminate ``proc`` if it still runs: SIGTERM, up to ``grace_s`` to exit, then SIGKILL.
    ``wake``: send SIGCONT first (a stopped process only sees the SIGTERM once it runs again)."""
    if proc is None or proc.poll() is not None:
        return
    if wake:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _signal_group(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(child.pid, sig)
