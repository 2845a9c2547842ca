"""The command line starts fast: only the command being run is imported, and nothing heavy is
imported before it is needed. Also: every command's ``--help`` shows its defaults."""

from __future__ import annotations

import argparse
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmtwin.cli import commands
from llmtwin.cli.commands import COMMANDS
from llmtwin.cli.main import build_parser
from llmtwin.cli.parser import shows_default

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("scipy", "matplotlib", "aiohttp", "prometheus_client")


def loaded_after(code: str) -> list[str]:
    """The heavy top-level packages loaded once ``code`` ran in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return eval(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_cli_and_its_help_load_nothing_heavy() -> None:
    """``llmtwin --help``/``--version``: no scipy, matplotlib, aiohttp or prometheus_client."""
    assert (
        loaded_after("from llmtwin.cli.main import build_parser, main\nbuild_parser([]).format_help()") == []
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["simulate", "demo", "--set", "workload.requests=5", "--quiet"],
        ["simulate", "demo", "--set", "workload.requests=5", "--quiet", "--json"],
    ],
    ids=" ".join,
)
def test_commands_load_nothing_heavy_they_do_not_use(argv: list[str]) -> None:
    """``list`` and a ``simulate`` that writes no plots never import matplotlib or scipy."""
    code = f"import contextlib, io\nfrom llmtwin.cli.main import main\nwith contextlib.redirect_stdout(io.StringIO()):\n    assert main({argv!r}) == 0"
    assert loaded_after(code) == []


def test_every_command_module_is_indexed_with_the_help_it_registers() -> None:
    """COMMANDS (what --help lists without importing) agrees with what each module registers."""
    modules = {m.name for m in pkgutil.iter_modules(commands.__path__)}
    assert {c.module for c in COMMANDS.values()} == modules
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = {a.dest: a.help for a in sub._choices_actions}
    assert listed == {name: c.help for name, c in COMMANDS.items()}


def _options() -> list[tuple[str, argparse.Action, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        (name, action, p.format_help())
        for name, p in sub.choices.items()
        for action in p._actions
        if shows_default(action)
    ]


def test_help_of_every_command_shows_its_defaults() -> None:
    """Every option with a default states it in --help (appended, unless the help says it)."""
    found = _options()
    assert len({name for name, _, _ in found}) >= 8  # most commands have defaulted options
    for name, action, text in found:
        flat = "".join(text.split())  # the help is wrapped, long defaults included
        assert "".join(f"(default: {action.default})".split()) in flat, (name, action.option_strings)
