"""Find, read, override and validate scenario files.

A scenario is referred to by name (``w1``: the file ``w1.toml`` in the shipped directory
llmtwin/data/scenarios/, also reachable as the top-level ``scenarios/`` of a checkout, or in
``<dir>/scenarios`` for each directory of ``LLMTWIN_CATALOG_PATH``) or by path (anything ending in
``.toml`` or containing ``/``). The layout is documented in docs/scenarios.md; the keys are the
field names of llmtwin/scenario/spec.py.

Relative paths inside a file (a model, hardware or engine ``.toml``, a trace ``.csv``) are taken
relative to the scenario file when such a file exists there, else relative to the working
directory (where ``--set`` values usually point).

Every problem is a :class:`ScenarioError` of one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from llmtwin.catalog_files import catalog_dirs, find_files, read_toml
from llmtwin.errors import ConfigurationError, ScenarioError, TwinError
from llmtwin.hardware import HardwareCatalog
from llmtwin.models import ModelCatalog, ModelSpec
from llmtwin.physics.overhead import EngineCatalog
from llmtwin.physics.precision import Precision
from llmtwin.physics.step import StepModel
from llmtwin.scenario.dump import dump_scenario, scenario_toml
from llmtwin.scenario.fields import Check, TableReader, each, fraction, non_negative, one_of, positive
from llmtwin.scenario.overrides import apply_overrides
from llmtwin.scenario.spec import PolicySpec, Scenario, WorkloadSpec
from llmtwin.workload.arrivals import ARRIVAL_KINDS
from llmtwin.workload.lengths import LENGTH_KINDS, length_param_problem
from llmtwin.workload.traces import is_trace_path, load_trace

__all__ = ["dump_scenario", "load_scenario", "scenario_names", "scenario_path", "scenario_toml"]

T = TypeVar("T")


def _non_empty(value: Any) -> str | None:
    return None if value.strip() else "must not be empty"


CHECKS: dict[str, Check] = {
    "name": _non_empty,
    "model": _non_empty,
    "seed": non_negative,
    "routing_latency_s": non_negative,
    "cluster.hardware": _non_empty,
    "cluster.instances": positive,
    "cluster.tp": positive,
    "cluster.inter_instance_link": one_of("auto", "scale_up", "scale_out"),
    "workload.arrival": one_of(*ARRIVAL_KINDS),
    "workload.rate_rps": positive,
    "workload.cv": positive,
    "workload.time_scale": positive,
    "workload.lengths": one_of(*LENGTH_KINDS),
    "workload.requests": positive,
    "workload.duration_s": positive,
    "workload.max_prompt_tokens": positive,
    "engine.block_size_tokens": positive,
    "engine.watermark": fraction,
    "engine.max_batch_seqs": positive,
    "engine.max_batch_tokens": positive,
    "engine.shape_bucket": non_negative,
    "slo.ttft_s": positive,
    "slo.tbt_s": positive,
    "slo.tbt_stat": one_of("mean", "p90", "p99"),
    "policy.name": _non_empty,
    "sweep.rate_rps": each(positive),
}
"""Range checks by dotted field; type checks come from the annotations in spec.py."""


def scenario_files() -> dict[str, Path]:
    """Scenario name -> file, shipped ones first, user directories overriding."""
    return find_files("scenarios")


def scenario_names() -> list[str]:
    return sorted(scenario_files())


def scenario_path(ref: str) -> Path:
    """The file a scenario name or path refers to."""
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        if not path.is_file():
            raise ScenarioError(f"{ref}: no such scenario file")
        return path
    files = scenario_files()
    if ref not in files:
        dirs = ", ".join(str(d) for d in catalog_dirs("scenarios"))
        raise ScenarioError(f"unknown scenario {ref!r}; known: {', '.join(sorted(files))} (in {dirs})")
    return files[ref]


def load_scenario(ref: str, overrides: Sequence[str] = (), policy: str | None = None) -> Scenario:
    """Read scenario ``ref``, apply ``--set`` ``overrides``, select ``policy``, validate everything.

    ``policy`` (from ``--policy``) replaces the file's ``policy.name``. The selected policy's
    parameters are its ``[policies.<name>]`` table, updated with ``[policy.params]`` when the file
    itself selects that policy (the run-specific table is the more specific one). Policies check
    their own parameters; this checks the structure, ranges, catalog names and that the model fits.
    """
    path = scenario_path(ref)
    try:
        raw = read_toml(path)
    except TwinError as exc:
        raise ScenarioError(_message(exc)) from None
    overridden = apply_overrides(raw, overrides)
    raw.setdefault("name", path.stem)
    reader = TableReader(path, CHECKS, overridden)
    scenario: Scenario = reader.build(Scenario, raw)
    scenario = _resolve_paths(scenario, path.parent)
    if policy is not None and not policy.strip():
        raise ScenarioError(f"{path}: --policy must not be empty")
    model = _check_cluster(scenario, reader)
    _check_workload(scenario.workload, model, reader)
    _check_engine(scenario, model, reader)
    _check_faults(scenario, reader)
    return _select_policy(scenario, policy)


def _message(exc: TwinError) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _lookup(reader: TableReader, dotted: str, get: Callable[[], T]) -> T:
    """``get()``, with any catalog error turned into an error on field ``dotted``."""
    try:
        return get()
    except TwinError as exc:
        raise reader.error(dotted, f"is invalid: {_message(exc)}") from None


def _resolve_paths(s: Scenario, base: Path) -> Scenario:
    def resolve(ref: str) -> str:
        p = Path(ref)
        if p.is_absolute() or not (base / p).is_file():
            return ref
        return str((base / p).resolve())

    def file_ref(ref: str, suffix: str) -> str:
        return resolve(ref) if ref.endswith(suffix) else ref

    def workload(w: WorkloadSpec) -> WorkloadSpec:
        trace = w.trace
        return dataclasses.replace(
            w,
            trace=resolve(trace) if trace is not None and is_trace_path(trace) else trace,
            phases=tuple(workload(p) for p in w.phases),
        )

    return dataclasses.replace(
        s,
        model=file_ref(s.model, ".toml"),
        cluster=dataclasses.replace(
            s.cluster,
            hardware=file_ref(s.cluster.hardware, ".toml"),
            engine=file_ref(s.cluster.engine, ".toml"),
        ),
        workload=workload(s.workload),
    )


def _check_cluster(s: Scenario, reader: TableReader) -> ModelSpec:
    """Catalog names exist, the precision parses, the model fits the TP group with KV room."""
    c = s.cluster
    hw = _lookup(reader, "cluster.hardware", lambda: HardwareCatalog().get(c.hardware))
    model = _lookup(reader, "model", lambda: ModelCatalog().get(s.model))
    engine = _lookup(reader, "cluster.engine", lambda: EngineCatalog().get(c.engine))
    prec = _lookup(reader, "cluster.precision", lambda: Precision.parse(c.precision))
    try:
        step = StepModel(hw, model, c.tp, prec, engine)
    except ConfigurationError as exc:
        raise reader.error("cluster.tp", f"= {c.tp} cannot run {model.name}: {_message(exc)}") from None
    capacity = step.kv_capacity_tokens()
    if capacity < model.max_context:
        raise reader.error(
            "cluster.tp",
            f"= {c.tp} leaves KV room for {capacity} tokens per instance of {model.name} on {hw.name}, "
            f"less than one {model.max_context}-token context",
        )
    return model


def _check_workload(w: WorkloadSpec, model: ModelSpec, reader: TableReader, at: str = "workload") -> None:
    needs_trace = [what for what, kind in (("arrival", w.arrival), ("lengths", w.lengths)) if kind == "trace"]
    if w.phases:
        for i, phase in enumerate(w.phases):
            _check_phase(phase, model, reader, f"{at}.phases[{i}]")
        return
    if needs_trace and w.trace is None:
        raise reader.error(f"{at}.trace", f"is missing ({' and '.join(needs_trace)} = 'trace' replays it)")
    if w.trace is not None and needs_trace:
        ref = w.trace
        trace = _lookup(reader, f"{at}.trace", lambda: load_trace(ref))
        if w.arrival == "trace" and w.requests is not None and w.requests > len(trace):
            raise reader.error(
                f"{at}.requests", f"({w.requests}) exceeds the {len(trace)} requests of trace {ref}"
            )
    if w.arrival != "trace" and w.requests is None and w.duration_s is None:
        raise reader.error(f"{at}.requests", "is missing (give requests, duration_s or both)")
    problem = length_param_problem(w.lengths, w.length_params)
    if problem is not None:
        raise reader.error(f"{at}.length_params.{problem[0]}", problem[1])
    if w.max_prompt_tokens is not None and w.max_prompt_tokens >= model.max_context:
        raise reader.error(
            f"{at}.max_prompt_tokens",
            f"({w.max_prompt_tokens}) must be below the {model.max_context}-token context of {model.name}",
        )


def _check_phase(phase: WorkloadSpec, model: ModelSpec, reader: TableReader, at: str) -> None:
    """A phase is checked as a workload of its own (the same range checks), lasting a duration."""
    for f in dataclasses.fields(phase):
        check = CHECKS.get(f"workload.{f.name}")
        value = getattr(phase, f.name)
        if check is not None and value is not None:
            problem = check(value)
            if problem is not None:
                raise reader.error(f"{at}.{f.name}", f"{problem}, got {value!r}")
    if phase.phases:
        raise reader.error(f"{at}.phases", "is not allowed: phases do not nest")
    if phase.duration_s is None:
        raise reader.error(f"{at}.duration_s", "is missing (a phase lasts a duration)")
    _check_workload(phase, model, reader, at)


def _check_engine(s: Scenario, model: ModelSpec, reader: TableReader) -> None:
    """Without chunked prefill, a whole prompt must fit one iteration's token budget."""
    limit = s.workload.max_prompt_tokens
    longest = limit if limit is not None else model.max_context - 1  # see generate.clip_lengths
    if not s.engine.chunked_prefill and s.engine.max_batch_tokens < longest:
        raise reader.error(
            "engine.max_batch_tokens",
            f"({s.engine.max_batch_tokens}) must hold the longest prompt ({longest} tokens) "
            "unless engine.chunked_prefill = true",
        )


