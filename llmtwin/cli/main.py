"""Entry point of the ``llmtwin`` console script.

Each sub-command lives in its own module under ``llmtwin/cli/commands/`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (``args -> int``).
Only the module of the command being run is imported (the others are listed from
:data:`~llmtwin.cli.commands.COMMANDS`), so ``--help``, ``--version`` and ``list`` start in a
fraction of a second. Any :class:`~llmtwin.errors.TwinError` becomes one line on stderr and exit
code 2. A reader of standard output that stops reading (``llmtwin ... | head``) ends the command
quietly with exit code 0; any other broken pipe is the failure it is.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Collection, Sequence

from llmtwin import __version__
from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.parser import TwinParser
from llmtwin.errors import TwinError


def build_parser(registered: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser. The commands in ``registered`` (all when None) have their modules imported and
    their arguments registered; the others are only one-line entries of the listing."""
    parser = TwinParser(
        prog="llmtwin",
        description="Digital twin of a distributed LLM-serving cluster (device physics, PRESERVE, AcceLLM).",
    )
    parser.add_argument("--version", action="version", version=f"llmtwin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        if registered is None or name in registered:
            importlib.import_module(f"llmtwin.cli.commands.{cmd.module}").register(sub)
        else:
            sub.add_parser(name, help=cmd.help)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command named on the command line: the first argument that is not an option (the
    top-level parser has only flags), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    command = command_of(args_in)
    parser = build_parser([command] if command else [])
    args = parser.parse_args(args_in)
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
        if not _reader_gone():
            raise  # one of the command's own pipes or sockets, not the reader of its output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush says nothing
        return 0
    return code


def _reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (poll reports an error)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, ValueError, OSError):  # no poll (Windows), or no descriptor (captured)
        return False
    return any(events & select.POLLERR for _, events in poll.poll(0))


if __name__ == "__main__":
    sys.exit(main())
