"""wire.v2: every node-to-node message survives encode/decode and framing (one byte at a time),
foreign and oversized input is refused early, and arbitrary bytes give a message or a WireError,
never anything else (docs/v2.md §1, §6)."""

from __future__ import annotations

import copy
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chisme.core import replication as rep
from chisme.core import swim as m
from chisme.core.keys import parse_addr
from chisme.core.records import FLAG_SEEDER, FLAG_TOMBSTONE, MAX_PEER_ID_BYTES, Record
from chisme.core.replication import SwimPacket
from chisme.errors import MessageTooLarge, WireError
from chisme.wire import v2

IH = "3f2a" * 10
IH2 = "c0ffee" * 6
T = 1_795_628_171_123_456_789
V4 = parse_addr("10.0.0.5:6881")
V6 = parse_addr("[2001:db8::7]:51413")
NAME = parse_addr("seed.example.org:6881")
TAG = v2.cluster_tag("chisme")

ALIVE = m.Alive("a1b2c3d4e5f60718.0badcafe", "127.0.0.1:7070", 3)
SUSPECT = m.Suspect("node-b.1", 7, "node-c.2")
DEAD = m.Dead("node-d.3", 2, "node-e.4")
LEFT = m.Dead("node-f.5", 9, "node-f.5")
PIGGYBACK = (ALIVE, SUSPECT, DEAD, LEFT)

RECORDS: tuple[rep.ItemRecord, ...] = (
    (IH, Record(V4, T, b"-qB4650-abcdefghijkl", 0, 0x1234ABCD, 1)),
    (IH, Record(V6, T + 1, b"", FLAG_SEEDER, 1, 2**63)),
    (IH2, Record(NAME, T + 2, b"\xff\x00peer", FLAG_TOMBSTONE, 0xFFFFFFFF, 2**64 - 1)),
    (IH2, Record(V4, 0, bytes(MAX_PEER_ID_BYTES), FLAG_SEEDER, 7, 0)),
)

SWIM_MESSAGES: list[m.Message] = [
    m.Ping(1, "target.1", "source.2", "127.0.0.1:7071"),
    m.PingReq(0xFFFFFFFF, "target.1", "[::1]:7072", "source.2", "127.0.0.1:7071"),
    m.Ack(5, "target.1"),
    m.Nack(6, "relay.3"),
    m.Gossip("source.2"),
    m.PushPull("source.2", "127.0.0.1:7071", PIGGYBACK, reply=False),
    m.PushPull("source.2", "[::1]:7071", (), reply=True),
]

MESSAGES: list[object] = [
    *(SwimPacket(msg, PIGGYBACK) for msg in SWIM_MESSAGES),
    *(SwimPacket(msg, ()) for msg in SWIM_MESSAGES),
    rep.Rumors(RECORDS),
    rep.Rumors(()),
    rep.Rumors(RECORDS[:1], ((IH, "node-a", 3), (IH2, "node-b", 2**64 - 1))),
    rep.SyncRoot(0x7FFFFFFF, 2**64 - 1, 12345),
    rep.SyncRoot(1, 0, 0),
    rep.SyncOk(42),
    rep.SyncGroups(3, tuple(range(rep.GROUPS))),
    rep.SyncGroups(4, tuple(2**64 - 1 - i for i in range(rep.GROUPS))),
    rep.SyncBuckets(
        5, tuple((b, b * 0x9E3779B97F4A7C15 % 2**64) for b in range(0, rep.BUCKETS, 7))
    ),
    rep.Delta(6, (0, 17, rep.BUCKETS - 1), RECORDS, True),
    rep.Delta(7, (), RECORDS[:1], False),
    rep.Delta(8, (5,), (), True, ((IH, "node-a", 0),)),
    v2.Hello(v2.VERSION, "chisme", "a1b2c3d4e5f60718.0badcafe", "127.0.0.1:7070"),
    v2.Hello(v2.VERSION, "other-cluster", "x.1", "[::1]:7070"),
    v2.Error("wrong cluster"),
]


def _name(msg: object) -> str:
    if isinstance(msg, SwimPacket):
        return f"{type(msg.msg).__name__}+{len(msg.piggyback)}"
    return type(msg).__name__


def _plain(msg: object) -> Any:
    """The msgpack structure of a message (to mutate it, or to pin its layout)."""
    return msgspec.msgpack.decode(v2.encode(msg))


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("msg", MESSAGES, ids=_name)
def test_every_message_round_trips(msg: object) -> None:
    assert v2.decode(v2.encode(msg)) == msg


