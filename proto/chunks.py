"""Payloads bigger than one NATS message (``max_payload``, 1 MiB by default) as ``Chunk`` streams.

Run results hold every request's token times, easily megabytes; rather than raising the
server's limit (which compose deployments may not control) they travel in pieces on one subject
and are put back together by stream id. NATS keeps one publisher's messages on one subject in
order, but the reassembler does not rely on it.
"""

from __future__ import annotations

from llmtwin.errors import ProtocolError
from proto.control import Chunk
from proto.limits import RESULT_MAX_BYTES

CHUNK_OVERHEAD_BYTES = 512
"""Room left in each NATS message for the Chunk fields, the subject and the headers."""


def split(stream: str, payload: bytes, max_payload_bytes: int) -> list[Chunk]:
    """``payload`` cut into chunks that each fit one NATS message of ``max_payload_bytes``."""
    size = max_payload_bytes - CHUNK_OVERHEAD_BYTES - len(stream.encode())
    if size <= 0:
        raise ProtocolError(f"max_payload of {max_payload_bytes} bytes is too small for chunks")
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    return [Chunk(stream, i, len(pieces), p) for i, p in enumerate(pieces)]


class Reassembler:
    """Collects chunks; returns each payload once all its pieces arrived. Bounded: at most
    ``max_streams`` unfinished streams and ``max_bytes`` held (ProtocolError beyond: a flood
    is refused, memory stays flat)."""

    def __init__(self, max_streams: int = 1024, max_bytes: int = RESULT_MAX_BYTES) -> None:
        self._parts: dict[str, dict[int, bytes]] = {}
        self._totals: dict[str, int] = {}
        self._max_streams = max_streams
        self._max_bytes = max_bytes
        self._held = 0

    def add(self, chunk: Chunk) -> bytes | None:
        """The complete payload when ``chunk`` was its last missing piece, else None."""
        if chunk.total < 1 or not 0 <= chunk.index < chunk.total:
            raise ProtocolError(f"chunk {chunk.index}/{chunk.total} of {chunk.stream!r} is out of range")
        parts = self._parts.get(chunk.stream)
        if parts is None:
            if len(self._parts) >= self._max_streams:
                raise ProtocolError(f"more than {self._max_streams} unfinished chunk streams")
            parts = self._parts[chunk.stream] = {}
            self._totals[chunk.stream] = chunk.total
        elif self._totals[chunk.stream] != chunk.total:
            raise ProtocolError(
                f"chunk {chunk.index}/{chunk.total} of {chunk.stream!r}: it had {self._totals[chunk.stream]}"
            )
        held = self._held - len(parts.get(chunk.index, b"")) + len(chunk.data)
        if held > self._max_bytes:
            raise ProtocolError(f"more than {self._max_bytes} bytes of unfinished chunks")
        self._held = held
        parts[chunk.index] = chunk.data
        if len(parts) < chunk.total:
            return None
        del self._parts[chunk.stream], self._totals[chunk.stream]
        self._held -= sum(len(p) for p in parts.values())
        return b"".join(parts[i] for i in range(chunk.total))

    def pending(self) -> int:
        return len(self._parts)
