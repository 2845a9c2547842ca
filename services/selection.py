"""Which components a hosting service steps (leads) or replicates (follows).

A generator service leads ``generator``, a balancer service ``balancer``; a device service
leads ``instance-<i>`` for the instances given by ``--instances 0-3,6`` or ``--shard k/n``
(instance i belongs to shard ``i % n + 1``). A follower replicates a component that another
process leads: it gets the same messages and grants, steps identically, publishes nothing, and
reports a digest of what it would have sent, so the conductor can check that both agree. That
is how an instance's TP group spans processes (docs/architecture.md).

An **actor** (``--act balancer``) steps a component that another service leads ahead of it, on
the run's path: it is granted the component's windows and publishes what it sends, and the
leader steps the same windows behind it, checked against it (docs/architecture.md, "The
balancer's decisions beside the instances").
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

from llmtwin.errors import ConfigurationError

Role = Literal["leader", "follower", "actor"]

_INSTANCE = re.compile(r"^instance-(\d+)$")
_RANGES = re.compile(r"^[\d,\-\s]+$")


def parse_ranges(text: str, what: str = "instance") -> frozenset[int]:
    """``"0-3,6"`` -> {0, 1, 2, 3, 6} (``what`` names the numbers in errors: instance, CPU)."""
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ConfigurationError(f"bad {what} range {part!r} in {text!r} (expected e.g. 0-3,6)") from None
        if a < 0 or b < a:
            raise ConfigurationError(f"bad {what} range {part!r} in {text!r}")
        out.update(range(a, b + 1))
    if not out:
        raise ConfigurationError(f"no {what}s in {text!r}")
    return frozenset(out)


def parse_shard(text: str) -> tuple[int, int]:
    """``"k/n"`` (1 <= k <= n) -> (k, n)."""
    k, sep, n = text.partition("/")
    try:
        kk, nn = int(k), int(n)
    except ValueError:
        kk = nn = 0
    if not sep or not 1 <= kk <= nn:
        raise ConfigurationError(f"--shard takes k/n with 1 <= k <= n, got {text!r}")
    return kk, nn


@dataclass(frozen=True, slots=True)
class Selector:
    """Picks a service's components out of the run's component ids."""

    lead: tuple[str, ...] = ()
    """fnmatch patterns of the components to lead."""
    follow: tuple[str, ...] = ()
    """fnmatch patterns of the components to follow (replicate)."""
    act: tuple[str, ...] = ()
    """fnmatch patterns of the components to act for (step ahead of their leader)."""
    instances: frozenset[int] | None = None
    """Only these instance numbers (``instance-<i>`` ids); None = all."""
    shard: tuple[int, int] | None = None
    """Only instances with ``i % n == k - 1``."""

    def _instance_ok(self, cid: str) -> bool:
        m = _INSTANCE.match(cid)
        if m is None:
            return self.instances is None and self.shard is None
        i = int(m.group(1))
        if self.instances is not None and i not in self.instances:
            return False
        return self.shard is None or i % self.shard[1] == self.shard[0] - 1

    def role(self, cid: str) -> Role | None:
        if any(fnmatch.fnmatchcase(cid, p) for p in self.act):
            return "actor"
        if any(fnmatch.fnmatchcase(cid, p) for p in self.lead) and self._instance_ok(cid):
            return "leader"
        if any(fnmatch.fnmatchcase(cid, p) for p in self.follow):
            return "follower"
        return None


def for_role(
    role: str,
    *,
    components: str = "",
    instances: str = "",
    shard: str = "",
    follow: str = "",
    act: str = "",
) -> Selector:
    """The selector of a service role (generator, balancer, device, host); ``follow`` takes
    instance numbers (``0-3,6``) or fnmatch patterns of component ids."""
    patterns = {"generator": ("generator",), "balancer": ("balancer",), "device": ("instance-*",)}
    lead = tuple(p for p in components.split(",") if p) or patterns.get(role, ())
    if not lead and not follow:
        raise ConfigurationError(f"a {role} service needs --components (fnmatch patterns of component ids)")
    return Selector(
        lead=lead,
        follow=_follow_patterns(follow),
        act=tuple(p.strip() for p in act.split(",") if p.strip()),
        instances=parse_ranges(instances) if instances else None,
        shard=parse_shard(shard) if shard else None,
    )


def _follow_patterns(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    if _RANGES.match(text):
        return tuple(f"instance-{i}" for i in sorted(parse_ranges(text)))
    return tuple(p.strip() for p in text.split(",") if p.strip())
