"""The :class:`~llmtwin.observe.observations.RunInfo` of a scenario: labels and cluster constants."""

from __future__ import annotations

from llmtwin.cluster.context import instance_id
from llmtwin.cluster.run import step_model
from llmtwin.observe.observations import RunInfo
from llmtwin.scenario.spec import Scenario


def run_info(run_id: str, scenario: Scenario) -> RunInfo:
    """What every exporter knows about run ``run_id`` of ``scenario`` from its start."""
    step = step_model(scenario)
    c = scenario.cluster
    engines = tuple(instance_id(i) for i in range(c.instances))
    pairs = (
        tuple((engines[k], engines[k + 1]) for k in range(0, c.instances - 1, 2))
        if scenario.policy.name == "accellm"
        else ()
    )
    return RunInfo(
        run_id=run_id,
        scenario=scenario.name,
        policy=scenario.policy.name,
        model_name=step.model.name,
        hardware=step.hw.name,
        devices=c.instances * c.tp,
        usd_per_device_hour=step.hw.usd_per_hour,
        slo_ttft_s=scenario.slo.ttft_s,
        slo_tbt_s=scenario.slo.tbt_s,
        slo_tbt_stat=scenario.slo.tbt_stat,
        pairs=pairs,
        max_model_len=step.model.max_context,
        engines=engines,
    )
