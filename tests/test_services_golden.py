"""The golden run over the services: the ``demo`` scenario's requests.csv under each policy.

The digests are the ones ``tests/test_report_golden.py`` pins for ``llmtwin simulate demo`` in
``tests/golden/digests.json``, the one place a change of results is acknowledged: the services
must write exactly what the in-process run writes. Re-pin there, on purpose, and say why in
the commit message.
"""

from __future__ import annotations

import pytest
from service_builders import GOLDEN_REQUESTS_CSV, Connect, check_golden, run_cluster

from llmtwin.cluster.run import run_scenario
from llmtwin.observe.agreement import summary_mismatches
from llmtwin.report.summary import summarize
from llmtwin.report.writers import instances_csv, requests_csv
from llmtwin.scenario.loader import load_scenario
from proto.control import RunSpec
from services.cluster import ClusterFactory
from services.exposition import classic_text, samples_from_text

POLICIES = sorted(GOLDEN_REQUESTS_CSV)


@pytest.mark.parametrize("policy", POLICIES)
async def test_demo_over_the_services_gives_the_golden_requests_csv(transport: Connect, policy: str) -> None:
    """The twin as services (generator, balancer, two device processes), every one on its own
    connection: the pinned requests.csv, and instances.csv equal to the in-process run's; and
    the fleet metrics the services export agree with the run's summary.json."""
    spec = RunSpec("cluster", "demo", (), policy)
    outcome, services = await run_cluster(transport, spec)
    scenario = load_scenario("demo", (), policy)
    remote = ClusterFactory().result(spec, outcome)
    check_golden(policy, requests_csv(remote, scenario.slo), "over the services")
    local = run_scenario(scenario)
    assert instances_csv(remote) == instances_csv(local)
    assert outcome.stats["windows"] == local.stats["windows"]
    samples = [s for svc in services.services for s in samples_from_text(classic_text(svc.registry).decode())]
    assert summary_mismatches(samples, summarize(remote, scenario.slo).to_dict()) == []
