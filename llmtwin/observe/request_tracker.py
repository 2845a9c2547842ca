"""Requests followed across instances, from the token pieces every instance reports: the balancer's.

Under AcceLLM and disaggregated serving a request's tokens come from two instances (or more:
hand-overs go back and forth), so no device alone knows its gaps, its end-to-end latency or
whether it met its SLOs. Each device reports the tokens its instances produced
(:class:`~llmtwin.observe.observations.TokenPieces`, from ``llmtwin/cluster/observer.py``);
the :class:`RequestTracker` in the service that hosts the balancer puts them together:

* a piece that starts with a request's first token gives its TTFT and prompt tokens at once;
  the gaps inside a piece, and before a piece that follows a token of the same instance, too;
* once a request has all its tokens (``output_tokens`` of them) its pieces are put in time
  order: the gaps across instances, its per-request latencies (:class:`FinishedRequest`, to the
  instance of its last token) and whether it met both SLOs (the summary's own rule,
  :func:`llmtwin.report.summary.meets_slo`, on the same float token times);
* at the end of the run (every instance has sent its final record) the requests still in flight
  give their cross-instance gaps (the summary counts their tokens too).

So at the end of a run the totals equal summary.json's, whatever order the reports arrive in.
Reports are checked (sizes, request ids, engines) and each engine's iterations are taken once:
a report repeating iterations already seen (a restarted device replays its run) only adds the
new ones.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from llmtwin.arrays import FloatArray, IntArray
from llmtwin.cluster.records import RequestTable
from llmtwin.cluster.tbt_stats import gap_stats
from llmtwin.errors import ProtocolError
from llmtwin.observe.observations import EngineRequests, FinishedRequest, PieceKind, TokenPieces
from llmtwin.report.summary import meets_slo
from llmtwin.scenario.spec import SLOSpec

_KINDS = tuple(PieceKind)
"""PieceKind by value."""

_by_time = operator.itemgetter(0, 1)
"""A piece's sort key: its first token's time, then its engine."""


class _Piece(NamedTuple):
    """Tokens of one request from one engine (a tuple: a run makes hundreds of thousands)."""

    first_s: float
    engine: str
    kind: PieceKind
    last_s: float
    times: FloatArray


@dataclass(slots=True)
class _Acc:
    """What one engine's requests did since the last :meth:`RequestTracker.take`."""

    prompt_tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    gaps: list[FloatArray] = field(default_factory=list)
    hop_gaps: list[float] = field(default_factory=list)
    """Gaps before pieces that follow a token of another engine (found at completion)."""
    finished: list[FinishedRequest] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Settled:
    """Requests the tracker saw complete since its last :meth:`RequestTracker.take`."""

    finished: int = 0
    slo_met: int = 0
    last_completion_s: float | None = None
    """The latest completion of the run so far (None before the first)."""


