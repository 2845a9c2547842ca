"""llmtwin.tomlw.dumps: what it writes reads back with tomllib, in a fixed layout."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest

from llmtwin.calibrate import toml_out
from llmtwin.scenario import dump
from llmtwin.tomlw import dumps

AWKWARD_STRINGS = [
    "",
    'quote " inside',
    'three """ quotes',
    '""""',
    'ends in a quote"',
    "back\\slash and \\n literally",
    "tab\tand controls \x00 \x1b \x7f \b \f",
    "crlf\r\nline",
    "line one\nline two",
    "\nstarts with a line feed",
    'multi-line\nwith """ and a final quote"',
    "multi-line\nwith a backslash \\ and \x01",
    "non-ASCII: × – µs é 漢字 🙂",
]


def nested_doc() -> dict[str, Any]:
    """A document with every kind of value the writer supports."""
    return {
        "name": "x",
        "count": -7,
        "big": 2**63 - 1,
        "flag": True,
        "off": False,
        "ratio": 0.1 + 0.2,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "neg_zero": -0.0,
        "exp": 5.011e-06,
        "inf": math.inf,
        "ninf": -math.inf,
        "mixed": [1, 2.5, "three", True, [4, [5]], {"inline": 1, "odd key": "v"}],
        "empty_list": [],
        "table": {"a": 1, "sub": {"b": [1.0, 2.0], "deeper": {"c": "d"}}},
        "only_tables": {"inner": {"e": 1}},
        "empty_table": {},
        "sources": {"compute.bf16_tflops": "[V] x", "a b": 1, "": 2, "é": 3, 'q"uote': 4},
    }


def test_nested_document_round_trips() -> None:
    """tomllib.loads(dumps(doc)) == doc for nested tables, arrays, inline tables, numbers and bools."""
    doc = nested_doc()
    assert tomllib.loads(dumps(doc)) == doc


@pytest.mark.parametrize("text", AWKWARD_STRINGS)
def test_strings_needing_escapes_round_trip_as_values_and_keys(text: str) -> None:
    """Quotes, backslashes, controls, line breaks and non-ASCII survive as values and as keys."""
    doc = {"value": text, "table": {text: text}, "array": [text, text]}
    assert tomllib.loads(dumps(doc)) == doc


def test_floats_are_written_exactly_and_read_back_bit_for_bit() -> None:
    """Floats are written with repr and read back to the identical float, including nan."""
    values = [0.1, 1 / 3, 2.0**-1074, 1e16, 123456789.123456789, -2.5e-300, 3.212e-05]
    text = dumps({"v": values, "nan": math.nan})
    back = tomllib.loads(text)
    assert [v.hex() for v in back["v"]] == [v.hex() for v in values]
    assert math.isnan(back["nan"])
    assert "v = [0.1, 0.3333333333333333, 5e-324, 1e+16" in text


def test_layout_values_first_then_one_header_per_table() -> None:
    """Each table lists its values before its sub-tables; a table of only sub-tables has no header."""
    doc = {"b": {"x": 1, "c": {"y": 2}}, "a": 1, "only": {"inner": {"z": 3}}, "empty": {}, "k": "v"}
    assert dumps(doc) == ('a = 1\nk = "v"\n\n[b]\nx = 1\n\n[b.c]\ny = 2\n\n[only.inner]\nz = 3\n\n[empty]\n')


def test_keys_are_bare_only_when_toml_allows_it() -> None:
    """ASCII letters, digits, _ and - stay bare; dotted, spaced, empty and non-ASCII keys are quoted."""
    text = dumps({"ok_key-1": 1, "a.b": 2, "a b": 3, "": 4, "é": 5})
    assert text == 'ok_key-1 = 1\n"a.b" = 2\n"a b" = 3\n"" = 4\n"é" = 5\n'


def test_multi_line_strings_keep_their_lines() -> None:
    """A string with a line break is written as a multi-line string, lines as they are."""
    assert dumps({"notes": "first\nsecond"}) == 'notes = """first\nsecond"""\n'


def test_document_without_top_level_values_starts_with_its_header() -> None:
    """No blank first line when the document holds only tables."""
    assert dumps({"t": {"a": 1}}) == "[t]\na = 1\n"


@pytest.mark.parametrize("bad", [None, b"bytes", {1, 2}, object()])
def test_values_toml_cannot_hold_are_refused(bad: object) -> None:
    """None, bytes, sets and other objects raise TypeError naming the value's type."""
    with pytest.raises(TypeError, match=type(bad).__name__):
        dumps({"k": bad})


def test_unrepresentable_integers_strings_and_keys_are_refused() -> None:
    """Integers beyond 64 bits, lone surrogates and non-string keys raise instead of writing bad TOML."""
    with pytest.raises(ValueError, match="64-bit"):
        dumps({"k": 2**63})
    with pytest.raises(ValueError, match="surrogate"):
        dumps({"k": "\ud800"})
    with pytest.raises(TypeError, match="keys are strings"):
        dumps({"t": {1: "one"}})


def test_calibration_and_scenario_dump_share_the_writer() -> None:
    """The calibration files and the scenario dump are written by the one serialiser."""
    assert toml_out.dumps is dumps
    assert dump.toml_text is dumps
