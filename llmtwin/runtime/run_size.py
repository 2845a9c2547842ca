"""How big a run may be: per-run limits (requests, instances, processes), the files a run may
name, and the memory it would need -- checked before anything is built or started.

The services apply :class:`RunLimits` to every run they are asked to build (their config:
``TWIN_MAX_REQUESTS``, ``TWIN_MAX_INSTANCES``, ``TWIN_SCENARIO_DIRS``); the command line checks
that a run fits this machine's memory before it generates a single request. Every problem is
one :class:`~llmtwin.errors.ConfigurationError` line.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmtwin.errors import ConfigurationError, TwinError
from llmtwin.scenario.overrides import parse_override
from llmtwin.scenario.spec import Scenario

BYTES_PER_REQUEST = 8 * 1024
"""A low estimate of the memory one request takes through a run (its spec, its engine state,
its recorded token times and result row; measured: about 10 KiB with the Azure conversation
lengths). Low on purpose: the check refuses only what clearly cannot fit."""

BYTES_PER_INSTANCE = 256 * 1024
"""A low estimate per simulated instance (engine, KV block tables, caches)."""

BASE_BYTES = 100 * 1024 * 1024
"""The interpreter, numpy, scipy and the catalogs."""

MAX_PROCESSES = 64
"""Most service processes one ``llmtwin up`` starts."""

MAX_REQUESTS = 1_000_000
"""Default bound on the requests of one run built by the services."""

MAX_INSTANCES = 1024
"""Default bound on the instances of one run built by the services."""


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Bounds on what a run may ask a service to build."""

    max_requests: int = MAX_REQUESTS
    max_instances: int = MAX_INSTANCES
    scenario_dirs: tuple[str, ...] = ()
    """Directories whose files a run may name (scenario files, and model, hardware, engine and
    trace files in overrides); empty: catalog names only."""


def expected_requests(scenario: Scenario) -> int | None:
    """The number of requests the workload will generate, when known before generating it
    (None for a trace replayed without a request count: bounded by the trace file)."""
    w = scenario.workload
    if w.requests is not None:
        return w.requests
    if w.arrival == "trace" or w.duration_s is None:
        return None
    expected = w.rate_rps * w.duration_s
    return math.ceil(expected) if math.isfinite(expected) else sys.maxsize


def check_run_size(scenario: Scenario, limits: RunLimits, requests: int | None = None) -> None:
    """ConfigurationError if the run has more instances or requests (``requests`` once
    generated, else the expected count) than ``limits`` allow."""
    n = scenario.cluster.instances
    if n > limits.max_instances:
        raise ConfigurationError(
            f"run of {n} instances exceeds the limit of {limits.max_instances} per run (max_instances)"
        )
    count = requests if requests is not None else expected_requests(scenario)
    if count is not None and count > limits.max_requests:
        raise ConfigurationError(
            f"run of {count:,} requests exceeds the limit of {limits.max_requests:,} per run (max_requests)"
        )


def memory_needed_bytes(scenario: Scenario, copies: int = 1) -> int:
    """A low estimate of the memory the run takes (0 requests counted when unknown) in
    ``copies`` processes that each build the whole run."""
    requests = expected_requests(scenario) or 0
    one = BASE_BYTES + requests * BYTES_PER_REQUEST + scenario.cluster.instances * BYTES_PER_INSTANCE
    return one * copies


def available_memory_bytes() -> int | None:
    """Memory available to a new process (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(scenario: Scenario, available: int | None = None, copies: int = 1) -> None:
    """ConfigurationError if the run clearly needs more memory than this machine has available
    (``copies``: processes that each build the whole run)."""
    have = available_memory_bytes() if available is None else available
    need = memory_needed_bytes(scenario, copies)
    if have is not None and need > have:
        where = f" in {copies} processes" if copies > 1 else ""
        raise ConfigurationError(
            f"scenario {scenario.name!r} needs at least {need / 2**30:.1f} GiB of memory{where} "
            f"({expected_requests(scenario) or 0:,} requests, {scenario.cluster.instances} instances); "
            f"this machine has {have / 2**30:.1f} GiB available"
        )


def looks_like_path(value: str) -> bool:
    """Whether a scenario reference or override value names a file rather than a catalog entry."""
    return "/" in value or os.sep in value or value.endswith((".toml", ".csv")) or value.startswith("~")


def check_files(scenario: str, overrides: Sequence[str], dirs: Sequence[str]) -> None:
    """ConfigurationError unless every file the run names (the scenario, path-valued
    overrides) lies inside one of ``dirs`` (symbolic links resolved); catalog names are always
    allowed. A service never opens a file a remote controller chose outside them."""
    named = [("scenario", scenario)] if looks_like_path(scenario) else []
    for text in overrides:
        try:
            key, value = parse_override(text)
        except TwinError:
            continue  # the loader reports it
        if isinstance(value, str) and looks_like_path(value):
            named.append((".".join(key), value))
    if not named:
        return
    roots = [Path(d).resolve() for d in dirs if d]
    base = Path(scenario).resolve().parent if looks_like_path(scenario) else None
    for what, ref in named:
        candidates = [Path(ref).resolve()]
        if base is not None and not Path(ref).is_absolute():
            candidates.append((base / ref).resolve())
        if not all(any(c.is_relative_to(r) for r in roots) for c in candidates):
            allowed = ", ".join(str(r) for r in roots) or "none configured"
            raise ConfigurationError(
                f"{what} {ref!r}: files may be read only from the scenario directories ({allowed}; "
                "scenario_dirs / TWIN_SCENARIO_DIRS); name catalog entries instead"
            )
