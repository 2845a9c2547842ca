"""The metric catalogue's vocabulary: what one exported metric family is, and lookups over all of them.

Every metric the twin exports is one :class:`MetricDef` in :data:`CATALOG` (the families are
listed in :mod:`llmtwin.observe.vllm_families` and :mod:`llmtwin.observe.twin_families`). The
exporter (``services/fleet_metrics.py``), the Grafana dashboards, the Prometheus recording rules
and docs/observability.md are all built from, or checked against, this one list. Plain data:
importable without prometheus-client.

Names are as Prometheus stores them: counters carry their ``_total`` (prometheus-client adds it
to a counter's base name, so :attr:`MetricDef.base_name` strips it), histograms are queried
through ``_bucket``/``_sum``/``_count``. No family has a label called ``instance``, which
Prometheus reserves for the scrape target.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

RESERVED_LABELS = frozenset({"instance", "job", "le", "quantile", "__name__"})
"""Label names no family may define: Prometheus sets or reserves them."""


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Clock(StrEnum):
    """What time a metric's seconds (or rates) are measured in."""

    VIRTUAL = "virtual"
    """Simulated time: at ``--speed 1`` it moves like a real fleet's clock."""
    WALL = "wall"
    """The twin's own processes' wall-clock time (transport, pacing)."""
    NONE = "none"
    """Counts, bytes or ratios whose values do not depend on either clock (the virtual time at
    which they change still follows the simulation)."""


class Owner(StrEnum):
    """The service that exports a family: the one that owns the state it measures."""

    DEVICE = "device"
    """Each device service, for the instances it leads (``engine`` label)."""
    BALANCER = "balancer"
    CONDUCTOR = "conductor"
    PLANNER = "planner"
    HOST = "host"
    """Every service that hosts components: generator, balancer, device."""
    EVERY = "every"
    """Every service process."""


@dataclass(frozen=True, slots=True)
class OneTwoFive:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to the model's context length."""

    def up_to(self, limit: int) -> tuple[float, ...]:
        out: list[float] = []
        scale = 1
        while True:
            for m in (1, 2, 5):
                if m * scale > limit:
                    return tuple(out)
                out.append(float(m * scale))
            scale *= 10


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One exported metric family."""

    name: str
    """As Prometheus stores it (a counter's ends in ``_total``; a histogram's is the base of its
    ``_bucket``/``_sum``/``_count`` series)."""
    kind: Kind
    help: str
    labels: tuple[str, ...]
    owner: Owner
    clock: Clock
    unit: str
    """Unit of the value (also the name's suffix where Prometheus conventions have one)."""
    buckets: tuple[float, ...] | OneTwoFive | None = None
    """Histogram upper bounds (``le``), without +Inf."""
    vllm_compat: bool = False
    """Part of the vLLM compatibility layer: vLLM's exact name, type, labels and buckets.
    ``--metrics twin`` exports these under :attr:`twin_name` instead."""
    alias_of: str | None = None
    """A deprecated vLLM name kept for older dashboards: the same values as this family.
    Not exported under ``--metrics twin``."""
    label_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Labels whose values are a fixed set (all exported from the start, so a query for each
    finds a series at zero rather than nothing)."""

    @property
    def base_name(self) -> str:
        """The name given to prometheus-client (which appends ``_total`` to counters)."""
        return self.name.removesuffix("_total") if self.kind is Kind.COUNTER else self.name

    @property
    def twin_name(self) -> str:
        """The name under ``--metrics twin``: ``vllm:X`` becomes ``twin_X``."""
        return "twin_" + self.name.removeprefix("vllm:") if self.vllm_compat else self.name

    def series_names(self) -> tuple[str, ...]:
        """Every sample name the family produces as stored by Prometheus."""
        if self.kind is Kind.HISTOGRAM:
            return tuple(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count"))
        return (self.name,)

    def fixed_values(self, label: str) -> tuple[str, ...]:
        return dict(self.label_values).get(label, ())


def lookup(name: str, catalog: tuple[MetricDef, ...]) -> MetricDef | None:
    """The family a stored series name belongs to (``x_bucket`` -> ``x``), under either naming."""
    for m in catalog:
        for variant in {m.name, m.twin_name}:
            if name == variant:
                return m
            if m.kind is Kind.HISTOGRAM and name in {variant + s for s in ("_bucket", "_sum", "_count")}:
                return m
    return None


def problems(catalog: tuple[MetricDef, ...]) -> list[str]:
    """What is wrong with a catalogue: duplicate names, reserved labels, bad suffixes or buckets."""
    out: list[str] = []
    seen: set[str] = set()
    for m in catalog:
        for n in {m.name, m.twin_name}:
            if n in seen:
                out.append(f"{n}: defined twice")
            seen.add(n)
        if reserved := set(m.labels) & RESERVED_LABELS:
            out.append(f"{m.name}: reserved label(s) {sorted(reserved)}")
        if m.kind is Kind.COUNTER and not m.name.endswith("_total"):
            out.append(f"{m.name}: a counter's name ends in _total")
        if m.kind is not Kind.COUNTER and m.name.endswith("_total") and not m.vllm_compat:
            # vLLM's own vllm:iteration_tokens_total is a histogram; ours never end so.
            out.append(f"{m.name}: only a counter's name ends in _total")
        if (m.kind is Kind.HISTOGRAM) != (m.buckets is not None):
            out.append(f"{m.name}: buckets are for histograms, and every histogram has them")
        if isinstance(m.buckets, tuple) and list(m.buckets) != sorted(set(m.buckets)):
            out.append(f"{m.name}: buckets must increase")
        if m.alias_of is not None and not any(o.name == m.alias_of for o in catalog):
            out.append(f"{m.name}: alias of unknown family {m.alias_of}")
        for label, _ in m.label_values:
            if label not in m.labels:
                out.append(f"{m.name}: fixed values for undeclared label {label}")
    return out