def test_every_message_type_is_covered() -> None:
    swim = {type(p.msg) for p in MESSAGES if isinstance(p, SwimPacket)}
    assert swim == {m.Ping, m.PingReq, m.Ack, m.Nack, m.Gossip, m.PushPull}
    kinds = {type(x) for x in MESSAGES}
    assert kinds == {
        SwimPacket, rep.Rumors, rep.SyncRoot, rep.SyncOk, rep.SyncGroups, rep.SyncBuckets,
        rep.Delta, v2.Hello, v2.Error,
    }
    updates = {type(u) for p in MESSAGES if isinstance(p, SwimPacket) for u in p.piggyback}
    assert updates == {m.Alive, m.Suspect, m.Dead}


def test_all_frames_fed_one_byte_at_a_time() -> None:
    stream = v2.PREFACE + b"".join(v2.encode_frame(x) for x in MESSAGES)
    reader = v2.FrameReader(1 << 20, expect_preface=True)
    got: list[object] = []
    for i in range(len(stream)):
        got.extend(reader.feed(stream[i : i + 1]))
    assert got == MESSAGES


def test_all_frames_fed_at_once_and_in_odd_chunks() -> None:
    frames = b"".join(v2.encode_frame(x) for x in MESSAGES)
    assert v2.FrameReader(1 << 20, expect_preface=False).feed(frames) == MESSAGES
    reader = v2.FrameReader(1 << 20, expect_preface=True)
    data = v2.PREFACE + frames
    got: list[object] = []
    for start in range(0, len(data), 97):
        got.extend(reader.feed(data[start : start + 97]))
    assert got == MESSAGES


@pytest.mark.parametrize(
    "msg", [x for x in MESSAGES if len(v2.encode(x)) <= 1000], ids=_name
)
def test_datagram_round_trip(msg: object) -> None:
    data = v2.encode_datagram(TAG, msg)
    assert data.startswith(v2.PREFACE + TAG)
    assert v2.decode_datagram(TAG, data) == msg


# -- layout (docs/v2.md §6) ---------------------------------------------------------------


def test_layout_of_a_stream_and_a_datagram() -> None:
    assert v2.PREFACE == b"\x00chisme\x02" and len(v2.PREFACE) == 8
    hello = v2.Hello(2, "chisme", "m.1", "127.0.0.1:7070")
    frame = v2.encode_frame(hello)
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    assert msgspec.msgpack.decode(frame[4:]) == [8, 2, "chisme", "m.1", "127.0.0.1:7070"]
    # a datagram: preface, the 4-byte cluster tag, one msgpack message
    ack = SwimPacket(m.Ack(5, "t"), ())
    data = v2.encode_datagram(TAG, ack)
    assert data[:8] == v2.PREFACE and data[8:12] == TAG
    assert msgspec.msgpack.decode(data[12:]) == [1, [3, 5, "t"], []]
    assert v2.cluster_tag("chisme") == TAG != v2.cluster_tag("chisme2")
    assert len(TAG) == 4


# -- foreign, truncated and oversized input -------------------------------------------------


def test_a_datagram_of_another_cluster_is_rejected() -> None:
    msg = SwimPacket(m.Ping(1, "t", "s", "127.0.0.1:1"), ())
    theirs = v2.encode_datagram(v2.cluster_tag("someone-else"), msg)
    with pytest.raises(WireError, match="another cluster"):
        v2.decode_datagram(TAG, theirs)
    assert v2.decode_datagram(v2.cluster_tag("someone-else"), theirs) == msg


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00chisme", b'{"type":"lookup"}', b"\x00chisme\x01" + TAG + b"\x90", v2.PREFACE],
    ids=["empty", "short-preface", "v1-json", "v1-preface", "preface-only"],
)
def test_datagrams_that_are_not_v2_are_rejected(data: bytes) -> None:
    with pytest.raises(WireError):
        v2.decode_datagram(TAG, data)


def test_a_datagram_over_the_cap_is_refused_both_ways() -> None:
    big = rep.Rumors(tuple((IH, Record(V4, T, b"p" * 100, 0, 1, i)) for i in range(40)))
    with pytest.raises(MessageTooLarge):
        v2.encode_datagram(TAG, big)
    data = v2.PREFACE + TAG + v2.encode(big)
    with pytest.raises(MessageTooLarge):
        v2.decode_datagram(TAG, data)


def test_an_oversized_frame_is_refused_before_its_body_arrives() -> None:
    reader = v2.FrameReader(1000, expect_preface=True)
    assert reader.feed(v2.PREFACE) == []
    header = struct.pack(">I", 1001)
    assert reader.feed(header[:3]) == []
    with pytest.raises(MessageTooLarge):
        reader.feed(header[3:])  # no body byte was sent: the length alone decides
    # exactly at the cap is fine
    body = msgspec.msgpack.encode([9, "x" * 200])
    ok = v2.FrameReader(len(body), expect_preface=False)
    assert ok.feed(struct.pack(">I", len(body)) + body) == [v2.Error("x" * 200)]
    with pytest.raises(MessageTooLarge):
        v2.FrameReader(len(body) - 1, expect_preface=False).feed(struct.pack(">I", len(body)))


