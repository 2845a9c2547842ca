"""A conductor's books of a small run, for tests of horizon grants and held-back steps."""

from __future__ import annotations

import math

from llmtwin.sim.windows import WindowPlanner
from proto.control import DoneBatch, DoneItem, Ready, RunConfig, RunRequest, RunSpec
from services.pacing import Pacer
from services.run_state import RunState


def two_host_state(speed: float = math.inf, until_s: float = math.inf) -> RunState:
    """h1 hosts a and b, h2 hosts c; the run is set up and no window has opened."""
    spec = RunSpec("toy", "x")
    comps = ["a", "b", "c"]
    state = RunState(
        RunRequest("r", spec, speed=speed, until_s=until_s),
        RunConfig("r", spec, "s" * 64, "c" * 64),
        comps,
        WindowPlanner(comps),
        Pacer(speed),
    )
    state.join(Ready("r", "h1", ["a", "b"], [], "", "s" * 64, "c" * 64))
    state.join(Ready("r", "h2", ["c"], [], "", "s" * 64, "c" * 64))
    state.fix_hosts()
    return state


def first_window(state: RunState) -> None:
    """Window 1 (everyone at t=0): a next at 1, b at 2, c at 5."""
    state.open_window(state.planner.next_window())
    state.dones = {
        "h1": DoneBatch("r", 1, "h1", [DoneItem("a", 1.0, [], []), DoneItem("b", 2.0, [], [])]),
        "h2": DoneBatch("r", 1, "h2", [DoneItem("c", 5.0, [], [])]),
    }
    assert state.close_window() == (1, 0)
