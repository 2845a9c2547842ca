"""The pure core never imports the wire, the bus, the services or metrics.

The core is every module under ``llmtwin/`` except the adapters that start processes and
services (``llmtwin/runtime``) and the command line (``llmtwin/cli``). Checked on the source
(every ``import``, function-local ones included) and on a live import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("llmtwin/runtime/", "llmtwin/cli/")
FORBIDDEN = ("proto", "services", "aiohttp", "prometheus_client", "nats", "uvloop", "asyncio")


def core_modules() -> list[Path]:
    paths = sorted((ROOT / "llmtwin").rglob("*.py"))
    return [p for p in paths if not p.relative_to(ROOT).as_posix().startswith(ADAPTERS)]


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_core_module_imports_the_wire_or_the_services() -> None:
    """No ``import`` in the core names proto, services, the bus client or metrics."""
    modules = core_modules()
    assert len(modules) > 50  # the walk found the core
    offenders = {p.relative_to(ROOT).as_posix(): sorted(imported_roots(p) & set(FORBIDDEN)) for p in modules}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_a_core_run_loads_none_of_them() -> None:
    """Running a scenario in-process leaves the wire, the bus and metrics unimported."""
    code = (
        "import sys\n"
        "from llmtwin.cluster.run import run_scenario\n"
        "from llmtwin.scenario.loader import load_scenario\n"
        "run_scenario(load_scenario('demo', overrides=['workload.requests=20']))\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