@pytest.mark.parametrize(
    "start", [b"{", b" ", b"[", b"\x00chisme\x01", b"\x00chism3", b"\x01"],
    ids=["v1-object", "v1-space", "v1-array", "version-1", "typo", "junk"],
)
def test_a_stream_without_the_preface_is_refused(start: bytes) -> None:
    reader = v2.FrameReader(1 << 20, expect_preface=True)
    with pytest.raises(WireError, match="not a chisme v2 stream"):
        for i in range(len(start)):
            reader.feed(start[i : i + 1])


def test_a_partial_preface_waits_for_more() -> None:
    reader = v2.FrameReader(1 << 20, expect_preface=True)
    for i in range(len(v2.PREFACE)):
        assert reader.feed(v2.PREFACE[i : i + 1]) == []
    assert reader.feed(v2.encode_frame(v2.Error("x"))) == [v2.Error("x")]


def test_a_frame_that_is_not_msgpack_is_refused() -> None:
    reader = v2.FrameReader(1 << 20, expect_preface=False)
    with pytest.raises(WireError, match="not valid msgpack"):
        reader.feed(struct.pack(">I", 2) + b"\xc1\xc1")
    with pytest.raises(WireError, match="invalid v2 message"):
        v2.FrameReader(100, expect_preface=False).feed(struct.pack(">I", 1) + b"\x90")


# -- validation: a record or a member that cannot be right never reaches the core ---------------


def _rumor(**fields: Any) -> bytes:
    rec: dict[str, Any] = {
        "info_hash": IH, "ip": V4, "name": "", "last_seen_ns": T, "peer_id": b"",
        "flags": 0, "origin": 7, "version": 1,
    }
    rec.update(fields)
    return msgspec.msgpack.encode([2, [list(rec.values())]])


