"""Entry point of the ``llmtwin`` console script.

Each sub-command lives in its own module under ``llmtwin/cli/commands/`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (``args -> int``).
Any :class:`~llmtwin.errors.TwinError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from llmtwin import __version__
from llmtwin.cli import commands
from llmtwin.errors import TwinError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtwin",
        description="Digital twin of a distributed LLM-serving cluster (device physics, PRESERVE, AcceLLM).",
    )
    parser.add_argument("--version", action="version", version=f"llmtwin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except TwinError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmtwin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
