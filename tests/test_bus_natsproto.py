"""The NATS protocol parser: every server operation, in any split, and garbage refused."""

from __future__ import annotations

from typing import Any

import pytest

from llmtwin.errors import BusError
from services import natsproto
from services.natsproto import NatsProtocolError, Parser

STREAM = (
    b'INFO {"server_id":"x","max_payload":1048576}\r\n'
    b"+OK\r\n"
    b"MSG twin.v1.a 1 5\r\nhello\r\n"
    b"MSG twin.v1.b 22 _INBOX.r.7 0\r\n\r\n"
    b"PING\r\n"
    b"HMSG _INBOX.r.8 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    b"HMSG twin.v1.c 4 reply.x 12 15\r\nNATS/1.0\r\n\r\nabc\r\n"
    b"MSG twin.v1.d 5 4\r\n\r\n\r\n\r\n"
    b"PONG\r\n"
    b"-ERR 'Unknown Subject'\r\n"
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_msg(self, sid: int, subject: str, reply: str, data: bytes, status: int) -> None:
        self.events.append(("msg", sid, subject, reply, data, status))

    def on_ping(self) -> None:
        self.events.append(("ping",))

    def on_pong(self) -> None:
        self.events.append(("pong",))

    def on_info(self, info: dict[str, Any]) -> None:
        self.events.append(("info", info["max_payload"]))

    def on_err(self, text: str) -> None:
        self.events.append(("err", text))


EXPECTED = [
    ("info", 1048576),
    ("msg", 1, "twin.v1.a", "", b"hello", 0),
    ("msg", 22, "twin.v1.b", "_INBOX.r.7", b"", 0),
    ("ping",),
    ("msg", 3, "_INBOX.r.8", "", b"", 503),
    ("msg", 4, "twin.v1.c", "reply.x", b"abc", 0),
    ("msg", 5, "twin.v1.d", "", b"\r\n\r\n", 0),
    ("pong",),
    ("err", "Unknown Subject"),
]


def parse(chunks: list[bytes]) -> list[tuple[Any, ...]]:
    rec = Recorder()
    parser = Parser(rec)
    for chunk in chunks:
        parser.feed(chunk)
    return rec.events


def test_every_server_operation_is_parsed() -> None:
    """INFO, +OK, MSG with and without reply, PING, HMSG with a status, PONG and -ERR."""
    assert parse([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_the_stream_may_arrive_in_pieces_of_any_size(size: int) -> None:
    """Lines and payloads split across reads (even CRLFs inside payloads) give the same events."""
    assert parse([STREAM[i : i + size] for i in range(0, len(STREAM), size)]) == EXPECTED


@pytest.mark.parametrize(
    "data",
    [
        b"HELLO there\r\n",
        b"MSG a 1\r\n",
        b"MSG a one 3\r\nabc\r\n",
        b"MSG a 1 -4\r\nabc\r\n",
        b"MSG a 1 2\r\nabc\r\n",
        b"HMSG a 1 20 10\r\n",
        b"INFO [1, 2]\r\n",
        b"X" * (natsproto.MAX_CONTROL_LINE_BYTES + 1),
    ],
)
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    """Unknown operations, bad numbers and overlong lines raise instead of waiting or guessing."""
    with pytest.raises(NatsProtocolError):
        Parser(Recorder()).feed(data)


def test_subjects_that_would_break_the_protocol_line_are_refused() -> None:
    """Whitespace and empty tokens never reach the wire; wildcards and inboxes do."""
    for good in ("twin.v1.run.r1.done", "twin.v1.run.*.grant.>", "_INBOX.abc.7"):
        assert natsproto.check_subject(good) == good.encode()
    for bad in ("", "a b", "a..b", ".a", "a.", "a\r\nPUB x 1", "a\n"):
        with pytest.raises(BusError):
            natsproto.check_subject(bad)


def test_commands_are_framed_as_the_protocol_says() -> None:
    """PUB carries the payload length and ends with CRLF; SUB names the queue group when given."""
    assert natsproto.pub_line(b"a.b", b"", b"xyz") == b"PUB a.b 3\r\nxyz\r\n"
    assert natsproto.pub_line(b"a.b", b"r.1", b"") == b"PUB a.b r.1 0\r\n\r\n"
    assert natsproto.sub_line(b"a.*", "", 4) == b"SUB a.* 4\r\n"
    assert natsproto.sub_line(b"a.*", "planner", 4) == b"SUB a.* planner 4\r\n"
    assert natsproto.unsub_line(9) == b"UNSUB 9\r\n"
