"""What one engine records as it runs: append-only logs, cheap to rewind to a mark.

Per-token timestamps are not stored one by one: the engine logs segments of identical
iterations (their end times follow from an anchor) and, per request, the ranges of iterations
in which it produced a token. :func:`llmtwin.cluster.run.assemble_result` expands them.
"""

from __future__ import annotations


class EngineLog:
    """Segments, token ranges, KV and role timelines, preemptions, first prefill chunks."""

    def __init__(self) -> None:
        self.seg_anchor_it: list[int] = []
        self.seg_anchor_t: list[float] = []
        self.seg_dt: list[float] = []
        self.seg_it: list[int] = []
        self.seg_k: list[int] = []
        self.seg_decode: list[int] = []
        self.seg_prefill_seqs: list[int] = []
        self.seg_prefill_tokens: list[int] = []
        self.seg_role: list[str] = []
        self.range_rid: list[int] = []
        self.range_first: list[int] = []
        self.range_last: list[int] = []
        self.kv_t: list[float] = []
        self.kv_primary: list[int] = []
        self.kv_redundant: list[int] = []
        self.role_t: list[float] = []
        self.roles: list[str] = []
        self.preempted_rids: list[int] = []
        self.chunk_rid: list[int] = []
        self.chunk_it: list[int] = []

    def segment(
        self, anchor_it: int, anchor_t: float, dt: float, it: int, k: int, decode: int, pseqs: int,
        ptokens: int, role: str,
    ) -> None:  # fmt: skip
        self.seg_anchor_it.append(anchor_it)
        self.seg_anchor_t.append(anchor_t)
        self.seg_dt.append(dt)
        self.seg_it.append(it)
        self.seg_k.append(k)
        self.seg_decode.append(decode)
        self.seg_prefill_seqs.append(pseqs)
        self.seg_prefill_tokens.append(ptokens)
        self.seg_role.append(role)

    def tokens(self, rid: int, first: int, last: int) -> None:
        """Request ``rid`` produced one token in each iteration ``first..last``."""
        self.range_rid.append(rid)
        self.range_first.append(first)
        self.range_last.append(last)

    def kv(self, t: float, primary_blocks: int, redundant_blocks: int) -> None:
        """KV blocks in use from time ``t`` on (only when they changed)."""
        if self.kv_t and self.kv_primary[-1] == primary_blocks and self.kv_redundant[-1] == redundant_blocks:
            return
        self.kv_t.append(t)
        self.kv_primary.append(primary_blocks)
        self.kv_redundant.append(redundant_blocks)

    def role(self, t: float, role: str) -> None:
        self.role_t.append(t)
        self.roles.append(role)

    def preempted(self, rid: int) -> None:
        self.preempted_rids.append(rid)

    def first_chunk(self, rid: int, it: int) -> None:
        self.chunk_rid.append(rid)
        self.chunk_it.append(it)

    def mark(self) -> tuple[int, ...]:
        """Lengths of the logs now (see :meth:`rewind`)."""
        return (
            len(self.seg_anchor_it), len(self.range_rid), len(self.kv_t), len(self.role_t),
            len(self.preempted_rids), len(self.chunk_rid),
        )  # fmt: skip

    def rewind(self, mark: tuple[int, ...]) -> None:
        """Forget everything logged after :meth:`mark` returned ``mark``."""
        seg, rng, kv, role, pre, chunk = mark
        for lst in (
            self.seg_anchor_it, self.seg_anchor_t, self.seg_dt, self.seg_it, self.seg_k, self.seg_decode,
            self.seg_prefill_seqs, self.seg_prefill_tokens, self.seg_role,
        ):  # fmt: skip
            del lst[seg:]
        for lst2 in (self.range_rid, self.range_first, self.range_last):
            del lst2[rng:]
        del self.kv_t[kv:], self.kv_primary[kv:], self.kv_redundant[kv:]
        del self.role_t[role:], self.roles[role:]
        del self.preempted_rids[pre:]
        del self.chunk_rid[chunk:], self.chunk_it[chunk:]
