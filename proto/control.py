"""Control messages of the twin's services: run lifecycle, time windows, results.

Every message is a tagged msgspec Struct (``type`` field = ``twin.v1.ctl.<name>``); on the wire it
is a plain msgpack map from field name to value, which any msgpack library decodes. Units are
in the field names: ``_s`` = seconds (virtual unless the name says ``wall``), ``_bytes``,
``_tokens``. ``inf`` (an IEEE float, valid msgpack) means "never". The component messages that
travel inside envelopes are in ``llmtwin/cluster/messages.py``; who sends what on which subject is in
``proto/README.md``.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from llmtwin.observe.observations import TokenPieces


class RunSpec(msgspec.Struct, frozen=True, tag="twin.v1.ctl.run_spec"):
    """What every process needs to build the same components for a run."""

    factory: str = "cluster"
    """Component factory: ``cluster`` (the twin; tests add others, e.g. their ``toy`` components)."""
    scenario: str = ""
    """Scenario name or path, as ``llmtwin simulate`` takes it."""
    overrides: tuple[str, ...] = ()
    """``key=value`` overrides, applied in order (``--set``)."""
    policy: str | None = None
    """Serving policy name, or None for the scenario's own."""


class RunRequest(msgspec.Struct, frozen=True, tag="twin.v1.ctl.run_request"):
    """Controller -> conductor: start a run."""

    run: str
    """Run id, unique on the bus (one subject token)."""
    spec: RunSpec
    speed: float = math.inf
    """Virtual seconds per wall second: 1.0 = real time, inf = as fast as possible."""
    until_s: float = math.inf
    """Stop opening windows after this virtual time."""
    metrics: str = ""
    """Fleet metrics naming for this run: ``vllm+twin`` or ``twin`` (``--metrics``); empty = each
    service's own setting (``TWIN_METRICS``)."""


class Reply(msgspec.Struct, frozen=True, tag="twin.v1.ctl.reply"):
    """Answer to a request: ``ok`` or a one-line error."""

    ok: bool
    error: str = ""


class RunControl(msgspec.Struct, frozen=True, tag="twin.v1.ctl.run_control"):
    """Controller -> conductor: pause, resume or stop a run (stop ends it and collects results),
    or ask for its outcome again (``outcome``: re-published if the run has ended, e.g. after the
    controller lost its connection)."""

    run: str
    action: Literal["pause", "resume", "stop", "outcome"]
    by: str = ""
    """Who asks (the controller's name), recorded with a stop."""


class Hello(msgspec.Struct, frozen=True, tag="twin.v1.ctl.hello"):
    """A service announcing itself when it (re)connects."""

    service: str
    """Unique service name (``generator``, ``balancer``, ``device-0``, ...)."""
    role: str
    """Service kind: conductor, generator, balancer, device, planner."""
    pid: int
    host: str
    http_port: int
    """Port of its /metrics and /healthz endpoint (0 = none)."""
    version: str
    boot: str = ""
    """Random id of this process start: a new one means the service restarted and lost its state."""


class Heartbeat(msgspec.Struct, frozen=True, tag="twin.v1.ctl.heartbeat"):
    """Published every ``heartbeat_s`` wall seconds; silence means the service is gone."""

    service: str
    seq: int
    run: str = ""
    """Run the service is in, empty when idle."""
    boot: str = ""
    """The process start it comes from (see ``Hello.boot``)."""
    role: str = ""
    """Its service kind (see ``Hello.role``): a controller that joins later learns who is there."""
    http_port: int = 0
    """Its /metrics port (see ``Hello.http_port``): and where to scrape it."""


class RunConfig(msgspec.Struct, frozen=True, tag="twin.v1.ctl.run_config"):
    """Conductor -> every service: build the components of this run (idempotent per run id)."""

    run: str
    spec: RunSpec
    scenario_digest: str
    """sha256 of what the conductor resolved the spec to (scenario with overrides, catalog
    entries, generated requests): every host must resolve it to the same."""
    code_digest: str
    """sha256 of the conductor's installation of the twin (code, data files, library versions)."""
    until_s: float = math.inf
    """The run's ``RunRequest.until_s`` (a replay must stop where the run does)."""
    catch_up: int = 0
    """Windows to replay before joining (a restarted service rebuilding its components'
    state); 0 = join at the start."""
    to: str = ""
    """Only this service acts on it (a catch-up is for one service); empty = every service."""
    metrics: str = ""
    """The run's ``RunRequest.metrics``."""


class RunEnd(msgspec.Struct, frozen=True, tag="twin.v1.ctl.run_end"):
    """Conductor -> every service: forget this run (after collection, or on failure)."""

    run: str
    reason: str = ""


