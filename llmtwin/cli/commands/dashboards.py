"""``llmtwin dashboards``: write or check the generated Grafana dashboards, or render them to PNG.

* ``--write``: regenerate ``grafana/dashboards/*.json`` and ``prometheus/rules.yml`` from
  ``llmtwin/observe/dashboards.py`` and ``recording_rules.py``.
* ``--check``: exit 1 listing every difference (stale or foreign files, queries that do not
  parse, metrics the catalogue does not define). Needs the ``promql-parser`` dev dependency.
* ``--prometheus URL --out DIR``: draw every dashboard's panels from that Prometheus's data
  (range queries) to ``DIR/<dashboard>.png``, for people without a Grafana server.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import llmtwin
from llmtwin.cli.commands import COMMANDS
from llmtwin.errors import ConfigurationError
from llmtwin.observe.dashboards import DASHBOARDS
from llmtwin.observe.grafana import check_generated, write_generated
from llmtwin.observe.snapshot import render_all
from llmtwin.runtime.prometheusd import PrometheusApi


def _project_root() -> Path:
    """The source checkout this llmtwin runs from, else the current directory."""
    root = Path(llmtwin.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h`` -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"--last takes a duration such as 90s, 15m or 1h, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboards",
        help=COMMANDS["dashboards"].help,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the dashboards and recording rules")
    mode.add_argument("--check", action="store_true", help="fail when the generated files are stale or wrong")
    mode.add_argument(
        "--prometheus", metavar="URL", help="render PNGs from this Prometheus (http://host:port)"
    )
    p.add_argument(
        "--root", type=Path, default=None, help="project root for --write/--check (default: this checkout)"
    )
    p.add_argument("--out", type=Path, help="folder for the PNGs (with --prometheus)")
    p.add_argument("--last", default="15m", help="time range to draw, ending now (default: %(default)s)")
    p.add_argument(
        "--require-data",
        action="store_true",
        help="exit 1 when a panel's queries return no series (with --prometheus)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = args.root or _project_root()
    if args.write:
        for path in write_generated(root):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    if args.check:
        problems = check_generated(root)
        for line in problems:
            print(f"llmtwin dashboards: {line}", file=sys.stderr)
        return 1 if problems else 0
    if args.out is None:
        raise ConfigurationError("--prometheus needs --out DIR (where the PNGs go)")
    return _render(PrometheusApi(args.prometheus), args.out, parse_duration(args.last), args.require_data)


def _render(api: PrometheusApi, out: Path, last_s: float, require_data: bool) -> int:
    end = time.time()
    empty = render_all(api, out, end - last_s, end)
    for d in DASHBOARDS:
        print(f"wrote {out / d.uid}.png", file=sys.stderr)
    if empty:
        print(f"panels without data: {', '.join(empty)}", file=sys.stderr)
    return 1 if empty and require_data else 0
