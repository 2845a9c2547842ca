"""Scenarios: a cluster, a model, a workload, a policy and its parameters, a seed, SLOs."""
