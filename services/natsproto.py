"""The NATS client protocol: what the server sends, parsed incrementally; what a client sends.

The protocol is line-based text with binary payloads (https://docs.nats.io/reference/reference-protocols/nats-protocol):
the server sends ``INFO {json}``, ``MSG <subject> <sid> [reply] <bytes>`` + payload,
``HMSG <subject> <sid> [reply] <header bytes> <total bytes>`` + headers + payload, ``PING``,
``PONG``, ``+OK`` and ``-ERR '<text>'``, each line ended by CRLF. :class:`Parser` turns bytes,
as they arrive in any split, into calls on a :class:`Receiver`, with no I/O and no asyncio, so it
is tested on its own. It is on the per-message path of every service, hence the plain loop.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from llmtwin.errors import BusError

MAX_CONTROL_LINE_BYTES = 64 * 1024
"""A control line longer than this (without its CRLF) is a protocol error, not a line to wait for."""

MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
"""Announced payloads above this are refused (the server's own limit is 1 MiB by default)."""

NO_RESPONDERS = 503
"""Status of the header-only message the server sends to a request nobody subscribes to."""

_SUBJECT = re.compile(r"[^\s.]+(\.[^\s.]+)*")
"""A subject the protocol can carry: dot-separated non-empty tokens without whitespace (what
wildcards may appear where is checked by the server)."""


class NatsProtocolError(BusError):
    """The server sent something that is not the NATS protocol."""


class Receiver(Protocol):
    """What the parser calls (a client connection)."""

    def on_msg(self, sid: int, subject: str, reply: str, data: bytes, status: int) -> None:
        """A message for subscription ``sid``; ``status`` is 0, or the HMSG status (e.g. 503)."""

    def on_ping(self) -> None: ...

    def on_pong(self) -> None: ...

    def on_info(self, info: dict[str, Any]) -> None: ...

    def on_err(self, text: str) -> None: ...


class Parser:
    """Feeds server bytes to a :class:`Receiver`, keeping an incomplete tail for the next call."""

    __slots__ = ("_buf", "_rx")

    def __init__(self, receiver: Receiver) -> None:
        self._rx = receiver
        self._buf = b""

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (appended to what was left over); NatsProtocolError on garbage."""
        buf = self._buf + data if self._buf else bytes(data)
        n = len(buf)
        pos = 0
        rx = self._rx
        try:
            while pos < n:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if n - pos > MAX_CONTROL_LINE_BYTES:
                        raise NatsProtocolError(f"control line longer than {MAX_CONTROL_LINE_BYTES} bytes")
                    break
                line = buf[pos:end]
                if line.startswith(b"MSG "):
                    args = line.split()
                    if len(args) == 4:
                        _, subject, sid, size_b = args
                        reply = b""
                    elif len(args) == 5:
                        _, subject, sid, reply, size_b = args
                    else:
                        raise NatsProtocolError(f"malformed MSG line {line[:200]!r}")
                    size = _size(size_b)
                    start = end + 2
                    stop = start + size
                    if stop + 2 > n:
                        break  # the payload is still on its way
                    if buf[stop : stop + 2] != b"\r\n":
                        raise NatsProtocolError(f"MSG payload of {size} bytes not followed by CRLF")
                    pos = stop + 2
                    rx.on_msg(int(sid), subject.decode(), reply.decode(), buf[start:stop], 0)
                elif line.startswith(b"HMSG "):
                    args = line.split()
                    if len(args) == 5:
                        _, subject, sid, hdr_b, size_b = args
                        reply = b""
                    elif len(args) == 6:
                        _, subject, sid, reply, hdr_b, size_b = args
                    else:
                        raise NatsProtocolError(f"malformed HMSG line {line[:200]!r}")
                    hdr, size = _size(hdr_b), _size(size_b)
                    if hdr > size:
                        raise NatsProtocolError(
                            f"HMSG headers ({hdr} bytes) longer than the message ({size})"
                        )
                    start = end + 2
                    stop = start + size
                    if stop + 2 > n:
                        break
                    if buf[stop : stop + 2] != b"\r\n":
                        raise NatsProtocolError(f"HMSG payload of {size} bytes not followed by CRLF")
                    pos = stop + 2
                    status = _status(buf[start : start + hdr])
                    rx.on_msg(int(sid), subject.decode(), reply.decode(), buf[start + hdr : stop], status)
                else:
                    pos = end + 2
                    if line == b"PING":
                        rx.on_ping()
                    elif line == b"PONG":
                        rx.on_pong()
                    elif line.startswith(b"INFO "):
                        info = json.loads(line[5:])
                        if not isinstance(info, dict):
                            raise NatsProtocolError("INFO is not a JSON object")
                        rx.on_info(info)
                    elif line == b"+OK":
                        pass
                    elif line.startswith(b"-ERR"):
                        rx.on_err(line[4:].strip().strip(b"'").decode(errors="replace"))
                    else:
                        raise NatsProtocolError(f"unknown protocol line {line[:200]!r}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise NatsProtocolError(f"malformed protocol data: {exc}") from None
        self._buf = buf[pos:] if pos < n else b""


def _size(raw: bytes) -> int:
    size = int(raw)
    if not 0 <= size <= MAX_PAYLOAD_BYTES:
        raise NatsProtocolError(f"payload size {size} out of range")
    return size


def _status(header: bytes) -> int:
    """The status code of a ``NATS/1.0 <code> [description]`` header block (0 when none)."""
    first = header.split(b"\r\n", 1)[0].split()
    if len(first) >= 2 and first[0] == b"NATS/1.0" and first[1].isdigit():
        return int(first[1])
    return 0


def check_subject(subject: str) -> bytes:
    """``subject`` as protocol bytes; BusError if it would break the protocol line."""
    if not _SUBJECT.fullmatch(subject):
        raise BusError(f"invalid subject {subject!r}")
    return subject.encode()


def connect_line(options: dict[str, Any]) -> bytes:
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + b"\r\n"


def pub_line(subject: bytes, reply: bytes, data: bytes) -> bytes:
    """A whole PUB command (header, payload, CRLF) in one buffer: one write, one segment."""
    if reply:
        return b"PUB %b %b %d\r\n%b\r\n" % (subject, reply, len(data), data)
    return b"PUB %b %d\r\n%b\r\n" % (subject, len(data), data)


def sub_line(subject: bytes, queue: str, sid: int) -> bytes:
    if queue:
        return b"SUB %b %b %d\r\n" % (subject, queue.encode(), sid)
    return b"SUB %b %d\r\n" % (subject, sid)


def unsub_line(sid: int) -> bytes:
    return b"UNSUB %d\r\n" % sid


PING = b"PING\r\n"
PONG = b"PONG\r\n"
