"""The effective scenario as plain data (for summary.json) or as a TOML file that loads back.

``load_scenario(<the TOML written by scenario_toml(s)>)`` gives ``s`` again, so a result
directory holds everything needed to rerun it. The TOML text comes from :mod:`llmtwin.tomlw`
(``toml_text`` is its ``dumps``, kept under this name for callers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llmtwin.scenario.spec import Scenario
from llmtwin.tomlw import dumps as toml_text

__all__ = ["dump_scenario", "scenario_toml", "toml_text"]


def dump_scenario(s: Scenario) -> dict[str, Any]:
    """Nested dicts of the scenario's fields in file layout; unset optional fields are left out
    (TOML has no null) and tuples become lists."""
    out: dict[str, Any] = _plain(s)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def scenario_toml(s: Scenario) -> str:
    """The scenario as a TOML document."""
    return toml_text(dump_scenario(s))
