"""msgpack encoding of every bus message, in one place: handlers never see bytes.

Control messages are decoded with their own type (one cached decoder per type); envelope
bodies with the tagged union of the component message types the codec is given (by default
the twin's own, ``llmtwin/cluster/messages.py``). Anything that does not decode raises
:class:`~llmtwin.errors.ProtocolError` with the reason, which the services count and log.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any, TypeVar, Union

import msgspec

from llmtwin.cluster import messages
from llmtwin.errors import ProtocolError
from llmtwin.sim.kernel import Envelope
from proto import control

T = TypeVar("T")


def tagged_structs(module: ModuleType) -> list[type[msgspec.Struct]]:
    """The tagged Struct classes a module defines (not the ones it imports)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == module.__name__
        and value.__struct_config__.tag is not None
    ]


class Codec:
    """Encoder and decoders of the protocol (one per service; cheap to build)."""

    def __init__(self, bodies: Iterable[type[msgspec.Struct]] | None = None) -> None:
        types = list(dict.fromkeys(tagged_structs(messages) if bodies is None else bodies))
        tags = [t.__struct_config__.tag for t in types]
        dup = sorted({str(t) for t in tags if tags.count(t) > 1})
        if dup:
            raise ProtocolError(f"two message types share the tag(s) {', '.join(dup)}")
        self.body_types: tuple[type[msgspec.Struct], ...] = tuple(types)
        self._encoder = msgspec.msgpack.Encoder()
        # Union[...] over a runtime tuple: msgspec dispatches on the "type" tag.
        self._body = msgspec.msgpack.Decoder(Union[self.body_types]) if types else None  # noqa: UP007
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

    def encode(self, msg: object) -> bytes:
        """msgpack of a struct (or any msgspec-encodable value)."""
        return self._encoder.encode(msg)

    def decode(self, data: bytes, typ: type[T]) -> T:
        """``data`` decoded and validated as ``typ`` (a tagged Struct, or a union of them);
        ProtocolError if it is not one."""
        dec = self._decoders.get(typ)
        if dec is None:
            dec = self._decoders[typ] = msgspec.msgpack.Decoder(typ)
        try:
            return dec.decode(data)  # type: ignore[no-any-return]
        except msgspec.DecodeError as exc:
            name = getattr(typ, "__name__", str(typ))
            raise ProtocolError(f"malformed {name}: {exc}") from None

    def decode_body(self, data: bytes | msgspec.Raw) -> Any:
        """One envelope body (any of ``body_types``)."""
        if self._body is None:
            raise ProtocolError("this codec knows no envelope body types")
        try:
            return self._body.decode(data)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed envelope body: {exc}") from None

    def raw(self, value: object) -> msgspec.Raw:
        """``value`` encoded, to embed as-is in another message."""
        return msgspec.Raw(self._encoder.encode(value))

    def to_wire(self, env: Envelope) -> control.WireEnvelope:
        if not isinstance(env.body, self.body_types):
            raise ProtocolError(
                f"{env.src} sent a {type(env.body).__name__} to {env.dst}: not a registered message type"
            )
        return control.WireEnvelope(env.time, env.priority, env.src, env.seq, env.dst, self.raw(env.body))

    def from_wire(self, w: control.WireEnvelope) -> Envelope:
        return Envelope(w.time_s, w.priority, w.src, w.seq, w.dst, self.decode_body(w.body))
