"""Arguments and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llmtwin.errors import ConfigurationError
from llmtwin.hardware import HardwareCatalog, HardwareSpec
from llmtwin.models import ModelCatalog, ModelSpec
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.precision import Precision
from llmtwin.physics.step import StepModel


def add_device_args(p: argparse.ArgumentParser, engine_default: str = "none") -> None:
    """--hardware, --model, --tp, --precision, --engine, --catalog."""
    p.add_argument("--hardware", required=True, help="hardware name (see `llmtwin list`) or a .toml path")
    p.add_argument("--model", required=True, help="model name (see `llmtwin list`) or a .toml path")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (devices per instance)")
    p.add_argument(
        "--precision", default="bf16",
        help="one dtype for everything (bf16, fp16, fp8, int8) or weights=..,activations=..,kv=..",
    )  # fmt: skip
    p.add_argument("--engine", default=engine_default, help="engine-overhead profile (`none` = pure physics)")
    p.add_argument("--catalog", action="append", type=Path, default=[], help="extra catalog directory")


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigurationError(f"expected a comma-separated list of integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigurationError(f"expected positive integers, got {text!r}")
    return values


def resolve(args: argparse.Namespace) -> tuple[HardwareSpec, ModelSpec, Precision]:
    extra = list(getattr(args, "catalog", []))
    hw = HardwareCatalog([d / "hardware" for d in extra]).get(args.hardware)
    model = ModelCatalog([d / "models" for d in extra]).get(args.model)
    return hw, model, Precision.parse(args.precision)


def step_model(args: argparse.Namespace, check_fit: bool = True) -> StepModel:
    hw, model, prec = resolve(args)
    extra = list(getattr(args, "catalog", []))
    engine = EngineCatalog([d / "engines" for d in extra]).get(args.engine)
    if args.tp < 1:
        raise ConfigurationError(f"--tp must be >= 1, got {args.tp}")
    return StepModel(hw, model, args.tp, prec, engine, check_fit=check_fit)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
