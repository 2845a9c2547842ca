"""``llmtwin calibrate``: fit a device (and an engine profile) to measured timings, write files.

Example (the shipped A100 files were produced this way)::

    llmtwin calibrate --hardware a100-80g \\
        --ops ../shared/data/measured-a100 \\
        --collectives ../shared/data/measured-a100/a100_dgx.all_reduce.csv \\
                      ../shared/data/measured-a100/a100_dgx.send_recv.csv \\
        --iterations ../shared/data/measured-a100/splitwise_dgx_a100_iterations.csv \\
        --engine-name splitwise-dgx-a100 \\
        --out llmtwin/data/hardware/a100-80g.toml
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from llmtwin.calibrate.toml_out import write
from llmtwin.catalog_files import find_files, read_toml
from llmtwin.cli.commands import COMMANDS
from llmtwin.errors import CalibrationError, UnknownHardware
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog
from llmtwin.physics.precision import Precision


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate",
        help=COMMANDS["calibrate"].help,
        description="Fit kernel-shape efficiency fields to Vidur-format operator and collective "
        "timings, and optionally an engine-overhead profile to splitwise-format iteration times; "
        "write a hardware file (and an engine file) and print the fit-error tables.",
    )
    p.add_argument(
        "--hardware", required=True, help="base hardware (name or .toml): its spec figures are kept"
    )
    p.add_argument("--ops", nargs="+", type=Path, default=[], help="Vidur *.mlp.csv files or directories")
    p.add_argument(
        "--collectives", "--allreduce", nargs="+", type=Path, default=[], dest="collectives",
        help="Vidur collective CSVs (all_reduce, send_recv)",
    )  # fmt: skip
    p.add_argument("--iterations", type=Path, help="splitwise-sim perf_model-format CSV of iteration times")
    p.add_argument(
        "--iterations-hardware", default=None,
        help="keep only iteration rows with this value in the 'hardware' column (default: all)",
    )  # fmt: skip
    p.add_argument("--engine-name", default="calibrated", help="name of the fitted engine profile")
    p.add_argument("--engine-description", default="", help="description written into the engine file")
    p.add_argument("--out", type=Path, required=True, help="hardware .toml to write")
    p.add_argument("--engine-out", type=Path, help="engine .toml to write (default: beside --out, see docs)")
    p.add_argument("--report", type=Path, help="also write the fit-error tables to this markdown file")
    p.add_argument("--max-tokens", type=int, default=4096, help="fit operator points up to this many tokens")
    p.add_argument(
        "--max-batched-tokens", type=int, default=None,
        help="prompt tokens the measured framework ran per forward pass (default: its longest single prompt)",
    )  # fmt: skip
    p.add_argument("--precision", default="bf16", help="precision the measurements were taken at")
    p.add_argument("--catalog", action="append", type=Path, default=[], help="extra catalog directory")
    p.set_defaults(func=run)


def _hardware_path(name: str, extra: list[Path]) -> Path:
    if name.endswith(".toml"):
        return Path(name)
    files = find_files("hardware", [d / "hardware" for d in extra])
    if name not in files:
        raise UnknownHardware(f"unknown hardware {name!r}; known: {', '.join(sorted(files))}")
    return files[name]


def _engine_out(args: argparse.Namespace) -> Path:
    if args.engine_out is not None:
        return Path(args.engine_out)
    out: Path = args.out
    folder = out.parent.parent / "engines" if out.parent.name == "hardware" else out.parent
    return folder / f"{args.engine_name}.toml"


def _provenance(args: argparse.Namespace) -> str:
    """The command line that reproduces this calibration (paths as the user gave them)."""
    parts = ["llmtwin", "calibrate", "--hardware", args.hardware]
    if args.ops:
        parts += ["--ops", *map(str, args.ops)]
    if args.collectives:
        parts += ["--collectives", *map(str, args.collectives)]
    if args.iterations:
        parts += ["--iterations", str(args.iterations), "--engine-name", args.engine_name]
        if args.iterations_hardware:
            parts += ["--iterations-hardware", args.iterations_hardware]
    if args.max_tokens != 4096:
        parts += ["--max-tokens", str(args.max_tokens)]
    if args.precision != "bf16":
        parts += ["--precision", args.precision]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    # scipy and matplotlib: imported only when calibrating.
    from llmtwin.calibrate.render import render
    from llmtwin.calibrate.run import Inputs, calibrate, engine_document, hardware_document

    if not (args.ops or args.collectives or args.iterations):
        raise CalibrationError("nothing to fit: give --ops, --collectives and/or --iterations")
    extra: list[Path] = args.catalog
    base_path = _hardware_path(args.hardware, extra)
    hardware = HardwareCatalog([d / "hardware" for d in extra]).get(str(base_path))
    models = ModelCatalog([d / "models" for d in extra])
    prec = Precision.parse(args.precision)
    inputs = Inputs(
        hardware=hardware,
        op_paths=args.ops,
        collective_paths=args.collectives,
        iteration_path=args.iterations,
        iteration_hardware=args.iterations_hardware,
        engine_name=args.engine_name,
        max_tokens=args.max_tokens,
        max_batched_tokens=args.max_batched_tokens,
        precision=prec,
    )
    result = calibrate(inputs, models.get)
    command = _provenance(args)
    write(args.out, hardware_document(read_toml(base_path), result, command))
    print(f"wrote {args.out}")
    if result.engine is not None:
        description = args.engine_description or f"fitted on {args.iterations.name}"
        engine_path = _engine_out(args)
        write(engine_path, engine_document(result.engine, description, command))
        print(f"wrote {engine_path}")
    text = render(result, prec, args.max_tokens)
    print()
    print(text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
    return 0
