"""One engine's state: its KV cache, its sequences, and the inputs its policy agent gives it.

:class:`~llmtwin.cluster.engine.Engine` adds the scheduling loop. Every input takes effect at
the next iteration boundary (the iteration in flight finishes first). The state is a handful of
containers of entries that are never changed in place (see ``seqs.py``), so a snapshot is a
shallow copy of them plus the lengths of the append-only logs.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from llmtwin.cluster.cost import IterationCost
from llmtwin.cluster.engine_events import EngineEvent, Evicted
from llmtwin.cluster.engine_log import EngineLog
from llmtwin.cluster.seqs import Held, Job, Role, Run
from llmtwin.errors import ConfigurationError
from llmtwin.scenario.spec import EngineConfig


class EngineState:
    """The KV cache and sequences of one instance (a TP group holding one model replica)."""

    def __init__(
        self,
        cost: IterationCost,
        cfg: EngineConfig,
        capacity_blocks: int,
        role: Role = Role.MIXED,
        evict_threshold: float = 0.0,
    ) -> None:
        if cfg.block_size_tokens < 1:
            raise ConfigurationError(f"engine.block_size_tokens must be >= 1, got {cfg.block_size_tokens}")
        if capacity_blocks < 1:
            raise ConfigurationError("the KV cache holds no block: the weights leave no room")
        self.cost = cost
        self.B = cfg.block_size_tokens
        self.max_tokens = cfg.max_batch_tokens
        self.max_seqs = cfg.max_batch_seqs
        self.chunked = cfg.chunked_prefill
        self.capacity = capacity_blocks
        self.watermark = int(cfg.watermark * capacity_blocks)
        self.evict_floor = int(evict_threshold * capacity_blocks)
        """Free blocks below which redundant copies are evicted (0: only when a block is missing)."""
        self.report_drained = False
        """Emit a ``drained`` event when the prefill role runs out of prompts (AcceLLM)."""
        self.log = EngineLog()
        self.events: list[EngineEvent] = []
        # -- mutable state (copied by snapshot) --
        self.t = 0.0
        """Start of the next iteration: the end of the last committed one (or the idle time)."""
        self.it = 0
        """Index of the next iteration."""
        self.free = capacity_blocks
        self.redundant = 0
        """Blocks holding redundant copies (AcceLLM)."""
        self.role = role
        self.sum_a = 0
        """Sum of ``Run.a`` over running sequences: their KV tokens at iteration i are sum_a + n*i."""
        self.version = 0
        """Bumped whenever the batch composition changes (a new time anchor is needed)."""
        self.anchor: tuple[int, float, float, int] = (0, 0.0, -1.0, -1)
        """(iteration, its start time, dt, version) of the current run of identical iterations."""
        self.serial = 0
        self.running: dict[int, Run] = {}
        self.heap: list[tuple[int, int, int]] = []
        """(finish iteration, serial, rid) of running sequences; stale entries skipped."""
        self.cnt = [0] * self.B
        """cnt[p]: running sequences that need a new block before every iteration i with i % B == p."""
        self.waiting: deque[Job] = deque()
        self.held: dict[int, Held] = {}
        self.replicas: dict[int, int] = {}
        """Redundant copies: rid -> blocks reserved."""
        self.to_release: list[int] = []
        self.to_pause: list[int] = []
        self.to_resume: list[int] = []
        self.next_role: Role | None = None
        self.drain_pending = False
        """A prefill-role iteration ran since the queue was last seen empty (``drained`` is due)."""
        self.deadline = math.inf
        """While failing: no iteration may end after this (see ``Engine.advance_to_failure``)."""
        self.log.role(0.0, role)

    # -- sizes --------------------------------------------------------------------------------------
    def blocks(self, tokens: int) -> int:
        return -(-tokens // self.B)

    @property
    def used(self) -> int:
        return self.capacity - self.free

    def decode_kv_tokens(self) -> int:
        """KV tokens of the running sequences at the next iteration."""
        return self.sum_a + len(self.running) * self.it

    def decode_load(self) -> tuple[int, int]:
        """(sequences, KV tokens) this engine will decode: running plus those about to resume."""
        seqs, tokens = len(self.running), self.decode_kv_tokens()
        for rid in self.to_resume:
            h = self.held.get(rid)
            if h is not None:
                seqs += 1
                tokens += h.kv_tokens + 1
        return seqs, tokens

    def check(self) -> None:
        """Raise if the blocks in use differ from those of the entries holding KV (a test hook:
        every decoding, held, prefilling or redundant copy is accounted here and nowhere else)."""
        used = sum(self.blocks(r.a + self.it - 1) for r in self.running.values())
        used += sum(self.blocks(h.kv_tokens) for h in self.held.values())
        used += sum(self.blocks(j.done) for j in self.waiting)
        used += sum(self.replicas.values())
        if used != self.capacity - self.free or sum(self.replicas.values()) != self.redundant:
            raise AssertionError(
                f"KV accounting: entries hold {used} blocks, the cache says {self.capacity - self.free}"
            )

    def generated(self, rid: int) -> int:
        """Tokens a running sequence has produced before the next iteration."""
        return self.running[rid].g0 + self.it

    # -- set-up by the policy agent, before the run ----------------------------------------------------
    def report_drains(self) -> None:
        """Emit a :class:`Drained` event whenever the prefill role runs out of prompts."""
        self.report_drained = True

    def cap_prefill_tokens(self, tokens: int) -> None:
        """Most prompt tokens per iteration; decode-only iterations never use the token budget,
        so in the prefill and decode roles this caps prefill batches only."""
        self.max_tokens = tokens

    def chunk_prefills(self, budget_tokens: int) -> None:
        """Chunked prefill with this token budget per iteration (decodes first, prompt chunks
        fill the rest), whatever the scenario's ``engine`` table says."""
        self.chunked = True
        self.max_tokens = budget_tokens

    # -- inputs (take effect at the next iteration boundary) ---------------------------------------
    def settle(self, now: float) -> None:
        """Called after :meth:`advance` (``now``): an idle engine's clock moves to ``now``."""
        if self.t < now:
            self.t = now
            self.version += 1

    def submit(self, job: Job) -> None:
        """Queue a prompt (or a recompute) for prefill."""
        self.waiting.append(job)
        self.version += 1

    def drop_waiting(self) -> list[Job]:
        """Take every queued prompt (or recompute) out of the queue, freeing the KV of chunks
        already prefilled; those of the iteration in flight stay (they were admitted)."""
        jobs = list(self.waiting)
        self.waiting.clear()
        for job in jobs:
            self.free += self.blocks(job.done)
        self.version += 1
        return jobs

    def hold(self, h: Held) -> bool:
        """Take in a request's KV (received from elsewhere); False if the blocks are not free."""
        need = self.blocks(h.kv_tokens)
        if need > self.free - self.watermark and not self._evict(need + self.watermark):
            return False
        self.free -= need
        self.held[h.rid] = h
        self.version += 1
        self._sample_kv()
        return True

    def drop_held(self, rid: int) -> Held:
        """Free the KV of a held request."""
        h = self.held.pop(rid)
        self.free += self.blocks(h.kv_tokens)
        self.version += 1
        self._sample_kv()
        return h

    def resume(self, rid: int) -> None:
        """A held request starts (or resumes) decoding at the next boundary."""
        self.to_resume.append(rid)
        self.version += 1

    def cancel_resume(self, rids: set[int]) -> None:
        """Resumes asked for and not applied yet no longer hold for these requests (the batch is
        unchanged until a boundary applies them, so the time anchor stays)."""
        self.to_resume = [r for r in self.to_resume if r not in rids]

    def release(self, rids: list[int]) -> None:
        """Running requests stop here at the next boundary (held, ``released`` event)."""
        self.to_release.extend(rids)
        self.version += 1

    def pause(self, rids: list[int]) -> None:
        """Running requests stop decoding at the next boundary (held, no event)."""
        self.to_pause.extend(rids)
        self.version += 1

    def set_role(self, role: Role) -> None:
        self.next_role = role
        self.version += 1

    def add_replica(self, rid: int, tokens: int) -> bool:
        """Reserve a redundant copy of ``tokens`` KV tokens; False (nothing reserved) if no room
        above the eviction floor."""
        if rid in self.replicas:
            raise AssertionError(f"request {rid} already has a redundant copy here")
        need = self.blocks(tokens)
        if need > self.free - max(self.evict_floor, self.watermark):
            return False
        self.free -= need
        self.redundant += need
        self.replicas[rid] = need
        self._sample_kv()
        return True

    def drop_replica(self, rid: int) -> bool:
        need = self.replicas.pop(rid, None)
        if need is None:
            return False
        self.free += need
        self.redundant -= need
        self._sample_kv()
        return True

    def replica_to_held(self, h: Held) -> bool:
        """Turn this request's redundant copy into the primary (topped up to ``h``'s KV)."""
        have = self.replicas.get(h.rid, 0)
        need = self.blocks(h.kv_tokens)
        if need - have > self.free and not self._evict(need - have, keep=h.rid):
            return False
        self.drop_replica(h.rid)
        self.free -= need
        self.held[h.rid] = h
        self.version += 1
        self._sample_kv()
        return True

    def held_to_replica(self, rid: int, tokens: int) -> bool:
        """Turn a held primary into a redundant copy of ``tokens`` KV tokens (False: dropped)."""
        self.drop_held(rid)
        return self.add_replica(rid, tokens)

    def _evict(self, want_free: int, keep: int = -1) -> bool:
        """Evict redundant copies, largest first, until ``want_free`` blocks are free.

        Largest first frees the most memory per copy lost (fewest requests become pinned)."""
        if self.free >= want_free:
            return True
        if not self.replicas:
            return False
        order = sorted(self.replicas.items(), key=lambda kv: (-kv[1], kv[0]))
        gone = []
        for rid, _ in order:
            if self.free >= want_free:
                break
            if rid == keep:
                continue
            self.drop_replica(rid)
            gone.append(rid)
        if gone:
            self.events.append(Evicted(self.t, tuple(gone)))
        return self.free >= want_free

    def _sample_kv(self) -> None:
        """Log the KV blocks in use now (kept only if they changed). Called at every change the
        engine makes at a definite time: a new batch or step time, requests finishing, KV taken
        in, freed, replicated or evicted; never at a mere cut of a segment (so the timeline does
        not depend on where the run was stopped). Growth within a segment of identical decode
        iterations shows at its end."""
        self.log.kv(self.t, self.capacity - self.free - self.redundant, self.redundant)

    # -- snapshots --------------------------------------------------------------------------------------
    def snapshot(self) -> EngineSnapshot:
        return EngineSnapshot(
            self.t, self.it, self.free, self.redundant, self.role, self.sum_a, self.version,
            self.anchor, self.serial, self.next_role, self.drain_pending,
            self.running.copy(), self.heap.copy(), self.cnt.copy(), self.waiting.copy(),
            self.held.copy(), self.replicas.copy(), self.to_release.copy(), self.to_pause.copy(),
            self.to_resume.copy(), len(self.events), self.log.mark(),
        )  # fmt: skip

    @staticmethod
    def snapshot_view(snap: EngineSnapshot) -> tuple[int, int, tuple[int, ...]]:
        """(prompts waiting, sequences held, log mark) of a snapshot: what an observer reads
        of the state as of the last step instead of the projection (``cluster/observer.py``)."""
        return len(snap.waiting), len(snap.held), snap.log

    def restore(self, snap: EngineSnapshot) -> None:
        """Back to a snapshot (which is consumed: its containers become the engine's)."""
        self.t, self.it, self.free, self.redundant = snap.t, snap.it, snap.free, snap.redundant
        self.role, self.sum_a, self.version, self.anchor = snap.role, snap.sum_a, snap.version, snap.anchor
        self.serial, self.next_role, self.drain_pending = snap.serial, snap.next_role, snap.drain_pending
        self.running, self.heap, self.cnt, self.waiting = snap.running, snap.heap, snap.cnt, snap.waiting
        self.held, self.replicas = snap.held, snap.replicas
        self.to_release, self.to_pause, self.to_resume = snap.to_release, snap.to_pause, snap.to_resume
        del self.events[snap.events :]
        self.log.rewind(snap.log)


class EngineSnapshot(NamedTuple):
    """The mutable state of an engine at one instant (see :meth:`EngineState.snapshot`): the
    scalars, shallow copies of the containers, and the lengths of the append-only logs. A named
    tuple: one is taken after every step of an instance, so it must be as cheap as a tuple."""

    t: float
    it: int
    free: int
    redundant: int
    role: Role
    sum_a: int
    version: int
    anchor: tuple[int, float, float, int]
    serial: int
    next_role: Role | None
    drain_pending: bool
    running: dict[int, Run]
    heap: list[tuple[int, int, int]]
    cnt: list[int]
    waiting: deque[Job]
    held: dict[int, Held]
    replicas: dict[int, int]
    to_release: list[int]
    to_pause: list[int]
    to_resume: list[int]
    events: int
    """Events emitted so far."""
    log: tuple[int, ...]
    """:meth:`EngineLog.mark` at the snapshot."""
