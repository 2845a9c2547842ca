"""Service configuration: one validated dataclass per service, from CLI flags and TWIN_* variables.

Each service takes its config object, so every default is stated once, here. Precedence: a
command-line flag, else the environment variable ``TWIN_<FIELD>`` (e.g. ``TWIN_NATS_URL``,
``TWIN_HTTP_PORT``), else the default. Every field has help text, shown by ``llmtwin service
ROLE --help``; a bad value raises ConfigurationError naming the field. Secrets have no flag
(command lines are visible to other users): the nkey seed comes from a file
(``--nkey-seed-file``) or from ``TWIN_NKEY_SEED``.

:class:`ConnectionConfig` is what any process needs to connect, a service or a controller
(``llmtwin up``, ``llmtwin run``: :class:`ControllerConfig`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmtwin.errors import ConfigurationError, ProtocolError
from llmtwin.observe.families import METRICS_MODES
from llmtwin.runtime.run_size import MAX_INSTANCES, MAX_REQUESTS, RunLimits
from proto.limits import RESULT_MAX_BYTES
from proto.subjects import inbox_prefix, token
from services.credentials import read_seed
from services.nats_bus import NatsOptions
from services.selection import Selector, for_role

ROLES = ("conductor", "generator", "balancer", "device", "planner", "host")
"""Service roles; ``host`` hosts any components chosen with --components (transport tests)."""


def _f(default: Any, help: str, flag: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag})


def _secret(help: str) -> Any:
    """A field set only from the environment (``TWIN_<FIELD>``), never shown."""
    return field(default="", repr=False, metadata={"help": help, "flag": "-"})


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """How to reach NATS: server, credentials, TLS."""

    name: str = _f("", "unique name on the bus (default: the role)")
    nats_url: str = _f("nats://127.0.0.1:4222", "NATS server URL (nats:// or tls://)", flag="--nats")
    nkey_seed_file: str = _f(
        "", "file holding this process's nkey seed (SU...); or put the seed in TWIN_NKEY_SEED"
    )
    nkey_seed: str = _secret("the nkey seed itself (environment only)")
    tls_ca: str = _f("", "CA certificate (PEM) to verify the server with; turns TLS on")
    tls_cert: str = _f("", "client certificate (PEM), for a server that verifies clients")
    tls_key: str = _f("", "private key (PEM) of --tls-cert")

    def __post_init__(self) -> None:
        try:
            token(self.service_name, "name")
        except ProtocolError as exc:
            raise ConfigurationError(f"name: {exc.args[0]}") from None
        if not self.nats_url.startswith(("nats://", "tls://")):
            raise ConfigurationError(
                f"nats_url: expected nats://host:port or tls://host:port, got {self.nats_url!r}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError("tls_cert and tls_key: give both or neither")

    @property
    def service_name(self) -> str:
        return self.name or "controller"

    def nats_options(self, **overrides: Any) -> NatsOptions:
        """How this process connects (its own inbox prefix, its seed read now)."""
        name = self.service_name
        return NatsOptions(
            self.nats_url,
            name,
            inbox_prefix=inbox_prefix(name),
            nkey_seed=read_seed(self.nkey_seed, self.nkey_seed_file),
            tls_ca=self.tls_ca,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
            **overrides,
        )


@dataclass(frozen=True, slots=True)
class ControllerConfig(ConnectionConfig):
    """A controller: starts and steers runs (``llmtwin up``'s own client, ``llmtwin run``)."""


@dataclass(frozen=True, slots=True)
class ServiceConfig(ConnectionConfig):
    """What every service takes."""

    role: str = _f("host", "service role", flag="-")
    http_host: str = _f("127.0.0.1", "address of the /metrics and /healthz endpoint")
    http_port: int = _f(0, "port of the /metrics and /healthz endpoint (0 = any free port, -1 = none)")
    heartbeat_s: float = _f(1.0, "wall seconds between heartbeats")
    log_level: str = _f("INFO", "DEBUG, INFO, WARNING or ERROR")
    scenario_dirs: str = _f(
        "",
        "directories (':'-separated) whose files runs may name: scenarios, and the model, hardware, "
        "engine and trace files of --set overrides (default: none, the shipped catalog only)",
    )
    max_requests: int = _f(MAX_REQUESTS, "most requests a run may have")
    max_instances: int = _f(MAX_INSTANCES, "most instances a run may have")
    metrics: str = _f(
        "vllm+twin",
        "fleet metrics: vllm+twin (vLLM's metric names, so vLLM dashboards show the twin) or twin "
        "(the same families named twin_*, for a Prometheus that also scrapes a real vLLM fleet)",
    )
    # As often as `up --observe`'s Prometheus scrapes (compose's scrapes every 5 s): an update in
    # between is never seen, and on a fleet of 128 instances one update reads every instance
    # (about 80 ms: docs/observability.md, "When they move").
    metrics_interval_s: float = _f(
        1.0, "wall seconds between two updates of the fleet metrics (always updated at the run's end)"
    )

    def __post_init__(self) -> None:
        if self.metrics not in METRICS_MODES:
            raise ConfigurationError(f"metrics: {self.metrics!r} is not one of {', '.join(METRICS_MODES)}")
        if not (self.metrics_interval_s >= 0 and math.isfinite(self.metrics_interval_s)):
            raise ConfigurationError(f"metrics_interval_s: must be >= 0, got {self.metrics_interval_s}")
        if self.role not in ROLES:
            raise ConfigurationError(f"role: unknown service role {self.role!r} ({', '.join(ROLES)})")
        ConnectionConfig.__post_init__(self)
        if not -1 <= self.http_port <= 65535:
            raise ConfigurationError(f"http_port: {self.http_port} is not a port")
        if not self.heartbeat_s > 0:
            raise ConfigurationError(f"heartbeat_s: must be > 0, got {self.heartbeat_s}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigurationError(f"log_level: {self.log_level!r} is not a log level")
        for n in ("max_requests", "max_instances"):
            if getattr(self, n) < 1:
                raise ConfigurationError(f"{n}: must be >= 1, got {getattr(self, n)}")

    @property
    def service_name(self) -> str:
        return self.name or self.role

    def run_limits(self) -> RunLimits:
        """What this service accepts to build (the same checks on every service)."""
        dirs = tuple(d for d in self.scenario_dirs.split(os.pathsep) if d)
        return RunLimits(self.max_requests, self.max_instances, dirs)


@dataclass(frozen=True, slots=True)
class HostConfig(ServiceConfig):
    """Generator, balancer, device (and generic host) services."""

    components: str = _f("", "comma-separated fnmatch patterns of the component ids to lead")
    instances: str = _f("", "device: instance numbers to lead, e.g. 0-3,6 (default: all)")
    shard: str = _f("", "device: lead the instances of shard k/n (instance i is in shard i %% n + 1)")
    follow: str = _f(
        "",
        "instance numbers (0-3,6) or component-id patterns to replicate without publishing (TP across processes)",
    )
    act: str = _f(
        "",
        "component-id patterns to step ahead of their leader, on the run's path (e.g. balancer; "
        "docs/architecture.md)",
    )
    plan_timeout_s: float = _f(60.0, "wall seconds a device waits for the planner")
    plan_retry_s: float = _f(
        5.0, "wall seconds after which an unanswered plan request is asked again (a planner may have died)"
    )

    def __post_init__(self) -> None:
        ServiceConfig.__post_init__(self)
        self.selector()
        _positive(self, "plan_timeout_s", "plan_retry_s")

    def selector(self) -> Selector:
        """Which components it leads and follows; ConfigurationError naming the bad flag."""
        return for_role(
            self.role,
            components=self.components,
            instances=self.instances,
            shard=self.shard,
            follow=self.follow,
            act=self.act,
        )


@dataclass(frozen=True, slots=True)
class ConductorConfig(ServiceConfig):
    """The conductor (clock) service."""

    ready_timeout_s: float = _f(60.0, "wall seconds to wait for every component to have a host")
    dead_after_s: float = _f(
        10.0, "a service silent this many wall seconds while owing an answer fails the run"
    )
    window_timeout_s: float = _f(
        300.0, "a window unanswered this many wall seconds (or a nats-server not answering) fails the run"
    )
    collect_timeout_s: float = _f(120.0, "wall seconds to wait for the results")
    progress_interval_s: float = _f(0.25, "wall seconds between progress messages")
    rejoin_timeout_s: float = _f(
        60.0,
        "wall seconds a dead service has to come back (restarted by its supervisor) and catch up "
        "before the run fails (0 = fail at once)",
    )
    reissue_after_s: float = _f(
        5.0, "wall seconds without an answer after which a window's grants are sent again (lost messages)"
    )
    max_result_bytes: int = _f(RESULT_MAX_BYTES, "most bytes of results a run may send (export chunks)")

    def __post_init__(self) -> None:
        ServiceConfig.__post_init__(self)
        _positive(
            self,
            "ready_timeout_s",
            "dead_after_s",
            "window_timeout_s",
            "collect_timeout_s",
            "progress_interval_s",
            "reissue_after_s",
        )
        if not (self.rejoin_timeout_s >= 0 and math.isfinite(self.rejoin_timeout_s)):
            raise ConfigurationError(f"rejoin_timeout_s: must be >= 0, got {self.rejoin_timeout_s}")
        if self.max_result_bytes < 1:
            raise ConfigurationError(f"max_result_bytes: must be >= 1, got {self.max_result_bytes}")


@dataclass(frozen=True, slots=True)
class PlannerConfig(ServiceConfig):
    """The PRESERVE planner service."""

    cache_size: int = _f(16384, "plans kept per planner process (LRU; about 2 KB each, encoded)")

    def __post_init__(self) -> None:
        ServiceConfig.__post_init__(self)
        if self.cache_size < 1:
            raise ConfigurationError(f"cache_size: must be >= 1, got {self.cache_size}")


def _positive(cfg: Any, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if not (v > 0 and math.isfinite(v)):
            raise ConfigurationError(f"{n}: must be a positive number, got {v}")


def config_class(role: str) -> type[ServiceConfig]:
    if role == "conductor":
        return ConductorConfig
    if role == "planner":
        return PlannerConfig
    return HostConfig


def _flag(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("flag") or "--" + f.name.replace("_", "-"))


def add_arguments(parser: argparse.ArgumentParser, classes: Sequence[type[ConnectionConfig]]) -> None:
    """One flag per field of any of ``classes`` (``--http-port``, ...), grouped by class."""
    seen: set[str] = set()
    for cls in classes:
        group = parser.add_argument_group(_group_title(cls))
        for f in dataclasses.fields(cls):
            if f.name not in seen and _flag(f) != "-":
                seen.add(f.name)
                _add_field(group, f)


def _group_title(cls: type[ConnectionConfig]) -> str:
    """A config class's docstring as a help heading: "The conductor (clock) service"."""
    return (cls.__doc__ or cls.__name__).strip().split("\n")[0].rstrip(".").replace("``", "`")


def _add_field(parser: argparse._ArgumentGroup, f: dataclasses.Field[Any]) -> None:
    env = f"TWIN_{f.name.upper()}"
    parser.add_argument(
        _flag(f), dest=f.name, default=None, metavar=f.name.upper(),
        help=f"{f.metadata['help']} [env {env}, default {f.default!r}]",
    )  # fmt: skip


def from_sources(
    cls: type[ConnectionConfig], role: str, flags: Mapping[str, Any], environ: Mapping[str, str]
) -> Any:
    """The config of ``role`` (ignored for a controller): flags, else TWIN_* environment, else
    defaults; validated."""
    values: dict[str, Any] = {"role": role} if issubclass(cls, ServiceConfig) else {}
    for f in dataclasses.fields(cls):
        if f.name == "role":
            continue
        raw = flags.get(f.name)
        if raw is None:
            raw = environ.get(f"TWIN_{f.name.upper()}")
        if raw is None:
            continue
        kind: type[Any] = type(f.default)
        try:
            values[f.name] = kind(raw)
        except ValueError:
            raise ConfigurationError(f"{f.name}: expected {kind.__name__}, got {raw!r}") from None
    return cls(**values)


def from_args(role: str, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Any:
    return from_sources(config_class(role), role, vars(args), os.environ if environ is None else environ)
