"""Who may publish and subscribe to what: one NATS user per service, permissions from the subjects.

Generated from :mod:`proto.subjects`, never written by hand (a hand-written nats-server
configuration with a duplicated ``allow`` key silently keeps only the last list). Each role gets
exactly the subjects it uses:

* every service publishes its own ``hello.<name>`` and ``heartbeat.<name>``;
* a hosting service (generator, balancer, device) publishes only the run subjects that end with
  its own name (``ready``, ``done``, ``export``, ``tokens``) and receives only its own grants, so
  one host can never speak for another; each may ask the planner (a restarted service replays
  every component of the run, devices included, before it rejoins) and receive every host's
  token reports (whichever hosts the balancer follows the requests with them);
* the conductor alone publishes run configurations, grants, collects, progress and outcomes,
  and answers run requests (``allow_responses``);
* the planner subscribes to plan requests only in its queue group and answers them
  (``allow_responses``);
* a controller (``llmtwin up``, ``llmtwin run``) alone may start, pause, resume and stop runs;
* whoever makes requests (devices, controllers) receives answers on its own inbox prefix
  (:func:`proto.subjects.inbox_prefix`), which nobody else may subscribe to.

``docs/security.md`` prints the table (``tests/test_permissions.py`` keeps it current).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtwin.errors import ConfigurationError
from proto import subjects
from proto.subjects import ANY

HOSTING_ROLES = ("generator", "balancer", "device", "host")
"""Roles that host components (``host``: any components, for tests)."""

ROLES = ("conductor", *HOSTING_ROLES, "planner", "controller")
"""Every role that gets a NATS user."""


@dataclass(frozen=True, slots=True)
class Permissions:
    """One user's subject permissions (nats-server ``permissions`` block)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    """Subjects, or ``"subject queue"`` for a queue-group-only subscription."""
    allow_responses: bool = False
    """May answer requests it received (one reply each) without any grant on inbox subjects."""


def for_role(role: str, service: str) -> Permissions:
    """The permissions of service ``service`` in role ``role`` (see the module docstring)."""
    own = (subjects.hello(service), subjects.heartbeat(service))
    if role == "conductor":
        return Permissions(
            publish=(
                *own,
                subjects.config(),
                subjects.grant(ANY, ANY),
                subjects.collect(ANY),
                subjects.progress(ANY),
                subjects.outcome(ANY),
            ),
            subscribe=(
                subjects.run_start(),
                subjects.run_control(),
                subjects.hello(ANY),
                subjects.heartbeat(ANY),
                subjects.ready(ANY, ANY),
                subjects.done(ANY, ANY),
                subjects.export(ANY, ANY),
            ),
            allow_responses=True,
        )
    if role in HOSTING_ROLES:
        return Permissions(
            publish=(
                *own,
                subjects.ready(ANY, service),
                subjects.done(ANY, service),
                subjects.export(ANY, service),
                subjects.tokens(ANY, service),
                subjects.plan(),
            ),
            subscribe=(
                subjects.config(),
                subjects.grant(ANY, service),
                subjects.collect(ANY),
                subjects.tokens(ANY, ANY),
                inbox(service),
            ),
        )
    if role == "planner":
        return Permissions(
            publish=own,
            subscribe=(f"{subjects.plan()} {subjects.PLANNER_QUEUE}",),
            allow_responses=True,
        )
    if role == "controller":
        return Permissions(
            publish=(subjects.run_start(), subjects.run_control()),
            subscribe=(
                subjects.hello(ANY),
                subjects.heartbeat(ANY),
                subjects.progress(ANY),
                subjects.outcome(ANY),
                inbox(service),
            ),
        )
    raise ConfigurationError(f"no permissions for role {role!r} ({', '.join(ROLES)})")


def inbox(service: str) -> str:
    """Every reply subject of ``service``'s requests."""
    return f"{subjects.inbox_prefix(service)}.>"


EXAMPLE_NAMES = {
    "conductor": "conductor",
    "generator": "generator",
    "balancer": "balancer",
    "device": "device-1",
    "planner": "planner",
    "controller": "up",
}
"""A service name per role for the printed table (``host`` is the tests' generic role)."""


def markdown_table() -> str:
    """The permissions of every role as the Markdown table of docs/security.md."""
    rows = ["| role (example user) | may publish | may subscribe | answers requests |", "|---|---|---|---|"]
    for role, name in EXAMPLE_NAMES.items():
        p = for_role(role, name)
        pub = "<br>".join(f"`{s}`" for s in p.publish)
        sub = "<br>".join(f"`{s}`" for s in p.subscribe)
        rows.append(f"| {role} (`{name}`) | {pub} | {sub} | {'yes' if p.allow_responses else 'no'} |")
    return "\n".join(rows) + "\n"
