"""An embedded Prometheus (the system ``prometheus`` binary) on a free loopback port, and its HTTP API.

:class:`EmbeddedPrometheus` writes a configuration scraping the given targets (one static
target per service, labelled ``service``, as ``prometheus/prometheus.yml`` does for compose),
starts the server with its data in a folder of the caller's choice, and waits until it answers.
Prometheus hands new targets to its scrapers at most every 5 s, so the first sample arrives
about 5.5 s after the start whatever the scrape interval: :meth:`wait_for_samples` polls for it.

:class:`PrometheusApi` sends instant and range queries (``/api/v1/query``, ``query_range``);
a malformed query comes back as :class:`QueryError` with Prometheus's own message.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from llmtwin.errors import ConfigurationError, ServiceFailure, TwinError
from llmtwin.runtime.processes import preexec, stop_process

INSTALL_HINT = (
    "install Prometheus: on Debian or Ubuntu `apt-get install -y --no-install-recommends prometheus` "
    "(scripts/bootstrap.sh does it when run as root), elsewhere put the `prometheus` binary from "
    "https://prometheus.io/download/ on PATH"
)


class QueryError(TwinError):
    """Prometheus rejected a query (bad syntax, unknown function) or could not be reached."""


def prometheus_binary(name: str = "prometheus") -> Path:
    """The ``prometheus`` (or ``promtool``) binary on PATH; ConfigurationError saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(f"no `{name}` binary on PATH: {INSTALL_HINT}")
    return Path(found)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def scrape_config(
    targets: Mapping[str, str],
    scrape_interval_s: float,
    rule_files: Sequence[Path] = (),
    job: str = "llmtwin",
) -> dict[str, Any]:
    """A Prometheus configuration scraping ``targets`` (service name -> host:port) every interval."""
    interval = f"{scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [
                    {"targets": [addr], "labels": {"service": name}} for name, addr in sorted(targets.items())
                ],
            }
        ],
    }


class PrometheusApi:
    """The query API of a Prometheus at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str, **params: str) -> Any:
        """``data`` of a JSON API answer; QueryError with Prometheus's message on an error."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=self.timeout_s) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as exc:
            try:
                doc = json.load(exc)
            except ValueError:
                raise QueryError(f"{self.url}{path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise QueryError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        if doc.get("status") != "success":
            raise QueryError(f"{doc.get('errorType', 'error')}: {doc.get('error', doc)}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector's samples)."""
        return list(self.get("/api/v1/query", query=expr)["result"])

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """A range query's result: one ``{"metric": labels, "values": [[t, "v"], ...]}`` per series."""
        data = self.get(
            "/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}"
        )
        return list(data["result"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout_s) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False


class EmbeddedPrometheus:
    """``with EmbeddedPrometheus(dir, targets) as prom: prom.url`` -- see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        targets: Mapping[str, str],
        *,
        scrape_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        port: int = 0,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.dir = workdir
        self.targets = dict(targets)
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = list(rule_files)
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def api(self) -> PrometheusApi:
        return PrometheusApi(self.url)

    def start(self) -> str:
        """Write the configuration, start the server, wait until it is ready; its URL."""
        binary = prometheus_binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"  # JSON is YAML
        config.write_text(
            json.dumps(scrape_config(self.targets, self.scrape_interval_s, self.rule_files), indent=2)
        )
        port = self.port or free_port()
        self.url = f"http://127.0.0.1:{port}"
        log_path = self.dir / "prometheus.log"
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-lifecycle",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=preexec(None),
            )
        deadline = time.monotonic() + self.start_timeout_s
        api = self.api
        while not api.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                self.stop()
                raise ServiceFailure(
                    f"prometheus did not start on port {port}: {' | '.join(tail) or 'no output'}"
                )
            time.sleep(0.05)
        return self.url

    def wait_for_samples(self, timeout_s: float = 30.0, expr: str = "up == 1") -> list[dict[str, Any]]:
        """Poll until ``expr`` has a sample for every target (default: every target scraped once)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.api.query(expr)
            if len({r["metric"].get("service") for r in result}) >= len(self.targets):
                return result
            if time.monotonic() > deadline:
                raise ServiceFailure(
                    f"prometheus: no sample of {expr!r} for every target after {timeout_s:g} s"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
