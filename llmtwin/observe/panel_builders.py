"""The building blocks the shipped dashboards are written in (:mod:`llmtwin.observe.dashboards`).

Label matchers with Grafana's variables, the PromQL of a rate per wall second and per *virtual*
second, of the instances' role as a number, and the two panel shapes used again and again: a
family's recorded quantiles, and one query with a series per instance.
"""

from __future__ import annotations

from llmtwin.observe.catalog import Owner
from llmtwin.observe.families import family
from llmtwin.observe.panels import Panel, Query
from llmtwin.observe.promql import series
from llmtwin.observe.recording_rules import QUANTILES, quantile_name
from llmtwin.observe.twin_families import BUSY_ROLES

M = 'model_name=~"$model_name"'
ME = 'model_name=~"$model_name", engine=~"$engine"'
RI = "[$__rate_interval]"


def rate(name: str, matchers: str = ME, suffix: str = "") -> str:
    return f"rate({series(name, suffix, matchers)}{RI})"


def per_virtual_s(name: str, matchers: str = ME) -> str:
    """A counter's increase per *virtual* second: the fleet's rate, at any ``--speed`` (a plain
    ``rate()`` is per wall second, ``--speed`` times the fleet's). It divides by the increase of
    the virtual time covered by the metrics of the same target (an instance's for a device
    family, the cluster's for a balancer family): both come from one update and one scrape, so
    a fraction never exceeds 1 however the services' updates and scrapes interleave."""
    if family(name).owner is Owner.DEVICE:
        clock, on = (
            series("twin_instance_virtual_seconds_total", "", matchers),
            "instance, model_name, engine",
        )
    else:
        clock, on = series("twin_cluster_virtual_seconds_total", "", M), "instance, model_name"
    return f"increase({series(name, '', matchers)}{RI}) / on({on}) group_left increase({clock}{RI})"


def by_engine(expr: str) -> str:
    return f"sum by (engine) ({expr})"


ROLE_CODES = ((0.0, "idle"), *((float(k), r) for k, r in enumerate(BUSY_ROLES, 1)))
"""The numbers the role panel shows for each role."""


def role_code() -> str:
    """One number per instance for a state timeline: see :data:`ROLE_CODES`."""
    terms = [f'{k:g} * twin_instance_role{{{ME}, role="{r}"}}' for k, r in ROLE_CODES[1:]]
    return "max by (engine) (" + " + ignoring(role) ".join(terms) + ")"


def quantile_panel(title: str, family: str, description: str) -> Panel:
    return Panel(
        title,
        tuple(
            Query(f"{quantile_name(family, q)}{{{M}}}", f"p{round(q * 100)} {{{{model_name}}}}")
            for q in QUANTILES
        ),
        unit="s",
        description=description,
        width=6,
    )


def engine_panel(
    title: str,
    expr: str,
    unit: str,
    description: str,
    *,
    kind: str = "timeseries",
    width: int = 12,
    value_names: tuple[tuple[float, str], ...] = (),
) -> Panel:
    """A panel of one query with a series per instance."""
    return Panel(title, (Query(expr, "{{engine}}"),), unit, kind, description, width, value_names=value_names)
