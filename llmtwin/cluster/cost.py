"""Iteration times from the cost model, cached by shape buckets so the engines stay fast.

A decode step's time changes only slowly as contexts grow, so shapes are grouped into buckets
and the cost model is evaluated once per bucket, *at the bucket's representative shape* (never
at whichever shape happened to arrive first), which keeps the cached value a pure function of
the bucket and runs deterministic whatever order the cache fills in.

Buckets keep the top ``m`` significant bits of an integer (``m`` from the relative width): a
value ``x`` with ``L`` bits falls in ``[lo, lo + 2**(L - m))``, whose width is at most
``2**(1 - m)`` of ``x``. Integer-only, so every platform buckets alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from llmtwin.physics.graph import BatchShape
from llmtwin.physics.step import StepModel

PlanProvider = Callable[[BatchShape], dict[int, float]]
"""``provider(shape) -> {op index: bytes read from L2}``: a PRESERVE prefetch plan for one step."""


class Buckets:
    """Integer buckets of bounded relative width (``rel_width`` 0 = exact)."""

    def __init__(self, rel_width: float) -> None:
        self.exact = rel_width <= 0
        # Width 2**(1-m) of the value at most: m >= 1 + log2(1 / rel_width).
        self.bits = 62 if self.exact else max(2, math.ceil(1.0 + math.log2(1.0 / rel_width)))
        self._small = 1 << self.bits

    def span(self, x: int) -> tuple[int, int]:
        """The bucket ``[lo, hi)`` holding ``x`` (``x >= 0``)."""
        if x < self._small:
            return x, x + 1
        s = x.bit_length() - self.bits
        lo = (x >> s) << s
        return lo, lo + (1 << s)

    def rep(self, x: int) -> int:
        """The representative of ``x``'s bucket: its midpoint."""
        lo, hi = self.span(x)
        return lo + ((hi - lo) >> 1)


class IterationCost:
    """Seconds one iteration of one instance takes, by shape, memoised per bucket."""

    def __init__(self, step: StepModel, rel_width: float, plan: PlanProvider | None = None) -> None:
        self.step = step
        self.buckets = Buckets(rel_width)
        self.plan = plan
        self._decode: dict[tuple[int, int], float] = {}
        self._mixed: dict[tuple[int, int, int, int, int, int], float] = {}
        self.evaluations = 0
        """Cost-model evaluations so far (cache misses)."""

    def decode(self, seqs: int, context_tokens: int) -> float:
        """A decode-only step of ``seqs`` sequences reading ``context_tokens`` KV tokens in all."""
        b = self.buckets
        key = (seqs, b.span(context_tokens)[0])
        t = self._decode.get(key)
        if t is None:
            shape = BatchShape(decode_seqs=seqs, decode_context_tokens=b.rep(context_tokens))
            t = self._decode[key] = self._time(shape, use_plan=True)
        return t

    def decode_span(self, context_tokens: int) -> int:
        """First total context past ``context_tokens``'s bucket (the decode time changes there)."""
        return self.buckets.span(context_tokens)[1]

    def mixed(
        self,
        prefill_tokens: int,
        prefill_seqs: int,
        attn_pairs: int,
        prefill_context: int,
        decode_seqs: int,
        decode_context: int,
    ) -> float:
        """A step with prefill chunks (and, colocated, decodes): see :class:`BatchShape`."""
        b = self.buckets
        key = (
            b.span(prefill_tokens)[0],
            prefill_seqs,
            b.span(attn_pairs)[0],
            b.span(prefill_context)[0],
            decode_seqs,
            b.span(decode_context)[0],
        )
        t = self._mixed.get(key)
        if t is None:
            shape = BatchShape(
                prefill_tokens=b.rep(prefill_tokens),
                prefill_seqs=prefill_seqs,
                prefill_attn_pairs=float(b.rep(attn_pairs)),
                prefill_context_tokens=b.rep(prefill_context) if prefill_context else 0,
                decode_seqs=decode_seqs,
                decode_context_tokens=b.rep(decode_context) if decode_seqs else 0,
            )
            t = self._mixed[key] = self._time(shape, use_plan=False)
        return t

    def _time(self, shape: BatchShape, use_plan: bool) -> float:
        self.evaluations += 1
        if use_plan and self.plan is not None:
            # PRESERVE: the plan says which weight/KV bytes each op reads from L2 instead of HBM.
            # StepModel.time adds the engine (serial overheads and the kernel-dispatch queue).
            return self.step.time(shape, self.plan(shape))
        return self.step.time(shape)


def causal_pairs(chunk: int, cached: int) -> int:
    """Query-key pairs of a causal prefill chunk of ``chunk`` tokens after ``cached`` ones."""
    return chunk * cached + chunk * (chunk + 1) // 2
