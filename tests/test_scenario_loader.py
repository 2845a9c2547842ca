"""Scenario files: shipped scenarios, defaults, policy selection, paths and the effective dump."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from scenario_builders import scenario_table, write_scenario

import llmtwin
from llmtwin.errors import ScenarioError
from llmtwin.models import ModelCatalog
from llmtwin.scenario.dump import dump_scenario, scenario_toml
from llmtwin.scenario.loader import load_scenario, scenario_names
from llmtwin.scenario.spec import EngineConfig
from llmtwin.workload.generate import generate_requests

REQUIRED = ["w1", "demo", "paper-h100-conv", "paper-h100-code", "paper-910b2-conv", "paper-910b2-code"]


def test_the_required_scenarios_ship() -> None:
    """w1, demo and the four paper scenarios are known by name."""
    assert set(REQUIRED) <= set(scenario_names())


@pytest.mark.parametrize("name", scenario_names())
def test_every_shipped_scenario_loads_and_generates(name: str) -> None:
    """Each shipped scenario validates, and its workload generates within the model's context."""
    s = load_scenario(name)
    assert s.name == name
    assert s.description
    context = ModelCatalog().get(s.model).max_context
    reqs = generate_requests(dataclasses.replace(s.workload, requests=50), s.seed, context)
    assert len(reqs) == 50
    assert all(r.prompt_tokens + r.output_tokens <= context for r in reqs)


@pytest.mark.parametrize("policy", ["colocated", "disaggregated", "accellm"])
@pytest.mark.parametrize("name", REQUIRED)
def test_shipped_scenarios_carry_parameters_for_every_policy(name: str, policy: str) -> None:
    """`--policy P` on a shipped scenario finds P's parameter table."""
    s = load_scenario(name, policy=policy)
    assert s.policy.name == policy
    assert s.policy.params == s.policies[policy]
    assert s.policy.params


def test_w1_is_the_benchmark_of_the_issue() -> None:
    """w1: Llama-2-7B, h100-sxm, TP1, 4 instances, colocated, Poisson 20 req/s, Azure conv, 10,000."""
    s = load_scenario("w1")
    assert (s.model, s.cluster.hardware, s.cluster.tp, s.cluster.instances) == (
        "llama-2-7b",
        "h100-sxm",
        1,
        4,
    )
    assert s.policy.name == "colocated"
    w = s.workload
    assert (w.arrival, w.rate_rps, w.lengths, w.requests) == ("poisson", 20.0, "azure-conv", 10_000)


def test_paper_scenarios_have_a_load_sweep_and_an_even_instance_count() -> None:
    """The paper scenarios pair their instances and sweep an increasing range of rates."""
    for name in REQUIRED[2:]:
        s = load_scenario(name)
        assert s.cluster.instances % 2 == 0
        rates = s.sweep.rate_rps
        assert len(rates) >= 5
        assert list(rates) == sorted(rates)
        assert rates[0] < s.workload.rate_rps < rates[-1]


def test_top_level_scenarios_directory_is_the_shipped_one() -> None:
    """`scenarios/` at the repository root shows the same files the package ships."""
    root = Path(llmtwin.__file__).resolve().parents[1] / "scenarios"
    assert root.resolve() == (Path(llmtwin.__file__).resolve().parent / "data" / "scenarios")
    assert load_scenario(str(root / "w1.toml")) == load_scenario("w1")


def test_minimal_file_takes_defaults_and_its_name_from_the_file(tmp_path: Path) -> None:
    """Omitted fields take the spec defaults; a missing name is the file stem."""
    s = load_scenario(str(write_scenario(tmp_path, name="tiny")))
    assert s.name == "tiny"
    assert s.engine == EngineConfig()
    assert s.policy.name == "colocated"
    assert s.cluster.tp == 1
    assert s.workload.lengths == "azure-conv"


def test_file_policy_params_are_its_table_updated_by_policy_params(tmp_path: Path) -> None:
    """[policy.params] refines [policies.<name>] of the file's own policy."""
    table = scenario_table(
        policy={"name": "accellm", "params": {"kv_sync": "lazy"}},
        policies={
            "accellm": {"kv_sync": "eager", "decode_split": "kv_tokens"},
            "colocated": {"routing": "least_kv"},
        },
    )
    path = str(write_scenario(tmp_path, table))
    s = load_scenario(path)
    assert s.policy.params == {"kv_sync": "lazy", "decode_split": "kv_tokens"}
    other = load_scenario(path, policy="colocated")
    assert other.policy.name == "colocated"
    assert other.policy.params == {"routing": "least_kv"}
    assert load_scenario(path, policy="disaggregated").policy.params == {}


def test_relative_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    """A trace CSV beside the scenario file is found whatever the working directory."""
    (tmp_path / "mini.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,2\n1,20,3\n")
    table = scenario_table(
        workload={"arrival": "trace", "trace": "mini.csv", "lengths": "trace", "requests": None}
    )
    s = load_scenario(str(write_scenario(tmp_path, table)))
    assert s.workload.trace == str((tmp_path / "mini.csv").resolve())
    assert len(generate_requests(s.workload, s.seed, 4096)) == 2


@pytest.mark.parametrize("name", REQUIRED)
def test_dumped_scenario_loads_back_equal(tmp_path: Path, name: str) -> None:
    """The effective scenario written as TOML loads back to the same Scenario."""
    s = load_scenario(name, ["workload.rate_rps=3", "seed=11"], policy="disaggregated")
    path = tmp_path / "effective.toml"
    path.write_text(scenario_toml(s))
    assert load_scenario(str(path)) == s


def test_dump_leaves_out_unset_fields() -> None:
    """dump_scenario has no None values (TOML has no null) and uses lists for tuples."""
    d = dump_scenario(load_scenario("paper-h100-conv"))
    assert "duration_s" not in d["workload"]
    assert isinstance(d["sweep"]["rate_rps"], list)
    assert d["policy"]["name"] == "accellm"


def test_unknown_scenario_name_lists_the_known_ones() -> None:
    """An unknown name is one ScenarioError line naming the shipped scenarios."""
    with pytest.raises(ScenarioError, match=r"unknown scenario 'w2'.*w1"):
        load_scenario("w2")


def test_missing_scenario_file_is_an_error(tmp_path: Path) -> None:
    """A path to no file is a ScenarioError naming it."""
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(str(tmp_path / "nope.toml"))


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A TOML syntax error is one ScenarioError line with the file name."""
    path = tmp_path / "broken.toml"
    path.write_text("model = \n")
    with pytest.raises(ScenarioError, match=r"broken\.toml") as info:
        load_scenario(str(path))
    assert "\n" not in str(info.value)
