"""A run's results at the conductor: the hosts' exports, collected, and the outcome made of them.

When no window is left the conductor asks every hosting service for its exports (``Collect``);
each answers one ``ExportBatch``, cut in chunks (:mod:`proto.chunks`). :func:`take_export`
reassembles and checks them, :func:`run_outcome` takes each component's export from its leader,
and :class:`KeptOutcomes` keeps the last outcomes, as published, for a controller that missed
one.
"""

from __future__ import annotations

from collections import OrderedDict

from llmtwin.errors import TwinError
from proto.codec import Codec
from proto.control import Chunk, ExportBatch, RunOutcome
from services.base import Rejected
from services.run_failed import RunFailed
from services.run_state import RunState

KEPT_OUTCOMES = 4
"""Outcomes of ended runs kept to publish again on request (a controller that lost one)."""


def take_export(state: RunState, chunk: Chunk, codec: Codec) -> None:
    """File one chunk of a hosting service's export; once its batch is whole, keep it (or fail
    the run with the error it reports). Rejected: a chunk not expected now, one past the size
    limit, or a batch that claims another service or run than its chunks."""
    if state.phase != "collecting" or chunk.stream not in state.ready_services - set(state.exports):
        raise Rejected("stale", f"result chunk of {chunk.stream!r} while {state.phase}")
    try:
        data = state.chunks.add(chunk)
    except TwinError as exc:
        raise Rejected("flood", str(exc.args[0])) from None
    if data is None:
        return
    batch = codec.decode(data, ExportBatch)
    if batch.service != chunk.stream or batch.run != state.run:
        raise Rejected("forged", f"results of {batch.service!r} in the chunks of {chunk.stream!r}")
    if batch.error:
        state.fail(batch.service, batch.error)
        return
    state.exports[batch.service] = batch
    if state.hosting_services() <= set(state.exports):
        state.all_exported.set()


def run_outcome(state: RunState) -> RunOutcome:
    """The outcome of a run whose exports are all in: each component's export from its leader
    (RunFailed naming a component without one)."""
    parts = {}
    for cid in state.components:
        batch = state.exports.get(state.hosts[cid][0] if state.hosts else state.leaders[cid])
        if batch is None or cid not in batch.parts:
            raise RunFailed("", f"no export for {cid}")
        parts[cid] = batch.parts[cid]
    return RunOutcome(state.run, state.now_s, parts, state.stats(), stopped_by=state.stopped_by)


class KeptOutcomes:
    """The last :data:`KEPT_OUTCOMES` runs' outcomes, as published (chunks), oldest dropped first."""

    def __init__(self, limit: int = KEPT_OUTCOMES) -> None:
        self.limit = limit
        self._runs: OrderedDict[str, list[Chunk]] = OrderedDict()

    def keep(self, run: str, pieces: list[Chunk]) -> None:
        self._runs[run] = pieces
        while len(self._runs) > self.limit:
            self._runs.popitem(last=False)

    def get(self, run: str) -> list[Chunk] | None:
        return self._runs.get(run)
