"""PromQL helpers shared by the dashboards and the recording rules: selectors, variables, names.

A vLLM-compatible family is stored as ``vllm:X`` or, under ``--metrics twin``, as ``twin_X``;
:func:`series` selects it under either name, so every shipped query works in both modes.
Grafana variables are substituted (:func:`substitute`) before a query goes to Prometheus, which
rejects ``[$__rate_interval]``. :func:`metric_names` lists the metrics a query reads (it needs the
``promql-parser`` package, a development dependency).
"""

from __future__ import annotations

from collections.abc import Mapping

from llmtwin.errors import ConfigurationError
from llmtwin.observe.families import family

GRAFANA_DEFAULTS: Mapping[str, str] = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$model_name": ".+",
    "$engine": ".+",
}
"""What Grafana's variables stand for when a query is sent to Prometheus without Grafana."""


def series(name: str, suffix: str = "", matchers: str = "") -> str:
    """A selector of family ``name`` (+ ``_bucket``/``_sum``/``_count``) under every stored name,
    with extra label ``matchers`` (``model_name=~"$model_name"``)."""
    d = family(name)
    names = [d.name + suffix] + ([d.twin_name + suffix] if d.vllm_compat else [])
    extra = f", {matchers}" if matchers else ""
    if len(names) == 1:
        return f"{names[0]}{{{matchers}}}" if matchers else names[0]
    return '{__name__=~"' + "|".join(names) + '"' + extra + "}"


def substitute(expr: str, values: Mapping[str, str] = GRAFANA_DEFAULTS) -> str:
    """``expr`` with Grafana's variables replaced (longest names first, ``${x}`` forms too)."""
    for var in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + var[1:] + "}", values[var]).replace(var, values[var])
    return expr


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` reads (plain names and ``__name__`` regex alternatives).

    Raises ValueError when ``expr`` does not parse (after :func:`substitute`)."""
    try:
        import promql_parser  # a development dependency: only the generator's checks need it
    except ImportError:
        raise ConfigurationError(
            "checking PromQL needs the promql-parser package (a development dependency: `uv sync`)"
        ) from None

    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    names.update(m.value.split("|"))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names
