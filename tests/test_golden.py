"""The golden run: the ``demo`` scenario's requests.csv under each policy, pinned by its digest.

Any change to the twin's results changes these digests, in-process and over the services
alike. When a change of results is intended (a model fix, a policy change), update the digest
of each affected policy here, on purpose, and say why in the commit message: that is the only
place a change of results is acknowledged.
"""

from __future__ import annotations

import hashlib

import pytest
from service_builders import Connect, run_cluster

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import instances_csv, requests_csv
from llmtwin.scenario.loader import load_scenario
from proto.control import RunSpec
from services.cluster import ClusterFactory

GOLDEN_REQUESTS_CSV = {
    "colocated": "05abc804dbff7ae94c0f61530edcda31f94df8a47b0d42c8e6c2c6e006cdcef1",
    "disaggregated": "808a811e7708fcba951e55f2b520c3cd13148b53f58cf5d12db8b6437fba1958",
    "accellm": "5495ba051e3d1c147ec243ab40f6369d8f6a9c9fa0567376b5af99d882a40a99",
}
"""sha256 of ``llmtwin simulate demo --policy P``'s requests.csv, per policy."""

POLICIES = sorted(GOLDEN_REQUESTS_CSV)


def check_golden(policy: str, csv: str, where: str) -> None:
    got = hashlib.sha256(csv.encode()).hexdigest()
    assert got == GOLDEN_REQUESTS_CSV[policy], (
        f"requests.csv of the demo scenario under {policy} ({where}) changed: sha256 {got}. "
        f"If this change of results is intended, set GOLDEN_REQUESTS_CSV[{policy!r}] = {got!r} "
        "in tests/test_golden.py and say why in the commit message."
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_demo_in_process_gives_the_golden_requests_csv(policy: str) -> None:
    """What `llmtwin simulate demo --policy P` writes is the pinned requests.csv."""
    scenario = load_scenario("demo", (), policy)
    check_golden(policy, requests_csv(run_scenario(scenario), scenario.slo), "in-process")


@pytest.mark.parametrize("policy", POLICIES)
async def test_demo_over_the_services_gives_the_golden_requests_csv(transport: Connect, policy: str) -> None:
    """The twin as services (generator, balancer, two device processes), every one on its own
    connection: the pinned requests.csv, and instances.csv equal to the in-process run's."""
    spec = RunSpec("cluster", "demo", (), policy)
    outcome, _ = await run_cluster(transport, spec)
    scenario = load_scenario("demo", (), policy)
    remote = ClusterFactory().result(spec, outcome)
    check_golden(policy, requests_csv(remote, scenario.slo), "over the services")
    local = run_scenario(scenario)
    assert instances_csv(remote) == instances_csv(local)
    assert outcome.stats["windows"] == local.stats["windows"]
