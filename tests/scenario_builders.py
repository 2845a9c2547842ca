"""Small scenario files for the loader tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from llmtwin.scenario.dump import toml_text

MINIMAL: dict[str, Any] = {
    "model": "llama-2-7b",
    "cluster": {"hardware": "h100-sxm", "instances": 2},
    "workload": {"rate_rps": 5.0, "requests": 10},
}
"""The smallest valid scenario: everything else takes its default."""


def scenario_table(**sections: Any) -> dict[str, Any]:
    """MINIMAL with top-level keys replaced and tables updated key by key (None deletes a key)."""
    table = copy.deepcopy(MINIMAL)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(table.get(key), dict):
            for k, v in value.items():
                if v is None:
                    table[key].pop(k, None)
                else:
                    table[key][k] = v
        elif value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def write_scenario(tmp_path: Path, table: dict[str, Any] | None = None, name: str = "mini") -> Path:
    """Write ``table`` (default MINIMAL) as ``<tmp_path>/<name>.toml``."""
    path = tmp_path / f"{name}.toml"
    path.write_text(toml_text(MINIMAL if table is None else table))
    return path
