"""The progress display of batches of runs: "run k of n", time left, throttled, quiet when short."""

from __future__ import annotations

import io

from llmtwin.report.progress import RunProgress, duration


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_one_run_on_a_terminal_is_silent_at_first_then_throttled() -> None:
    """Nothing before the delay; then at most one redraw per interval; close ends the line."""
    out, clock = io.StringIO(), FakeClock()
    progress = RunProgress(1, out, tty=True, clock=clock, delay_s=0.5, interval_s=0.2)
    bar = progress.start("demo/colocated", 100)
    bar(1.0, 10)
    assert out.getvalue() == ""
    clock.t = 0.6
    bar(2.0, 20)
    clock.t = 0.7
    bar(3.0, 30)
    assert out.getvalue().count("\r") == 1
    assert "20/100 requests" in out.getvalue()
    assert "run 1 of" not in out.getvalue()  # a batch of one says nothing about runs
    clock.t = 0.9
    bar(4.0, 40)
    assert out.getvalue().count("\r") == 2
    progress.close()
    assert out.getvalue().endswith("\n")


def test_a_batch_shows_run_k_of_n_and_the_time_left() -> None:
    """Two of four runs done in 20 s, the third half done: 2.5 of 4 in 25 s, so 15 s left."""
    out, clock = io.StringIO(), FakeClock()
    with RunProgress(4, out, tty=True, clock=clock, delay_s=0.0, interval_s=0.0) as progress:
        for k in range(2):
            progress.start(f"w1@{k}", 10)
            clock.t += 10.0
            progress.done()
        bar = progress.start("w1@2", 10)
        clock.t += 5.0
        bar(7.0, 5)
    line = out.getvalue().split("\r")[-1].strip()
    assert line.startswith("run 3 of 4 w1@2: [")
    assert "5/10 requests" in line
    assert line.endswith("25s elapsed, about 15s left")


def test_off_a_terminal_plain_lines_every_interval_and_per_finished_run() -> None:
    """Off a terminal: nothing in the first log interval, then full lines (one per finished run)."""
    out, clock = io.StringIO(), FakeClock()
    progress = RunProgress(2, out, tty=False, clock=clock, log_interval_s=10.0)
    bar = progress.start("a", None)
    clock.t = 5.0
    bar(1.0, 1)
    assert out.getvalue() == ""
    clock.t = 11.0
    bar(2.0, 7)
    clock.t = 12.0
    bar(3.0, 8)
    progress.done()
    assert out.getvalue().splitlines() == [
        "run 1 of 2 a: 7 requests done, t=2.0s virtual, 11s elapsed",
        "1 of 2 runs done (a), 12s elapsed, about 12s left",
    ]


def test_runs_in_worker_processes_are_reported_as_they_finish() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = RunProgress(3, out, tty=False, clock=clock, log_interval_s=0.0)
    clock.t = 30.0
    progress.done("b")
    assert out.getvalue() == "1 of 3 runs done (b), 30s elapsed, about 1m00s left\n"


def test_disabled_prints_nothing() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = RunProgress(2, out, enabled=False, tty=False, clock=clock, log_interval_s=0.0)
    progress.start("a", 5)(1.0, 1)
    progress.done()
    progress.done("b")
    progress.close()
    assert out.getvalue() == ""


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (0.4, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]
