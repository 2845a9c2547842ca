"""``llmtwin keys``: fresh NATS keys for the compose deployment (see llmtwin/runtime/compose_keys.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmtwin.cli.commands import COMMANDS
from llmtwin.runtime.compose_keys import write_keys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keys",
        help=COMMANDS["keys"].help,
        description="Write a fresh nkey seed and public key for every service of compose.yaml into "
        "the .env file (readable by its owner only; its other lines are kept) and nats-server/nats-server.conf. "
        "Run it once before `docker compose up`, and again to replace every key.",
    )
    p.add_argument("--env-file", type=Path, default=Path(".env"), help="where the keys go (default: .env)")
    p.add_argument(
        "--conf", type=Path, default=Path("nats-server/nats-server.conf"),
        help="nats-server configuration to write (default: nats-server/nats-server.conf)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    users = write_keys(args.env_file, args.conf)
    print(f"wrote keys of {', '.join(users)} to {args.env_file} (mode 600) and {args.conf}", file=sys.stderr)
    return 0
