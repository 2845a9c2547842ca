"""Component factories: how every process builds the same components for a run, and proves it.

A run is named by a :class:`~proto.control.RunSpec`; every service calls the same factory on
it and gets the same components (the build is deterministic), then keeps the ones it hosts.
The twin's own factory is ``cluster`` (``services/cluster.py``); tests add others.

"The same" is checked, not assumed: the conductor puts the digest of the resolved run
(:meth:`Factory.digest`) and of the code (:func:`code_digest`) in its ``RunConfig``, every
host answers with its own in ``Ready``, and a host whose digests differ fails the run with a
message naming it: a stale file on one host must never silently change results.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from llmtwin.sim.kernel import Component
from proto.control import RunSpec

PlanFunction = Callable[[bytes], dict[int, float]]
"""Encoded iteration shape -> {op index: bytes read from L2}: the planner service's job."""

PlanProvider = Callable[..., Any]
"""What a device component calls, synchronously, to get a PRESERVE plan (services/planner.py)."""

DIGEST_LIBRARIES = ("numpy", "scipy", "msgspec")
"""Libraries whose version can change a result; part of :func:`code_digest`."""


class Factory(Protocol):
    """Builds a run's components (their exports are tagged structs: any process decodes them)."""

    def build(self, spec: RunSpec, plan_provider: PlanProvider | None = None) -> list[Component]:
        """Every component of the run, deterministically."""
        ...

    def digest(self, spec: RunSpec) -> str:
        """Hex digest of everything the build depends on besides the code: the resolved scenario
        (overrides applied, catalogs looked up) and the generated requests."""
        ...

    def body_types(self) -> Sequence[type[msgspec.Struct]]:
        """The tagged message types its components send (and export)."""
        ...

    def needs_planner(self, spec: RunSpec) -> bool:
        """Whether device steps ask the planner service for plans."""
        ...

    def may_block(self, spec: RunSpec, component: str) -> bool:
        """Whether this component's step may wait on the planner (it then runs in a worker thread)."""
        ...

    def plan_function(self, spec: RunSpec) -> PlanFunction:
        """What the planner service computes for this run: encoded shape -> {op index: L2 bytes}."""
        ...


def content_digest(value: object) -> str:
    """sha256 of ``value`` as deterministic msgpack (dataclasses and structs included)."""
    return hashlib.sha256(_ENCODER.encode(value)).hexdigest()


_ENCODER = msgspec.msgpack.Encoder(order="deterministic")


@functools.cache
def code_digest() -> str:
    """sha256 of this installation of the twin: every file of the ``llmtwin``, ``proto`` and
    ``services`` packages (code and data), the Python version and :data:`DIGEST_LIBRARIES`'."""
    h = hashlib.sha256()
    for package in ("llmtwin", "proto", "services"):
        root = Path(sys.modules[package].__file__ or "").parent
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root.parent)).encode())
                h.update(path.read_bytes())
    h.update(f"python {sys.version_info.major}.{sys.version_info.minor}".encode())
    for name in DIGEST_LIBRARIES:
        h.update(f"{name} {importlib.metadata.version(name)}".encode())
    return h.hexdigest()