class RequestTracker:
    """See the module docstring. ``arrival_s``, ``prompt_tokens``, ``output_tokens``: the run's
    requests by id; ``engines``: the instances that will report."""

    def __init__(
        self,
        arrival_s: FloatArray,
        prompt_tokens: IntArray,
        output_tokens: IntArray,
        slo: SLOSpec,
        engines: Sequence[str],
    ) -> None:
        self.arrival = np.asarray(arrival_s, dtype=np.float64)
        self.prompt = np.asarray(prompt_tokens, dtype=np.int64)
        self.output = np.asarray(output_tokens, dtype=np.int64)
        self.slo = slo
        self.engines = tuple(engines)
        self.tokens = np.zeros(self.arrival.size, dtype=np.int64)
        self.pieces: dict[int, list[_Piece]] = {}
        self.first_s: dict[int, float] = {}
        self.scheduled: dict[int, float] = {}
        self.covered = dict.fromkeys(self.engines, 0)
        """Per engine: iterations reported so far."""
        self.final: set[str] = set()
        self.acc = {e: _Acc() for e in self.engines}
        self._done: list[tuple[int, FloatArray]] = []
        self.finished = 0
        self.last_completion: float | None = None
        self.flushed = False
        self.unscheduled = 0
        """Finished requests whose first prefill iteration no report gave."""

    @property
    def complete(self) -> bool:
        """Every engine has sent its final report (and the rest was flushed)."""
        return self.flushed

    # -- input ----------------------------------------------------------------------------------------
    def add(self, p: TokenPieces) -> None:
        """One engine's report (ProtocolError if it does not hold together, before anything of
        it is taken), in bulk over its pieces: a report holds thousands."""
        self._check(p)
        engine, seen = p.engine, self.covered[p.engine]
        count = np.asarray(p.count, dtype=np.int64)
        stops = np.cumsum(count)
        # Iterations already seen (a restarted device's replay) are cut from the front of a
        # piece; what is left of it has lost its link to the token before it.
        skip = np.clip(seen - np.asarray(p.first_it, dtype=np.int64), 0, None)
        keep = np.flatnonzero(skip < count)
        kinds = np.where(skip == 0, np.asarray(p.kind, dtype=np.int64), int(PieceKind.HOP))
        if keep.size:
            self._pieces(
                engine,
                np.asarray(p.rid, dtype=np.int64)[keep],
                np.asarray(p.times_s, dtype=np.float64),
                (stops - count + skip)[keep],
                stops[keep],
                kinds[keep],
                np.asarray(p.prev_s, dtype=np.float64)[keep],
            )
        for rid, start in zip(p.scheduled_rid, p.scheduled_s, strict=True):
            self.scheduled.setdefault(rid, start)
        self.covered[engine] = max(seen, p.to_it)
        if p.final:
            self.final.add(engine)
            if self.final >= set(self.engines) and not self.flushed:
                self._flush()

    def _pieces(
        self,
        engine: str,
        rids: IntArray,
        times: FloatArray,
        starts: IntArray,
        stops: IntArray,
        kinds: IntArray,
        prev_s: FloatArray,
    ) -> None:
        """Pieces of one report: request ``rids[k]``'s tokens ``times[starts[k]:stops[k]]``."""
        uniq, where = np.unique(rids, return_inverse=True)
        added = np.bincount(where, weights=stops - starts, minlength=uniq.size).astype(np.int64)
        over = self.tokens[uniq] + added > self.output[uniq]
        if over.any():
            raise ProtocolError(f"request {int(uniq[over][0])}: more tokens reported than it generates")
        self.tokens[uniq] += added
        acc = self.acc[engine]
        # The gap before every token of a piece but its first: pairs of tokens both inside one
        # piece (a difference array marks the pieces, which never overlap).
        marks = np.zeros(times.size + 1, dtype=np.int64)
        marks[starts] += 1  # no two pieces share a start, nor an end
        marks[stops] -= 1
        inside = np.cumsum(marks[:-1]) > 0
        pair = inside[:-1] & inside[1:]
        last = stops - 1
        pair[last[last < pair.size]] = False  # a piece's last token and the next piece's first
        if pair.any():
            acc.gaps.append(np.diff(times)[pair])
        cont = (kinds == int(PieceKind.CONT)) & np.isfinite(prev_s)
        if cont.any():
            acc.gaps.append(times[starts[cont]] - prev_s[cont])
        firsts = np.flatnonzero(kinds == int(PieceKind.FIRST))
        for rid, t in zip(rids[firsts].tolist(), times[starts[firsts]].tolist(), strict=True):
            if rid not in self.first_s:
                self._first(acc, rid, t)
        pieces = self.pieces
        for rid, a, b, kind, first_s, last_s in zip(
            rids.tolist(), starts.tolist(), stops.tolist(), kinds.tolist(),
            times[starts].tolist(), times[stops - 1].tolist(), strict=True,
        ):  # fmt: skip
            piece = _Piece(first_s, engine, _KINDS[kind], last_s, times[a:b])
            if (held := pieces.get(rid)) is None:
                pieces[rid] = [piece]
            else:
                held.append(piece)
        # Completed in the order of their last pieces, as one piece at a time would.
        done = uniq[self.tokens[uniq] == self.output[uniq]]
        if done.size:
            last_piece = rids.size - 1 - np.unique(rids[::-1], return_index=True)[1]
            for rid in uniq[np.argsort(last_piece)].tolist():
                if self.tokens[rid] == self.output[rid]:
                    self._completed(rid)

    def _check(self, p: TokenPieces) -> None:
        if p.engine not in self.covered:
            raise ProtocolError(f"token report of unknown engine {p.engine!r}")
        n = len(p.rid)
        if not (len(p.first_it) == len(p.count) == len(p.kind) == len(p.prev_s) == n):
            raise ProtocolError("token report with lists of different lengths")
        if len(p.scheduled_rid) != len(p.scheduled_s):
            raise ProtocolError("token report with lists of different lengths")
        if any(c < 1 for c in p.count) or sum(p.count) != len(p.times_s):
            raise ProtocolError("token report whose counts do not match its times")
        if not (math.isfinite(sum(p.times_s)) and math.isfinite(sum(p.scheduled_s))):
            raise ProtocolError("token report with times that are not finite")
        if any(k not in (0, 1, 2) for k in p.kind):
            raise ProtocolError("token report with an unknown piece kind")
        size = self.arrival.size
        if any(not 0 <= r < size for r in (*p.rid, *p.scheduled_rid)):
            raise ProtocolError("token report naming an unknown request")

    def _first(self, acc: _Acc, rid: int, t: float) -> None:
        self.first_s[rid] = t
        acc.ttft.append(t - float(self.arrival[rid]))
        acc.prompt_tokens += int(self.prompt[rid])

    def _ordered(self, rid: int) -> list[_Piece]:
        """A request's pieces in time order, with the gaps across instances observed (and its
        TTFT, if no piece said it held the first token)."""
        ps = sorted(self.pieces.pop(rid, []), key=_by_time)
        if ps and rid not in self.first_s:
            self._first(self.acc[ps[0].engine], rid, ps[0].first_s)
        for before, p in itertools.pairwise(ps):
            if p.kind is not PieceKind.CONT:
                self.acc[p.engine].hop_gaps.append(p.first_s - before.last_s)
        return ps

    def _completed(self, rid: int) -> None:
        ps = self._ordered(rid)
        times = ps[0].times if len(ps) == 1 else np.concatenate([p.times for p in ps])
        first, last = ps[0].first_s, ps[-1].last_s
        arrival = float(self.arrival[rid])
        self.acc[ps[-1].engine].finished.append(
            FinishedRequest(
                rid=rid,
                arrival_s=arrival,
                scheduled_s=self._scheduled_s(rid, first),
                first_token_s=first,
                completion_s=last,
                prompt_tokens=int(self.prompt[rid]),
                generated_tokens=int(times.size),
            )
        )
        self.first_s.pop(rid, None)
        self._done.append((rid, times))
        self.finished += 1
        self.last_completion = last if self.last_completion is None else max(self.last_completion, last)

    def _scheduled_s(self, rid: int, first_token_s: float) -> float:
        """When the request's first prefill iteration started (its first token's time if no
        device said: after a device's restart; counted in :attr:`unscheduled`)."""
        start = self.scheduled.pop(rid, None)
        if start is None:
            self.unscheduled += 1
            return first_token_s
        return start

    def _flush(self) -> None:
        """The run ended: requests still in flight give their gaps across instances."""
        for rid in sorted(self.pieces):
            self._ordered(rid)
        self.flushed = True

    # -- output ---------------------------------------------------------------------------------------
    def take(self) -> tuple[list[EngineRequests], Settled]:
        """What happened since the last call: per engine, and the requests that completed."""
        out = []
        for engine, acc in self.acc.items():
            if acc.prompt_tokens or acc.ttft or acc.gaps or acc.hop_gaps or acc.finished:
                gaps = np.concatenate([*acc.gaps, np.asarray(acc.hop_gaps, dtype=np.float64)])
                out.append(
                    EngineRequests(engine, acc.prompt_tokens, tuple(acc.ttft), gaps, tuple(acc.finished))
                )
                self.acc[engine] = _Acc()
        done, self._done = self._done, []
        return out, Settled(len(done), self._slo_met(done), self.last_completion)

    def _slo_met(self, done: list[tuple[int, FloatArray]]) -> int:
        """How many of these completed requests met both SLOs (the summary's rule and figures)."""
        if not done:
            return 0
        rids = np.asarray([r for r, _ in done], dtype=np.int64)
        counts = np.asarray([t.size for _, t in done], dtype=np.int64)
        times = np.concatenate([t for _, t in done])
        table = RequestTable.empty(self.arrival[rids], self.prompt[rids], self.output[rids])
        ends = np.cumsum(counts)
        table.first_token_s[:] = times[ends - counts]
        table.completion_s[:] = times[ends - 1]
        stats = gap_stats(times, counts)
        table.tbt_mean_s[:], table.tbt_p90_s[:], table.tbt_p99_s[:] = stats.mean, stats.p90, stats.p99
        return int(meets_slo(table, self.slo).sum())
