"""The conductor's watch over its run: who is alive, what was lost, who came back.

One :class:`Watchdog` per run. At set-up it waits for the leaders, and for every other hosting
service that is up (a standby must not miss the start). Then it hears every hello and heartbeat
of the run's services and, every tick, looks for silence:

* a service heard from as a new process (``boot``) lost its state: it is told to catch up
  (``services/recovery.py``) and rejoins;
* a hello from the same process means its connection came back: what it owed an answer to is
  sent again (the open window's grant, the collect);
* silence while nats-server does not answer a PING is the server's: nobody is blamed, every
  owed message is sent again when it answers, and the run fails with "nats-server ... not
  answering" after ``window_timeout_s``;
* silence while the server answers: the service is lost; a standby takes over, or the run
  waits ``rejoin_timeout_s`` for it to be restarted (0: fails at once);
* a window unanswered for ``reissue_after_s`` is sent again; for ``window_timeout_s``, it
  fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

from llmtwin.errors import BusError
from proto import subjects
from proto.control import Collect, Ready
from proto.permissions import HOSTING_ROLES
from services import recovery
from services.run_failed import RunFailed
from services.run_state import RunState

if TYPE_CHECKING:
    from services.conductor import Conductor

log = logging.getLogger(__name__)


class Watchdog:
    """Watches one run of ``conductor`` (see the module docstring)."""

    def __init__(self, conductor: Conductor, state: RunState) -> None:
        self.conductor, self.state = conductor, state

    async def await_ready(self) -> None:
        """Until every component has a leader (RunFailed after ``ready_timeout_s``), and the other
        hosting services that are up have answered too."""
        state = self.state
        timeout_s = self.conductor.cfg.ready_timeout_s
        try:
            await asyncio.wait_for(state.ready.wait(), timeout_s)
        except TimeoutError:
            missing = [c for c in state.components if c not in state.leaders]
            raise RunFailed(
                "", f"no service hosts {', '.join(missing)} after {timeout_s:g} s (run {state.run})"
            ) from None
        state.check()
        await self._await_other_hosts()
        log.info("%s: run %s ready: %s", self.conductor.name, state.run, dict(sorted(state.leaders.items())))

    async def _await_other_hosts(self) -> None:
        """Every component has a leader; give the other hosting services that are up (heard
        within ``dead_after_s``) until then to answer too, so that a standby that builds more
        slowly than the leaders does not miss the start."""
        state = self.state
        deadline = time.monotonic() + min(self.conductor.cfg.ready_timeout_s, self.conductor.cfg.dead_after_s)
        while state.failure is None:
            now = time.monotonic()
            waiting = {
                svc
                for svc, role in self.conductor.roles.items()
                if role in HOSTING_ROLES
                and now - self.conductor.seen.get(svc, -math.inf) < self.conductor.cfg.dead_after_s
                and svc not in state.ready_services
            }
            if not waiting or now >= deadline:
                if waiting:
                    log.warning(
                        "%s: run %s starts without %s",
                        self.conductor.name,
                        state.run,
                        ", ".join(sorted(waiting)),
                    )
                return
            state.joined.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.joined.wait(), deadline - now)
        state.check()

    async def rejoin(self, ready: Ready) -> None:
        """A ``Ready`` while the run is under way: a restarted service that caught up."""
        state = self.state
        rec = state.recovering.get(ready.service)
        if rec is None or ready.boot != rec.boot or ready.caught_up != rec.window:
            log.info(
                "%s: %s is ready for run %s, which runs without it",
                self.conductor.name,
                ready.service,
                ready.run,
            )
            return
        why = recovery.rejoined(state, ready)
        if why:
            state.fail(ready.service, why)
            return
        self.conductor.cmetrics.recoveries.labels("rejoin").inc()
        log.warning(
            "%s: %s caught up to window %d and rejoined run %s",
            self.conductor.name, ready.service, rec.window, ready.run,
        )  # fmt: skip
        await self.resend(ready.service)

    async def presence(self, svc: str, boot: str, reconnected: bool) -> None:
        """A run's service was heard from: a new process start means it lost its state (it must
        catch up); a hello from the same one means its connection came back (what it was owed
        may be lost); a heartbeat from a service declared lost means it is back."""
        state = self.state
        known = state.boots.get(svc)
        if known is None:
            return  # not in this run
        if boot != known:
            catch_up = recovery.restarted(state, svc, boot)
            if catch_up is not None:
                log.warning(
                    "%s: %s restarted during run %s; it replays windows 1..%d and rejoins",
                    self.conductor.name, svc, state.run, catch_up.catch_up,
                )  # fmt: skip
                await self.conductor.publish(subjects.config(), catch_up)
            return
        if svc in state.lost:
            del state.lost[svc]
            log.warning("%s: %s is back (same process)", self.conductor.name, svc)
            await self.resend(svc)
        elif reconnected:
            await self.resend(svc)

    async def resend(self, svc: str) -> None:
        """Send ``svc`` again what it owes an answer to: the open window's grant, or the collect."""
        state = self.state
        if state.phase == "running":
            batch = recovery.reissue(state, svc)
            if batch is not None:
                self.conductor.cmetrics.recoveries.labels("reissue").inc()
                await self.conductor.publish(state.grant_subjects[svc], batch)
        elif (
            state.phase == "collecting"
            and svc in state.hosting_services() - set(state.exports)
            and svc not in state.recovering
        ):
            await self.conductor.publish(subjects.collect(state.run), Collect(state.run, state.now_s, [svc]))

    async def run(self) -> None:
        """Keep the run going or fail it with a message naming the cause: services that stop
        sending heartbeats (when the server still answers), lost messages, a server that does
        not answer, services that do not come back."""
        state = self.state
        cfg = self.conductor.cfg
        while True:
            await asyncio.sleep(min(1.0, cfg.dead_after_s / 4, cfg.reissue_after_s / 2))
            if state.phase not in ("running", "collecting"):
                continue
            now = time.monotonic()
            watched = set(state.boots) - set(state.lost) - set(state.recovering)
            silent = {s: now - self.conductor.seen.get(s, now) for s in sorted(watched)}
            silent = {s: t for s, t in silent.items() if t > cfg.dead_after_s}
            if (silent or state.server_stuck_since is not None) and not await self._server_answers():
                continue
            for svc, silent_s in silent.items():
                await self._lose(svc, silent_s)
            await self._timeouts()

    async def _server_answers(self) -> bool:
        """Whether nats-server answers a PING; silence while it does not is nobody's fault.
        Fails the run when it has not answered for ``window_timeout_s``."""
        state = self.state
        cfg = self.conductor.cfg
        try:
            await self.conductor.bus.flush(min(2.0, cfg.dead_after_s / 2))
        except BusError as exc:
            now = time.monotonic()
            if state.server_stuck_since is None:
                state.server_stuck_since = now
                log.warning(
                    "%s: nats-server at %s not answering (%s); blaming no service",
                    self.conductor.name,
                    cfg.nats_url,
                    exc,
                )
            elif now - state.server_stuck_since > cfg.window_timeout_s:
                state.fail(
                    "",
                    f"nats-server at {cfg.nats_url} not answering for {now - state.server_stuck_since:.0f} s",
                )
            return False
        if state.server_stuck_since is not None:
            now = time.monotonic()
            log.warning(
                "%s: nats-server answers again after %.0f s",
                self.conductor.name,
                now - state.server_stuck_since,
            )
            state.server_stuck_since = None
            for svc in self.conductor.seen:  # their silence was the server's
                self.conductor.seen[svc] = now
            state.window_opened = state.last_sent = time.perf_counter()  # and so was the wait
            for svc in sorted(state.ready_services):
                await self.resend(svc)
            return False
        return True

    async def _lose(self, svc: str, silent_s: float) -> None:
        """``svc`` is silent though the server answers: fail over what has a standby, wait for
        the rest to come back (its supervisor restarts it), or fail the run."""
        state = self.state
        hosted = sorted(c for c, hosts in state.hosts.items() if hosts[0] == svc)
        where = f"in window {state.window} at t={state.now_s!r} s; it hosts {', '.join(hosted) or 'nothing'}"
        if self.conductor.cfg.rejoin_timeout_s == 0 and not all(len(state.hosts[c]) > 1 for c in hosted):
            state.fail(svc, f"{svc} stopped answering (no heartbeat for {silent_s:.0f} s) {where}")
            return
        for who in recovery.lose(state, svc):
            self.conductor.cmetrics.recoveries.labels("failover").inc()
            await self.conductor.publish(state.grant_subjects[who], state.batches[who])
        if svc in state.lost:
            log.warning(
                "%s: %s stopped answering (no heartbeat for %.0f s) %s; waiting up to %g s for it to come back",
                self.conductor.name, svc, silent_s, where, self.conductor.cfg.rejoin_timeout_s,
            )  # fmt: skip
        else:
            state.boots.pop(svc, None)  # no longer part of the run
            log.warning(
                "%s: %s stopped answering %s; its standbys took over", self.conductor.name, svc, where
            )
        if state.phase == "running" and state.open and not state.owing():
            await self.conductor.window_done(state)
        elif state.phase == "collecting" and state.hosting_services() <= set(state.exports):
            state.all_exported.set()

    async def _timeouts(self) -> None:
        """Fail what waited too long; send the open window's grants again when unanswered."""
        state = self.state
        cfg = self.conductor.cfg
        now = time.monotonic()
        for svc, since in sorted(state.lost.items()):
            if now - since > cfg.rejoin_timeout_s:
                state.fail(
                    svc,
                    f"{svc} stopped answering in window {state.window} at t={state.now_s!r} s "
                    f"and did not come back within {cfg.rejoin_timeout_s:g} s",
                )
        for svc, rec in sorted(state.recovering.items()):
            if now - rec.since > cfg.window_timeout_s:
                state.fail(svc, f"{svc} restarted but did not catch up within {cfg.window_timeout_s:g} s")
        # Who is lost or catching up has its own deadline (above).
        owing = state.owing() - set(state.lost) - set(state.recovering) if state.phase == "running" else set()
        if not owing:
            return
        wall = time.perf_counter()
        waited = wall - state.window_opened
        if waited > cfg.window_timeout_s:
            state.fail(
                sorted(owing)[0],
                f"no answer from {', '.join(sorted(owing))} for window {state.window} "
                f"(t={state.now_s!r} s) after {waited:.0f} s, though they are alive",
            )
        elif wall - state.last_sent > cfg.reissue_after_s:
            state.last_sent = wall
            log.warning(
                "%s: no answer from %s for window %d after %.0f s: sending its grants again",
                self.conductor.name, ", ".join(sorted(owing)), state.window, waited,
            )  # fmt: skip
            for svc in sorted(owing):
                await self.resend(svc)
