"""How a host steps a window it is granted, and the windows after it under a horizon grant.

Under a horizon grant (``GrantBatch.horizon_s`` > the window's time) every other service's
component has nothing to do before the horizon, so the host's own planner
(``HostedRun.planner``, the conductor's :class:`~llmtwin.sim.windows.WindowPlanner` restricted to
its components) opens the next windows here, exactly as the conductor would: a host steps them
while their time stays below the horizon, which shrinks to the time of anything it sends to
another service (that component may answer at once) unless the receiver takes it silently.
Steps the conductor held back (``DeferredStep``, docs/architecture.md "Silent steps") come
first in a grant, each checked to be as silent as its component claims. Envelopes between its
own components are delivered here after each window, as LocalRunner delivers them; the rest go
to the conductor.
Its answer lists the windows it ran ahead, which the conductor replays into its planner, each
checked against the window the planner opens (``services/ahead_replay.py``).

A host acting for a component another service leads (``HostedRun.acting``, docs/architecture.md
"The balancer's decisions beside the instances") steps it as its own, and also sends the
conductor what its components send it, with the digest of what it sent; the leader takes the
same windows later as ``replica`` steps, checked against that digest and next event.
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
from proto.control import AheadWindow, DeferredStep, DoneBatch, DoneItem, GrantBatch, WireEnvelope
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
        try:
            if len(grant.components) != len(grant.expect):
                raise ProtocolError("GrantBatch with components and expect of different lengths")
            for held in grant.deferred:  # each after what came before it, before what came after
                self._file(state, held.envelopes)
                await self._step_deferred(state, held)
            self._file(state, grant.envelopes)
            if grant.components:
                await self._step_granted(state, grant, out)
            elif not grant.deferred:
                raise ProtocolError(f"window {grant.window} grants nothing")
        except Exception as exc:  # anything after the grant is understood: an error DoneBatch
            if not isinstance(exc, TwinError):
                log.error("%s: step failed in window %d", self.name, grant.window, exc_info=exc)
            return Stepped(grant.window, error=f"{self.name}: {exc}")
        out.completed = sum(c.completed for c in state.counters) if state.counters else -1
        return out

    async def _step_granted(self, state: HostedRun, grant: GrantBatch, out: Stepped) -> None:
        """The granted window (it must be the one the host's own planner opens next) and, under
        a horizon grant, the windows after it that only its own components have, into ``out``."""
        ahead = grant.horizon_s > grant.time_s
        self._open_next(
            state, grant.components, grant.time_s, f"window {grant.window} grants {grant.components}"
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
            out.ahead.append(
                AheadWindow(now, [items[g.component] for g in grants], [e for w in wires.values() for e in w])
            )

    async def _step_deferred(self, state: HostedRun, held: DeferredStep) -> None:
        """Take a step the conductor held back (``DeferredStep``): the one its own planner
        opens next, with only messages the component takes silently; it must send nothing and
        keep its next event, as its policy claims. A ``replica`` step must do what the service
        acting for its component did instead."""
        cid, now = held.component, held.time_s
        self._open_next(state, [cid], now, f"window {held.window} holds back {cid}")
        if held.replica:
            await self._step_behind(state, held)
            return
        comp, kinds = state.comps[cid], state.silent.get(cid, ())
        inbox = self._inputs(state, now, cid, held.expect)
        before = comp.next_time()
        if not inbox or not before > now or not all(isinstance(e.body, kinds) for e in inbox):
            raise ProtocolError(
                f"window {held.window} holds back {cid} at t={now!r}, which is no silent step"
            )
        if state.fleet is not None:
            state.fleet.granted([cid], (), now)
        sent = await self._step_one(state, cid, now, inbox)
        if sent or comp.next_time() != before:
            raise ProtocolError(
                f"{cid} took {sorted({type(e.body).__name__ for e in inbox})} at t={now!r}, which it "
                f"declares silent, and then sent {len(sent)} message(s) or moved its next event "
                f"from {before!r} to {comp.next_time()!r}: its silent_kinds are wrong"
            )
        state.planner.report(cid, before, [])

    async def _step_behind(self, state: HostedRun, held: DeferredStep) -> None:
        """A leader's step behind the service acting for its component: it must send what the
        actor sent (by digest) and have the same next event; what it sends is dropped (the
        actor's went out, and comes back here relayed where it is for a component of its own)."""
        cid, now = held.component, held.time_s
        if state.fleet is not None:
            state.fleet.granted([cid], (), now)
        sent = await self._step_one(state, cid, now, self._inputs(state, now, cid, held.expect))
        digest = self._digest([self.codec.to_wire(e) for e in sent])
        next_s = state.comps[cid].next_time()
        if digest != held.digest or next_s != held.next_time_s:
            raise ProtocolError(
                f"{cid} diverged in window {held.window} at t={now!r} from the service acting for it: "
                f"it sent {len(sent)} message(s) (digest {digest:08x}, the actor's {held.digest:08x}) "
                f"and its next event is {next_s!r} (the actor's {held.next_time_s!r})"
            )
        state.planner.report(cid, next_s, [])

    def _open_next(self, state: HostedRun, components: list[str], now: float, claim: str) -> None:
        """Open the window the host's own planner has next: it must be ``components`` at ``now``,
        as the conductor's ``claim`` says (else ProtocolError)."""
        planned = state.planner.next_window()
        if [g.component for g in planned] != components or (planned and planned[0].time != now):
            raise ProtocolError(
                f"{claim} at t={now!r}; by the messages {self.name} holds, "
                f"{[g.component for g in planned]} step next"
            )

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
            comp = state.comps[cid]
            sent = await self._step_one(state, cid, now, self._inputs(state, now, cid, expect))
            silent = [isinstance(e.body, state.silent.get(e.dst, ())) for e in sent]
            if local:
                mine = [e for e in sent if e.dst in mail]
                delivered.extend(mine)
                # What goes to another service, and what goes to a component it acts for (its
                # leader, behind, takes it too: the conductor relays it there).
                others = [e for e in sent if e.dst not in mail or e.dst in state.acting]
                # What the receiver takes silently cannot make it answer: the conductor holds
                # its step back (``DeferredStep``) and the horizon stands.
                loud = [
                    e.time for e, quiet in zip(sent, silent, strict=True) if not quiet and e.dst not in mail
                ]
                if loud:
                    remote_at = min(remote_at, min(loud))
                wires[cid] = [self.codec.to_wire(e) for e in others]
                # No lockstep replicas under a horizon grant; a leader behind checks what it sent.
                digest = self._digest([self.codec.to_wire(e) for e in sent]) if cid in state.acting else 0
            else:
                mine = []
                wires[cid] = [self.codec.to_wire(e) for e in sent]
                digest = self._digest(wires[cid])
            next_s = comp.next_time()
            items[cid] = DoneItem(
                cid,
                next_s,
                [e.dst for e in sent],
                [e.time for e in sent],
                digest,
                silent if any(silent) else [],
            )
            planner.report(cid, next_s, [(e.dst, e.time) for e in mine])
        for env in delivered:
            mail[env.dst].add(env)
        return remote_at

    def _digest(self, wires: list[WireEnvelope]) -> int:
        """What a step sent, hashed (0: nothing), as its replicas must match it."""
        return zlib.crc32(self.codec.encode(wires)) if wires else 0

    async def _step_one(
        self, state: HostedRun, cid: str, now: float, inbox: list[Envelope]
    ) -> list[Envelope]:
        """Step component ``cid`` at ``now`` with ``inbox``, its fleet observer told; what it sent."""
        comp, fleet = state.comps[cid], state.fleet
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
        return sent

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
        n_out = len(out) + sum(len(a.envelopes) for a in last.ahead)
        if n_out:
            self.metrics.envelopes_out.inc(n_out)
        return DoneBatch(
            grant.run, grant.window, self.name, items, last.completed, "", out, grant.attempt, last.ahead
        )

    def _file(self, state: HostedRun, envelopes: Sequence[WireEnvelope]) -> None:
        """Put relayed envelopes (produced in earlier windows) in their mailboxes."""
        for item in envelopes:
            box = state.mail.get(item.dst)
            if box is None:
                raise ProtocolError(f"relayed envelope for {item.dst!r}, which {self.name} does not host")
            box.add(self.codec.from_wire(item))
            state.planner.expect(item.dst, item.time_s)
        if envelopes:
            self.metrics.envelopes_in.inc(len(envelopes))

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
