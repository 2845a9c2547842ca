"""What one engine records as it runs: append-only logs, cheap to rewind to a mark, drained as it goes.

Per-token timestamps are not stored one by one: the engine logs segments of identical
iterations (their end times follow from an anchor) and, per request, the ranges of iterations
in which it produced a token. :mod:`llmtwin.cluster.assemble` expands them.

The logs stay bounded in a long run: entries before the last :meth:`EngineLog.mark` are final
(the engine only ever rewinds to its latest snapshot), and :meth:`EngineLog.drain` hands them over
and forgets them. Marks count every entry ever logged, so they stay valid across drains.
"""

from __future__ import annotations

from array import array
from typing import Any

_FIELDS = (
    ("seg_anchor_it", "seg_anchor_t", "seg_dt", "seg_it", "seg_k", "seg_decode", "seg_prefill_seqs",
     "seg_prefill_tokens", "seg_role"),
    ("range_rid", "range_first", "range_last"),
    ("kv_t", "kv_primary_blocks", "kv_redundant_blocks"),
    ("role_t", "role"),
    ("preempted_rids",),
    ("chunk_rid", "chunk_it"),
)  # fmt: skip
"""The ``InstanceExport`` fields of each group of lists (segments, token ranges, KV, roles,
preemptions, first chunks: the order of a mark's counts; the lists of a group grow together)."""


class EngineLog:
    """Segments, token ranges, KV and role timelines, preemptions, first prefill chunks."""

    def __init__(self) -> None:
        # Typed arrays, 4 bytes an int and 8 a float (a list holds a pointer and, for floats and
        # large ints, a 24-32 byte object): a device service keeps its instances' logs for the
        # whole run. 32-bit ints: request ids, iterations and KV blocks stay far below 2**31 (an
        # overflow raises, it never wraps).
        self.seg_anchor_it: array[int] = array("i")
        self.seg_anchor_t: array[float] = array("d")
        self.seg_dt: array[float] = array("d")
        self.seg_it: array[int] = array("i")
        self.seg_k: array[int] = array("i")
        self.seg_decode: array[int] = array("i")
        self.seg_prefill_seqs: array[int] = array("i")
        self.seg_prefill_tokens: array[int] = array("i")
        self.seg_role: list[str] = []
        self.range_rid: array[int] = array("i")
        self.range_first: array[int] = array("i")
        self.range_last: array[int] = array("i")
        self.kv_t: array[float] = array("d")
        self.kv_primary: array[int] = array("i")
        self.kv_redundant: array[int] = array("i")
        self.role_t: array[float] = array("d")
        self.roles: list[str] = []
        self.preempted_rids: array[int] = array("i")
        self.chunk_rid: array[int] = array("i")
        self.chunk_it: array[int] = array("i")
        self._drained: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
        """Entries of each group handed over by :meth:`drain` (no longer in the lists)."""
        self._stable: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
        """The last mark: what lies before it is final."""
        self._last_kv: tuple[int, int] | None = None
        """The last KV entry drained (a new entry is logged only if it differs)."""

    def _lists(self) -> tuple[tuple[array[Any] | list[Any], ...], ...]:
        """Each group's lists (the first one gives the group's length)."""
        return (
            (
                self.seg_anchor_it, self.seg_anchor_t, self.seg_dt, self.seg_it, self.seg_k,
                self.seg_decode, self.seg_prefill_seqs, self.seg_prefill_tokens, self.seg_role,
            ),
            (self.range_rid, self.range_first, self.range_last),
            (self.kv_t, self.kv_primary, self.kv_redundant),
            (self.role_t, self.roles),
            (self.preempted_rids,),
            (self.chunk_rid, self.chunk_it),
        )  # fmt: skip

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
        if not self.kv_t and self._last_kv == (primary_blocks, redundant_blocks):
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

    @property
    def segments(self) -> int:
        """Segments logged since the start (drained ones included)."""
        return self._drained[0] + len(self.seg_k)

    def mark(self) -> tuple[int, ...]:
        """Entries logged so far, per group (see :meth:`rewind`); everything before is final."""
        d = self._drained
        self._stable = (
            d[0] + len(self.seg_k), d[1] + len(self.range_rid), d[2] + len(self.kv_t),
            d[3] + len(self.role_t), d[4] + len(self.preempted_rids), d[5] + len(self.chunk_rid),
        )  # fmt: skip
        return self._stable

    def rewind(self, mark: tuple[int, ...]) -> None:
        """Forget everything logged after :meth:`mark` returned ``mark``."""
        for at, done, group in zip(mark, self._drained, self._lists(), strict=True):
            if at < done:
                raise AssertionError("rewind to a mark older than what was drained")
            for lst in group:
                del lst[at - done :]

    def drain(self) -> dict[str, list[Any]]:
        """Hand over (and forget) the entries before the last mark, by ``InstanceExport`` field."""
        out: dict[str, list[Any]] = {}
        for at, done, group, fields in zip(self._stable, self._drained, self._lists(), _FIELDS, strict=True):
            n = at - done
            for lst, name in zip(group, fields, strict=True):
                out[name] = lst[:n].tolist() if isinstance(lst, array) else lst[:n]
                del lst[:n]
        if out["kv_t"]:
            self._last_kv = (out["kv_primary_blocks"][-1], out["kv_redundant_blocks"][-1])
        self._drained = self._stable
        return out
