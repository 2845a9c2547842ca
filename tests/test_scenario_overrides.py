"""--set KEY=VALUE: value parsing and how overrides reach the validated scenario."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from scenario_builders import write_scenario

from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import apply_overrides, parse_override, parse_value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("12", 12),
        ("-3", -3),
        ("12.5", 12.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("kv_tokens", "kv_tokens"),
        ("llama-2-70b", "llama-2-70b"),
        ('"12"', "12"),
        ("'true'", "true"),
        ("../x.toml", "../x.toml"),
        ("[1, 2.5]", [1, 2.5]),
    ],
)
def test_values_parse_as_toml_or_else_as_strings(raw: str, value: Any) -> None:
    """Integers, floats, booleans, quoted strings and arrays parse as TOML; the rest is a string."""
    parsed = parse_value(raw)
    assert parsed == value
    assert type(parsed) is type(value)


def test_dotted_key_splits_into_a_path() -> None:
    """`policies.accellm.decode_split=kv_tokens` addresses a nested table."""
    assert parse_override("policies.accellm.decode_split=kv_tokens") == (
        ["policies", "accellm", "decode_split"],
        "kv_tokens",
    )


def test_apply_creates_missing_tables_and_reports_the_keys() -> None:
    """Overrides create the tables on their path and return the dotted keys they set."""
    table: dict[str, Any] = {"workload": {"rate_rps": 1.0}}
    done = apply_overrides(table, ["workload.rate_rps=12", "policies.accellm.kv_sync=lazy"])
    assert table == {"workload": {"rate_rps": 12}, "policies": {"accellm": {"kv_sync": "lazy"}}}
    assert done == {"workload.rate_rps", "policies.accellm.kv_sync"}


def test_overrides_reach_the_scenario_with_field_types(tmp_path: Path) -> None:
    """An int for a float field becomes a float; ints, bools and strings land where addressed."""
    s = load_scenario(
        str(write_scenario(tmp_path)),
        [
            "workload.rate_rps=12",
            "cluster.instances=8",
            "engine.chunked_prefill=true",
            "policies.accellm.decode_split=kv_tokens",
            "policy.name=accellm",
            "workload.lengths=fixed",
            "workload.length_params.prompt_tokens=100",
            "workload.length_params.output_tokens=10",
        ],
    )
    assert s.workload.rate_rps == 12.0
    assert isinstance(s.workload.rate_rps, float)
    assert s.cluster.instances == 8
    assert s.engine.chunked_prefill is True
    assert s.policy.name == "accellm"
    assert s.policy.params == {"decode_split": "kv_tokens"}
    assert s.workload.length_params == {"prompt_tokens": 100.0, "output_tokens": 10.0}


def test_later_overrides_win() -> None:
    """Of two --set on one key, the last one counts."""
    s = load_scenario("w1", ["workload.rate_rps=5", "workload.rate_rps=7.5"])
    assert s.workload.rate_rps == 7.5


def test_shipped_scenario_override_does_not_touch_other_fields() -> None:
    """Overriding one field leaves every other field as the file says."""
    base = load_scenario("w1")
    changed = load_scenario("w1", ["workload.rate_rps=12"])
    assert dataclasses.replace(changed, workload=base.workload) == base
