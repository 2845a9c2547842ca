"""``llmtwin list``: the hardware, models and engine profiles the catalog knows."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.overhead import EngineCatalog


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("list", help="list known hardware, models and engine profiles")
    p.add_argument("--catalog", action="append", type=Path, default=[], help="extra catalog directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    extra: list[Path] = args.catalog
    hw = HardwareCatalog([d / "hardware" for d in extra])
    print("hardware:")
    for name in hw.names():
        spec = hw.get(name)
        print(f"  {name:16s} {spec.description}")
    models = ModelCatalog([d / "models" for d in extra])
    print("models:")
    for name in models.names():
        m = models.get(name)
        print(f"  {name:16s} {m.total_params() / 1e9:7.2f} B params, {m.layers} layers")
    print("engines:")
    for name in EngineCatalog([d / "engines" for d in extra]).names():
        print(f"  {name}")
    return 0
