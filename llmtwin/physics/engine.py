"""Serving-engine overhead, kept apart from the hardware physics.

A real framework adds CPU-side costs per iteration (scheduling, input preparation, sampling), per
layer (kernel launches that the GPU waits for when kernels are short) and per sequence in the
batch (block tables, detokenisation). These are properties of the engine, not of the device: a
user models a leaner or heavier engine by choosing another profile or editing one.

File format (llmtwin/data/engines/<name>.toml)::

    name = "vllm-like"
    description = "..."
    iteration_overhead_us = 2000.0
    per_layer_overhead_us = 10.0
    per_sequence_overhead_us = 20.0
    source = "fitted on ... with `llmtwin calibrate ...`"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from llmtwin.catalog_files import FieldReader, find_files, read_toml
from llmtwin.errors import CatalogFileError, UnknownEngine


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Per-iteration framework overheads, seconds."""

    name: str = "none"
    iteration_overhead_s: float = 0.0
    per_layer_overhead_s: float = 0.0
    per_sequence_overhead_s: float = 0.0
    description: str = "pure device physics, no framework overhead"
    source: str = ""

    def overhead(self, layers: int, sequences: int) -> float:
        """Seconds the engine adds to one iteration of ``sequences`` sequences."""
        return (
            self.iteration_overhead_s
            + layers * self.per_layer_overhead_s
            + sequences * self.per_sequence_overhead_s
        )


NO_ENGINE = EngineSpec()


def load_engine_file(path: Path) -> EngineSpec:
    r = FieldReader(path, read_toml(path))
    name = r.text("name")
    if name != path.stem:
        raise CatalogFileError(f"{path}: field 'name' is {name!r} but the file is named {path.stem!r}")
    return EngineSpec(
        name=name,
        iteration_overhead_s=r.number("iteration_overhead_us", positive=False) * 1e-6,
        per_layer_overhead_s=r.number("per_layer_overhead_us", default=0.0, positive=False) * 1e-6,
        per_sequence_overhead_s=r.number("per_sequence_overhead_us", default=0.0, positive=False) * 1e-6,
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
