"""One instance's iteration-level scheduler over a paged KV cache: pure and fast-forwarding.

Model (vLLM-style): every iteration runs all decoding sequences (one token each) and, in the
``mixed`` and ``prefill`` roles, admits waiting prompts first come first served while the token
budget (``max_batch_tokens``), the sequence cap (``max_batch_seqs``) and free KV blocks above the
watermark allow. KV lives in blocks of ``block_size_tokens``; a sequence needing a new block when
none is free first evicts redundant copies (AcceLLM), then preempts the newest running sequence
(recompute). A prompt longer than the budget is admitted alone (vLLM requires the budget to
cover the context when prefill is not chunked; here a long prompt simply takes the iteration).

Speed: between changes of the batch (a join, a completion, a preemption) a decode batch is
constant and its step time changes only when the summed context leaves its cost bucket, so a
whole run of identical iterations is committed in O(1) as one *segment*. Iteration ``i`` of a
segment ends at ``anchor_t + (i - anchor_it + 1) * dt``; the anchor survives a segment being cut
at an arbitrary time, so results do not depend on where the caller stops the engine.

Time semantics (see :meth:`Engine.advance`): the engine has committed every iteration that starts
before the time it was advanced to; work handed to it at time ``T`` joins the first iteration
starting at or after ``T`` (the iteration in flight finishes first).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from llmtwin.cluster.cost import causal_pairs
from llmtwin.cluster.engine_events import Drained, Finished, Prefilled, Recompute, Released
from llmtwin.cluster.engine_state import EngineState
from llmtwin.cluster.seqs import Held, Job, LostSeq, Role, Run

INF = math.inf
# The roles bound once: an enum member lookup costs more than the comparison in the hot loop.
MIXED, PREFILL, DECODE, DOWN = Role.MIXED, Role.PREFILL, Role.DECODE, Role.DOWN


class Engine(EngineState):
    """The scheduler of one instance: advances its iterations (see the module docstring)."""

    # -- running ------------------------------------------------------------------------------------
    def advance(self, until: float) -> None:
        """Commit every iteration that starts before ``until``."""
        self._run(until, stop=False)

    def project(self) -> None:
        """Run until the first external event (or until idle). The caller snapshots first."""
        self._run(INF, stop=True)

    # -- failures ---------------------------------------------------------------------------------
    def advance_to_failure(self, at: float) -> None:
        """Commit every iteration that ends by ``at``: the one in flight when the instance fails
        produces nothing."""
        self.deadline = at
        try:
            self._run(at, stop=False)
        finally:
            self.deadline = INF

    def wipe(self, at: float) -> tuple[list[LostSeq], list[int]]:
        """The instance failed at ``at`` and its memory is gone: the requests it held (decoding,
        held or queued, in that order) and the redundant copies it held; it is then empty, in
        the ``down`` role."""
        lost = []
        for rid in list(self.running):
            r = self._stop_run(rid, keep=False)
            gen = r.g0 + self.it
            lost.append(LostSeq(rid, r.arrival_s, r.prompt, r.output, gen, r.prompt + gen - 1))
        lost += [
            LostSeq(h.rid, h.arrival_s, h.prompt, h.output, h.generated, h.kv_tokens)
            for h in self.held.values()
        ]
        lost += [LostSeq(j.rid, j.arrival_s, j.prompt, j.output, j.generated, j.done) for j in self.waiting]
        copies = sorted(self.replicas)
        self.held, self.replicas, self.waiting = {}, {}, deque()
        self.heap, self.cnt = [], [0] * self.B
        self.free, self.redundant = self.capacity, 0
        self.to_release, self.to_pause, self.to_resume = [], [], []
        self.next_role, self.drain_pending = None, False
        self.t = max(self.t, at)
        self.recover(self.t, DOWN)
        return lost, copies

    def recover(self, at: float, role: Role) -> None:
        """Take ``role`` at ``at`` (back from a failure, or down for one)."""
        self.t = max(self.t, at)
        self.role = role
        self.log.role(self.t, role)
        self.version += 1
        self._sample_kv()

    def _run(self, until: float, stop: bool) -> None:
        events = self.events
        n0 = len(events)
        while self.t < until:
            self._boundary()
            if stop and len(events) > n0:
                return
            if not self._iterate(until):
                return
            if stop and len(events) > n0:
                return

    def _boundary(self) -> None:
        """Apply what was asked for this boundary: releases, pauses, a role change, resumes."""
        if self.to_release:
            rids = [r for r in dict.fromkeys(self.to_release) if r in self.running]
            self.to_release = []
            for rid in rids:
                self._stop_run(rid)
            if rids:
                self.events.append(Released(self.t, tuple(rids)))
        if self.to_pause:
            for rid in self.to_pause:
                if rid in self.running:
                    self._stop_run(rid)
            self.to_pause = []
        if self.next_role is not None:
            if self.next_role != self.role:
                self.role = self.next_role
                self.log.role(self.t, self.role)
            self.next_role = None
        if self.role == PREFILL and self.running:
            # The prefill role never decodes: whatever still runs waits, held, for the decode role.
            for rid in list(self.running):
                self._stop_run(rid)
        if self.to_resume and self.role != PREFILL:
            for rid in self.to_resume:
                h = self.held.pop(rid, None)
                if h is not None:
                    self._join(h.rid, h.arrival_s, h.prompt, h.output, h.generated, self.it)
            self.to_resume = []
        if self.drain_pending and self.role == PREFILL and not self.waiting:
            self.drain_pending = False
            if self.report_drained:
                self.events.append(Drained(self.t))

    def _iterate(self, until: float) -> bool:
        """Run the next iteration (or a segment of identical ones); False if there is nothing to run."""
        j = self.it
        n = len(self.running) if self.role != PREFILL else 0
        if n:
            need = self.cnt[j % self.B]
            floor = self.evict_floor if self.replicas else 0
            if need > self.free - floor:
                self._evict(need + floor)
                while need > self.free and self.running:
                    self._preempt_newest()
                    need = self.cnt[j % self.B]
                n = len(self.running)
        chunks = self._admit(n) if self.role != DECODE and self.waiting else []
        if chunks:
            return self._prefill_iteration(j, n, chunks)
        if n == 0:
            return False
        return self._decode_segment(j, n, until)

    # -- one iteration with prefills -----------------------------------------------------------------
    def _admit(self, n: int) -> list[tuple[Job, int]]:
        budget = self.max_tokens - n
        seats = self.max_seqs - n
        avail = self.free - (self.cnt[self.it % self.B] if n else 0)
        out: list[tuple[Job, int]] = []
        taken = 0
        for job in self.waiting:
            if seats <= 0:
                break
            remaining = job.total - job.done
            if self.chunked:
                chunk = min(remaining, budget - taken)
                if chunk <= 0:
                    break
            else:
                chunk = remaining
                if out and taken + chunk > budget:
                    break
            new_blocks = self.blocks(job.done + chunk) - self.blocks(job.done)
            floor = self.watermark if job.done == 0 else 0
            if avail - new_blocks < floor:
                if not self.replicas:
                    break
                before = self.free
                self._evict(self.free - avail + new_blocks + floor)
                avail += self.free - before
                if avail - new_blocks < floor:
                    break
            avail -= new_blocks
            out.append((job, chunk))
            taken += chunk
            seats -= 1
            if chunk < remaining:
                break
        return out

    def _prefill_iteration(self, j: int, n: int, chunks: list[tuple[Job, int]]) -> bool:
        tokens = pairs = context = 0
        for job, chunk in chunks:
            tokens += chunk
            pairs += causal_pairs(chunk, job.done)
            context += job.done
        ctx = self.sum_a + n * j if n else 0
        dt = self.cost.mixed(tokens, len(chunks), pairs, context, n, ctx)
        if self.t + dt > self.deadline:
            return False
        for job, _ in chunks:
            if job.done == 0:
                self.log.first_chunk(job.rid, j)
        grow = self.cnt[j % self.B] if n else 0
        alloc = sum(self.blocks(job.done + c) - self.blocks(job.done) for job, c in chunks)
        self._sample_kv()
        self.free -= grow + alloc
        if self.free < 0:
            raise AssertionError(f"KV cache over capacity by {-self.free} blocks at iteration {j}")
        start = self.t
        role = PREFILL if n == 0 else MIXED
        self.version += 1
        self.anchor = (j, start, dt, self.version)
        end = start + dt
        self._commit(j, 1, n, len(chunks), tokens, role, end)
        for _ in chunks:
            self.waiting.popleft()
        if n:
            self._finish_runs(j, end)
        partial: Job | None = None
        for job, chunk in chunks:
            if job.done + chunk < job.total:
                partial = Job(job.rid, job.arrival_s, job.prompt, job.output, job.generated, job.done + chunk)
                continue
            self._prefilled(job, j, start, end, tokens)
        if partial is not None:
            self.waiting.appendleft(partial)
        if n == 0:
            self.drain_pending = True
        self._sample_kv()  # the prompts' blocks, and those freed by the requests that finished
        return True

    def _prefilled(self, job: Job, j: int, start: float, end: float, batch_tokens: int) -> None:
        """A prompt (or recompute) finished at the end of iteration ``j``: one more token."""
        gen = job.generated + 1
        if gen >= job.output:
            self.free += self.blocks(job.total)
            self.log.tokens(job.rid, j, j)
            self.events.append(Finished(end, job.rid, gen))
        elif self.role == MIXED:
            self._join(job.rid, job.arrival_s, job.prompt, job.output, gen, j + 1, start_it=j)
        else:
            self.held[job.rid] = Held(job.rid, job.arrival_s, job.prompt, job.output, gen)
            self.log.tokens(job.rid, j, j)
            self.events.append(Prefilled(end, job.rid, gen, start, batch_tokens))

    # -- decode segments --------------------------------------------------------------------------
    def _decode_segment(self, j: int, n: int, until: float) -> bool:
        heap, running = self.heap, self.running
        while heap[0][2] not in running or running[heap[0][2]].serial != heap[0][1]:
            heapq.heappop(heap)
        k = heap[0][0] - j + 1
        ctx = self.sum_a + n * j
        hi = self.cost.decode_span(ctx)
        k = min(k, -(-(hi - ctx) // n))
        dt = self.cost.decode(n, ctx)
        floor = self.evict_floor if self.replicas else 0
        grow = self._growth(j, k, n)
        if grow > self.free - floor:
            k = self._fit_growth(j, k, n, self.free - floor)
            grow = -1
        at_it, at_t, at_dt, at_v = self.anchor
        if at_v != self.version or at_dt != dt:
            at_it, at_t, at_dt, at_v = self.anchor = (j, self.t, dt, self.version)
            self._sample_kv()
        if until < INF:
            cut = self._starts_before(until, j, k, at_it, at_t, dt)
            if cut < k:
                k, grow = cut, -1
        if self.deadline < INF:
            cut = self._ends_by(self.deadline, j, k, at_it, at_t, dt)
            if cut == 0:
                return False
            if cut < k:
                k, grow = cut, -1
        self.free -= grow if grow >= 0 else self._growth(j, k, n)
        if self.free < 0:
            raise AssertionError(f"KV cache over capacity by {-self.free} blocks at iteration {j}")
        last = j + k - 1
        end = at_t + (last - at_it + 1) * dt
        self._commit(j, k, n, 0, 0, DECODE, end)
        if heap[0][0] == last:
            self._finish_runs(last, end)
            self._sample_kv()  # the finished requests' blocks are free
        return True

    def _growth(self, j: int, k: int, n: int) -> int:
        """Blocks the running sequences need for iterations j .. j+k-1."""
        B = self.B
        cycles, rest = divmod(k, B)
        if not rest:
            return cycles * n
        cnt = self.cnt
        p = j % B
        end = p + rest
        if end <= B:
            return cycles * n + sum(cnt[p:end])
        return cycles * n + sum(cnt[p:]) + sum(cnt[: end - B])

    def _fit_growth(self, j: int, k: int, n: int, free: int) -> int:
        """The most iterations (< k) whose block growth fits in ``free`` (at least one)."""
        cycles = free // n if n else k
        used = cycles * n
        m = cycles * self.B
        cnt, B = self.cnt, self.B
        while m < k:
            used += cnt[(j + m) % B]
            if used > free:
                break
            m += 1
        return max(1, min(m, k))

    @staticmethod
    def _starts_before(until: float, j: int, k: int, at_it: int, at_t: float, dt: float) -> int:
        """How many of iterations j .. j+k-1 start before ``until`` (at least the first does)."""
        c = min(k, max(1, math.ceil((until - at_t) / dt) + at_it - j))
        while c > 1 and at_t + (j + c - 1 - at_it) * dt >= until:
            c -= 1
        while c < k and at_t + (j + c - at_it) * dt < until:
            c += 1
        return c

    @staticmethod
    def _ends_by(limit: float, j: int, k: int, at_it: int, at_t: float, dt: float) -> int:
        """How many of iterations j .. j+k-1 end by ``limit`` (possibly none)."""
        c = min(k, max(0, math.floor((limit - at_t) / dt) + at_it - j))
        while c > 0 and at_t + (j + c - at_it) * dt > limit:
            c -= 1
        while c < k and at_t + (j + c + 1 - at_it) * dt <= limit:
            c += 1
        return c

    def _commit(self, j: int, k: int, n: int, pseqs: int, ptokens: int, role: Role, end: float) -> None:
        at_it, at_t, dt, _ = self.anchor
        self.log.segment(at_it, at_t, dt, j, k, n, pseqs, ptokens, role)
        self.it = j + k
        self.t = end

    def _finish_runs(self, last: int, end: float) -> None:
        """Sequences whose last token came out of iteration ``last`` leave."""
        heap, running = self.heap, self.running
        while heap and heap[0][0] == last:
            _, serial, rid = heapq.heappop(heap)
            r = running.get(rid)
            if r is None or r.serial != serial:
                continue
            self._stop_run(rid, keep=False)
            self.events.append(Finished(end, rid, r.output))

    # -- joining and leaving --------------------------------------------------------------------------
    def _join(
        self, rid: int, arrival_s: float, prompt: int, output: int, gen: int, j: int, start_it: int = -1
    ) -> None:
        """Start decoding at iteration ``j`` with ``gen`` tokens produced; the KV of all but the
        newest token is already allocated (so the block accounting carries on from the prefill)."""
        self.serial += 1
        r = Run(rid, arrival_s, prompt, output, gen - j, j if start_it < 0 else start_it, self.serial)
        self.running[rid] = r
        a = r.a
        self.sum_a += a
        self.cnt[(1 - a) % self.B] += 1
        heapq.heappush(self.heap, (r.finish_it, r.serial, rid))
        self.version += 1

    def _stop_run(self, rid: int, keep: bool = True) -> Run:
        """Remove a running sequence at the current boundary; keep its KV as held, or free it."""
        r = self.running.pop(rid)
        a = r.a
        self.sum_a -= a
        self.cnt[(1 - a) % self.B] -= 1
        j = self.it
        if j - 1 >= r.start_it:
            self.log.tokens(rid, r.start_it, j - 1)
        gen = r.g0 + j
        if keep:
            self.held[rid] = Held(rid, r.arrival_s, r.prompt, r.output, gen)
        else:
            self.free += self.blocks(r.prompt + gen - 1)
        self.version += 1
        return r

    def _preempt_newest(self) -> None:
        """Out of blocks: drop the newest running sequence's KV; it is prefilled again later."""
        rid = next(reversed(self.running))
        r = self._stop_run(rid, keep=False)
        gen = r.g0 + self.it
        self.log.preempted(rid)
        if self.role == MIXED:
            self.waiting.appendleft(Job(rid, r.arrival_s, r.prompt, r.output, gen))
        else:
            self.events.append(Recompute(self.t, rid, gen, r.arrival_s, r.prompt, r.output))