class Ready(msgspec.Struct, frozen=True, tag="twin.v1.ctl.ready"):
    """Service -> conductor: the components it built and hosts for a run."""

    run: str
    service: str
    leaders: list[str]
    """Components it steps and publishes for."""
    followers: list[str] = msgspec.field(default_factory=list)
    """Replicas it steps without publishing (a TP group spanning processes); checked by digest."""
    error: str = ""
    """Why it could not build the run (the run then fails with this message)."""
    scenario_digest: str = ""
    """What this service resolved the run's spec to (must equal ``RunConfig.scenario_digest``)."""
    code_digest: str = ""
    """This service's installation of the twin (must equal ``RunConfig.code_digest``)."""
    caught_up: int = 0
    """The window its components' state is at (``RunConfig.catch_up``; 0 = fresh)."""
    next_time_s: dict[str, float] = msgspec.field(default_factory=dict)
    """After a catch-up: each hosted component's next event time (checked by the conductor)."""
    pending: dict[str, int] = msgspec.field(default_factory=dict)
    """After a catch-up: envelopes waiting in each hosted component's mailbox (checked too)."""
    boot: str = ""
    """The process start that built these components."""
    acting: list[str] = msgspec.field(default_factory=list)
    """Components another service leads that it steps ahead of their leader, on the run's path
    (``--act``): granted to it, their leader stepping behind (``DeferredStep.replica``)."""


class WireEnvelope(msgspec.Struct, frozen=True, tag="twin.v1.ctl.envelope"):
    """``llmtwin.sim.kernel.Envelope`` on the wire; ``body`` is one tagged message, inline."""

    time_s: float
    priority: int
    src: str
    seq: int
    dst: str
    body: msgspec.Raw
    """An encoded ``llmtwin/cluster/messages.py`` struct (its ``type`` tag says which)."""


class DeferredStep(msgspec.Struct, frozen=True):
    """A step of an earlier window that the conductor held back: the component takes only
    messages it takes silently (``Component.silent_kinds``: it sends nothing and keeps its next
    event), so nothing depends on it before its next window. Its host steps it at ``time_s``,
    with the ``expect`` envelopes stamped <= ``time_s`` it holds, before anything else in the
    grant, and refuses to go on if it then sends something or moves its next event
    (docs/architecture.md, "Silent steps")."""

    window: int
    time_s: float
    component: str
    expect: int
    envelopes: list[WireEnvelope] = msgspec.field(default_factory=list)
    """Envelopes for this service's components produced before this step and not yet handed
    to it: filed just before it (what later windows produced comes after it)."""
    replica: bool = False
    """A leader's step behind the service acting for its component (``Ready.acting``): not a
    silent one, but what the actor did, which it must do too (the digest of what it sends and
    its next event below); what it sends is dropped (the actor's went out)."""
    digest: int = 0
    """With ``replica``: the actor's ``DoneItem.digest``."""
    next_time_s: float = math.inf
    """With ``replica``: the actor's ``DoneItem.next_time_s``."""


class GrantBatch(msgspec.Struct, frozen=True, tag="twin.v1.ctl.grant"):
    """Conductor -> one hosting service: step these components at ``time_s`` in window ``window``."""

    run: str
    window: int
    """Window number, 1, 2, ...; envelopes produced in window w are usable from window w+1."""
    time_s: float
    components: list[str]
    expect: list[int]
    """Per component: envelopes stamped <= time_s from earlier windows it must hold first."""
    envelopes: list[WireEnvelope] = msgspec.field(default_factory=list)
    """Envelopes for this service's components produced in earlier windows and not yet handed
    to it (the conductor relays them from the senders' ``DoneBatch``), after those that go with
    the ``deferred`` steps."""
    follow: list[str] = msgspec.field(default_factory=list)
    """Granted components this service only replicates: it steps them and reports a digest,
    but does not publish what they send (the conductor decides who leads)."""
    attempt: int = 0
    """Raised when the conductor re-issues the window with other contents (a promotion, a
    rejoin); a ``DoneBatch`` answers one attempt. A host answers a repeated grant for the window
    it last stepped from what it kept, without stepping again."""
    horizon_s: float = -math.inf
    """A horizon grant when > ``time_s``: every other component's next event (or, paced, the
    pace) is at or after it, so the service may go on stepping its own components in windows
    ``window + 1, ...`` by itself while their time stays below it and nothing it sends goes to
    another service before it; it delivers its components' envelopes to each other itself
    (docs/architecture.md, "Horizon grants"). ``-inf``: this window only."""
    deferred: list[DeferredStep] = msgspec.field(default_factory=list)
    """Steps of earlier windows held back for this service, in window order, to take first. A
    grant may hold only these (``components`` empty: the run's last windows are done)."""


class DoneItem(msgspec.Struct, frozen=True):
    """What one component did in a window (what ``WindowPlanner.report`` takes)."""

    component: str
    next_time_s: float
    """Its next internal event (inf when idle)."""
    sent_dst: list[str]
    """Destination of each envelope it sent, in send order."""
    sent_time_s: list[float]
    """Delivery time of each envelope it sent (same order as ``sent_dst``)."""
    digest: int = 0
    """Hash of what it sent (leaders and followers of a replicated component must agree)."""
    sent_silent: list[bool] = msgspec.field(default_factory=list)
    """Per envelope sent to another service (same order as ``sent_dst``; empty: none): the
    receiver takes it silently (``DeferredStep``), so it does not end a horizon grant."""


