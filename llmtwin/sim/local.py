"""Drive components in one process: the fast path for sweeps, and the reference for equivalence."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from llmtwin.sim.kernel import INF, Component, Envelope
from llmtwin.sim.mailbox import Mailbox
from llmtwin.sim.windows import WindowPlanner


class LocalRunner:
    """Runs components to completion with the same window semantics as the NATS conductor."""

    def __init__(self, components: Iterable[Component]) -> None:
        self.components = {c.id: c for c in components}
        self.planner = WindowPlanner(self.components)
        self._mail = {c: Mailbox() for c in self.components}
        self.now = 0.0
        self.windows = 0
        self.messages = 0

    def run(self, until: float = INF, on_window: Callable[[float], None] | None = None) -> float:
        """Step windows until nothing is left (or ``until``), finish every component; returns
        the final virtual time."""
        self.advance(until, on_window=on_window)
        for comp in self.components.values():
            comp.finish(self.now)
        return self.now

    def advance(
        self,
        until: float = INF,
        through_window: int | None = None,
        on_window: Callable[[float], None] | None = None,
    ) -> float:
        """Step windows until nothing is left before ``until``, or until window
        ``through_window`` is done (what a restarted service replays to rebuild its components'
        state); finishes nothing. Returns the virtual time of the last window."""
        planner, comps, mail = self.planner, self.components, self._mail
        while through_window is None or self.windows < through_window:
            grants = planner.next_window(until)
            if not grants:
                break
            self.now = grants[0].time
            self.windows += 1
            produced: list[Envelope] = []
            for g in grants:
                comp = comps[g.component]
                inbox = mail[g.component].take(g.time)
                if len(inbox) != g.expect:  # the planner mirrors the mailboxes: a bug if not
                    raise RuntimeError(
                        f"{g.component} holds {len(inbox)} messages, the planner counted {g.expect}"
                    )
                comp.step(g.time, inbox)
                sent = comp.outbox.drain()
                produced.extend(sent)
                planner.report(g.component, comp.next_time(), [(e.dst, e.time) for e in sent])
            # Delivered only after the whole window: the same as parallel steps over a bus.
            for env in produced:
                mail[env.dst].add(env)
            self.messages += len(produced)
            if on_window is not None:
                on_window(self.now)
        return self.now

    def mailbox(self, component: str) -> Mailbox:
        """The envelopes delivered to ``component`` and not yet handed to a step."""
        return self._mail[component]
