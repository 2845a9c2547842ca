"""Serving policies by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from llmtwin.cluster.context import ClusterContext
from llmtwin.cluster.policies.accellm import AcceLLM
from llmtwin.cluster.policies.base import Policy
from llmtwin.cluster.policies.colocated import Colocated
from llmtwin.cluster.policies.colocated_chunked import ColocatedChunked
from llmtwin.cluster.policies.disaggregated import Disaggregated
from llmtwin.errors import ConfigurationError

POLICIES: Mapping[str, type[Policy]] = MappingProxyType(
    {p.name: p for p in (Colocated, ColocatedChunked, Disaggregated, AcceLLM)}
)
"""Every policy, by the name a scenario uses."""


def create_policy(name: str, params: Mapping[str, Any], ctx: ClusterContext) -> Policy:
    """The policy called ``name`` with its parameters checked; unknown names raise a TwinError."""
    cls = POLICIES.get(name)
    if cls is None:
        raise ConfigurationError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}")
    return cls(dict(params), ctx)
