"""Serving-engine overhead, kept apart from the hardware physics.

A real framework spends CPU time around and during every iteration. Two kinds matter:

* **Serial** costs the GPU waits for: scheduling, input preparation and sampling once per
  iteration (``iteration_overhead``), per sequence in the batch (block tables, detokenisation),
  and extra once for an iteration that starts prompts (``prefill_overhead``).
* **Dispatch** cost per kernel (``per_kernel_launch``): the CPU issues kernels one by one while
  the GPU runs earlier ones. When kernels are long the GPU never waits; when they are short (small
  decode batches at high TP) the GPU idles between them and the iteration is launch-bound. This is
  a queue, modelled exactly by :func:`launch_pipeline`, not a constant: that is why one engine
  profile fits both a GPU-bound TP2 and a launch-bound TP8 deployment.

These are properties of the engine, not of the device: a user models a leaner engine (CUDA graphs:
``per_kernel_launch_us = 0``) or a heavier one by choosing another profile or editing one.

File format (llmtwin/data/engines/<name>.toml)::

    name = "splitwise-dgx-a100"
    description = "..."
    iteration_overhead_us = 2000.0
    per_kernel_launch_us = 30.0
    per_sequence_overhead_us = 20.0
    prefill_overhead_us = 15000.0
    per_layer_overhead_us = 0.0
    source = "fitted on ... with `llmtwin calibrate ...`"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmtwin.catalog_files import FieldReader, find_files, read_toml
from llmtwin.errors import CatalogFileError, UnknownEngine

_KNOWN_FIELDS = frozenset(
    {
        "name", "description", "source", "notes", "iteration_overhead_us", "per_layer_overhead_us",
        "per_sequence_overhead_us", "per_kernel_launch_us", "prefill_overhead_us",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Framework overheads of one iteration, seconds."""

    name: str = "none"
    iteration_overhead_s: float = 0.0
    """Serial CPU time per iteration (scheduling, input preparation, sampling)."""
    per_layer_overhead_s: float = 0.0
    """Serial CPU time per decoder layer that the GPU waits for (not overlapped)."""
    per_sequence_overhead_s: float = 0.0
    """Serial CPU time per sequence in the batch."""
    description: str = "pure device physics, no framework overhead"
    source: str = ""
    per_kernel_launch_s: float = 0.0
    """CPU time to dispatch one op of the graph; overlaps with GPU execution (see module doc)."""
    prefill_overhead_s: float = 0.0
    """Extra serial time of an iteration that computes prompt tokens."""

    def overhead(self, layers: int, sequences: int, prefill: bool = False) -> float:
        """Serial seconds the engine adds to one iteration of ``sequences`` sequences."""
        return (
            self.iteration_overhead_s
            + layers * self.per_layer_overhead_s
            + sequences * self.per_sequence_overhead_s
            + (self.prefill_overhead_s if prefill else 0.0)
        )


NO_ENGINE = EngineSpec()


def launch_pipeline(
    before: Sequence[float], layer: Sequence[float], layers: int, after: Sequence[float], launch_s: float
) -> float:
    """Seconds until the GPU finishes when the CPU issues one kernel every ``launch_s`` seconds.

    Kernel i is issued at ``I_i = i * launch_s`` and runs from ``max(I_i, end of kernel i-1)`` for
    its GPU time ``g_i``. The backlog ``B = end - I`` obeys ``B_i = max(B_{i-1} - launch_s, 0) + g_i``;
    over one layer that map is ``h(B) = max(B + A, K)`` with ``A = sum(g) - n * launch_s`` and
    ``K = h(0)``, so ``layers`` identical layers cost O(ops per layer):
    ``h^L(B) = max(B + L*A, K + (L-1)*max(A, 0))``. With ``launch_s = 0`` this is the plain sum.
    """
    if launch_s <= 0.0:
        return sum(before) + layers * sum(layer) + sum(after)

    def run(backlog: float, times: Sequence[float]) -> float:
        for g in times:
            backlog = max(backlog - launch_s, 0.0) + g
        return backlog

    backlog = run(0.0, before)
    if layers > 0 and layer:
        a = sum(layer) - len(layer) * launch_s
        k = run(0.0, layer)
        backlog = max(backlog + layers * a, k + (layers - 1) * max(a, 0.0))
    backlog = run(backlog, after)
    kernels = len(before) + layers * len(layer) + len(after)
    return kernels * launch_s + backlog


def load_engine_file(path: Path) -> EngineSpec:
    """Parse and validate one engine-overhead profile."""
    r = FieldReader(path, read_toml(path))
    unknown = set(r.table) - _KNOWN_FIELDS
    if unknown:
        raise CatalogFileError(f"{path}: unknown field(s): {sorted(unknown)}")
    name = r.text("name")
    if name != path.stem:
        raise CatalogFileError(f"{path}: field 'name' is {name!r} but the file is named {path.stem!r}")
    return EngineSpec(
        name=name,
        iteration_overhead_s=r.number("iteration_overhead_us", positive=False) * 1e-6,
        per_layer_overhead_s=r.number("per_layer_overhead_us", default=0.0, positive=False) * 1e-6,
        per_sequence_overhead_s=r.number("per_sequence_overhead_us", default=0.0, positive=False) * 1e-6,
        per_kernel_launch_s=r.number("per_kernel_launch_us", default=0.0, positive=False) * 1e-6,
        prefill_overhead_s=r.number("prefill_overhead_us", default=0.0, positive=False) * 1e-6,
        description=r.text("description", default=""),
        source=r.text("source", default=""),
    )


class EngineCatalog:
    """Named engine-overhead profiles; ``none`` is always available."""

    def __init__(self, extra_dirs: Iterable[Path] = ()) -> None:
        self._files = find_files("engines", extra_dirs)

    def names(self) -> list[str]:
        return sorted({"none", *self._files})

    def get(self, name: str) -> EngineSpec:
        if name.endswith(".toml"):
            return load_engine_file(Path(name))
        if name == "none":
            return NO_ENGINE
        if name not in self._files:
            raise UnknownEngine(f"unknown engine profile {name!r}; known: {', '.join(self.names())}")
        return load_engine_file(self._files[name])