class AheadWindow(msgspec.Struct, frozen=True):
    """A window a service stepped by itself under a horizon grant (see ``GrantBatch.horizon_s``)."""

    time_s: float
    items: list[DoneItem]
    """Its components that stepped, in component-id order (what the conductor's planner must
    grant in that window)."""
    envelopes: list[WireEnvelope] = msgspec.field(default_factory=list)
    """What they sent to other services' components in that window."""


class DoneBatch(msgspec.Struct, frozen=True, tag="twin.v1.ctl.done"):
    """Hosting service -> conductor: every granted component stepped (or ``error``)."""

    run: str
    window: int
    service: str
    items: list[DoneItem]
    completed: int = -1
    """Requests its components have completed so far (progress display), -1 = not counted."""
    error: str = ""
    envelopes: list[WireEnvelope] = msgspec.field(default_factory=list)
    """What its components sent in this window (the conductor relays them with the next grants);
    under a horizon grant, less what it delivered to its own components (the windows it ran
    ahead carry theirs in ``ahead``)."""
    attempt: int = 0
    """The ``GrantBatch.attempt`` it answers."""
    ahead: list[AheadWindow] = msgspec.field(default_factory=list)
    """Under a horizon grant: the windows ``window + 1, ...`` it stepped by itself, in order."""


class Collect(msgspec.Struct, frozen=True, tag="twin.v1.ctl.collect"):
    """Conductor -> hosting services: the run ended at ``end_s``; finish and export."""

    run: str
    end_s: float
    to: list[str] = msgspec.field(default_factory=list)
    """Only these services export (a repeated collect); empty = every hosting service."""


class ExportBatch(msgspec.Struct, frozen=True, tag="twin.v1.ctl.export"):
    """Hosting service -> conductor: ``export()`` of each component it leads."""

    run: str
    service: str
    parts: dict[str, msgspec.Raw]
    """Component id -> its encoded export."""
    error: str = ""


class Chunk(msgspec.Struct, frozen=True, tag="twin.v1.ctl.chunk"):
    """One piece of a payload too big for one NATS message (results can be megabytes)."""

    stream: str
    """Id of the payload (sender and purpose), the same in every piece."""
    index: int
    total: int
    data: bytes


class TokenReport(msgspec.Struct, frozen=True, tag="twin.v1.ctl.token_report"):
    """Device -> the host of the balancer: tokens one instance produced (request metrics only;
    results never depend on it). ``pieces`` is ``llmtwin.observe.observations.TokenPieces``."""

    run: str
    service: str
    pieces: TokenPieces


class Progress(msgspec.Struct, frozen=True, tag="twin.v1.ctl.progress"):
    """Conductor -> controllers, a few times per wall second and once at the end."""

    run: str
    window: int
    time_s: float
    """Virtual time of the last window."""
    wall_s: float
    """Wall seconds since the run started (pauses included)."""
    messages: int
    """Envelopes sent so far."""
    completed: int
    """Requests completed so far (-1 = unknown)."""
    lag_s: float
    """Wall seconds behind the pace (0 at --speed max)."""
    paused: bool = False


class RunOutcome(msgspec.Struct, frozen=True, tag="twin.v1.ctl.outcome"):
    """Conductor -> controllers: the run's exports, or why it failed."""

    run: str
    end_s: float
    """Virtual time of the last window."""
    parts: dict[str, msgspec.Raw]
    """Component id -> its encoded export (what ``assemble_result`` takes)."""
    stats: dict[str, float]
    """wall_s, windows, messages, ..."""
    error: str = ""
    failed_service: str = ""
    stopped_by: str = ""
    """Who stopped the run (``RunControl.by``), when it was stopped."""


class PlanRequest(msgspec.Struct, frozen=True, tag="twin.v1.ctl.plan_request"):
    """Device -> planner: the PRESERVE plan of one iteration shape under a run's step model."""

    spec: RunSpec
    """The run (the planner builds its step model from it; stateless, so any planner answers)."""
    shape: msgspec.Raw
    """The iteration's ``BatchShape`` (llmtwin/physics/graph.py), encoded as a map."""


class PlanReply(msgspec.Struct, frozen=True, tag="twin.v1.ctl.plan_reply"):
    """Planner -> device: op index -> bytes read from L2, or why there is no plan."""

    l2_bytes: dict[int, float] = msgspec.field(default_factory=dict)
    """Op index (in ``StepModel.ops(shape)``) -> bytes of its operands served from L2."""
    error: str = ""


CONTROL_TYPES: tuple[type[msgspec.Struct], ...] = (
    RunSpec,
    RunRequest,
    Reply,
    RunControl,
    Hello,
    Heartbeat,
    RunConfig,
    RunEnd,
    Ready,
    GrantBatch,
    DoneBatch,
    WireEnvelope,
    Collect,
    ExportBatch,
    Chunk,
    Progress,
    RunOutcome,
    PlanRequest,
    PlanReply,
)
"""Every tagged control message (the round-trip test walks this list)."""
