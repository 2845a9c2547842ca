"""Prompt and output length distributions, in tokens.

Kinds and their ``length_params``:

- ``azure-conv``, ``azure-code`` (or any trace name, via ``trace``): (prompt, output) rows sampled
  with replacement from the trace, so the two lengths keep their joint distribution. No params.
- ``fixed``: ``prompt_tokens``, ``output_tokens``.
- ``uniform``: integers uniform in ``[prompt_min, prompt_max]`` and ``[output_min, output_max]``.
- ``lognormal``: ``round(exp(N(prompt_mean, prompt_sigma)))``, likewise for the output; ``*_mean``
  and ``*_sigma`` are those of the logarithm (the median is ``exp(mean)``). At least 1 token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from llmtwin.errors import ConfigurationError
from llmtwin.workload.traces import IntArray, Trace

TRACE_KINDS = ("azure-conv", "azure-code")
"""Length kinds that name a shipped trace directly."""
LENGTH_KINDS = (*TRACE_KINDS, "trace", "fixed", "uniform", "lognormal")

LENGTH_PARAMS: dict[str, tuple[str, ...]] = {
    "fixed": ("prompt_tokens", "output_tokens"),
    "uniform": ("prompt_min", "prompt_max", "output_min", "output_max"),
    "lognormal": ("prompt_mean", "prompt_sigma", "output_mean", "output_sigma"),
}
"""The parameters each parametric kind needs (all required); other kinds take none."""


def length_param_problem(kind: str, params: Mapping[str, float]) -> tuple[str, str] | None:
    """The first thing wrong with ``params`` for ``kind``, as (parameter, message), or None."""
    needed = LENGTH_PARAMS.get(kind, ())
    for key in sorted(params):
        if key not in needed:
            expected = ", ".join(needed) if needed else "none"
            return key, f"is not a parameter of lengths = {kind!r} (expected: {expected})"
    for key in needed:
        if key not in params:
            return key, f"is missing (lengths = {kind!r} needs {', '.join(needed)})"
    p = params
    if kind in ("fixed", "uniform"):
        for key in needed:
            if p[key] != int(p[key]) or p[key] < 1:
                return key, f"must be a positive integer, got {p[key]!r}"
    if kind == "uniform":
        for what in ("prompt", "output"):
            if p[f"{what}_max"] < p[f"{what}_min"]:
                return (
                    f"{what}_max",
                    f"must be >= {what}_min ({p[f'{what}_min']!r}), got {p[f'{what}_max']!r}",
                )
    if kind == "lognormal":
        for key in ("prompt_sigma", "output_sigma"):
            if p[key] < 0:
                return key, f"must be >= 0, got {p[key]!r}"
    return None


class LengthSampler(Protocol):
    """Draws (prompt, output) token counts for ``count`` requests."""

    def sample(self, count: int) -> tuple[IntArray, IntArray]: ...


class TraceLengths:
    """Rows of a trace, drawn with replacement."""

    def __init__(self, trace: Trace, rng: np.random.Generator) -> None:
        self._trace = trace
        self._rng = rng

    def sample(self, count: int) -> tuple[IntArray, IntArray]:
        rows = self._rng.integers(0, len(self._trace), size=count)
        return self._trace.prompt_tokens[rows], self._trace.output_tokens[rows]


class ReplayLengths:
    """A trace's rows in order (the lengths that go with replayed arrivals)."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace

    def sample(self, count: int) -> tuple[IntArray, IntArray]:
        if count > len(self._trace):
            raise ConfigurationError(
                f"asked for {count} requests but trace {self._trace.name} has {len(self._trace)}"
            )
        return self._trace.prompt_tokens[:count].copy(), self._trace.output_tokens[:count].copy()


class FixedLengths:
    def __init__(self, prompt_tokens: int, output_tokens: int) -> None:
        self._prompt = prompt_tokens
        self._output = output_tokens

    def sample(self, count: int) -> tuple[IntArray, IntArray]:
        return np.full(count, self._prompt, dtype=np.int64), np.full(count, self._output, dtype=np.int64)


class UniformLengths:
    """Independent integer-uniform prompt and output lengths, bounds inclusive."""

    def __init__(
        self,
        prompt_rng: np.random.Generator,
        output_rng: np.random.Generator,
        prompt_range: tuple[int, int],
        output_range: tuple[int, int],
    ) -> None:
        self._rngs = (prompt_rng, output_rng)
        self._ranges = (prompt_range, output_range)

    def sample(self, count: int) -> tuple[IntArray, IntArray]:
        (rp, ro), ((pl, ph), (ol, oh)) = self._rngs, self._ranges
        return (
            rp.integers(pl, ph, size=count, endpoint=True, dtype=np.int64),
            ro.integers(ol, oh, size=count, endpoint=True, dtype=np.int64),
        )


class LognormalLengths:
    """Independent lognormal prompt and output lengths, rounded, at least 1 token."""

    def __init__(
        self,
        prompt_rng: np.random.Generator,
        output_rng: np.random.Generator,
        prompt_log: tuple[float, float],
        output_log: tuple[float, float],
    ) -> None:
        self._rngs = (prompt_rng, output_rng)
        self._logs = (prompt_log, output_log)

    def sample(self, count: int) -> tuple[IntArray, IntArray]:
        out = []
        for rng, (mean, sigma) in zip(self._rngs, self._logs, strict=True):
            x = np.rint(rng.lognormal(mean, sigma, size=count))
            # Cap before the integer cast: a large sigma can overflow int64.
            out.append(np.clip(x, 1, 2**40).astype(np.int64))
        return out[0], out[1]


def parametric_sampler(
    kind: str,
    params: Mapping[str, float],
    prompt_rng: np.random.Generator,
    output_rng: np.random.Generator,
) -> LengthSampler:
    """The sampler of a ``fixed``, ``uniform`` or ``lognormal`` distribution."""
    problem = length_param_problem(kind, params)
    if problem is not None:
        raise ConfigurationError(f"length parameter {problem[0]!r} {problem[1]}")
    p = params
    if kind == "fixed":
        return FixedLengths(int(p["prompt_tokens"]), int(p["output_tokens"]))
    if kind == "uniform":
        return UniformLengths(
            prompt_rng,
            output_rng,
            (int(p["prompt_min"]), int(p["prompt_max"])),
            (int(p["output_min"]), int(p["output_max"])),
        )
    if kind == "lognormal":
        return LognormalLengths(
            prompt_rng,
            output_rng,
            (float(p["prompt_mean"]), float(p["prompt_sigma"])),
            (float(p["output_mean"]), float(p["output_sigma"])),
        )
    raise ConfigurationError(f"lengths {kind!r} is not one of {', '.join(LENGTH_PARAMS)}")
