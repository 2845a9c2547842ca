"""``llmtwin list``: what the catalog knows (hardware, models, engine profiles) and what can be
run (scenarios, serving policies), one line each."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from llmtwin.cli.commands import COMMANDS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("list", help=COMMANDS["list"].help)
    p.add_argument("--catalog", action="append", type=Path, default=[], help="extra catalog directory")
    p.set_defaults(func=run)


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def run(args: argparse.Namespace) -> int:
    from llmtwin.catalog_files import read_toml
    from llmtwin.cluster.policies import POLICIES
    from llmtwin.hardware import HardwareCatalog
    from llmtwin.models import ModelCatalog
    from llmtwin.physics.overhead import EngineCatalog
    from llmtwin.scenario.loader import scenario_files

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
    print("scenarios:")
    for name, path in sorted(scenario_files().items()):
        description = read_toml(path).get("description", "")
        print(f"  {name:16s} {first_line(str(description))}")
    print("policies:")
    for name, cls in sorted(POLICIES.items()):
        print(f"  {name:16s} {first_line(inspect.getdoc(cls))}")
    return 0
