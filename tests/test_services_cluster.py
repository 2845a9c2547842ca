"""The twin over the services with PRESERVE plans from the planner service: the in-process results."""

from __future__ import annotations

from service_builders import Connect, run_cluster

from llmtwin.cluster.run import run_scenario
from llmtwin.report.writers import instances_csv, requests_csv
from llmtwin.scenario.loader import load_scenario
from proto.control import RunSpec
from services.cluster import ClusterFactory

PRESERVE = ("workload.requests=20", "cluster.tp=2", "cluster.instances=2", "engine.preserve=true")


async def test_preserve_plans_from_the_planner_service_give_the_in_process_results(
    transport: Connect,
) -> None:
    """Devices sharded over two processes ask the planner service for every plan they miss:
    byte-identical requests.csv and instances.csv, same windows."""
    spec = RunSpec("cluster", "demo", PRESERVE, "colocated")
    outcome, services = await run_cluster(transport, spec, planner=True)
    scenario = load_scenario("demo", PRESERVE, "colocated")
    remote = ClusterFactory().result(spec, outcome)
    local = run_scenario(scenario)
    assert requests_csv(remote, scenario.slo) == requests_csv(local, scenario.slo)
    assert instances_csv(remote) == instances_csv(local)
    assert outcome.stats["windows"] == local.stats["windows"]
    misses = services.registry("planner").get_sample_value("twin_planner_requests_total", {"result": "miss"})
    assert (misses or 0) > 0  # the devices really asked the planner service


def test_run_config_digests_name_the_resolved_run() -> None:
    """The scenario digest changes with any override and is the same for equal specs."""
    factory = ClusterFactory()
    base = RunSpec("cluster", "demo", ("workload.requests=20",))
    assert factory.digest(base) == ClusterFactory().digest(base)
    assert factory.digest(base) != factory.digest(RunSpec("cluster", "demo", ("workload.requests=21",)))
    assert factory.digest(base) != factory.digest(
        RunSpec("cluster", "demo", ("workload.requests=20",), "accellm")
    )
