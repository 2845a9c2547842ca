"""Serving-engine overhead, kept apart from the hardware physics, and carried across hardware.

A real framework spends time around and during every iteration. Three kinds matter, and each
moves to other hardware through that hardware's own figures:

* **Serial CPU work** the GPU waits for: scheduling and input preparation once per iteration
  (``iteration_overhead``), per sequence in the batch (block tables, bookkeeping:
  ``per_sequence_overhead``; and the logit row each sequence hands to the sampler, which grows
  with the vocabulary: ``per_sequence_vocab``), extra once for an iteration that starts prompts
  (``prefill_overhead``), per layer (``per_layer_overhead``).
* **Dispatch** cost per kernel (``per_kernel_launch``): the CPU issues kernels one by one while
  the GPU runs earlier ones. When kernels are long the GPU never waits; when they are short (small
  decode batches at high TP) the GPU idles between them and the iteration is launch-bound. This is
  a queue, modelled exactly by :func:`launch_pipeline`, not a constant: that is why one engine
  profile fits both a GPU-bound TP2 and a launch-bound TP8 deployment.
* **The framework's own GPU work** beyond the model's kernels: ``prefill_pair_bytes`` of HBM
  traffic per layer for every pair of prompt tokens computed in one iteration (quadratic in the
  iteration's prompt tokens; docs/device-model.md, section 6, gives the evidence).

The first two are CPU time: a profile records the single-thread speed of the host it was fitted
on (``host_speed``, relative to the DGX A100's host CPU), and :meth:`EngineSpec.on_host` rescales
them to another machine's host (``HardwareSpec.host_cpu_speed``). The third is bytes, moved at the
device's own streaming bandwidth. A user models a leaner engine (CUDA graphs:
``per_kernel_launch_us = 0``) or a heavier one by choosing another profile or editing one.

File format (llmtwin/data/engines/<name>.toml)::

    name = "splitwise-dgx-a100"
    description = "..."
    host_speed = 1.0                   # host CPU it was fitted on, relative to the DGX A100's
    iteration_overhead_us = 2000.0
    per_kernel_launch_us = 30.0
    per_sequence_overhead_us = 20.0
    per_sequence_vocab_ns = 0.5        # per sequence, per vocabulary entry
    prefill_overhead_us = 15000.0
    per_layer_overhead_us = 0.0
    prefill_pair_bytes = 100.0         # per layer, per pair of prompt tokens of one iteration
    max_batched_tokens = 8192          # prompt tokens per forward pass (0: no limit)
    source = "fitted on ... with `llmtwin calibrate ...`"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from llmtwin.catalog_files import FieldReader, find_files, read_toml
from llmtwin.errors import CatalogFileError, UnknownEngine
from llmtwin.hardware.spec import HardwareSpec
from llmtwin.physics.bands import BandEdge, BandTable, read_band_table
from llmtwin.physics.graph import BatchShape

_KNOWN_FIELDS = frozenset(
    {
        "name", "description", "source", "notes", "iteration_overhead_us", "per_layer_overhead_us",
        "per_sequence_overhead_us", "per_kernel_launch_us", "prefill_overhead_us", "per_sequence_vocab_ns",
        "prefill_pair_bytes", "host_speed", "max_batched_tokens", "bands", "fitted_on",
    }
)  # fmt: skip

CPU_FIELDS = (
    "iteration_overhead_s", "per_layer_overhead_s", "per_sequence_overhead_s", "per_sequence_vocab_s",
    "per_kernel_launch_s", "prefill_overhead_s",
)  # fmt: skip
"""The fields that are host CPU time (rescaled by :meth:`EngineSpec.on_host`)."""


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Framework overheads of one iteration (seconds, on a host of speed ``host_speed``)."""

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
    per_sequence_vocab_s: float = 0.0
    """Serial host time per sequence per vocabulary entry (its logit row handed to the sampler)."""
    prefill_pair_bytes: float = 0.0
    """Framework HBM traffic per layer per pair of prompt tokens computed in one iteration."""
    host_speed: float = 1.0
    """Single-thread speed of the host CPU the CPU fields are quoted for, relative to the DGX A100's
    host (2 x AMD EPYC 7742)."""
    max_batched_tokens: int = 0
    """Most prompt tokens the framework computes in one forward pass (0: no limit). A batch of
    prompts beyond it runs as several passes (:meth:`passes`), each paying the per-iteration costs."""
    bands: BandTable = field(default_factory=BandTable)
    """Uncertainty bands of whole iterations (device physics and this engine together) from the
    calibration it was fitted in, by phase, TP and size (llmtwin.physics.bands)."""
    fitted_on: str = ""
    """Hardware the profile (and its bands) was fitted on; on any other the bands widen by that
    hardware's ``transfer_uncertainty``."""
    band_edge: BandEdge | None = None
    """Price every iteration at this edge of its band instead of the nominal time (the engine
    name ``NAME@low`` / ``NAME@high``): what ``llmtwin simulate --band`` runs."""

    def passes(self, shape: BatchShape) -> list[BatchShape]:
        """The forward passes the framework runs for ``shape``: whole prompts split as evenly as
        possible over the fewest passes of at most ``max_batched_tokens`` prompt tokens (decodes ride
        with the first). A single prompt longer than the limit stays one pass."""
        cap = self.max_batched_tokens
        if cap <= 0 or shape.prefill_tokens <= cap or shape.prefill_seqs <= 1:
            return [shape]
        n = min(shape.prefill_seqs, -(-shape.prefill_tokens // cap))
        out: list[BatchShape] = []
        done_seqs = done_tokens = done_ctx = 0
        done_pairs = 0.0
        for i in range(n):
            seqs = shape.prefill_seqs * (i + 1) // n - done_seqs
            share = (done_seqs + seqs) / shape.prefill_seqs
            tokens = round(shape.prefill_tokens * share) - done_tokens
            ctx = round(shape.prefill_context_tokens * share) - done_ctx
            pairs = shape.prefill_attn_pairs * share - done_pairs
            first = i == 0
            out.append(
                BatchShape(
                    prefill_tokens=tokens, prefill_seqs=seqs, prefill_attn_pairs=pairs, prefill_context_tokens=ctx,
                    decode_seqs=shape.decode_seqs if first else 0,
                    decode_context_tokens=shape.decode_context_tokens if first else 0,
                )
            )  # fmt: skip
            done_seqs, done_tokens, done_ctx, done_pairs = (
                done_seqs + seqs,
                done_tokens + tokens,
                done_ctx + ctx,
                done_pairs + pairs,
            )
        return out

    def on_host(self, speed: float) -> EngineSpec:
        """This engine on a host of single-thread ``speed``: every CPU field scaled by
        ``host_speed / speed``; the framework's GPU work (bytes) is unchanged."""
        if speed == self.host_speed:
            return self
        ratio = self.host_speed / speed
        scaled = {f: getattr(self, f) * ratio for f in CPU_FIELDS}
        return replace(self, host_speed=speed, **scaled)

    def overhead(self, layers: int, sequences: int, prefill: bool = False, vocab: int = 0) -> float:
        """Serial CPU seconds the engine adds to one iteration of ``sequences`` sequences of a model
        with ``layers`` layers and a vocabulary of ``vocab`` entries."""
        return (
            self.iteration_overhead_s
            + layers * self.per_layer_overhead_s
            + sequences * (self.per_sequence_overhead_s + vocab * self.per_sequence_vocab_s)
            + (self.prefill_overhead_s if prefill else 0.0)
        )

    def gpu_work_s(self, hw: HardwareSpec, layers: int, prefill_tokens: int) -> float:
        """Seconds of the framework's own GPU work in one iteration with ``prefill_tokens`` prompt
        tokens, at the device's streaming bandwidth."""
        if self.prefill_pair_bytes <= 0.0 or prefill_tokens <= 0:
            return 0.0
        bytes_moved = layers * float(prefill_tokens) ** 2 * self.prefill_pair_bytes
        return bytes_moved / (hw.hbm_bandwidth * min(1.0, hw.efficiency.hbm))

    def serial_s(self, hw: HardwareSpec, layers: int, vocab: int, shape: BatchShape) -> float:
        """Everything the engine adds to one iteration on top of the kernel-dispatch queue: its
        serial CPU work and its own GPU work."""
        sequences = shape.prefill_seqs + shape.decode_seqs
        cpu = self.overhead(layers, sequences, prefill=shape.prefill_tokens > 0, vocab=vocab)
        return cpu + self.gpu_work_s(hw, layers, shape.prefill_tokens)


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
        per_sequence_vocab_s=r.number("per_sequence_vocab_ns", default=0.0, positive=False) * 1e-9,
        prefill_pair_bytes=r.number("prefill_pair_bytes", default=0.0, positive=False),
        host_speed=r.number("host_speed", default=1.0),
        max_batched_tokens=int(r.number("max_batched_tokens", default=0.0, positive=False)),
        bands=read_band_table(path, r.sub("bands").table) if r.has("bands") else BandTable(),
        fitted_on=r.text("fitted_on", default=""),
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
        """The profile called ``name`` (or a .toml path); ``NAME@low`` / ``NAME@high`` is that
        profile priced at the low / high edge of its uncertainty bands."""
        base, _, edge = name.rpartition("@") if "@" in name else (name, "", "")
        if edge:
            if edge not in ("low", "high"):
                raise UnknownEngine(f"engine band edge must be 'low' or 'high', got {name!r}")
            return replace(self.get(base), band_edge="low" if edge == "low" else "high")
        if name.endswith(".toml"):
            return load_engine_file(Path(name))
        if name == "none":
            return NO_ENGINE
        if name not in self._files:
            raise UnknownEngine(f"unknown engine profile {name!r}; known: {', '.join(self.names())}")
        return load_engine_file(self._files[name])
