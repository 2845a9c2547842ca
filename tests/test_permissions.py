"""Who may say what: the generated permissions, checked live on a real nats-server.

Every role's allowed subjects work (and the whole service suite runs as these users: see the
``transport`` fixture); a publish on another role's subject, an anonymous connection and a
subscription off a role's subjects are refused by the server and counted by the service whose
operation was refused (``twin_bus_refused_total``); a message that speaks for another service
on its own subject is refused by the receiver (``twin_bus_rejected_total{reason="forged"}``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from service_builders import FUZZER, TEST_ROLES, TOY_SPLIT, Connect, SecureNats, Services, start_services

from llmtwin.errors import BusError
from llmtwin.runtime.nats_auth import Var, conf_text, new_identities, server_config
from proto import permissions, subjects
from proto.codec import Codec
from proto.control import DoneBatch, Heartbeat, RunControl, RunSpec
from proto.subjects import ANY
from services.bus import Bus, Msg
from services.nats_bus import NatsOptions, connect

pytestmark = pytest.mark.timeout(60)

RUN = "r1"


def concrete(pattern: str, service: str) -> str:
    """A subject matching ``pattern`` (``*`` -> a run id or a name, ``>`` -> one token; a queue
    group dropped)."""
    subject = pattern.split(" ")[0].replace(">", "x")
    tokens = subject.split(".")
    return ".".join(
        RUN if t == "*" and i == 3 and tokens[1] == "v1" else service if t == "*" else t
        for i, t in enumerate(tokens)
    )


def test_each_role_gets_exactly_its_subjects() -> None:
    """The table docs/security.md prints: hosts speak only for themselves, only the conductor
    grants and configures, only a controller steers runs, the planner only in its queue group."""
    p = permissions.for_role
    assert p("device", "device-1").publish == (
        "twin.v1.ctl.hello.device-1",
        "twin.v1.ctl.heartbeat.device-1",
        "twin.v1.run.*.ready.device-1",
        "twin.v1.run.*.done.device-1",
        "twin.v1.run.*.export.device-1",
        "twin.v1.run.*.tokens.device-1",
        "twin.v1.planner.plan",
    )
    assert p("device", "device-1").subscribe == (
        "twin.v1.ctl.config",
        "twin.v1.run.*.grant.device-1",
        "twin.v1.run.*.collect",
        "twin.v1.run.*.tokens.*",
        "_INBOX.device-1.>",
    )
    assert p("planner", "planner").subscribe == ("twin.v1.planner.plan planner",)
    assert p("planner", "planner").allow_responses
    assert p("conductor", "conductor").allow_responses
    assert not p("device", "device-1").allow_responses
    run_control = {subjects.run_start(), subjects.run_control()}
    for role in permissions.ROLES:
        allowed = set(p(role, "x").publish)
        assert (run_control <= allowed) == (role == "controller"), role
        assert (subjects.config() in allowed) == (role == "conductor"), role
        assert (subjects.grant(ANY, ANY) in allowed) == (role == "conductor"), role
        assert len(allowed) == len(p(role, "x").publish)  # no subject twice


def test_the_server_configuration_has_one_allow_list_per_block() -> None:
    """Written from Python values: no key can appear twice (a duplicated ``allow`` would silently
    replace the first list); ``$VAR`` stays unquoted for the server to expand; strings are quoted."""
    ids = new_identities(TEST_ROLES)
    text = server_config([(i.public_key, i.permissions()) for i in ids])
    assert text.count("allow:") == 2 * len(ids)
    assert text.count("nkey:") == len(ids)
    assert conf_text({"nkey": Var("TWIN_NKEY_CONDUCTOR")}) == "nkey: $TWIN_NKEY_CONDUCTOR"
    assert conf_text({"a": 'x"y'}) == 'a: "x\\"y"'
    for block in re.findall(r"allow: \[(.*?)\]", text, re.S):
        entries = re.findall(r'"([^"]*)"', block)
        assert len(entries) == len(set(entries))


class Listener:
    """A fuzzer-user subscription on every subject: what really got through."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handler(self, msg: Msg) -> None:
        self.subjects.append(msg.subject)


