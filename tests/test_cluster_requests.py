"""scenario_requests: the one place a run's requests come from, in one process and over services."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from scenario_builders import scenario_table, write_scenario

from llmtwin.cluster.components import Generator
from llmtwin.cluster.run import run_scenario, scenario_requests
from llmtwin.models import ModelCatalog
from llmtwin.runtime.run_size import RunLimits
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.spec import ClusterSpec, Scenario, WorkloadSpec
from proto.control import RunSpec
from services.cluster import ClusterFactory


def long_prompt_scenario(model: str, seed: int = 0) -> Scenario:
    """Eight requests with 6000-token prompts and 100-token outputs on one H100."""
    lengths = {"prompt_tokens": 6000.0, "output_tokens": 100.0}
    return Scenario(
        name="requests",
        model=model,
        cluster=ClusterSpec(hardware="h100-sxm", instances=1),
        workload=WorkloadSpec(rate_rps=4.0, requests=8, lengths="fixed", length_params=lengths),
        seed=seed,
    )


def test_requests_are_clipped_to_the_scenario_models_context() -> None:
    """A 6000-token prompt is trimmed to fit Llama-2-7B's 4096 tokens and kept whole for Mistral-7B."""
    short = scenario_requests(long_prompt_scenario("llama-2-7b"))
    long = scenario_requests(long_prompt_scenario("mistral-7b"))
    assert ModelCatalog().get("llama-2-7b").max_context == 4096
    assert [(r.prompt_tokens, r.output_tokens) for r in short] == [(3996, 100)] * 8
    assert [(r.prompt_tokens, r.output_tokens) for r in long] == [(6000, 100)] * 8


def test_requests_follow_the_scenario_seed() -> None:
    """The same scenario gives the same requests; another seed gives other arrival times."""
    s = long_prompt_scenario("llama-2-7b", seed=3)
    assert scenario_requests(s) == scenario_requests(s)
    other = scenario_requests(dataclasses.replace(s, seed=4))
    assert [r.arrival_s for r in other] != [r.arrival_s for r in scenario_requests(s)]


def test_run_scenario_runs_the_scenario_requests() -> None:
    """Without explicit requests, run_scenario's records are scenario_requests' requests."""
    s = long_prompt_scenario("llama-2-7b", seed=5)
    result = run_scenario(s)
    got = [(r.rid, r.arrival_s, r.prompt_tokens, r.output_tokens) for r in result.requests]
    want = [(r.rid, r.arrival_s, r.prompt_tokens, r.output_tokens) for r in scenario_requests(s)]
    assert got == want


def test_cluster_factory_generator_holds_the_scenario_requests(tmp_path: Path) -> None:
    """The service factory's generator sends exactly the requests a one-process run would (the
    scenario file in a directory the services may read)."""
    path = write_scenario(tmp_path, scenario_table(seed=7))
    spec = RunSpec("cluster", str(path))
    comps = ClusterFactory(limits=RunLimits(scenario_dirs=(str(tmp_path),))).build(spec)
    generator = next(c for c in comps if isinstance(c, Generator))
    want = scenario_requests(load_scenario(str(path), (), None))
    assert generator.requests == want
    assert len(want) == 10
