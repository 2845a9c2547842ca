"""The processes of the twin as ``llmtwin up`` starts them: one per service, with its command line.

The conductor, the generator, the balancer, the device services (the instances sharded over
them) and, where a scenario uses PRESERVE, the planner. ``up`` forks each from itself where it
can (``runtime/forked.py``); ``bench/bench_soak.py`` and ``bench/bench_nats.py`` start the same
command lines as fresh interpreters.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

CONDUCTOR = "conductor"

BALANCER_ACTOR = "device-1"
"""The device service that steps the balancer's windows on the run's path (``--act balancer``),
the balancer service stepping behind it (docs/architecture.md, "The balancer's decisions beside
the instances")."""


@dataclass(frozen=True, slots=True)
class ServiceProc:
    """One service process to start: ``python -m services ROLE --name NAME FLAGS``."""

    name: str
    role: str
    flags: tuple[str, ...] = ()

    def args(self, nats_url: str, http_port: int = 0) -> list[str]:
        """Its arguments after ``python -m services`` (``http_port``: 0 any free port, -1 none)."""
        return [
            self.role,
            "--nats",
            nats_url,
            "--name",
            self.name,
            "--http-port",
            str(http_port),
            *self.flags,
        ]

    def argv(self, nats_url: str, http_port: int = 0) -> list[str]:
        """Its whole command line, with this interpreter."""
        return [sys.executable, "-m", "services", *self.args(nats_url, http_port)]


def cluster_layout(device_processes: int, planner: bool) -> list[ServiceProc]:
    """The twin's services: conductor, generator, balancer, devices (sharded), planner."""
    procs = [ServiceProc(CONDUCTOR, "conductor"), ServiceProc("generator", "generator")]
    procs.append(ServiceProc("balancer", "balancer"))
    n = device_processes
    # One device decides the dispatches beside its instances, off the conductor's round trips.
    for k in range(1, n + 1):
        name = f"device-{k}"
        act = ("--act", "balancer") if name == BALANCER_ACTOR else ()
        procs.append(ServiceProc(name, "device", ("--shard", f"{k}/{n}", *act)))
    if planner:
        procs.append(ServiceProc("planner", "planner"))
    return procs
