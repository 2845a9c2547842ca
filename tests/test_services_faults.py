"""Simulated failures over the services: the same records as in one process, every policy.

The fault is part of the scenario (here a ``--fault`` override in the run spec), so the services
run it with no change: the failing instance, its partner and the balancer handle it as internal
events and messages of the core components. Run on both transports (the in-memory bus and a real,
secured nats-server) with the instances on two device hosts.
"""

from __future__ import annotations

import pytest
from service_builders import Connect, run_cluster

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import instances_csv, requests_csv
from llmtwin.scenario.loader import load_scenario
from llmtwin.scenario.overrides import fault_override
from proto.control import RunSpec
from services.cluster import ClusterFactory

OVERRIDES = ("workload.requests=80", fault_override(["engine=1@1.2s,recover=2.4s"]))
"""The demo scenario (4 x H100, 24 req/s): instance 1 fails 1.2 s in, mid-run, and is back at 2.4 s."""


@pytest.mark.parametrize("policy", ["colocated", "colocated-chunked", "disaggregated", "accellm"])
async def test_a_failure_gives_the_same_records_over_the_services(transport: Connect, policy: str) -> None:
    """Byte-identical requests.csv and instances.csv, and the same fault log, in-process and over
    the services; the failure really hit requests."""
    spec = RunSpec("cluster", "demo", OVERRIDES, policy)
    outcome, _ = await run_cluster(transport, spec)
    loaded = load_scenario("demo", OVERRIDES, policy)
    remote = ClusterFactory().result(spec, outcome)
    local = run_scenario(loaded)
    assert local.faults.affected
    assert remote.faults == local.faults
    assert requests_csv(remote, loaded.slo) == requests_csv(local, loaded.slo)
    assert instances_csv(remote) == instances_csv(local)
