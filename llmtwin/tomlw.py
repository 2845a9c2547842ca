"""Write TOML documents: nested tables of strings, numbers, booleans, arrays and inline tables.

The standard library reads TOML (``tomllib``) but does not write it; the calibration (hardware
and engine files) and the scenario dump (``scenario.toml`` of a result directory) both write it
through :func:`dumps`, so ``tomllib.loads(dumps(doc)) == doc`` for every document they produce.

Layout: in every table the plain values come first, then one ``[dotted.header]`` section per
sub-table (a table holding only sub-tables gets no header of its own). Floats are written with
``repr``, which is the shortest text that reads back to the same float. Strings stay readable:
non-ASCII characters are written as they are (files are UTF-8), and a string holding a line
break is written as a multi-line string with its lines as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INT64 = 2**63

_NAMED_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
_BASIC_ESCAPES = {
    **{i: f"\\u{i:04x}" for i in [*range(0x20), 0x7F]},
    **{ord(c): e for c, e in _NAMED_ESCAPES.items()},
}
"""Characters a one-line basic string must escape: controls (DEL included), quote, backslash."""
_MULTILINE_ESCAPES = {k: v for k, v in _BASIC_ESCAPES.items() if chr(k) not in '\n\t"'}
"""The same for a multi-line basic string, where line feeds, tabs and lone quotes may stand."""
_QUOTE_RUN = re.compile(r'"(?="|\Z)')
"""A quote followed by another quote, or ending the string: escaped so that no ``\"\"\"`` (or
quote just before the closing delimiter) can end a multi-line string early."""


def dumps(doc: Mapping[str, Any]) -> str:
    """TOML text for ``doc`` (string keys; values str, int, float, bool, list/tuple, mapping).

    Raises ``TypeError`` for any other value or a non-string key, ``ValueError`` for an integer
    outside TOML's 64 bits or a string with a lone surrogate (neither is representable).
    """
    lines: list[str] = []
    _emit_table(doc, [], lines)
    if lines and lines[0] == "":
        del lines[0]  # a document without top-level values starts with its first header
    return "\n".join(lines) + "\n"


def _emit_table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    values = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    # An empty table needs its header to exist at all; one with only sub-tables does not.
    if path and (values or not tables):
        lines.extend(["", f"[{'.'.join(_key(p) for p in path)}]"])
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in values)
    for k, v in tables:
        _emit_table(v, [*path, k], lines)


def _key(k: object) -> str:
    if not isinstance(k, str):
        raise TypeError(f"TOML keys are strings, got {k!r} ({type(k).__name__})")
    return k if _BARE_KEY.fullmatch(k) else _basic_string(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):  # before int: bool is a subclass of int
        return "true" if v else "false"
    if isinstance(v, int):
        if not -_INT64 <= v < _INT64:
            raise ValueError(f"integer {v} does not fit TOML's 64-bit integers")
        return str(v)
    if isinstance(v, float):
        # repr is TOML for every float ('nan', 'inf', '-inf', '1e-05', '-0.0' included) and the
        # shortest text that reads back to the same float.
        return repr(v)
    if isinstance(v, str):
        return _multiline_string(v) if "\n" in v else _basic_string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} ({type(v).__name__}) as TOML")


def _check_scalars(s: str) -> None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        raise ValueError(f"string {s!r} holds a lone surrogate, which TOML (UTF-8) cannot hold")


def _basic_string(s: str) -> str:
    _check_scalars(s)
    return '"' + s.translate(_BASIC_ESCAPES) + '"'


def _multiline_string(s: str) -> str:
    _check_scalars(s)
    body = _QUOTE_RUN.sub('\\\\"', s.translate(_MULTILINE_ESCAPES))
    if body.startswith("\n"):
        body = "\\n" + body[1:]  # TOML drops a line feed right after the opening delimiter
    return '"""' + body + '"""'
