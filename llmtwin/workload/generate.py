"""Turn a :class:`~llmtwin.scenario.spec.WorkloadSpec` into the list of requests of one run.

Deterministic: the same workload and seed give the same requests. Each random quantity has its
own stream derived from the seed (``SeedSequence(seed, spawn_key=(stream,))``), so changing the
arrival process leaves the lengths alone and vice versa: comparing Poisson with bursty arrivals
compares the same requests arriving differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import WorkloadSpec
from llmtwin.workload.arrivals import ArrivalProcess, RenewalArrivals, ReplayArrivals
from llmtwin.workload.lengths import (
    TRACE_KINDS,
    LengthSampler,
    ReplayLengths,
    TraceLengths,
    parametric_sampler,
)
from llmtwin.workload.request import RequestSpec
from llmtwin.workload.traces import FloatArray, IntArray, Trace, load_trace

STREAM_ARRIVALS = 0
STREAM_PROMPTS = 1
"""Prompt lengths, or the row index when lengths are drawn from a trace."""
STREAM_OUTPUTS = 2

TraceLoader = Callable[[str], Trace]


def rng_stream(seed: int, stream: int) -> np.random.Generator:
    """The independent random stream number ``stream`` of ``seed``."""
    if seed < 0:
        raise ConfigurationError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def generate_requests(
    workload: WorkloadSpec,
    seed: int,
    max_context_tokens: int,
    traces: TraceLoader = load_trace,
) -> list[RequestSpec]:
    """The run's requests, ``rid`` 0..n-1 in arrival order, the first arriving at 0 s.

    The first ``workload.requests`` arrivals, or every arrival in ``[0, duration_s)``, or the
    fewer of the two when both are given, or else (trace replay only) the whole trace. Lengths
    are clipped so prompt + output fits ``max_context_tokens`` (see :func:`clip_lengths`).

    With ``workload.phases``, phase ``k`` is generated the same way from its own random streams
    (numbers ``3k + stream``, so a single phase gives what its workload alone gives) and shifted
    to start where phase ``k - 1``'s ``duration_s`` ended; ``requests`` and ``duration_s`` of
    the whole workload then cap the concatenation.
    """
    loaded: dict[str, Trace] = {}

    def trace(ref: str | None) -> Trace:
        if ref is None:
            raise ConfigurationError("workload.trace is needed by arrival = 'trace' or lengths = 'trace'")
        if ref not in loaded:
            loaded[ref] = traces(ref)
        return loaded[ref]

    if not workload.phases:
        times, prompt, output = _one_workload(workload, seed, 0, max_context_tokens, trace)
    else:
        parts = []
        start = 0.0
        for k, phase in enumerate(workload.phases):
            length_s = phase.duration_s
            if length_s is None:
                raise ConfigurationError(f"workload phase {k} needs duration_s")
            limit = phase.max_prompt_tokens or workload.max_prompt_tokens
            phase = dataclasses.replace(phase, max_prompt_tokens=limit)
            t, p, o = _one_workload(phase, seed, PHASE_STREAMS * k, max_context_tokens, trace)
            parts.append((t + start, p, o))
            start += length_s
        times = np.concatenate([t for t, _, _ in parts])
        prompt = np.concatenate([p for _, p, _ in parts])
        output = np.concatenate([o for _, _, o in parts])
        keep = len(times)
        if workload.duration_s is not None:
            keep = int(np.searchsorted(times, workload.duration_s, side="left"))
        if workload.requests is not None:
            keep = min(keep, workload.requests)
        times, prompt, output = times[:keep], prompt[:keep], output[:keep]
    return [
        RequestSpec(rid=i, arrival_s=float(t), prompt_tokens=int(p), output_tokens=int(o))
        for i, (t, p, o) in enumerate(zip(times, prompt, output, strict=True))
    ]


PHASE_STREAMS = 3
"""Random streams each phase of a workload uses (arrivals, prompts, outputs)."""


def _one_workload(
    workload: WorkloadSpec,
    seed: int,
    base: int,
    max_context_tokens: int,
    trace: Callable[[str | None], Trace],
) -> tuple[FloatArray, IntArray, IntArray]:
    """Arrival times, prompt and output lengths of a workload without phases."""
    arrivals = _arrival_process(workload, rng_stream(seed, base + STREAM_ARRIVALS), trace)
    if workload.duration_s is not None:
        times = arrivals.within(workload.duration_s)
        if workload.requests is not None:
            times = times[: workload.requests]
    elif workload.requests is not None:
        times = arrivals.first(workload.requests)
    elif isinstance(arrivals, ReplayArrivals):
        times = arrivals.all()
    else:
        raise ConfigurationError("the workload needs requests or duration_s")
    sampler = _length_sampler(workload, seed, base, trace)
    prompt, output = sampler.sample(len(times))
    prompt, output = clip_lengths(prompt, output, max_context_tokens, workload.max_prompt_tokens)
    return times, prompt, output


def clip_lengths(
    prompt: IntArray,
    output: IntArray,
    max_context_tokens: int,
    max_prompt_tokens: int | None = None,
) -> tuple[IntArray, IntArray]:
    """Make every request fit the model's context: prompt + output <= ``max_context_tokens``.

    Outputs are first capped at ``max_context_tokens - 1`` (and raised to 1: the prefill always
    yields one token). Then, without ``max_prompt_tokens``, prompts are truncated to what the
    output leaves, as a client trims history to fit; with it, prompts are capped at that and the
    output stops at the context limit, as an engine's max_model_len does.
    """
    if max_context_tokens < 2:
        raise ConfigurationError(f"the model context must be >= 2 tokens, got {max_context_tokens}")
    if max_prompt_tokens is not None and not 1 <= max_prompt_tokens < max_context_tokens:
        raise ConfigurationError(
            f"max_prompt_tokens must be in [1, {max_context_tokens - 1}] "
            f"(the model context is {max_context_tokens}), got {max_prompt_tokens}"
        )
    output = np.clip(output, 1, max_context_tokens - 1)
    if max_prompt_tokens is None:
        prompt = np.clip(prompt, 1, max_context_tokens - output)
    else:
        prompt = np.clip(prompt, 1, max_prompt_tokens)
        output = np.minimum(output, max_context_tokens - prompt)
    return prompt.astype(np.int64), output.astype(np.int64)


def _arrival_process(
    workload: WorkloadSpec, rng: np.random.Generator, trace: Callable[[str | None], Trace]
) -> ArrivalProcess:
    if workload.arrival == "poisson":
        return RenewalArrivals(rng, workload.rate_rps, 1.0)
    if workload.arrival == "gamma":
        return RenewalArrivals(rng, workload.rate_rps, workload.cv)
    if workload.arrival == "trace":
        return ReplayArrivals(trace(workload.trace).arrival_s, workload.time_scale)
    raise ConfigurationError(f"arrival {workload.arrival!r} is not one of poisson, gamma, trace")


def _length_sampler(
    workload: WorkloadSpec, seed: int, base: int, trace: Callable[[str | None], Trace]
) -> LengthSampler:
    kind = workload.lengths
    prompt_rng = rng_stream(seed, base + STREAM_PROMPTS)
    if kind in TRACE_KINDS:
        return TraceLengths(trace(kind), prompt_rng)
    if kind == "trace":
        if workload.arrival == "trace":
            return ReplayLengths(trace(workload.trace))
        return TraceLengths(trace(workload.trace), prompt_rng)
    return parametric_sampler(
        kind, workload.length_params, prompt_rng, rng_stream(seed, base + STREAM_OUTPUTS)
    )
