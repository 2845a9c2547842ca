"""The component factories a process knows, by the name a ``RunSpec`` gives."""

from __future__ import annotations

from collections.abc import Mapping

from services.cluster import ClusterFactory
from services.factory import Factory, ToyFactory


def factories(extra: Mapping[str, Factory] | None = None) -> dict[str, Factory]:
    """``cluster`` (the twin) and ``toy`` (transport self-test), plus ``extra`` (tests)."""
    found: dict[str, Factory] = {"toy": ToyFactory(), "cluster": ClusterFactory()}
    found.update(extra or {})
    return found