@pytest.fixture
async def everyone(secure_nats: SecureNats) -> AsyncIterator[tuple[dict[str, Bus], Bus, Listener]]:
    """A connection per test user (each with its role's permissions), and a fuzzer-user one
    listening on every subject."""
    buses = {name: await secure_nats.connect(name) for name in TEST_ROLES}
    spy = await secure_nats.connect(FUZZER)
    heard = Listener()
    await spy.subscribe(">", heard.handler)
    await spy.flush()
    yield buses, spy, heard
    for bus in [*buses.values(), spy]:
        await bus.close()


class Refusals:
    """Counts what the server refused one connection (what a service's metrics count)."""

    def __init__(self) -> None:
        self.publish = 0
        self.subscribe = 0

    async def bus_reconnected(self) -> None:
        pass

    def bus_refused(self, operation: str, detail: str) -> None:
        setattr(self, operation, getattr(self, operation) + 1)


@pytest.mark.nats
async def test_every_role_can_use_every_subject_it_is_allowed(
    everyone: tuple[dict[str, Bus], Bus, Listener],
) -> None:
    """Each user publishes on each of its publish subjects (all arrive) and subscribes to each
    of its subscribe subjects (what the fuzzer user sends there arrives); nothing is refused."""
    buses, spy, heard = everyone
    for name, role in TEST_ROLES.items():
        perms = permissions.for_role(role, name)
        bus = buses[name]
        refused = Refusals()
        bus.listen(refused)
        got: list[str] = []

        async def collect(msg: Msg, got: list[str] = got) -> None:
            got.append(msg.subject)

        wanted = []
        for pattern in perms.subscribe:
            queue = pattern.split(" ")[1] if " " in pattern else ""
            await bus.subscribe(pattern.split(" ")[0], collect, queue)
            wanted.append(concrete(pattern, name))
        await bus.flush()
        for subject in wanted:
            await spy.publish(subject, b"x")
        sent = [concrete(pattern, name) for pattern in perms.publish]
        for subject in sent:
            await bus.publish(subject, b"x")
        await bus.flush()
        await spy.flush()
        for _ in range(100):
            if set(sent) <= set(heard.subjects) and set(wanted) <= set(got):
                break
            await asyncio.sleep(0.02)
        assert set(sent) <= set(heard.subjects), f"{name}: {set(sent) - set(heard.subjects)} did not arrive"
        assert set(wanted) <= set(got), f"{name}: {set(wanted) - set(got)} not delivered to it"
        assert (refused.publish, refused.subscribe) == (0, 0), name


FORGERIES = [
    ("device-1", subjects.grant(RUN, "device-2")),
    ("device-1", subjects.done(RUN, "device-2")),
    ("device-1", subjects.config()),
    ("device-1", subjects.run_control()),
    ("device-1", subjects.hello("conductor")),
    ("generator", subjects.grant(RUN, "generator")),
    ("balancer", subjects.collect(RUN)),
    ("planner", subjects.outcome(RUN)),
    ("client", subjects.config()),
    ("client", subjects.done(RUN, "balancer")),
    ("conductor", subjects.done(RUN, "device-1")),
    ("conductor", subjects.run_control()),
]


@pytest.mark.nats
@pytest.mark.parametrize(("who", "subject"), FORGERIES)
async def test_a_publish_on_another_roles_subject_is_refused_and_counted(
    everyone: tuple[dict[str, Bus], Bus, Listener], who: str, subject: str
) -> None:
    """The server drops it (nobody hears it) and tells the publisher, which counts it."""
    buses, spy, heard = everyone
    refused = Refusals()
    buses[who].listen(refused)
    await buses[who].publish(subject, b"forged")
    await buses[who].flush()
    await spy.flush()
    assert subject not in heard.subjects
    assert refused.publish == 1


OFF_SUBJECTS = [
    ("device-1", subjects.grant(RUN, "device-2")),
    ("device-1", "_INBOX.device-2.>"),
    ("device-1", subjects.done(RUN, ANY)),
    ("client", subjects.grant(RUN, ANY)),
    ("client", "_INBOX.device-1.>"),
    ("planner", subjects.plan()),  # outside its queue group
    ("balancer", ">"),
]


