"""``--set key=value`` overrides, applied to the parsed TOML before validation.

``key`` is a dotted path into the file's tables (``workload.rate_rps``,
``policies.accellm.decode_split``). ``value`` is read as a TOML value when it is one (``12`` is an
integer, ``1.5`` a float, ``true`` a boolean, ``"x"`` or ``'x'`` a string, ``[1, 2]`` an array)
and is otherwise taken as a bare string (``kv_tokens``). Validation then treats the value exactly
as if the file held it, so a typo in the key is rejected like a typo in the file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from typing import Any

from llmtwin.errors import ScenarioError

_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=1"`` -> ``(["a", "b"], 1)``."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ScenarioError(
            f"--set {text!r}: expected KEY=VALUE with a dotted KEY such as workload.rate_rps=12"
        )
    if not raw:
        raise ScenarioError(f"--set {text!r}: the value is empty")
    return key.split("."), parse_value(raw)


def parse_value(raw: str) -> Any:
    """A TOML value if ``raw`` is one, else ``raw`` itself as a string."""
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


_FAULT = re.compile(
    r"\s*(?:engine|instance)\s*=\s*(\d+)\s*@\s*([0-9.eE+-]+)\s*s?\s*"
    r"(?:,\s*recover\s*=\s*([0-9.eE+-]+)\s*s?\s*)?"
)


def fault_override(specs: Sequence[str]) -> str:
    """``--fault engine=3@30s[,recover=90s]`` (repeatable) as one ``--set faults=[...]`` override:
    instance 3 goes down at 30 s of virtual time and comes back (empty) at 90 s."""
    items = []
    for text in specs:
        m = _FAULT.fullmatch(text)
        if m is None:
            raise ScenarioError(
                f"--fault {text!r}: expected engine=INSTANCE@TIMEs[,recover=TIMEs], e.g. engine=3@30s,recover=90s"
            )
        try:
            at, recover = float(m.group(2)), None if m.group(3) is None else float(m.group(3))
        except ValueError:
            raise ScenarioError(f"--fault {text!r}: the times must be numbers of seconds") from None
        fields = [f"instance = {int(m.group(1))}", f"at_s = {at!r}"]
        if recover is not None:
            fields.append(f"recover_s = {recover!r}")
        items.append("{" + ", ".join(fields) + "}")
    return f"faults=[{', '.join(items)}]"


def apply_overrides(table: dict[str, Any], overrides: Sequence[str]) -> set[str]:
    """Set each override in ``table`` (creating tables on the way); returns the dotted keys set."""
    done: set[str] = set()
    for text in overrides:
        path, value = parse_override(text)
        node = table
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ScenarioError(f"--set {text!r}: field '{where}' is a value, not a table")
            node = child
        node[path[-1]] = value
        done.add(".".join(path))
    return done
