"""Every NATS subject of the twin, built here and nowhere else.

All subjects start with the protocol version prefix ``twin.v1``; a v2 protocol gets new
subjects, so old and new services never read each other's messages. Run-scoped subjects carry
the run id as one token (``twin.v1.run.<run>....``), so two runs on one server never mix and a
service can drop a run by unsubscribing from its subjects.
"""

from __future__ import annotations

import re

from llmtwin.errors import ProtocolError

PREFIX = "twin.v1"
"""Protocol name and version: the first two tokens of every subject."""

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
"""What a run id, service name or component id may contain (one NATS subject token)."""


def token(value: str, what: str = "name") -> str:
    """``value`` if it is a valid subject token (letters, digits, ``-``, ``_``), else ProtocolError."""
    if not _TOKEN.match(value):
        raise ProtocolError(
            f"{what} {value!r} cannot be used in a subject: use letters, digits, '-' and '_' only"
        )
    return value


# -- service-level control (not tied to a run) ------------------------------------------------


def hello() -> str:
    """Pub/sub. Every service announces itself here when it connects (``Hello``)."""
    return f"{PREFIX}.ctl.hello"


def heartbeat() -> str:
    """Pub/sub. Every service publishes a ``Heartbeat`` here every ``heartbeat_s``."""
    return f"{PREFIX}.ctl.heartbeat"


def run_start() -> str:
    """Request/reply, controller -> conductor: ``RunRequest`` -> ``Reply``."""
    return f"{PREFIX}.ctl.run.start"


def run_control() -> str:
    """Request/reply, controller -> conductor: ``RunControl`` (pause/resume/stop) -> ``Reply``."""
    return f"{PREFIX}.ctl.run.control"


def config() -> str:
    """Pub/sub, conductor -> every service: ``RunConfig`` (build the run) and ``RunEnd`` (drop it)."""
    return f"{PREFIX}.ctl.config"


def plan() -> str:
    """Request/reply, device -> planner (queue group ``PLANNER_QUEUE``): ``PlanRequest`` -> ``PlanReply``."""
    return f"{PREFIX}.planner.plan"


PLANNER_QUEUE = "planner"
"""Queue group of the planner service: several planner processes share the requests."""


# -- run-scoped --------------------------------------------------------------------------------


def run_prefix(run: str) -> str:
    """``twin.v1.run.<run>``: the root of every subject of one run."""
    return f"{PREFIX}.run.{token(run, 'run id')}"


def ready(run: str) -> str:
    """Pub/sub, service -> conductor: ``Ready`` (the components it hosts for this run)."""
    return f"{run_prefix(run)}.ready"


def grant(run: str, service: str) -> str:
    """Pub/sub, conductor -> one hosting service: ``GrantBatch`` (step these components at T)."""
    return f"{run_prefix(run)}.grant.{token(service, 'service name')}"


def done(run: str) -> str:
    """Pub/sub, hosting service -> conductor: ``DoneBatch`` (one per grant batch)."""
    return f"{run_prefix(run)}.done"


def collect(run: str) -> str:
    """Pub/sub, conductor -> every hosting service: ``Collect`` (finish and export)."""
    return f"{run_prefix(run)}.collect"


def export(run: str) -> str:
    """Pub/sub, hosting service -> conductor: ``Chunk`` stream of an ``ExportBatch``."""
    return f"{run_prefix(run)}.export"


def progress(run: str) -> str:
    """Pub/sub, conductor -> controllers: ``Progress`` a few times per wall second."""
    return f"{run_prefix(run)}.progress"


def outcome(run: str) -> str:
    """Pub/sub, conductor -> controllers: ``Chunk`` stream of the ``RunOutcome``."""
    return f"{run_prefix(run)}.outcome"
