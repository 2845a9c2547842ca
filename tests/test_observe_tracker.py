"""The request tracker on hand-made reports: pieces in any order, repeats, hostile input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmtwin.errors import ProtocolError
from llmtwin.observe.observations import PieceKind, TokenPieces, split_pieces
from llmtwin.observe.request_tracker import RequestTracker
from llmtwin.scenario.spec import SLOSpec

F, C, H = int(PieceKind.FIRST), int(PieceKind.CONT), int(PieceKind.HOP)


def tracker() -> RequestTracker:
    """Two requests: 0 arrives at 0 s wanting 4 tokens, 1 at 1 s wanting 2."""
    return RequestTracker(
        np.array([0.0, 1.0]),
        np.array([100, 50]),
        np.array([4, 2]),
        SLOSpec(ttft_s=1.0, tbt_s=0.5, tbt_stat="p99"),
        ("instance-0", "instance-1"),
    )


def pieces(
    engine: str, to_it: int, *ps: tuple[int, int, list[float], int, float], final: bool = False
) -> TokenPieces:
    """``ps``: (request, first iteration, times, kind, previous token's time)."""
    return TokenPieces(
        engine, 0, to_it, [p[0] for p in ps], [p[1] for p in ps], [len(p[2]) for p in ps],
        [p[3] for p in ps], [p[4] for p in ps], [t for p in ps for t in p[2]], [0], [0.2], final,
    )  # fmt: skip


def test_a_request_across_two_instances_in_any_order() -> None:
    """Request 0: first token and one more on instance-0, two on instance-1 (a hand-over); the
    decode instance reports first. The cross-instance gap counts once, at completion."""
    t = tracker()
    t.add(pieces("instance-1", 9, (0, 7, [2.0, 2.1], H, math.nan)))
    engines, settled = t.take()
    assert settled.finished == 0
    assert [e.token_gaps_s.tolist() for e in engines] == [[pytest.approx(0.1)]]
    t.add(pieces("instance-0", 5, (0, 3, [0.5, 0.6], F, math.nan)))
    engines, settled = t.take()
    by = {e.engine: e for e in engines}
    assert by["instance-0"].ttft_s == (0.5,)
    assert by["instance-0"].prompt_tokens == 100
    assert sorted(by["instance-0"].token_gaps_s) == [pytest.approx(0.1)]
    assert by["instance-1"].token_gaps_s.tolist() == [pytest.approx(1.4)]  # 2.0 - 0.6, after the hand-over
    (done,) = by["instance-1"].finished
    assert (done.scheduled_s, done.first_token_s, done.completion_s, done.generated_tokens) == (
        0.2,
        0.5,
        2.1,
        4,
    )
    assert (settled.finished, settled.slo_met, settled.last_completion_s) == (1, 0, 2.1)  # a 1.4 s gap


def test_a_repeated_report_counts_once_and_a_split_one_whole() -> None:
    t = tracker()
    whole = pieces("instance-0", 4, (1, 1, [1.2], F, math.nan), (0, 0, [0.3, 0.4, 0.5, 0.6], F, math.nan))
    for part in split_pieces(whole):
        t.add(part)
    t.add(whole)  # again, as a restarted device would send it: nothing new
    engines, settled = t.take()
    assert sorted(engines[0].ttft_s) == [pytest.approx(0.2), 0.3]
    assert len(engines[0].token_gaps_s) == 3
    assert (settled.finished, settled.slo_met) == (1, 1)
    t.add(pieces("instance-0", 6, (1, 4, [1.3], C, 1.2), final=True))
    assert not t.complete
    t.add(pieces("instance-1", 0, final=True))
    assert t.complete
    assert t.take()[1].finished == 1


def test_one_report_with_two_pieces_of_a_request() -> None:
    """Request 0 preempted and resumed on one instance between two reports' worth of
    iterations: its two pieces and request 1's between them, in one report."""
    t = tracker()
    first, other, resumed = (
        (0, 0, [0.3, 0.4], F, math.nan),
        (1, 1, [1.2], F, math.nan),
        (0, 5, [0.9, 1.0], C, 0.4),
    )
    t.add(pieces("instance-0", 10, first, other, resumed))
    (engine,), settled = t.take()
    assert sorted(engine.ttft_s) == [pytest.approx(0.2), 0.3]
    assert sorted(engine.token_gaps_s) == [pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.5)]
    assert [f.rid for f in engine.finished] == [0]
    assert (engine.finished[0].first_token_s, engine.finished[0].completion_s) == (0.3, 1.0)
    assert settled.finished == 1


def test_a_refused_report_takes_nothing() -> None:
    """Its first piece holds together, its second has too many tokens: neither counts."""
    t = tracker()
    with pytest.raises(ProtocolError):
        t.add(pieces("instance-0", 3, (0, 0, [0.3, 0.4], F, math.nan), (1, 1, [1.2, 1.3, 1.4], F, math.nan)))
    assert t.take()[0] == []
    t.add(pieces("instance-0", 3, (1, 1, [1.2, 1.3], F, math.nan)))
    assert t.take()[1].finished == 1


@pytest.mark.parametrize(
    "bad",
    [
        TokenPieces("instance-9", 0, 1, [], [], [], [], [], [], [], []),
        TokenPieces("instance-0", 0, 1, [0], [0], [2], [F], [math.nan], [1.0], [], []),
        TokenPieces("instance-0", 0, 1, [0], [0], [1], [7], [math.nan], [1.0], [], []),
        TokenPieces("instance-0", 0, 1, [5], [0], [1], [F], [math.nan], [1.0], [], []),
        TokenPieces("instance-0", 0, 1, [0], [0], [1], [F], [math.nan], [math.nan], [], []),
        TokenPieces("instance-0", 0, 9, [1], [0], [3], [F], [math.nan], [1.1, 1.2, 1.3], [], []),
    ],
    ids=["unknown engine", "counts", "kind", "request", "not finite", "too many tokens"],
)
def test_reports_that_do_not_hold_together_are_refused(bad: TokenPieces) -> None:
    with pytest.raises(ProtocolError):
        tracker().add(bad)
