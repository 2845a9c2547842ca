"""msgpack encoding of every bus message, in one place: handlers never see bytes.

Control messages are decoded with their own type (one cached decoder per type); envelope
bodies with the tagged union of every component message type (``llmtwin/cluster/messages.py``, plus the
transport self-test messages of ``proto/toy.py``). Anything that does not decode raises
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
from proto import control, toy

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


def body_types() -> list[type[msgspec.Struct]]:
    """Every message type that may travel inside an envelope."""
    return tagged_structs(messages) + list(toy.TOY_TYPES)


class Codec:
    """Encoder and decoders of the protocol (one per process; cheap to build)."""

    def __init__(self, bodies: Iterable[type[msgspec.Struct]] | None = None) -> None:
        types = list(body_types() if bodies is None else bodies)
        tags = [t.__struct_config__.tag for t in types]
        dup = sorted({str(t) for t in tags if tags.count(t) > 1})
        if dup:
            raise ProtocolError(f"two message types share the tag(s) {', '.join(dup)}")
        self.body_types: tuple[type[msgspec.Struct], ...] = tuple(types)
        self._encoder = msgspec.msgpack.Encoder()
        # Union[...] over a runtime tuple: msgspec dispatches on the "type" tag.
        self._body = msgspec.msgpack.Decoder(Union[self.body_types])  # noqa: UP007
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

    def encode(self, msg: object) -> bytes:
        """msgpack of a struct (or any msgspec-encodable value)."""
        return self._encoder.encode(msg)

    def decode(self, data: bytes, typ: type[T]) -> T:
        """``data`` decoded and validated as ``typ``; ProtocolError if it is not one."""
        dec = self._decoders.get(typ)
        if dec is None:
            dec = self._decoders[typ] = msgspec.msgpack.Decoder(typ)
        try:
            return dec.decode(data)  # type: ignore[no-any-return]
        except msgspec.DecodeError as exc:
            name = getattr(typ, "__name__", str(typ))
            raise ProtocolError(f"malformed {name}: {exc}") from None

    def decode_union(self, data: bytes, options: Any) -> Any:
        """``data`` decoded as one of a union of tagged types (``A | B``)."""
        return self.decode(data, options)

    def decode_body(self, data: bytes | msgspec.Raw) -> Any:
        """One envelope body (any of ``body_types``)."""
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
