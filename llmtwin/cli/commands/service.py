"""``llmtwin service ROLE --nats URL ...``: run one service against a given NATS server.

What a compose file (or an operator) starts: one process per service. ``llmtwin up`` starts
the same services with ``python -m services ROLE ...``, which takes the same flags.
"""

from __future__ import annotations

import argparse

from services.main import add_service_args, run_from_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "service",
        help="run one twin service (conductor, generator, balancer, device, planner) against a NATS server",
        description="Run one service until SIGTERM/SIGINT. Every flag can also be set as TWIN_<FLAG> "
        "in the environment (e.g. TWIN_NATS_URL, TWIN_SHARD).",
    )
    add_service_args(p)
    p.set_defaults(func=run_from_args)
