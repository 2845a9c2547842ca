"""The wire protocol: every message round-trips through plain msgpack; subjects; chunks; codec errors."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import msgspec
import pytest
from toy_components import TOY_TYPES, Ping

from llmtwin.cluster import messages
from llmtwin.cluster.messages import Arrival, InstanceExport
from llmtwin.errors import ProtocolError
from llmtwin.sim.kernel import Envelope
from proto import control, subjects
from proto.chunks import Reassembler, split
from proto.codec import Codec, tagged_structs


def sample(cls: type[msgspec.Struct]) -> msgspec.Struct:
    """An instance of ``cls`` with a plausible value in every field (from its type annotations)."""
    values: dict[str, Any] = {}
    hints = msgspec.structs.fields(cls)
    for f in hints:
        values[f.name] = _value(f.type)
    return cls(**values)


def _value(tp: Any) -> Any:
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", ())
    if tp is int:
        return 7
    if tp is float:
        return 0.25
    if tp is str:
        return "instance-3"
    if tp is bool:
        return True
    if tp is bytes:
        return b"\x00\x01"
    if tp is msgspec.Raw:
        return msgspec.Raw(msgspec.msgpack.encode({"k": 1}))
    if origin is list:
        return [_value(args[0]), _value(args[0])]
    if origin is tuple:
        return (_value(args[0]),)
    if origin is dict:
        return {_value(args[0]): _value(args[1])}
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return sample(tp)
    if args:  # Literal / Optional / Union: the first option
        first = args[0]
        return first if not isinstance(first, type) else _value(first)
    raise AssertionError(f"no sample value for {tp!r}")


ALL_TYPES = [*control.CONTROL_TYPES, *tagged_structs(messages), *TOY_TYPES]


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_every_message_is_a_plain_msgpack_map_that_round_trips(cls: type[msgspec.Struct]) -> None:
    """Encoded messages decode with the reference msgpack package into a map with a type tag,
    and re-packing that map with msgpack decodes back to the same struct."""
    msg = sample(cls)
    data = msgspec.msgpack.encode(msg)
    plain = msgpack.unpackb(data, strict_map_key=False)
    assert isinstance(plain, dict)
    assert plain["type"] == cls.__struct_config__.tag
    assert str(plain["type"]).startswith("twin.v1.")
    assert msgspec.msgpack.decode(msgpack.packb(plain), type=cls) == msg


def test_tags_are_unique_across_the_protocol() -> None:
    """No two message types (control or body) share a type tag."""
    tags = [c.__struct_config__.tag for c in ALL_TYPES]
    assert len(tags) == len(set(tags))


def test_codec_round_trips_an_envelope_with_its_body() -> None:
    """An envelope survives the wire with its key and its typed body."""
    codec = Codec()
    env = Envelope(1.5, 60, "generator", 3, "balancer", Arrival(4, 1.5, 100, 20))
    back = codec.from_wire(codec.decode(codec.encode(codec.to_wire(env)), control.WireEnvelope))
    assert back == env
    assert math.isinf(
        codec.decode(codec.encode(control.DoneItem("a", math.inf, [], [])), control.DoneItem).next_time_s
    )


def test_codec_rejects_malformed_and_unregistered_messages() -> None:
    """Garbage, a wrong type and an unregistered body type raise ProtocolError with the reason."""
    codec = Codec()
    with pytest.raises(ProtocolError, match="malformed GrantBatch"):
        codec.decode(b"\xc1garbage", control.GrantBatch)
    with pytest.raises(ProtocolError, match="malformed GrantBatch"):
        codec.decode(codec.encode(control.Reply(True)), control.GrantBatch)
    with pytest.raises(ProtocolError, match="envelope body"):
        codec.decode_body(msgpack.packb({"type": "twin.v1.nope", "x": 1}))
    with pytest.raises(ProtocolError, match="not a registered message type"):
        codec.to_wire(Envelope(0.0, 0, "a", 0, "b", {"not": "a struct"}))
    with pytest.raises(ProtocolError, match="envelope body"):
        codec.decode_body(codec.encode(Ping(3)))  # the toys' messages are not the twin's
    assert Codec(TOY_TYPES).decode_body(codec.encode(Ping(3))) == Ping(3)


def test_codec_refuses_duplicate_tags() -> None:
    """Two body types with one tag cannot make a codec (decoding would be ambiguous)."""

    class Twin(msgspec.Struct, tag="twin.v1.toy.ping"):
        n: int

    with pytest.raises(ProtocolError, match="share the tag"):
        Codec([Ping, Twin])


def test_subjects_are_versioned_and_validate_tokens() -> None:
    """Every subject starts with twin.v1; ids with dots, spaces or wildcards are refused; only
    ``subjects.ANY`` (not any string "*") makes a pattern."""
    assert subjects.grant("r1", "device-0") == "twin.v1.run.r1.grant.device-0"
    for fn in (subjects.run_start, subjects.config, subjects.plan):
        assert fn().startswith(f"{subjects.PREFIX}.")
    assert subjects.hello("device-1") == "twin.v1.ctl.hello.device-1"
    assert subjects.done(subjects.ANY, subjects.ANY) == "twin.v1.run.*.done.*"
    assert subjects.service_of(subjects.done("r1", "device-2")) == "device-2"
    for bad in ("a.b", "a b", "*", ">", ""):
        with pytest.raises(ProtocolError):
            subjects.grant("r1", bad)
        with pytest.raises(ProtocolError):
            subjects.hello(bad)


def test_chunks_split_and_reassemble_in_any_order() -> None:
    """A payload larger than max_payload comes back whole from its chunks, whatever their order."""
    payload = bytes(range(256)) * 40
    parts = split("s1", payload, 1024)
    assert len(parts) > 10
    assert all(len(msgspec.msgpack.encode(p)) <= 1024 for p in parts)
    r = Reassembler()
    got = [r.add(p) for p in reversed(parts)]
    assert got[-1] == payload
    assert all(g is None for g in got[:-1])
    assert r.pending() == 0
    assert Reassembler().add(split("s2", b"", 1024)[0]) == b""
    with pytest.raises(ProtocolError):
        r.add(control.Chunk("x", 3, 2, b""))


def test_instance_export_is_decodable_from_the_body_union() -> None:
    """Exports are tagged structs, so any process decodes them without knowing who sent them."""
    exp = sample(InstanceExport)
    assert Codec().decode_body(msgspec.msgpack.encode(exp)) == exp
