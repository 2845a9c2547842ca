"""Every kind of scenario mistake is one ScenarioError line naming the file and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from scenario_builders import scenario_table, write_scenario

from llmtwin.errors import ScenarioError
from llmtwin.scenario.loader import load_scenario

CASES: list[tuple[dict[str, Any], str, str]] = [
    # (changes to the minimal scenario, field named in the error, fragment of the message)
    ({"modle": "llama-2-7b"}, "modle", "did you mean 'model'"),
    ({"cluster": {"instance": 2}}, "cluster.instance", "did you mean 'instances'"),
    ({"workload": {"rate": 3.0}}, "workload.rate", "did you mean 'rate_rps'"),
    ({"cluster": {"hardware": None}}, "cluster.hardware", "is missing"),
    ({"model": None}, "model", "is missing"),
    ({"cluster": "h100-sxm"}, "cluster", "must be a table"),
    ({"cluster": {"instances": "4"}}, "cluster.instances", "must be an integer"),
    ({"cluster": {"instances": 2.0}}, "cluster.instances", "must be an integer"),
    ({"cluster": {"instances": 0}}, "cluster.instances", "must be > 0"),
    ({"cluster": {"tp": -2}}, "cluster.tp", "must be > 0"),
    ({"cluster": {"tp": 3}}, "cluster.tp", "does not divide"),
    ({"model": "llama-3-70b"}, "cluster.tp", "do not fit"),
    ({"cluster": {"hardware": "h100-pcie"}}, "cluster.hardware", "unknown hardware"),
    ({"model": "llama-9-7b"}, "model", "unknown model"),
    ({"cluster": {"engine": "vllm-9"}}, "cluster.engine", "unknown engine"),
    ({"cluster": {"precision": "fp7"}}, "cluster.precision", "fp7"),
    ({"cluster": {"inter_instance_link": "pcie"}}, "cluster.inter_instance_link", "must be one of"),
    ({"seed": -1}, "seed", "must be >= 0"),
    ({"seed": True}, "seed", "must be an integer"),
    ({"routing_latency_s": -0.1}, "routing_latency_s", "must be >= 0"),
    ({"description": 3}, "description", "must be a string"),
    ({"workload": {"rate_rps": -1.0}}, "workload.rate_rps", "must be > 0"),
    ({"workload": {"rate_rps": "fast"}}, "workload.rate_rps", "must be a number"),
    ({"workload": {"rate_rps": float("inf")}}, "workload.rate_rps", "must be finite"),
    ({"workload": {"cv": 0}}, "workload.cv", "must be > 0"),
    ({"workload": {"time_scale": 0}}, "workload.time_scale", "must be > 0"),
    ({"workload": {"arrival": "weibull"}}, "workload.arrival", "must be one of"),
    ({"workload": {"lengths": "zipf"}}, "workload.lengths", "must be one of"),
    ({"workload": {"requests": None}}, "workload.requests", "is missing"),
    ({"workload": {"requests": 0}}, "workload.requests", "must be > 0"),
    ({"workload": {"duration_s": -5.0}}, "workload.duration_s", "must be > 0"),
    ({"workload": {"arrival": "trace"}}, "workload.trace", "is missing"),
    ({"workload": {"lengths": "trace"}}, "workload.trace", "is missing"),
    ({"workload": {"arrival": "trace", "trace": "azure-chat"}}, "workload.trace", "unknown trace"),
    (
        {"workload": {"arrival": "trace", "trace": "azure-code", "requests": 9000}},
        "workload.requests",
        "exceeds",
    ),
    (
        {"workload": {"lengths": "fixed", "length_params": {"prompt_tokens": 10}}},
        "workload.length_params.output_tokens",
        "is missing",
    ),
    (
        {"workload": {"length_params": {"prompt_tokens": 10}}},
        "workload.length_params.prompt_tokens",
        "not a parameter",
    ),
    ({"workload": {"length_params": {"x": "a"}}}, "workload.length_params.x", "must be a number"),
    ({"workload": {"max_prompt_tokens": 4096}}, "workload.max_prompt_tokens", "below the 4096-token context"),
    ({"engine": {"watermark": 1.0}}, "engine.watermark", "must be in [0, 1)"),
    ({"engine": {"chunked_prefill": "yes"}}, "engine.chunked_prefill", "must be true or false"),
    ({"engine": {"max_batch_tokens": 2048}}, "engine.max_batch_tokens", "longest prompt"),
    ({"engine": {"shape_bucket": -0.1}}, "engine.shape_bucket", "must be >= 0"),
    ({"slo": {"tbt_stat": "p95"}}, "slo.tbt_stat", "must be one of"),
    ({"slo": {"ttft_s": 0}}, "slo.ttft_s", "must be > 0"),
    ({"policy": {"name": ""}}, "policy.name", "must not be empty"),
    ({"policy": {"name": "accellm", "parameters": {}}}, "policy.parameters", "did you mean 'params'"),
    ({"policies": {"accellm": 3}}, "policies.accellm", "must be a table"),
    ({"sweep": {"rate_rps": [1.0, -2.0]}}, "sweep.rate_rps", "must have every entry > 0"),
    ({"sweep": {"rate_rps": 5.0}}, "sweep.rate_rps", "must be an array"),
    ({"sweep": {"rate_rps": [1.0, "x"]}}, "sweep.rate_rps[1]", "must be a number"),
]


@pytest.mark.parametrize(("changes", "field", "fragment"), CASES, ids=[c[1] + ":" + c[2] for c in CASES])
def test_mistake_is_one_line_naming_file_and_field(
    tmp_path: Path, changes: dict[str, Any], field: str, fragment: str
) -> None:
    """The error is a ScenarioError, one line, with the file path, the field and the reason."""
    path = write_scenario(tmp_path, scenario_table(**changes))
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"llmtwin: {path}: field '{field}'"), message
    assert fragment in message


def test_override_errors_say_they_came_from_set(tmp_path: Path) -> None:
    """A bad --set value is reported on its field with '(set by --set)'."""
    path = write_scenario(tmp_path)
    with pytest.raises(ScenarioError, match=r"field 'cluster\.instances' \(set by --set\) must be > 0"):
        load_scenario(str(path), ["cluster.instances=0"])
    with pytest.raises(ScenarioError, match=r"field 'workload\.rat_rps' \(set by --set\)"):
        load_scenario(str(path), ["workload.rat_rps=3"])


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("workload.rate_rps", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("workload..rate_rps=3", "expected KEY=VALUE"),
        ("workload.rate_rps=", "the value is empty"),
        ("model.name=x", "field 'model' is a value, not a table"),
    ],
)
def test_malformed_overrides_are_one_line_errors(tmp_path: Path, override: str, fragment: str) -> None:
    """A --set that is not KEY=VALUE, or walks into a value, is a ScenarioError quoting it."""
    with pytest.raises(ScenarioError, match="--set") as info:
        load_scenario(str(write_scenario(tmp_path)), [override])
    assert fragment in str(info.value)


def test_empty_policy_argument_is_refused(tmp_path: Path) -> None:
    """--policy with an empty name is an error, not the file's policy."""
    with pytest.raises(ScenarioError, match="--policy"):
        load_scenario(str(write_scenario(tmp_path)), policy=" ")


def test_phase_errors_name_the_phase(tmp_path: Path) -> None:
    """A phase is checked like a workload: its range checks, a duration, no nesting."""
    base = 'name = "x"\nmodel = "llama-2-7b"\n[cluster]\nhardware = "h100-sxm"\ninstances = 2\n'
    cases = {
        "[[workload.phases]]\nrate_rps = 2.0\nrequests = 10\n": "workload.phases[0].duration_s' is missing",
        "[[workload.phases]]\nrate_rps = 2.0\nduration_s = 5.0\n[[workload.phases]]\nrate_rps = -1.0\n"
        "duration_s = 5.0\n": "workload.phases[1].rate_rps' must be > 0",
        '[[workload.phases]]\nduration_s = 5.0\narrival = "trace"\n': "workload.phases[0].trace' is missing",
    }
    for i, (text, message) in enumerate(cases.items()):
        f = tmp_path / f"s{i}.toml"
        f.write_text(base + text)
        with pytest.raises(ScenarioError, match=re.escape(message)):
            load_scenario(str(f))
