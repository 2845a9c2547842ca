"""The conductor's state for one run, and the pacing clock."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from llmtwin.sim.windows import WindowPlanner
from proto.chunks import Reassembler
from proto.control import DoneBatch, ExportBatch, Progress, RunRequest, WireEnvelope
from services.bus import Subscription


class RunFailed(Exception):
    """Ends a run early; carries the service to blame (empty if none) and why."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service, self.message = service, message


class Pacer:
    """Maps virtual time to a wall-clock deadline: ``start + T / speed``, pauses excluded.

    ``speed`` is virtual seconds per wall second (1.0 = real time); ``inf`` never waits.
    """

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.start = time.perf_counter()
        self.paused_s = 0.0
        self.lag_s = 0.0

    def delay_s(self, virtual_s: float) -> float:
        """Wall seconds to wait before opening a window at ``virtual_s`` (<= 0: open now)."""
        if math.isinf(self.speed):
            return 0.0
        deadline = self.start + self.paused_s + virtual_s / self.speed
        return deadline - time.perf_counter()

    def restart(self) -> None:
        """Count the pace from now (the first window), not from the run request."""
        self.start = time.perf_counter()

    def opened(self, virtual_s: float) -> None:
        """Record the lag behind the pace at the moment a window opens."""
        self.lag_s = max(0.0, -self.delay_s(virtual_s))

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start


@dataclass(slots=True)
class ConductedRun:
    """Everything the conductor tracks while it runs one run."""

    req: RunRequest
    components: list[str]
    planner: WindowPlanner
    pacer: Pacer
    leaders: dict[str, str] = field(default_factory=dict)
    """Component -> the service that leads it."""
    followers: dict[str, list[str]] = field(default_factory=dict)
    """Component -> services that replicate it."""
    ready_services: set[str] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    phase: str = "setup"
    """setup -> running -> collecting -> done."""
    window: int = 0
    now_s: float = 0.0
    window_opened: float = 0.0
    """perf_counter() when the current window's grants went out."""
    expected: set[str] = field(default_factory=set)
    """Services that owe a DoneBatch for the current window."""
    dones: dict[str, DoneBatch] = field(default_factory=dict)
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    exports: dict[str, ExportBatch] = field(default_factory=dict)
    all_exported: asyncio.Event = field(default_factory=asyncio.Event)
    chunks: Reassembler = field(default_factory=Reassembler)
    completed: dict[str, int] = field(default_factory=dict)
    relay: dict[str, list[WireEnvelope]] = field(default_factory=dict)
    """Relay routing: envelopes waiting for the next grant to each service."""
    messages: int = 0
    failure: RunFailed | None = None
    stop: bool = False
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while running, cleared while paused."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Interrupts a pacing wait (stop, pause)."""
    subs: list[Subscription] = field(default_factory=list)
    last_progress: float = 0.0
    marks: dict[str, float] = field(default_factory=lambda: {"requested": time.perf_counter()})
    """Wall-clock (perf_counter) time of each phase change: requested, ready, windows_done."""

    @property
    def run(self) -> str:
        return self.req.run

    def fail(self, service: str, message: str) -> None:
        """Record the first failure and wake every wait so the run loop sees it."""
        if self.failure is None:
            self.failure = RunFailed(service, message)
        self.all_done.set()
        self.all_exported.set()
        self.ready.set()
        self.resumed.set()
        self.wake.set()

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def hosting_services(self) -> set[str]:
        return set(self.leaders.values())

    def completed_total(self) -> int:
        """Requests completed, summed over services that count them (-1 when none does)."""
        counts = [c for c in self.completed.values() if c >= 0]
        return sum(counts) if counts else -1

    def stats(self) -> dict[str, float]:
        """The run's statistics for ``RunOutcome.stats`` (wall-clock figures in seconds)."""
        now = time.perf_counter()
        ready = self.marks.get("ready", now)
        loop_end = self.marks.get("windows_done", now)
        return {
            "wall_s": now - self.marks["requested"],
            "setup_wall_s": ready - self.marks["requested"],
            "windows_wall_s": loop_end - ready,
            "collect_wall_s": now - loop_end,
            "paused_wall_s": self.pacer.paused_s,
            "windows": float(self.window),
            "messages": float(self.messages),
            "services": float(len(self.ready_services)),
            "stopped": 1.0 if self.stop else 0.0,
        }

    def progress(self) -> Progress:
        return Progress(
            self.run,
            self.window,
            self.now_s,
            self.pacer.elapsed_s(),
            self.messages,
            self.completed_total(),
            self.pacer.lag_s,
            not self.resumed.is_set(),
        )
