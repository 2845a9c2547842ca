"""Build the scenario dataclasses from a parsed TOML table, field by field.

The TOML keys are the dataclass field names, so the file layout, the ``--set`` paths and
:func:`~llmtwin.scenario.dump.dump_scenario` all follow llmtwin/scenario/spec.py and cannot drift
from it. Each value is checked against the field's annotation (and, when one is registered, a range
check); unknown keys are rejected with a suggestion, so a typo never silently becomes a default.
Every problem is one :class:`ScenarioError` line naming the file and the dotted field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from llmtwin.errors import ScenarioError

Check = Callable[[Any], str | None]
"""Returns what is wrong with a (type-correct) value, e.g. ``"must be > 0"``, or None."""


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def fraction(value: Any) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(repr(c) for c in choices)}"

    return check


def each(check: Check) -> Check:
    def check_all(values: Any) -> str | None:
        for v in values:
            problem = check(v)
            if problem is not None:
                return f"must have every entry {problem.removeprefix('must be ')}"
        return None

    return check_all


def suggest(key: str, names: list[str]) -> str | None:
    """The known name ``key`` most likely misspells: one it starts (``rate`` for ``rate_rps``)
    or, failing that, the closest by edit similarity."""
    starts = [n for n in names if n.startswith(key) or key.startswith(n)]
    if starts:
        return min(starts, key=lambda n: abs(len(n) - len(key)))
    close = difflib.get_close_matches(key, names, n=1)
    return close[0] if close else None


class TableReader:
    """Turns TOML tables into dataclasses; errors name ``path`` and the dotted field."""

    def __init__(self, path: Path, checks: Mapping[str, Check], overridden: Collection[str] = ()) -> None:
        self.path = path
        self.checks = checks
        self.overridden = overridden

    def error(self, dotted: str, message: str) -> ScenarioError:
        """The one-line error for field ``dotted``, saying when ``--set`` supplied it."""
        parts = dotted.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        via = " (set by --set)" if prefixes & set(self.overridden) else ""
        return ScenarioError(f"{self.path}: field '{dotted}'{via} {message}")

    def build(self, cls: type[Any], table: Mapping[str, Any], prefix: str = "") -> Any:
        """An instance of dataclass ``cls`` from ``table``; ``prefix`` is the table's dotted path."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in sorted(table):
            if key not in fields:
                close = suggest(key, list(fields))
                hint = f"; did you mean '{close}'?" if close else f"; known: {', '.join(fields)}"
                raise self.error(f"{prefix}{key}", f"is not a known field{hint}")
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for name, f in fields.items():
            dotted = f"{prefix}{name}"
            if name not in table:
                required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                if required:
                    raise self.error(dotted, "is missing")
                continue
            values[name] = self.value(table[name], hints[name], dotted)
        return cls(**values)

    def value(self, raw: Any, tp: Any, dotted: str) -> Any:
        """``raw`` checked against annotation ``tp`` and the range check of ``dotted``, if any."""
        value = self._typed(raw, tp, dotted)
        check = self.checks.get(dotted)
        if check is not None:
            problem = check(value)
            if problem is not None:
                raise self.error(dotted, f"{problem}, got {raw!r}")
        return value

    def _typed(self, raw: Any, tp: Any, dotted: str) -> Any:
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            # Optional fields: TOML has no null, so a present value is always the inner type.
            (inner,) = [a for a in get_args(tp) if a is not type(None)]
            return self.value(raw, inner, dotted)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, self._table(raw, dotted), f"{dotted}.")  # type: ignore[arg-type]
        if origin is dict:
            value_type = get_args(tp)[1]
            return {
                str(k): self.value(v, value_type, f"{dotted}.{k}")
                for k, v in self._table(raw, dotted).items()
            }
        if origin is tuple:
            if not isinstance(raw, list):
                raise self.error(dotted, f"must be an array, got {raw!r}")
            item_type = get_args(tp)[0]
            return tuple(self._typed(v, item_type, f"{dotted}[{i}]") for i, v in enumerate(raw))
        return self._scalar(raw, tp, dotted)

    def _table(self, raw: Any, dotted: str) -> Mapping[str, Any]:
        if not isinstance(raw, Mapping):
            raise self.error(dotted, f"must be a table, got {raw!r}")
        return raw

    def _scalar(self, raw: Any, tp: Any, dotted: str) -> Any:
        if tp is Any:
            return raw
        if tp is bool:
            if not isinstance(raw, bool):
                raise self.error(dotted, f"must be true or false, got {raw!r}")
            return raw
        if tp is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise self.error(dotted, f"must be an integer, got {raw!r}")
            return raw
        if tp is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise self.error(dotted, f"must be a number, got {raw!r}")
            if not math.isfinite(raw):
                raise self.error(dotted, f"must be finite, got {raw!r}")
            return float(raw)
        if tp is str:
            if not isinstance(raw, str):
                raise self.error(dotted, f"must be a string, got {raw!r}")
            return raw
        raise TypeError(f"scenario field {dotted} has an annotation the reader does not handle: {tp!r}")
