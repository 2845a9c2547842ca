"""Iteration times from the cost model, cached by shape buckets so the engines stay fast.

A decode step's time changes only slowly as contexts grow, so shapes are grouped into buckets
and the cost model is evaluated once per bucket, *at the bucket's representative shape* (never
at whichever shape happened to arrive first), which keeps the cached value a pure function of
the bucket and runs deterministic whatever order the cache fills in.

Buckets keep the top ``m`` significant bits of an integer (``m`` from the relative width): a
value ``x`` with ``L`` bits falls in ``[lo, lo + 2**(L - m))``, whose width is at most
``2**(1 - m)`` of ``x``. Integer-only, so every platform buckets alike.

A prefill step carrying decodes (colocated) is nearly unique per request, so it is split: the
prefill alone (bucketed like everything else) plus what the decodes add, which hardly depends
on the prefill's exact size and is close to linear in their KV tokens (a memory-bound read). That
extra is cached per coarse prefill bucket and decode count as a line through two contexts. The
test suite bounds the error of both against the cost model itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType

from llmtwin.physics.graph import BatchShape, allreduce_ops
from llmtwin.physics.op_time import op_time
from llmtwin.physics.step import StepModel

MIXED_PREFILL_WIDTH = 0.25
"""Relative width of the prefill buckets under which the decodes' extra cost is cached."""

EXTRA_LINE_AT = (512, 4096)
"""KV tokens per decoding sequence through which the decodes' extra cost is drawn as a line."""

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
        self.prefill_coarse = Buckets(MIXED_PREFILL_WIDTH)
        self.plan = plan
        self._decode: dict[tuple[int, int], float] = {}
        self._prefill: dict[tuple[int, int, int, int], float] = {}
        self._decode_extra: dict[tuple[int, int, int, int], tuple[float, float]] = {}
        self._allreduce: dict[int, float] = {}
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

    def allreduce_s(self, tokens: int) -> float:
        """Seconds of tensor-parallel allreduce in one iteration of ``tokens`` tokens, every layer
        (0 at TP 1: one device). Their size depends on the tokens only; worked out once per count
        for every instance of the process (the fleet metrics ask for each logged iteration)."""
        step = self.step
        if step.tp == 1:
            return 0.0
        got = self._allreduce.get(tokens)
        if got is None:
            got = 0.0
            for op in allreduce_ops(step.model, step.tp, tokens, step.prec):  # one layer's
                got += op_time(step.hw, op, step.prec, step.tp) * step.model.layers
            self._allreduce[tokens] = got
        return got

    def decode_times(self) -> Mapping[tuple[int, int], float]:
        """The decode step times computed so far, by (sequences, context bucket start): read only
        (an observer maps a logged step time back to its shape)."""
        return MappingProxyType(self._decode)

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
        """A step with prefill chunks (and, colocated, decodes): see :class:`BatchShape`.

        The prefill alone at its bucket, plus the decodes' extra (see the module docstring);
        with ``shape_bucket = 0`` the shape itself is evaluated.
        """
        b = self.buckets
        if b.exact:
            shape = BatchShape(
                prefill_tokens, prefill_seqs, float(attn_pairs), prefill_context, decode_seqs, decode_context
            )
            return self._time(shape, use_plan=False)
        key = (b.span(prefill_tokens)[0], prefill_seqs, b.span(attn_pairs)[0], b.span(prefill_context)[0])
        alone = self._prefill.get(key)
        if alone is None:
            shape = BatchShape(
                prefill_tokens=b.rep(prefill_tokens),
                prefill_seqs=prefill_seqs,
                prefill_attn_pairs=float(b.rep(attn_pairs)),
                prefill_context_tokens=b.rep(prefill_context),
            )
            alone = self._prefill[key] = self._time(shape, use_plan=False)
        if not decode_seqs:
            return alone
        p = self.prefill_coarse
        dkey = (p.span(prefill_tokens)[0], prefill_seqs, p.span(prefill_context)[0], b.span(decode_seqs)[0])
        line = self._decode_extra.get(dkey)
        if line is None:
            line = self._decode_extra[dkey] = self._extra_line(
                prefill_tokens, prefill_seqs, prefill_context, decode_seqs
            )
        return alone + line[0] + line[1] * decode_context

    def _extra_line(
        self, prefill_tokens: int, prefill_seqs: int, prefill_context: int, decode_seqs: int
    ) -> tuple[float, float]:
        """What ``decode_seqs`` decodes add to a prefill step, as a line in their KV tokens."""
        p, b = self.prefill_coarse, self.buckets
        tokens = p.rep(prefill_tokens)
        base = BatchShape(
            prefill_tokens=tokens,
            prefill_seqs=prefill_seqs,
            prefill_attn_pairs=float(causal_pairs(max(1, tokens // prefill_seqs), 0) * prefill_seqs),
            prefill_context_tokens=p.rep(prefill_context),
        )
        seqs = b.rep(decode_seqs)
        lo, hi = EXTRA_LINE_AT
        alone = self._time(base, use_plan=False)
        t_lo = self._time(replace(base, decode_seqs=seqs, decode_context_tokens=seqs * lo), use_plan=False)
        t_hi = self._time(replace(base, decode_seqs=seqs, decode_context_tokens=seqs * hi), use_plan=False)
        slope = (t_hi - t_lo) / (seqs * (hi - lo))
        return t_lo - alone - slope * seqs * lo, slope

    def _time(self, shape: BatchShape, use_plan: bool) -> float:
        self.evaluations += 1
        if use_plan and self.plan is not None:
            # PRESERVE: the plan says which weight/KV bytes each op reads from L2 instead of HBM.
            return self.step.time(shape, self.plan(shape))
        return self.step.time(shape)


def causal_pairs(chunk: int, cached: int) -> int:
    """Query-key pairs of a causal prefill chunk of ``chunk`` tokens after ``cached`` ones."""
    return chunk * cached + chunk * (chunk + 1) // 2
