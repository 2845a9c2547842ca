"""The conductor's state of one run, and what opening and closing a window does to it."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from llmtwin.sim.windows import Grant, WindowPlanner
from proto import subjects
from proto.chunks import Reassembler
from proto.control import (
    DeferredStep,
    DoneBatch,
    DoneItem,
    ExportBatch,
    GrantBatch,
    Progress,
    Ready,
    RunConfig,
    RunRequest,
    WireEnvelope,
)
from services.ahead_replay import replay_ahead
from services.bus import Subscription
from services.held_steps import HeldSteps
from services.pacing import Pacer
from services.recovery import Recovery
from services.run_failed import RunFailed


@dataclass(slots=True)
class RunState:
    """Everything the conductor tracks while it runs one run."""

    req: RunRequest
    config: RunConfig
    """What every host must build (with the digests it must match)."""
    components: list[str]
    planner: WindowPlanner
    pacer: Pacer
    leaders: dict[str, str] = field(default_factory=dict)
    """Component -> the service that leads it."""
    followers: dict[str, list[str]] = field(default_factory=dict)
    """Component -> services that replicate it."""
    actors: dict[str, str] = field(default_factory=dict)
    """Component -> the service that steps it ahead of its leader (``Ready.acting``)."""
    behind: dict[str, list[str]] = field(default_factory=dict)
    """Component -> the services that step it behind its actor, from the actor's reports (its
    leader); set with ``hosts``."""
    ready_services: set[str] = field(default_factory=set)
    boots: dict[str, str] = field(default_factory=dict)
    """Service -> the process start (``Hello.boot``) whose components the run uses."""
    hosts: dict[str, list[str]] = field(default_factory=dict)
    """Component -> every service stepping it (leader first), set when the windows start and
    changed only by a failover (``services/recovery.py``)."""
    replicated: bool = True
    """Some component has more than one host (no horizon grants then); set with ``hosts``."""
    grant_subjects: dict[str, str] = field(default_factory=dict)
    """Service -> the subject of its grants (built once, not per window)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every component has a leader."""
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on every Ready taken during set-up."""
    phase: str = "setup"
    """setup -> running -> collecting -> done."""
    window: int = 0
    now_s: float = 0.0
    window_opened: float = 0.0
    """perf_counter() when the current window's grants went out."""
    grants: list[Grant] = field(default_factory=list)
    """The current window's grants, in component-id order."""
    horizon_s: float = -math.inf
    """The current window's horizon (``GrantBatch.horizon_s``), when one service has it all."""
    planned: list[Grant] | None = None
    """The next window, when it was planned but could not open at once (pace, pause, stop)."""
    expected: set[str] = field(default_factory=set)
    """Services that owe a DoneBatch for the current window."""
    open: bool = False
    """A window is open (its grants out, not every DoneBatch in)."""
    batches: dict[str, GrantBatch] = field(default_factory=dict)
    """The current window's grant to each service, as last sent (re-sent when lost)."""
    last_sent: float = 0.0
    """perf_counter() when grants of the current window last went out."""
    dones: dict[str, DoneBatch] = field(default_factory=dict)
    handback: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the chain of windows driven by DoneBatch arrivals stops and the run loop must act
    (pace, pause, stop, end, failure)."""
    exports: dict[str, ExportBatch] = field(default_factory=dict)
    all_exported: asyncio.Event = field(default_factory=asyncio.Event)
    chunks: Reassembler = field(default_factory=Reassembler)
    """Export chunks being put back together (bounded: ``max_result_bytes``)."""
    completed: dict[str, int] = field(default_factory=dict)
    relay: dict[str, list[WireEnvelope]] = field(default_factory=dict)
    """Envelopes waiting for the next grant to each service."""
    held: HeldSteps = field(default_factory=HeldSteps)
    """Steps held back for each service's next grant (``services/held_steps.py``)."""
    flushing: bool = False
    """The open round only hands over held-back steps (the windows are done)."""
    counted: int = 0
    """Windows counted in the conductor's metrics so far."""
    messages: int = 0
    rounds: int = 0
    """Windows the conductor opened (round trips); the rest were run ahead under horizon grants."""
    failure: RunFailed | None = None
    stop: bool = False
    stopped_by: str = ""
    recovering: dict[str, Recovery] = field(default_factory=dict)
    """Restarted services replaying the run to rejoin it."""
    lost: dict[str, float] = field(default_factory=dict)
    """Silent services waiting to be restarted -> monotonic time they were declared lost."""
    restarts: dict[str, int] = field(default_factory=dict)
    _others: dict[str, list[str]] = field(default_factory=dict)
    """Service -> the components it does not host (whose wakes bound its horizon)."""
    _mine: dict[str, frozenset[str]] = field(default_factory=dict)
    """Service -> the components it hosts."""
    server_stuck_since: float | None = None
    """monotonic() since when nats-server has not answered the conductor (None: it answers)."""
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while running, cleared while paused."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Interrupts a pacing wait (stop, pause)."""
    subs: list[Subscription] = field(default_factory=list)
    last_progress: float = 0.0
    marks: dict[str, float] = field(default_factory=lambda: {"requested": time.perf_counter()})
    """Wall-clock (perf_counter) time of each phase change: requested, ready, windows_done."""

    @property
    def run(self) -> str:
        return self.req.run

    def fail(self, service: str, message: str) -> None:
        """Record the first failure and wake every wait so the run loop sees it."""
        if self.failure is None:
            self.failure = RunFailed(service, message)
        self.handback.set()
        self.all_exported.set()
        self.ready.set()
        self.joined.set()
        self.resumed.set()
        self.wake.set()

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def join(self, ready: Ready) -> None:
        """A host's ``Ready``: record what it leads and follows; fail the run if it built
        something else than the conductor (digests), or claims a component it must not."""
        who = ready.service
        if ready.error:
            self.fail(who, ready.error)
            return
        if ready.code_digest != self.config.code_digest:
            self.fail(
                who,
                f"{who} runs another installation of the twin (code digest {ready.code_digest[:12]}, "
                f"the conductor's {self.config.code_digest[:12]}): install the same version everywhere",
            )
            return
        if ready.scenario_digest != self.config.scenario_digest:
            self.fail(
                who,
                f"{who} resolved run {self.run} to other contents (scenario digest "
                f"{ready.scenario_digest[:12]}, the conductor's {self.config.scenario_digest[:12]}): "
                "a stale scenario, catalog or trace file on that host?",
            )
            return
        for cid in ready.leaders:
            if cid not in self.planner.components:
                self.fail(who, f"{who} hosts {cid!r}, which run {self.run} does not have")
            elif self.leaders.setdefault(cid, who) != who:
                self.fail(who, f"{cid} is led by both {self.leaders[cid]} and {who}")
        for cid in ready.followers:
            if who not in self.followers.setdefault(cid, []):
                self.followers[cid].append(who)
        for cid in ready.acting:
            if cid not in self.planner.components:
                self.fail(who, f"{who} acts for {cid!r}, which run {self.run} does not have")
            elif self.actors.setdefault(cid, who) != who:
                self.fail(who, f"{cid} has two services acting for it: {self.actors[cid]} and {who}")
        self.ready_services.add(who)
        self.boots[who] = ready.boot
        self.joined.set()
        if len(self.leaders) == len(self.components):
            self.ready.set()

    def hosting_services(self) -> set[str]:
        """Services that lead a component now (whose exports make the results)."""
        if self.hosts:
            return {hosts[0] for hosts in self.hosts.values()}
        return set(self.leaders.values())

    def fix_hosts(self) -> None:
        """Who steps each component, once every service is ready (the windows then start): its
        leader and followers, or the service acting for it (its leader then steps behind)."""
        for cid in self.actors:
            if self.followers.get(cid):
                self.fail(self.actors[cid], f"{cid} has followers and a service acting for it: not both")
        self.hosts = {
            c: [self.actors[c]] if c in self.actors else [s, *self.followers.get(c, ())]
            for c, s in self.leaders.items()
        }
        self.behind = {c: [self.leaders[c]] for c in self.actors if self.leaders[c] != self.actors[c]}
        self.grant_subjects = {svc: subjects.grant(self.run, svc) for svc in self.ready_services}
        self.hosts_changed()

    def hosts_changed(self) -> None:
        """Recompute what depends on ``hosts`` (after a failover changed it)."""
        self.replicated = any(len(h) > 1 for h in self.hosts.values())
        self._others = {
            svc: [c for c, h in self.hosts.items() if svc not in h] for svc in self.ready_services
        }
        self._mine = {
            svc: frozenset(c for c, h in self.hosts.items() if svc in h) for svc in self.ready_services
        }

    def behind_only(self, svc: str) -> bool:
        """Whether ``svc`` steps nothing but components it leads behind their actor (its counts
        lag the run's: the actor's are the run's)."""
        return bool(self.behind) and not self._mine.get(svc) and any(svc in b for b in self.behind.values())

    def steady(self) -> bool:
        """No component replicated, no service catching up or lost: horizon grants and held-back
        steps are allowed."""
        return not (self.replicated or self.recovering or self.lost)

    def horizon(self, svc: str) -> float:
        """How far ``svc`` may run windows by itself after the open one, granted to it alone
        (``GrantBatch.horizon_s``): the earliest next event or waiting message of every component
        it does not host, bounded by the pace and ``until_s``; ``-inf`` when it must not (some
        component is replicated, some service is catching up or lost)."""
        if not self.steady():
            return -math.inf
        others, mine = self._others.get(svc), self._mine.get(svc)
        if others is None or mine is None:
            return -math.inf
        # Whichever is shorter: the others' wakes, or the planner's heap up to the first of theirs
        # (a balancer's others are every instance). The window being opened is ``svc``'s alone,
        # so every other component has its entry in the heap.
        planner = self.planner
        earliest = planner.earliest(others) if len(others) <= len(mine) else planner.earliest_except(mine)
        limit = min(earliest, self.pacer.allowed_s())
        return min(limit, math.nextafter(self.req.until_s, math.inf))

    def open_window(self, grants: list[Grant]) -> dict[str, GrantBatch]:
        """Start a window: one GrantBatch per service that steps any of ``grants``, with the
        envelopes produced for it since its last grant and the steps held back for it. Steps
        that can be held back are (``hold``); if that is all of them, the window is closed at
        once and nothing is sent (an empty result)."""
        first = grants[0]
        self.window, self.now_s = first.window, first.time
        grants = self.held.hold(
            grants,
            self.planner,
            self.hosts,
            self.relay,
            allowed=self.steady(),
            whole=True,
            behind=self.behind,
        )
        if not grants:
            return {}
        services = sorted({svc for g in grants for svc in self.hosts[g.component]})
        horizon = self.horizon(services[0]) if len(services) == 1 else -math.inf
        return self._round(grants, services, horizon)

    def open_flush(self, services: list[str] | None = None) -> dict[str, GrantBatch]:
        """A round that only hands over held-back steps (and the envelopes they take) to
        ``services`` (None: every service with any): when the windows are done, so that the
        exports hold them, or when a queue is full or old (``HeldSteps.due``)."""
        chosen = sorted(self.held.queued) if services is None else services
        batches = self._round([], [svc for svc in chosen if self.held.queued.get(svc)], -math.inf)
        self.flushing = True
        return batches

    def _round(self, grants: list[Grant], services: list[str], horizon_s: float) -> dict[str, GrantBatch]:
        """Open a round: one GrantBatch per service in ``services`` for ``grants``, with the
        envelopes relayed to it and the steps held back for it."""
        self.grants, self.horizon_s = grants, horizon_s
        self.rounds += 1
        self.window_opened = self.last_sent = time.perf_counter()
        self.dones = {}
        self.open = True
        self.batches = {
            svc: self.batch_for(svc, 0, self.relay.pop(svc, []), self.held.pop(svc)) for svc in services
        }
        self.expected = set(self.batches)
        return self.batches

    def batch_for(
        self,
        svc: str,
        attempt: int,
        envelopes: list[WireEnvelope],
        deferred: list[DeferredStep] | None = None,
    ) -> GrantBatch:
        """The current window's grant to ``svc``: the granted components it hosts (those it does
        not lead in ``follow``), with ``envelopes`` and the ``deferred`` steps to take first."""
        comps, expect, follow = [], [], []
        for g in self.grants:
            hosts = self.hosts[g.component]
            if svc in hosts:
                comps.append(g.component)
                expect.append(g.expect)
                if hosts[0] != svc:
                    follow.append(g.component)
        horizon = self.horizon_s if not follow else -math.inf
        return GrantBatch(
            self.run,
            self.window,
            self.now_s,
            comps,
            expect,
            envelopes,
            follow,
            attempt,
            horizon,
            deferred or [],
        )

    def owing(self) -> set[str]:
        """Services whose DoneBatch for the open window is still missing."""
        return self.expected - set(self.dones) if self.open else set()

    def close_window(self) -> tuple[int, int]:
        """Every DoneBatch is in: report each granted component to the planner in component-id
        order, exactly as LocalRunner does, then the windows a service ran ahead under a horizon
        grant, checking each is the one the planner opens; keep relayed envelopes for their
        hosts' next grants. Returns (windows closed, envelopes sent); RunFailed on a diverging
        replica or a bad report."""
        window = self.window
        self.open, self.flushing = False, False
        items = {(svc, it.component): it for svc, batch in self.dones.items() for it in batch.items}
        sent = 0
        for g in self.grants:
            lead, *followers = self.hosts[g.component]
            item = items.get((lead, g.component))
            if item is None:
                raise RunFailed(lead, f"{lead} did not report {g.component} in window {window}")
            for follower in followers:
                other = items.get((follower, g.component))
                if other is None or other.digest != item.digest or other.next_time_s != item.next_time_s:
                    raise RunFailed(
                        follower, f"replica of {g.component} on {follower} diverged in window {window}"
                    )
            sent += self.report(lead, item, g.expect)
        local = self.horizon_s > self.now_s  # the one service delivered to its own components
        for svc, batch in self.dones.items():
            self.relay_envelopes(batch.envelopes, svc if local else None)
        for svc, batch in self.dones.items():
            if batch.ahead:
                sent += replay_ahead(self, svc, batch)
        closed, self.counted = self.window - self.counted, self.window
        self.messages += sent
        return closed, sent

    def relay_envelopes(self, envelopes: list[WireEnvelope], local: str | None = None) -> None:
        """Keep ``envelopes`` for the next grant to every host of each destination, in the order
        of the windows that produced them (a step held back takes those before it), and for the
        leaders stepping behind it; not for ``local``, which sent them and delivered them to its
        own components itself (under a horizon grant)."""
        relay, behind = self.relay, self.behind
        for env in envelopes:
            for svc in self.hosts[env.dst]:
                if svc != local:
                    relay.setdefault(svc, []).append(env)
            for svc in behind.get(env.dst, ()):
                relay.setdefault(svc, []).append(env)

    def report(self, lead: str, item: DoneItem, expect: int) -> int:
        """Give the planner what ``lead`` says its component did in the current window (which
        handed it ``expect`` envelopes); queue the same step for the leaders behind it."""
        bad = [t for t in (item.next_time_s, *item.sent_time_s) if math.isnan(t) or t < self.now_s]
        if bad:
            raise RunFailed(
                lead,
                f"{lead} reported {item.component} at t={bad[0]!r} in window {self.window} (t={self.now_s!r})",
            )
        if item.sent_silent and len(item.sent_silent) != len(item.sent_dst):
            raise RunFailed(lead, f"{lead} reported {item.component}'s messages inconsistently")
        try:
            self.planner.report(
                item.component, item.next_time_s, zip(item.sent_dst, item.sent_time_s, strict=True)
            )
        except KeyError as exc:
            raise RunFailed(lead, f"{item.component} sent a message to an unknown component: {exc}") from None
        except ValueError:  # zip(strict=True): as many destinations as times
            raise RunFailed(lead, f"{lead} reported {item.component}'s messages inconsistently") from None
        self.held.sent(item)
        self.held.behind(
            self.behind.get(item.component, ()), self.relay, self.window, self.now_s,
            item.component, expect, item.digest, item.next_time_s,
        )  # fmt: skip
        return len(item.sent_dst)

    def completed_total(self) -> int:
        """Requests completed, summed over services that count them (-1 when none does)."""
        counts = [c for c in self.completed.values() if c >= 0]
        return sum(counts) if counts else -1

    def stats(self) -> dict[str, float]:
        """The run's statistics for ``RunOutcome.stats`` (wall-clock figures in seconds)."""
        now = time.perf_counter()
        ready = self.marks.get("ready", now)
        loop_end = self.marks.get("windows_done", now)
        return {
            "wall_s": now - self.marks["requested"],
            "setup_wall_s": ready - self.marks["requested"],
            "windows_wall_s": loop_end - ready,
            "collect_wall_s": now - loop_end,
            "paused_wall_s": self.pacer.paused_s,
            "windows": float(self.window),
            "rounds": float(self.rounds),
            "held": float(self.held.count),
            "messages": float(self.messages),
            "services": float(len(self.ready_services)),
            "stopped": 1.0 if self.stop else 0.0,
            "restarts": float(sum(self.restarts.values())),
        }

    def progress(self) -> Progress:
        return Progress(
            self.run,
            self.window,
            self.now_s,
            self.pacer.elapsed_s(),
            self.messages,
            self.completed_total(),
            self.pacer.lag_s,
            not self.resumed.is_set(),
        )
