"""``llmtwin up --observe``: an embedded Prometheus scraping every service, the endpoints, PNGs.

:class:`Observatory` gives each service a fixed HTTP port (so a restarted service is scraped
where it was), starts the system's ``prometheus`` (:mod:`llmtwin.runtime.prometheusd`) on a
free loopback port with the project's recording rules, keeping its data in ``OUT/prometheus``,
waits for its first scrape before the run starts (Prometheus hands new targets to its scrapers
about 5 s after it starts), and at the end waits for a scrape of the final values and draws
every dashboard's panels to ``OUT/dashboards/<dashboard>.png``. :func:`write_endpoints` writes
``OUT/endpoints.json`` (every ``up``): where the bus, each service's metrics and Prometheus are.

Observability never costs a run its results: the caller writes them before the pictures are
drawn, and a failure here is reported as one line (:class:`ObserveFailure`).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmtwin.errors import ConfigurationError, TwinError
from llmtwin.runtime.prometheusd import EmbeddedPrometheus, free_port, prometheus_binary

SCRAPE_INTERVAL_S = 1.0
"""How often the embedded Prometheus scrapes: short runs still get several samples."""


class ObserveFailure(TwinError):
    """Observability failed (the run's results are not affected)."""


@dataclass(frozen=True, slots=True)
class ObserveOptions:
    """What ``up --observe`` was asked for."""

    out: Path
    """The run's output folder (Prometheus's data and the pictures go in it)."""
    linger_s: float = 0.0
    """Keep everything up this long after the run (for a person to look)."""
    prometheus_port: int = 0
    """Port of the embedded Prometheus (0: a free one)."""
    render: bool = True
    """Draw the dashboards at the end."""

    def check(self) -> None:
        """ConfigurationError (one line, before anything starts) for what cannot work."""
        prometheus_binary()
        if not (self.linger_s >= 0 and self.linger_s < float("inf")):
            raise ConfigurationError(f"--linger takes seconds >= 0, got {self.linger_s}")
        if self.prometheus_port:
            if not 0 < self.prometheus_port < 65536:
                raise ConfigurationError(f"--prometheus-port {self.prometheus_port} is not a port")
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", self.prometheus_port))
                except OSError as exc:
                    raise ConfigurationError(
                        f"--prometheus-port {self.prometheus_port}: {exc.strerror or exc} (choose another, "
                        "or leave it out for a free one)"
                    ) from None


def write_endpoints(path: Path, nats_url: str, ports: Mapping[str, int], prometheus: str = "") -> None:
    """``endpoints.json``: the NATS URL, each service's /metrics and /healthz, Prometheus's URL."""
    doc = {
        "nats": nats_url,
        "services": {
            name: {"metrics": f"http://127.0.0.1:{p}/metrics", "health": f"http://127.0.0.1:{p}/healthz"}
            for name, p in sorted(ports.items())
        },
        "prometheus": prometheus or None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


class Observatory:
    """See the module docstring."""

    def __init__(self, opts: ObserveOptions, services: Sequence[str]) -> None:
        self.opts = opts
        self.ports = {name: free_port() for name in services}
        """Service -> its /metrics port."""
        self.prom: EmbeddedPrometheus | None = None
        self.started_wall = 0.0

    @property
    def url(self) -> str:
        return self.prom.url if self.prom is not None else ""

    def start(self) -> str:
        """Start Prometheus scraping every service and wait for its first samples; its URL."""
        from llmtwin.observe.recording_rules import rules_yaml

        home = self.opts.out / "prometheus"
        shutil.rmtree(home / "data", ignore_errors=True)  # a previous run's samples would mix in
        home.mkdir(parents=True, exist_ok=True)
        rules = home / "rules.yml"
        rules.write_text(rules_yaml())
        self.prom = EmbeddedPrometheus(
            home,
            {name: f"127.0.0.1:{p}" for name, p in self.ports.items()},
            scrape_interval_s=SCRAPE_INTERVAL_S,
            rule_files=[rules],
            port=self.opts.prometheus_port,
        )
        try:
            url = self.prom.start()
            self.prom.wait_for_samples(timeout_s=30.0)
        except TwinError as exc:
            self.stop()
            raise ObserveFailure(exc.args[0]) from None
        self.started_wall = time.time()
        return url

    def settle(self) -> None:
        """Wait until Prometheus has scraped every service after now (the final values)."""
        if self.prom is None:
            return
        after = time.time()
        deadline = time.monotonic() + 10 * SCRAPE_INTERVAL_S + 5.0
        while time.monotonic() < deadline:
            seen = self.prom.api.query("timestamp(up)")
            if len(seen) >= len(self.ports) and all(float(r["value"][1]) > after for r in seen):
                return
            time.sleep(SCRAPE_INTERVAL_S / 4)
        raise ObserveFailure("prometheus: no scrape of the final values")

    def render(self) -> list[str]:
        """Draw every dashboard over the run to ``OUT/dashboards``; the panels without data."""
        from llmtwin.observe.snapshot import render_all

        if self.prom is None:
            return []
        return render_all(self.prom.api, self.opts.out / "dashboards", self.started_wall - 5.0, time.time())

    def stop(self) -> None:
        if self.prom is not None:
            self.prom.stop()