def _check_faults(s: Scenario, reader: TableReader) -> None:
    """Each fault names an instance of the cluster, at a time >= 0, recovering after it; the
    down intervals of one instance do not overlap."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for i, f in enumerate(s.faults):
        at = f"faults[{i}]"
        if not 0 <= f.instance < s.cluster.instances:
            raise reader.error(
                f"{at}.instance", f"= {f.instance} is not an instance (0 .. {s.cluster.instances - 1})"
            )
        if f.at_s < 0:
            raise reader.error(f"{at}.at_s", f"must be >= 0, got {f.at_s}")
        end = math.inf if f.recover_s is None else f.recover_s
        if end <= f.at_s:
            raise reader.error(f"{at}.recover_s", f"({f.recover_s}) must be after at_s ({f.at_s})")
        for a, b in spans.get(f.instance, []):
            if f.at_s < b and a < end:
                raise reader.error(at, f"overlaps another fault of instance {f.instance}")
        spans.setdefault(f.instance, []).append((f.at_s, end))


def _select_policy(s: Scenario, policy: str | None) -> Scenario:
    name = s.policy.name if policy is None else policy.strip()
    params = dict(s.policies.get(name, {}))
    if name == s.policy.name:
        params.update(s.policy.params)
    return dataclasses.replace(s, policy=PolicySpec(name=name, params=params))