@pytest.mark.nats
@pytest.mark.parametrize(("who", "subject"), OFF_SUBJECTS)
async def test_a_subscription_off_a_roles_subjects_is_refused_and_counted(
    everyone: tuple[dict[str, Bus], Bus, Listener], who: str, subject: str
) -> None:
    """Nothing reaches it, and the subscriber counts the refusal."""
    buses, spy, _ = everyone
    refused = Refusals()
    buses[who].listen(refused)
    got: list[Msg] = []

    async def collect(msg: Msg) -> None:
        got.append(msg)

    await buses[who].subscribe(subject, collect)
    await buses[who].flush()
    await spy.publish(concrete(subject, "device-2"), b"secret")
    await spy.flush()
    await buses[who].flush()
    assert got == []
    assert refused.subscribe == 1


@pytest.mark.nats
async def test_an_anonymous_or_unknown_client_cannot_connect(secure_nats: SecureNats) -> None:
    """No credentials, or a seed the server does not know: refused, with a one-line reason."""
    with pytest.raises(BusError, match="authorization violation"):
        await connect(NatsOptions(secure_nats.url, "anon"))
    stranger = new_identities({"device-1": "device"})[0]
    with pytest.raises(BusError, match="authorization violation"):
        await connect(NatsOptions(secure_nats.url, "device-1", nkey_seed=stranger.seed))


def refused(registry: CollectorRegistry, operation: str) -> float:
    return registry.get_sample_value("twin_bus_refused_total", {"operation": operation}) or 0.0


@pytest.fixture
async def services(secure_nats: SecureNats) -> AsyncIterator[Services]:
    svc = await asyncio.wait_for(start_services(secure_nats.connect, TOY_SPLIT), 20)
    yield svc
    await svc.stop()


@pytest.mark.nats
async def test_a_service_stopping_a_run_is_refused_and_the_run_goes_on(services: Services) -> None:
    """Run control is a controller's: h2 (a host) publishing a stop is refused by the server,
    counted by h2, and the run completes."""
    spec = RunSpec("toy", "pingpong", ("balls=200",))
    run = asyncio.ensure_future(services.run(spec, speed=200.0, run_id="steered"))
    while services.conductor.active is None:
        await asyncio.sleep(0.01)
    h2 = services.hosts["h2"]
    await h2.publish(subjects.run_control(), RunControl("steered", "stop", "h2"))
    await h2.bus.flush()
    out = await asyncio.wait_for(run, 30)
    assert out.stats["stopped"] == 0.0
    assert refused(h2.registry, "publish") == 1.0


async def test_a_message_speaking_for_another_service_is_refused_as_forged(transport: Connect) -> None:
    """On its own subject a service still cannot speak for another: the receiver compares the
    name in the message with the subject's and counts a forgery (checked without the server's
    permissions too: on the in-memory bus)."""
    svc = await asyncio.wait_for(start_services(transport, TOY_SPLIT), 20)
    try:
        h2 = svc.hosts["h2"]
        await h2.publish(subjects.heartbeat("h2"), Heartbeat("h1", 1))
        await h2.publish(subjects.done("r9", "h2"), DoneBatch("r9", 1, "h1", []))
        await h2.bus.flush()
        out = await asyncio.wait_for(svc.run(RunSpec("toy", "pingpong", ("balls=5",))), 20)
        assert out.parts
        forged = svc.registry("conductor").get_sample_value("twin_bus_rejected_total", {"reason": "forged"})
        assert forged == 1.0  # the heartbeat (nobody listens to run r9's done subject)
        assert svc.client.rejected["forged"] == 1
    finally:
        await svc.stop()


def test_codec_round_trip_of_run_control_names_who_asks() -> None:
    """A stop carries who asked (the conductor records it with the run's outcome)."""
    codec = Codec()
    assert codec.decode(codec.encode(RunControl("r", "stop", "up")), RunControl).by == "up"


def test_docs_security_prints_the_generated_table() -> None:
    """docs/security.md shows exactly what the permissions module generates."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    assert permissions.markdown_table() in doc