def test_a_valid_hand_built_rumor_decodes() -> None:
    assert v2.decode(_rumor()) == rep.Rumors(((IH, Record(V4, T, b"", 0, 7, 1)),))
    assert v2.decode(_rumor(ip=b"", name="seed.example.org:6881")) == rep.Rumors(
        ((IH, Record(NAME, T, b"", 0, 7, 1)),)
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"info_hash": ""}, "info_hash"),
        ({"info_hash": "has space"}, "info_hash"),
        ({"info_hash": "x" * 129}, "info_hash"),
        ({"info_hash": "é" * 4}, "info_hash"),
        ({"ip": b"\x0a\x00\x00\x05"}, "6 or 18 bytes"),
        ({"ip": b"\x0a\x00\x00\x05\x00\x00"}, "with a port"),
        ({"ip": bytes(17)}, "6 or 18 bytes"),
        ({"ip": b"\x00" * 10 + b"\xff\xff\x0a\x00\x00\x05\x1a\xe1"}, "canonical"),
        ({"ip": b""}, "6 or 18 bytes"),
        ({"ip": b"", "name": "Seed.Example.org:6881"}, "canonical"),
        ({"ip": b"", "name": "10.0.0.5:6881"}, "canonical"),
        ({"ip": b"", "name": "no-port"}, "host:port"),
        ({"ip": b"", "name": "bad host:1"}, "addr"),
        ({"origin": 0}, "origin"),
        ({"peer_id": bytes(MAX_PEER_ID_BYTES + 1)}, "peer_id"),
        ({"flags": 4}, "invalid v2 message"),
        ({"origin": 2**32}, "invalid v2 message"),
        ({"last_seen_ns": -1}, "invalid v2 message"),
        ({"last_seen_ns": 2**63}, "invalid v2 message"),
        ({"last_seen_ns": 2**64 - 1}, "invalid v2 message"),
        ({"version": -1}, "invalid v2 message"),
    ],
)
def test_a_bad_record_is_rejected(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        v2.decode(_rumor(**fields))


def test_one_bad_record_rejects_the_whole_message() -> None:
    good = _plain(rep.Rumors(RECORDS))
    bad = copy.deepcopy(good)
    bad[1][2][6] = 0  # the third record's origin
    with pytest.raises(WireError, match="origin"):
        v2.decode(msgspec.msgpack.encode(bad))
    delta = _plain(rep.Delta(1, (1,), RECORDS, True))
    delta[3][0][0] = "bad hash"
    with pytest.raises(WireError, match="info_hash"):
        v2.decode(msgspec.msgpack.encode(delta))


@pytest.mark.parametrize(
    "counter", [("bad hash", "n", 1), (IH, "", 1), (IH, "n" * 65, 1), (IH, "n", -1)]
)
def test_a_bad_download_counter_is_rejected(counter: tuple[str, str, int]) -> None:
    for msg in ([2, [], [list(counter)]], [7, 1, [], [], False, [list(counter)]]):
        with pytest.raises(WireError):
            v2.decode(msgspec.msgpack.encode(msg))


@pytest.mark.parametrize("addr", ["", "no-port", "127.0.0.1:0", "127.0.0.1:65536", "::1:7070"])
def test_a_member_with_a_bad_address_is_rejected(addr: str) -> None:
    for msg in (
        SwimPacket(m.Ping(1, "t", "s", addr), ()),
        SwimPacket(m.PingReq(1, "t", addr, "s", "127.0.0.1:1"), ()),
        SwimPacket(m.PingReq(1, "t", "127.0.0.1:1", "s", addr), ()),
        SwimPacket(m.PushPull("s", addr, (), False), ()),
        SwimPacket(m.PushPull("s", "127.0.0.1:1", (m.Alive("x", addr, 1),), False), ()),
        SwimPacket(m.Gossip("s"), (m.Alive("x", addr, 1),)),
    ):
        with pytest.raises(WireError, match="member addr"):
            v2.decode(v2.encode(msg))


def test_oversized_fields_are_rejected() -> None:
    with pytest.raises(WireError):
        v2.decode(v2.encode(SwimPacket(m.Ack(1, "x" * 301), ())))
    with pytest.raises(WireError):
        v2.decode(msgspec.msgpack.encode([5, 1, list(range(rep.GROUPS + 1))]))
    with pytest.raises(WireError):
        v2.decode(msgspec.msgpack.encode([1, [1, -1, "t", "s", "127.0.0.1:1"], []]))


def test_encoding_something_else_is_a_bug() -> None:
    with pytest.raises(TypeError):
        v2.encode(object())


# -- fuzz: a message or a WireError, never anything else ----------------------------------------


def _outcome(fn: Any, *args: Any) -> object:
    try:
        return fn(*args)
    except WireError as e:
        assert e.reason  # a reason the log and the metrics can show
        return e


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _outcome(v2.decode, data)
    _outcome(v2.decode_datagram, TAG, data)
    _outcome(v2.decode_datagram, TAG, v2.PREFACE + TAG + data)
    for expect_preface, prefix in ((True, b""), (True, v2.PREFACE), (False, b"")):
        reader = v2.FrameReader(256, expect_preface=expect_preface)
        _outcome(reader.feed, prefix + data)


@settings(max_examples=200)
@given(st.binary(max_size=300), st.integers(1, 7))
def test_fuzz_frames_split_anywhere(data: bytes, step: int) -> None:
    """Whatever the chunking, a stream yields the same messages before the same error."""
    body = struct.pack(">I", len(data)) + data
    stream = v2.PREFACE + body + v2.encode_frame(v2.Error("end"))

    def run(chunk: int) -> tuple[list[object], type[Exception] | None]:
        reader = v2.FrameReader(1 << 16, expect_preface=True)
        got: list[object] = []
        try:
            for i in range(0, len(stream), chunk):
                got.extend(reader.feed(stream[i : i + chunk]))
        except WireError as e:
            return got, type(e)
        return got, None

    assert run(step) == run(len(stream))


_LEAVES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, -1, 2**63, 2**64 - 1, rep.BUCKETS, rep.GROUPS, 2**32]),
    st.text(max_size=8),
    st.sampled_from(["", "127.0.0.1:0", "[::1]:1", "x" * 301, IH, "Host.Example:1"]),
    st.binary(max_size=20),
    st.sampled_from([b"", bytes(18), b"\x00" * 6, V4, V6]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.just([]),
)


def _paths(obj: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [path]
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            out.extend(_paths(x, (*path, i)))
    return out


def _replace(obj: Any, path: tuple[int, ...], value: Any) -> Any:
    if not path:
        return value
    obj = copy.deepcopy(obj)
    cur = obj
    for i in path[:-1]:
        cur = cur[i]
    cur[path[-1]] = value
    return obj


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MESSAGES), st.data())
def test_fuzz_mutated_messages(msg: object, data: st.DataObject) -> None:
    """Valid messages with one or two values swapped for something else: the decoder's
    validation is reached (arbitrary bytes rarely get past msgpack)."""
    plain = _plain(msg)
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(_paths(plain)))
        plain = _replace(plain, path, data.draw(_LEAVES))
    raw = msgspec.msgpack.encode(plain)
    got = _outcome(v2.decode, raw)
    if not isinstance(got, WireError):
        assert v2.decode(v2.encode(got)) == got  # what is accepted is canonical
