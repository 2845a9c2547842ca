"""Service processes forked from ``llmtwin up`` itself, instead of started from a fresh interpreter.

A fresh ``python -m services ROLE`` spends about 0.4 s of CPU importing its modules (numpy,
nats-py, aiohttp, the twin) before it can say hello, and ``up`` starts four or five of them on a
2-core machine. ``up`` has imported almost all of those modules already (it loaded the
scenarios and speaks to the conductor): a child forked from it runs
``services.main.main(args)`` at once, in a few milliseconds. Nothing else changes: the child is
its own process, in its own process group, dies with ``up`` (``PR_SET_PDEATHSIG``), may be
confined to CPUs, writes to its own log, has exactly the environment it was given, and shows
the command line ``python -m services ROLE ...`` (setproctitle) that starting it would have.

Forking is only safe in a process with one thread and no running event loop, so ``up`` forks
its services before it starts any thread or loop (``Launcher.started``); a service started again
after a crash is started from a fresh interpreter with the same command line (the parent is
multi-threaded by then), which behaves the same, only slower to start. Linux only; elsewhere
every service is started from a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from setproctitle import setproctitle


def can_fork() -> bool:
    """Whether a child may be forked here: Linux, and this process has one thread."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


class ForkedProcess:
    """A forked child, with the part of ``subprocess.Popen``'s interface a supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        """None while it runs; then its exit code, or minus the signal that ended it."""

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if timeout is None:
            if self.returncode is None:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            return self.returncode
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.005)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)


def fork_child(
    main: Callable[[], int],
    *,
    env: Mapping[str, str],
    log_path: Path,
    title: Sequence[str],
    prepare: Callable[[], None],
    pass_fds: Sequence[int] = (),
) -> ForkedProcess:
    """Fork a child that runs ``main()`` and exits with what it returns; see the module docstring.
    ``title``: the command line it shows; ``prepare``: what a spawned child runs between fork and
    exec (die with the parent, stay on its CPUs); ``pass_fds``: descriptors it keeps besides its
    standard streams (every other one is closed, as ``subprocess`` does). The caller must check
    :func:`can_fork` first."""
    # Opened here: an error is the caller's, not the child's.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    parent = os.getpid()
    for stream in (sys.stdout, sys.stderr):  # what is buffered must not be written twice
        stream.flush()
    try:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_child(main, env, log_fd, title, prepare, parent, pass_fds)
    finally:
        os.close(log_fd)
    with contextlib.suppress(PermissionError, ProcessLookupError):  # the child did it already
        os.setpgid(pid, pid)  # as the child does: whichever runs first, the group exists at once
    return ForkedProcess(pid)


def _run_child(
    main: Callable[[], int],
    env: Mapping[str, str],
    log_fd: int,
    title: Sequence[str],
    prepare: Callable[[], None],
    parent: int,
    pass_fds: Sequence[int],
) -> None:
    code = 1
    try:
        os.setpgid(0, 0)  # Ctrl-C in the terminal reaches up only, as for a spawned child
        prepare()
        if os.getppid() != parent:  # up died before PR_SET_PDEATHSIG took effect
            os._exit(1)
        for sig in (signal.SIGINT, signal.SIGTERM):  # up's handlers are not the service's
            signal.signal(sig, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        keep = sorted({2, *(fd for fd in pass_fds if fd > 2)})  # nothing else of the parent's stays open
        for lo, hi in zip(keep, [*keep[1:], None], strict=True):
            os.closerange(lo + 1, hi if hi is not None else os.sysconf("SC_OPEN_MAX"))
        # The interpreter's own streams write to those descriptors; the parent may have replaced
        # sys.stdout and sys.stderr (a test's capture).
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        setproctitle(" ".join(title))  # first: it needs the environment where exec left it
        os.environ.clear()
        os.environ.update(env)
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
