"""Every NATS subject of the twin, built here and nowhere else.

All subjects start with the protocol version prefix ``twin.v1``; a v2 protocol gets new
subjects, so old and new services never read each other's messages. Run-scoped subjects carry
the run id as one token (``twin.v1.run.<run>....``), so two runs on one server never mix and a
service can drop a run by unsubscribing from its subjects.

What a service says about itself travels on a subject that ends with its own name
(``hello.<service>``, ``run.<run>.done.<service>``, ...): the server's per-user permissions
(:mod:`proto.permissions`, generated from this module) then bind each message to the one
identity allowed to publish it, and a receiver checks that the name inside the message is the
subject's.

Builders refuse wildcards in names; subscribers and permissions pass :data:`ANY` (``*``, one
token) where a name varies.
"""

from __future__ import annotations

import re

from llmtwin.errors import ProtocolError

PREFIX = "twin.v1"
"""Protocol name and version: the first two tokens of every subject."""

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
"""What a run id, service name or component id may contain (one NATS subject token)."""


class _Wildcard(str):
    __slots__ = ()


ANY: str = _Wildcard("*")
"""Stands for any one token in a subscription or a permission (``*``); only this object is
accepted as a wildcard, so a name that happens to be ``*`` is still refused."""


def token(value: str, what: str = "name") -> str:
    """``value`` if it is a valid subject token (letters, digits, ``-``, ``_``) or :data:`ANY`,
    else ProtocolError."""
    if value is ANY:
        return value
    if not _TOKEN.match(value):
        raise ProtocolError(
            f"{what} {value!r} cannot be used in a subject: use letters, digits, '-' and '_' only"
        )
    return value


def service_of(subject: str) -> str:
    """The last token of a subject built with a service name (who may publish on it)."""
    return subject.rsplit(".", 1)[-1]


# -- service-level control (not tied to a run) ------------------------------------------------


def hello(service: str) -> str:
    """Pub/sub. A service announces itself here when it connects and reconnects (``Hello``)."""
    return f"{PREFIX}.ctl.hello.{token(service, 'service name')}"


def heartbeat(service: str) -> str:
    """Pub/sub. A service publishes a ``Heartbeat`` here every ``heartbeat_s``."""
    return f"{PREFIX}.ctl.heartbeat.{token(service, 'service name')}"


def run_start() -> str:
    """Request/reply, controller -> conductor: ``RunRequest`` -> ``Reply``."""
    return f"{PREFIX}.ctl.run.start"


def run_control() -> str:
    """Request/reply, controller -> conductor: ``RunControl`` (pause/resume/stop/outcome) -> ``Reply``."""
    return f"{PREFIX}.ctl.run.control"


def config() -> str:
    """Pub/sub, conductor -> every hosting service: ``RunConfig`` (build the run) and ``RunEnd``."""
    return f"{PREFIX}.ctl.config"


def plan() -> str:
    """Request/reply, device -> planner (queue group ``PLANNER_QUEUE``): ``PlanRequest`` -> ``PlanReply``."""
    return f"{PREFIX}.planner.plan"


PLANNER_QUEUE = "planner"
"""Queue group of the planner service: several planner processes share the requests."""


def inbox_prefix(service: str) -> str:
    """Prefix of the reply subjects of ``service``'s requests (``_INBOX.<service>``): its own,
    so that under per-user permissions nobody else may subscribe to its answers."""
    return f"_INBOX.{token(service, 'service name')}"


# -- run-scoped --------------------------------------------------------------------------------


def run_prefix(run: str) -> str:
    """``twin.v1.run.<run>``: the root of every subject of one run."""
    return f"{PREFIX}.run.{token(run, 'run id')}"


def ready(run: str, service: str) -> str:
    """Pub/sub, hosting service -> conductor: ``Ready`` (the components it hosts for this run)."""
    return f"{run_prefix(run)}.ready.{token(service, 'service name')}"


def grant(run: str, service: str) -> str:
    """Pub/sub, conductor -> one hosting service: ``GrantBatch`` (step these components at T)."""
    return f"{run_prefix(run)}.grant.{token(service, 'service name')}"


def done(run: str, service: str) -> str:
    """Pub/sub, hosting service -> conductor: ``DoneBatch`` (one per grant batch)."""
    return f"{run_prefix(run)}.done.{token(service, 'service name')}"


def collect(run: str) -> str:
    """Pub/sub, conductor -> every hosting service: ``Collect`` (finish and export)."""
    return f"{run_prefix(run)}.collect"


def export(run: str, service: str) -> str:
    """Pub/sub, hosting service -> conductor: ``Chunk`` stream of its ``ExportBatch``."""
    return f"{run_prefix(run)}.export.{token(service, 'service name')}"


def tokens(run: str, service: str) -> str:
    """Pub/sub, device -> the balancer's host: ``TokenReport`` (tokens its instances produced,
    for the request metrics; ``services/fleet_observer.py``)."""
    return f"{run_prefix(run)}.tokens.{token(service, 'service name')}"


def progress(run: str) -> str:
    """Pub/sub, conductor -> controllers: ``Progress`` a few times per wall second."""
    return f"{run_prefix(run)}.progress"


def outcome(run: str) -> str:
    """Pub/sub, conductor -> controllers: ``Chunk`` stream of the ``RunOutcome``."""
    return f"{run_prefix(run)}.outcome"
