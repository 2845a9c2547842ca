"""Component factories: how every process builds the same components for a run.

A run is named by a :class:`~proto.control.RunSpec`; every service calls the same factory on
it and gets the same components (the build is deterministic), then keeps the ones it hosts.
``toy`` builds the transport self-test components of ``services/toy.py``; ``cluster`` builds
the twin itself (``services/cluster.py``). :func:`run_local` runs a spec in one process with
:class:`~llmtwin.sim.local.LocalRunner`: the reference the bus must reproduce.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from llmtwin.errors import ConfigurationError
from llmtwin.sim.kernel import INF, Component
from llmtwin.sim.local import LocalRunner
from proto.codec import Codec
from proto.control import RunSpec
from services import toy

PlanFunction = Callable[[bytes], dict[int, float]]
"""Encoded iteration shape -> {op index: bytes read from L2}: the planner service's job."""

PlanProvider = Callable[..., Any]
"""What a device component calls, synchronously, to get a PRESERVE plan (see services/plans.py)."""


class Factory(Protocol):
    """Builds a run's components (their exports are tagged structs: any process decodes them)."""

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        """Every component of the run, deterministically."""
        ...

    def needs_planner(self, spec: RunSpec) -> bool:
        """Whether device steps ask the planner service for plans."""
        ...

    def may_block(self, spec: RunSpec, component: str) -> bool:
        """Whether this component's step may wait on the planner (it then runs in a worker thread)."""
        ...

    def plan_function(self, spec: RunSpec) -> PlanFunction:
        """What the planner service computes for this run: encoded shape -> {op index: L2 bytes}."""
        ...


def export_of(comp: Component) -> object:
    """``comp.export()``: every component of a run must have one (its part of the results)."""
    fn = getattr(comp, "export", None)
    if fn is None:
        raise ConfigurationError(f"component {comp.id} has no export()")
    return fn()


def _settings(overrides: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigurationError(f"toy setting {item!r} is not key=number")
    return out


class ToyFactory:
    """``pingpong`` (``balls=N``) or ``fan`` (``workers=N jobs=N period_s=X seed=N``)."""

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        s = _settings(spec.overrides)
        if spec.scenario == "pingpong":
            return toy.pingpong(int(s.get("balls", 20)))
        if spec.scenario == "fan":
            return toy.fan(
                int(s.get("workers", 4)),
                int(s.get("jobs", 40)),
                s.get("period_s", 0.02),
                int(s.get("seed", 0)),
            )
        raise ConfigurationError(f"unknown toy scenario {spec.scenario!r} (pingpong, fan)")

    def needs_planner(self, spec: RunSpec) -> bool:
        return False

    def may_block(self, spec: RunSpec, component: str) -> bool:
        return False

    def plan_function(self, spec: RunSpec) -> PlanFunction:
        raise ConfigurationError("toy runs have no PRESERVE plans")


@dataclass(frozen=True, slots=True)
class LocalOutcome:
    """The in-process reference run: its final time, encoded exports and statistics."""

    end_s: float
    parts: dict[str, bytes]
    stats: dict[str, float]


def run_local(factory: Factory, spec: RunSpec, codec: Codec, until_s: float = INF) -> LocalOutcome:
    """Run ``spec`` with LocalRunner; exports encoded exactly as the services encode them."""
    t0 = time.perf_counter()
    runner = LocalRunner(factory.build(spec))
    end = runner.run(until_s)
    parts = {cid: codec.encode(export_of(c)) for cid, c in sorted(runner.components.items())}
    stats = {
        "wall_s": time.perf_counter() - t0,
        "windows": float(runner.windows),
        "messages": float(runner.messages),
    }
    return LocalOutcome(end, parts, stats)
