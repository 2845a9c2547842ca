"""How a host steps a window it is granted, and the windows after it under a horizon grant.

Under a horizon grant (``GrantBatch.horizon_s`` > the window's time) every other service's
component has nothing to do before the horizon, so the host's own planner
(``HostedRun.planner``, the conductor's :class:`~llmtwin.sim.windows.WindowPlanner` restricted to
its components) opens the next windows here, exactly as the conductor would: a host steps them
while their time stays below the horizon, which shrinks to the time of anything it sends to
another service (that component may answer at once). Envelopes between its own components are
delivered here after each window, as LocalRunner delivers them; the rest go to the conductor.
Its answer lists the windows it ran ahead, which the conductor replays into its planner, each
checked against the window the planner opens (``services/run_state.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Iterable, Sequence

from llmtwin.errors import ProtocolError, TwinError
from llmtwin.sim.kernel import INF, Envelope
from proto.codec import Codec
from proto.control import AheadWindow, DoneBatch, DoneItem, GrantBatch, WireEnvelope
from services.hosted_run import HostedRun, Stepped
from services.metrics import HostMetrics

log = logging.getLogger(__name__)

MAX_AHEAD_WINDOWS = 256
"""Windows a host runs by itself under one horizon grant at most (bounds its answer's size)."""


class WindowStepper:
    """Steps granted windows for the host ``name`` (its codec and step metrics passed in)."""

    def __init__(self, name: str, codec: Codec, metrics: HostMetrics) -> None:
        self.name, self.codec, self.metrics = name, codec, metrics

    async def step(self, state: HostedRun, grant: GrantBatch) -> Stepped:
        """Step the granted components, and under a horizon grant the windows after it that
        only its own components have; what they did (or the error)."""
        out = Stepped(grant.window)
        ahead = grant.horizon_s > grant.time_s
        try:
            self._file(state, grant)
            planned = state.planner.next_window()
            if [g.component for g in planned] != grant.components or (
                planned and planned[0].time != grant.time_s
            ):
                raise ProtocolError(
                    f"window {grant.window} grants {grant.components} at t={grant.time_s!r}; by the "
                    f"messages {self.name} holds, {[g.component for g in planned]} step next"
                )
            horizon = await self._step_window(
                state, grant.time_s, zip(grant.components, grant.expect, strict=True),
                grant.follow, out.items, out.wires, local=ahead,
            )  # fmt: skip
            horizon = min(horizon, grant.horizon_s)
            while ahead and len(out.ahead) < MAX_AHEAD_WINDOWS:
                now = state.planner.next_window_time()
                if not now < horizon:
                    break
                grants = state.planner.next_window()
                items: dict[str, DoneItem] = {}
                wires: dict[str, list[WireEnvelope]] = {}
                sent_at = await self._step_window(
                    state, now, ((g.component, g.expect) for g in grants), (), items, wires, local=True
                )
                horizon = min(horizon, sent_at)
                out.ahead.append(AheadWindow(now, [items[g.component] for g in grants]))
                for w in wires.values():
                    out.ahead_wires.extend(w)
        except Exception as exc:  # anything after the grant is understood: an error DoneBatch
            if not isinstance(exc, TwinError):
                log.error("%s: step failed in window %d", self.name, grant.window, exc_info=exc)
            return Stepped(grant.window, error=f"{self.name}: {exc}")
        out.completed = sum(c.completed for c in state.counters) if state.counters else -1
        return out

    async def _step_window(
        self,
        state: HostedRun,
        now: float,
        granted: Iterable[tuple[str, int]],
        follow: Sequence[str],
        items: dict[str, DoneItem],
        wires: dict[str, list[WireEnvelope]],
        *,
        local: bool,
    ) -> float:
        """Step ``granted`` (component, envelopes it must hold) at ``now``; fill ``items`` and
        ``wires`` (what goes to the conductor). ``local``: envelopes for its own components are
        delivered here, after the window, as LocalRunner does (else the conductor relays them).
        Returns the earliest time of what went to another service (``INF`` if nothing did)."""
        fleet, planner, mail = state.fleet, state.planner, state.mail
        granted = list(granted)
        if fleet is not None:
            fleet.granted([cid for cid, _ in granted], follow, now)
        delivered: list[Envelope] = []
        remote_at = INF
        for cid, expect in granted:
            inbox = self._inputs(state, now, cid, expect)
            comp = state.comps[cid]
            if fleet is not None:
                fleet.received(cid, now, [e.body for e in inbox])
            t0 = time.perf_counter()
            if cid in state.offload:  # may block on the planner: keep the loop free
                await asyncio.to_thread(comp.step, now, inbox)
            else:
                comp.step(now, inbox)
            self.metrics.step_duration.observe(time.perf_counter() - t0)
            self.metrics.steps.inc()
            sent = comp.outbox.drain()
            if fleet is not None:
                fleet.sent(cid, [e.body for e in sent])
            if local:
                mine = [e for e in sent if e.dst in mail]
                delivered.extend(mine)
                others = [e for e in sent if e.dst not in mail]
                if others:
                    remote_at = min(remote_at, min(e.time for e in others))
                wires[cid] = [self.codec.to_wire(e) for e in others]
                digest = 0  # no replicas under a horizon grant
            else:
                mine = []
                wires[cid] = [self.codec.to_wire(e) for e in sent]
                digest = zlib.crc32(self.codec.encode(wires[cid])) if sent else 0
            next_s = comp.next_time()
            items[cid] = DoneItem(cid, next_s, [e.dst for e in sent], [e.time for e in sent], digest)
            planner.report(cid, next_s, [(e.dst, e.time) for e in mine])
        for env in delivered:
            mail[env.dst].add(env)
        return remote_at

    def answer(self, state: HostedRun, grant: GrantBatch) -> DoneBatch:
        """The DoneBatch of ``grant`` from what the last step did; only the components the
        grant does not list in ``follow`` have their envelopes published."""
        last = state.last
        if last.error:
            return DoneBatch(grant.run, grant.window, self.name, [], error=last.error, attempt=grant.attempt)
        follow = set(grant.follow)
        items, out = [], []
        for cid in grant.components:
            item = last.items.get(cid)
            if item is None:
                return DoneBatch(
                    grant.run, grant.window, self.name, [],
                    error=f"{self.name}: window {grant.window} granted {cid} again, which it did not step",
                    attempt=grant.attempt,
                )  # fmt: skip
            items.append(item)
            if cid not in follow:
                out.extend(last.wires[cid])
        out.extend(last.ahead_wires)
        if out:
            self.metrics.envelopes_out.inc(len(out))
        return DoneBatch(
            grant.run, grant.window, self.name, items, last.completed, "", out, grant.attempt, last.ahead
        )

    def _file(self, state: HostedRun, grant: GrantBatch) -> None:
        """Check the grant; put relayed envelopes (produced in earlier windows) in their mailboxes."""
        if len(grant.components) != len(grant.expect):
            raise ProtocolError("GrantBatch with components and expect of different lengths")
        for item in grant.envelopes:
            box = state.mail.get(item.dst)
            if box is None:
                raise ProtocolError(f"relayed envelope for {item.dst!r}, which {self.name} does not host")
            box.add(self.codec.from_wire(item))
            state.planner.expect(item.dst, item.time_s)
        if grant.envelopes:
            self.metrics.envelopes_in.inc(len(grant.envelopes))

    def _inputs(self, state: HostedRun, now: float, cid: str, expect: int) -> list[Envelope]:
        """The ``expect`` envelopes stamped <= ``now``, in handling order (every one came with
        this grant or an earlier one, or from its own components)."""
        box = state.mail.get(cid)
        if box is None:
            raise ProtocolError(f"grant for {cid!r}, which {self.name} does not host")
        inbox = box.take(now)
        if len(inbox) != expect:
            raise ProtocolError(
                f"{cid} holds {len(inbox)} messages at t={now!r}, the conductor counted {expect}"
            )
        return inbox
