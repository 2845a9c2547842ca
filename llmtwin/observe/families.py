"""Every metric family the twin exports, in one tuple: :data:`CATALOG`.

The vLLM compatibility layer (:mod:`llmtwin.observe.vllm_families`), the simulated fleet's own
families (:mod:`llmtwin.observe.twin_families`) and the twin's process health
(:mod:`llmtwin.observe.transport_families`). Docs, dashboards, rules and the exporter read it.
"""

from __future__ import annotations

from llmtwin.errors import ConfigurationError
from llmtwin.observe.catalog import MetricDef, Owner
from llmtwin.observe.transport_families import TRANSPORT_FAMILIES
from llmtwin.observe.twin_families import CLUSTER_FAMILIES, INSTANCE_FAMILIES
from llmtwin.observe.vllm_families import VLLM_FAMILIES

CATALOG: tuple[MetricDef, ...] = VLLM_FAMILIES + INSTANCE_FAMILIES + CLUSTER_FAMILIES + TRANSPORT_FAMILIES

METRICS_MODES = ("vllm+twin", "twin")
"""``--metrics``: ``vllm+twin`` (default) exports the vLLM-compatible families under vLLM's names;
``twin`` exports them under their ``twin_`` names and drops vLLM's deprecated aliases, so a
Prometheus that also scrapes a real vLLM fleet never mixes the two."""


def family(name: str) -> MetricDef:
    """The family called ``name`` (its stored name); KeyError if there is none."""
    for m in CATALOG:
        if m.name == name:
            return m
    raise KeyError(name)


def owned_by(owner: Owner, mode: str = "vllm+twin") -> tuple[MetricDef, ...]:
    """The families ``owner`` exports in metrics ``mode`` (aliases dropped under ``twin``)."""
    if mode not in METRICS_MODES:
        raise ConfigurationError(f"--metrics: {mode!r} is not one of {', '.join(METRICS_MODES)}")
    return tuple(m for m in CATALOG if m.owner is owner and not (mode == "twin" and m.alias_of))
