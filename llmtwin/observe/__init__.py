"""Observability of the twin: the metric catalogue, the per-window observation records the
services export from, the dashboards and recording rules built on them (plain data, no I/O)."""
