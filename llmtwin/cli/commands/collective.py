"""``llmtwin collective``: predicted time of a collective over a sweep of message sizes.

``--format vidur-csv`` writes Vidur's network-profile schema (``size`` in bytes, ``num_workers``,
``devices_per_node``, ``time_stats.<collective>.median`` in ms).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.common import int_list, print_json
from llmtwin.errors import ConfigurationError
from llmtwin.hardware import HardwareCatalog
from llmtwin.physics.collectives import Collective, collective_time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("collective", help=COMMANDS["collective"].help)
    p.add_argument("--hardware", required=True, help="hardware name (see `llmtwin list`) or a .toml path")
    p.add_argument(
        "--op", choices=("all_reduce", "all_gather", "send_recv"), default="all_reduce", help="the collective"
    )
    p.add_argument("--world", type=int, required=True, help="devices taking part")
    p.add_argument("--bytes", required=True, help="comma-separated payload sizes per rank, bytes")
    p.add_argument(
        "--devices-per-node", type=int, default=None,
        help="devices of the group per node (default: as many as the node holds); fewer spans nodes",
    )  # fmt: skip
    p.add_argument("--format", choices=("vidur-csv", "json", "table"), default="table", help="output format")
    p.add_argument("--catalog", action="append", type=Path, default=[], help="extra catalog directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    hw = HardwareCatalog([d / "hardware" for d in args.catalog]).get(args.hardware)
    if args.world < 1:
        raise ConfigurationError(f"--world must be >= 1, got {args.world}")
    per_node = min(args.world, hw.link.devices_per_node)
    if args.devices_per_node is not None:
        if not 1 <= args.devices_per_node <= hw.link.devices_per_node:
            raise ConfigurationError(
                f"--devices-per-node must be 1-{hw.link.devices_per_node} on {hw.name}, got {args.devices_per_node}"
            )
        per_node = min(args.world, args.devices_per_node)
        # A group spread over nodes crosses the scale-out link: shrink the node to the group's share.
        if per_node < args.world:
            hw = dataclasses.replace(hw, link=dataclasses.replace(hw.link, devices_per_node=per_node))
    op: Collective = args.op
    sizes = int_list(args.bytes)
    times_ms = [collective_time(hw, op, args.world, float(s)) * 1e3 for s in sizes]
    if args.format == "json":
        print_json(
            {"hardware": hw.name, "op": op, "world": args.world, "devices_per_node": per_node, "unit": "ms",
             "rows": [{"size": s, "time_ms": t} for s, t in zip(sizes, times_ms, strict=True)]}
        )  # fmt: skip
        return 0
    if args.format == "table":
        print(f"{'bytes':>12} {'ms':>10}   ({op}, {args.world} devices, {per_node} per node)")
        for s, t in zip(sizes, times_ms, strict=True):
            print(f"{s:12d} {t:10.4f}")
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([f"time_stats.{op}.median", "num_workers", "size", "collective", "devices_per_node"])
    for s, t in zip(sizes, times_ms, strict=True):
        writer.writerow([f"{t:.6g}", args.world, s, op, per_node])
    return 0
