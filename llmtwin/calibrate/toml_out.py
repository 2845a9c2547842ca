"""Write the hardware and engine TOML files a calibration produces (through :mod:`llmtwin.tomlw`).

The hardware file is the base file's content with the fitted fields added, so whatever the base
file holds (arrays such as ``allreduce_bus_efficiency_by_world`` included) is written back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmtwin.errors import CalibrationError
from llmtwin.tomlw import dumps

__all__ = ["SIGNIFICANT_DIGITS", "dumps", "round_sig", "write"]

SIGNIFICANT_DIGITS = 4
"""Fitted values are rounded to this many significant digits (the data do not support more)."""


def round_sig(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def write(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` as UTF-8 (parent directories created)."""
    text = dumps(doc)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot write: {exc.strerror}") from None
