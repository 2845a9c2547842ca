"""Write the hardware and engine TOML files a calibration produces.

Only what the catalogs read is written: top-level strings and numbers, then flat tables of
strings, numbers and booleans. The standard library reads TOML but does not write it, and this
subset needs no dependency.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmtwin.errors import CalibrationError

SIGNIFICANT_DIGITS = 4
"""Fitted values are rounded to this many significant digits (the data do not support more)."""


def round_sig(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        if "\n" in v:
            return '"""' + v.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'
        return json.dumps(v, ensure_ascii=False)
    raise CalibrationError(f"cannot write {type(v).__name__} value {v!r} to TOML")


def _key(k: str) -> str:
    bare = k.replace("_", "").replace("-", "").isalnum()
    return k if bare else json.dumps(k)


def dumps(doc: Mapping[str, Any]) -> str:
    """TOML text for ``doc``: scalars first, then one ``[table]`` per mapping value."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, Mapping)]
    for k, v in doc.items():
        if isinstance(v, Mapping):
            lines.append("")
            lines.append(f"[{_key(k)}]")
            for kk, vv in v.items():
                if isinstance(vv, Mapping):
                    raise CalibrationError(f"nested table {k}.{kk} is not supported")
                lines.append(f"{_key(kk)} = {_value(vv)}")
    return "\n".join(lines) + "\n"


def write(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` (parent directories created)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(doc))
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot write: {exc.strerror}") from None
