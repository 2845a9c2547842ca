"""Serving policies: colocated, disaggregated and AcceLLM, behind one interface (see base.py)."""

from llmtwin.cluster.policies.base import Agent, Param, Policy
from llmtwin.cluster.policies.registry import POLICIES, create_policy

__all__ = ["POLICIES", "Agent", "Param", "Policy", "create_policy"]
