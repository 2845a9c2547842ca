"""The sub-commands: one module each, exposing ``register(subparsers)``.

:data:`COMMANDS` names them with their one-line help, so that ``llmtwin --help`` (and every
other command) starts without importing the modules of the commands it does not run: some pull
in matplotlib, scipy or the bus. A module's ``register`` passes ``help=COMMANDS[name].help``
(the ``up`` and ``service`` modules spell theirs out; a test keeps the two equal).
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    module: str
    """Module under ``llmtwin.cli.commands``."""
    help: str


COMMANDS: dict[str, Command] = {
    "calibrate": Command(
        "calibrate", "fit a device's efficiency shape (and an engine profile) to measured timings"
    ),
    "capacity": Command(
        "capacity", "highest rate each policy serves within the SLOs (or the smallest cluster for a rate)"
    ),
    "collective": Command("collective", "predicted collective times over message sizes (Vidur CSV format)"),
    "compare": Command("compare", "run one scenario under several policies side by side"),
    "dashboards": Command(
        "dashboards", "write or check the Grafana dashboards, or render them to PNG from a Prometheus"
    ),
    "faults": Command("faults", "what a simulated accelerator failure costs each policy"),
    "keys": Command(
        "keys", "generate the NATS users' keys of compose.yaml (.env) and nats-server's configuration"
    ),
    "l2-sweep": Command("l2_sweep", "L2-size design sweep: decode perf per cost with and without PRESERVE"),
    "list": Command("list_catalog", "list known hardware, models, engine profiles, scenarios and policies"),
    "ops": Command("ops", "predicted per-layer op times over token counts (Vidur CSV format)"),
    "preserve": Command(
        "preserve", "one decode step: vanilla vs fused GEMM+allreduce vs PRESERVE L2 prefetching"
    ),
    "run": Command(
        "run", "drive one run on services already attached to a NATS server (compose, `llmtwin service`)"
    ),
    "service": Command(
        "service",
        "run one twin service (conductor, generator, balancer, device, planner) against a NATS server",
    ),
    "simulate": Command("simulate", "run one scenario and summarise it"),
    "step": Command("step", "cost of one prefill or decode iteration, op by op"),
    "sweep": Command("sweep", "run a scenario over several arrival rates (latency versus load)"),
    "trace-stats": Command(
        "trace_stats",
        "statistics of request traces (count, rate, inter-arrival CV, token percentiles)",
    ),
    "up": Command("up", "run a scenario as services over an embedded NATS server (one process per service)"),
}
"""Command name -> its module and one-line help, in the order ``--help`` lists them."""
