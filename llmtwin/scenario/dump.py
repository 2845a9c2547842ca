"""The effective scenario as plain data (for summary.json) or as a TOML file that loads back.

``load_scenario(<the TOML written by scenario_toml(s)>)`` gives ``s`` again, so a result
directory holds everything needed to rerun it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from llmtwin.scenario.spec import Scenario

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


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


def toml_text(table: Mapping[str, Any]) -> str:
    """Nested tables of strings, numbers, booleans and arrays as a TOML document."""
    lines: list[str] = []
    _emit_table(table, [], lines)
    return "\n".join(lines).strip() + "\n"


def _emit_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines.extend(["", f"[{'.'.join(_key(p) for p in path)}]"])
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars)
    for k, v in tables:
        _emit_table(v, [*path, k], lines)


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # A JSON string literal is a valid TOML basic string (same escapes, \uXXXX included).
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} ({type(v).__name__}) as TOML")
