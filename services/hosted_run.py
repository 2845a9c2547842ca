"""What a host keeps for each run it hosts, and its answer to the last window it stepped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmtwin.sim.kernel import Component
from llmtwin.sim.mailbox import Mailbox
from llmtwin.sim.windows import WindowPlanner
from proto.control import AheadWindow, Chunk, DoneItem, Ready, WireEnvelope
from services.bus import Subscription
from services.fleet_observer import FleetObserver


@dataclass(slots=True)
class Stepped:
    """A host's answer to the last window it stepped, kept to answer that window again."""

    window: int = 0
    items: dict[str, DoneItem] = field(default_factory=dict)
    wires: dict[str, list[WireEnvelope]] = field(default_factory=dict)
    """What each component sent (leaders' and followers' alike: a follower may be promoted)."""
    completed: int = -1
    error: str = ""
    ahead: list[AheadWindow] = field(default_factory=list)
    """The windows after ``window`` it stepped by itself under a horizon grant, with what they
    sent to other services' components."""


@dataclass(slots=True)
class HostedRun:
    """What a host keeps for one run."""

    run: str
    comps: dict[str, Component]
    offload: set[str]
    """Components stepped in a worker thread (their steps may block on the planner service)."""
    ready: Ready
    """What it announced (sent again when the conductor repeats the run's configuration)."""
    mail: dict[str, Mailbox] = field(default_factory=dict)
    """Per component: envelopes not yet handed to a step."""
    planner: WindowPlanner = field(default_factory=lambda: WindowPlanner(()))
    """Its own components' windows, as the conductor's planner has them: it checks each grant
    against it and plans the windows it runs ahead under a horizon grant."""
    silent: dict[str, tuple[type, ...]] = field(default_factory=dict)
    """Every component of the run (not only its own) -> the messages it takes silently
    (``Component.silent_kinds``): what it sends them does not end a horizon grant."""
    subs: list[Subscription] = field(default_factory=list)
    done_subject: str = ""
    counters: list[Any] = field(default_factory=list)
    """Hosted components that count completed requests (``completed``: the balancer)."""
    last: Stepped = field(default_factory=Stepped)
    exported: list[Chunk] | None = None
    """The export, once made (a repeated Collect gets the same chunks)."""
    fleet: FleetObserver | None = None
    """Its fleet metrics (runs of the twin's cluster)."""
    acting: frozenset[str] = frozenset()
    """Components it steps ahead of their leader (``Ready.acting``): what its own components
    send them is delivered here and also goes to the conductor, for the leader."""
