"""The v2 node-to-node bytes: datagrams, length-prefixed frames, the handshake (docs/v2.md).

Pure codec. Messages are msgpack arrays ``[tag, ...fields]`` (msgspec Structs with
``array_like=True``, tagged unions), so a ping with no piggyback is a few dozen bytes.

- A **datagram** is ``PREFACE + cluster tag (4 bytes) + message``; at most
  ``MAX_DATAGRAM_BYTES``.
- A **stream** starts with ``PREFACE`` (this is how the node port tells v2 from v1: a v1
  message starts with ``{``, ``[`` or white space), then frames: a 4-byte big-endian length and
  a message. The first frame each way is a :class:`Hello`.

Every decode either returns a validated domain message or raises :class:`WireError`
(:class:`MessageTooLarge` for a frame over the cap, rejected before its body is read).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Annotated, Any

import msgspec

from chisme.core import swim as m
from chisme.core.keys import (
    IPV6_KEY_SIZE,
    AddrKey,
    is_ip_key,
    is_ipv4_mapped,
    parse_addr,
    parse_info_hash,
)
from chisme.core.records import FLAG_SEEDER, FLAG_TOMBSTONE, MAX_PEER_ID_BYTES, Record
from chisme.core.replication import messages as rep
from chisme.core.replication.digest import BUCKETS, GROUPS
from chisme.core.replication.engine import SwimPacket
from chisme.errors import InvalidInput, MessageTooLarge, WireError

PREFACE = b"\x00chisme\x02"
VERSION = 2
MAX_DATAGRAM_BYTES = 1400
_LEN = struct.Struct(">I")

U64 = Annotated[int, msgspec.Meta(ge=0)]  # msgpack ints stop at 2**64 - 1
I64 = int  # msgpack ints are 64-bit by construction
# a stamp the store can hold (int64 ns since the epoch); msgpack also carries 2**63..2**64-1
Stamp = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
Short = Annotated[str, msgspec.Meta(max_length=300)]


def cluster_tag(cluster: str) -> bytes:
    """4 bytes naming the cluster in every datagram (datagrams of another cluster are dropped)."""
    return hashlib.blake2b(cluster.encode(), digest_size=4).digest()


# -- wire schemas -----------------------------------------------------------------------


class _Alive(msgspec.Struct, array_like=True, tag=1):
    node_id: Short
    addr: Short
    incarnation: U64


class _Suspect(msgspec.Struct, array_like=True, tag=2):
    node_id: Short
    incarnation: U64
    from_id: Short


class _Dead(msgspec.Struct, array_like=True, tag=3):
    node_id: Short
    incarnation: U64
    from_id: Short


_Update = _Alive | _Suspect | _Dead


class _Ping(msgspec.Struct, array_like=True, tag=1):
    seq: U64
    target_id: Short
    source_id: Short
    source_addr: Short


class _PingReq(msgspec.Struct, array_like=True, tag=2):
    seq: U64
    target_id: Short
    target_addr: Short
    source_id: Short
    source_addr: Short


class _Ack(msgspec.Struct, array_like=True, tag=3):
    seq: U64
    source_id: Short


class _Nack(msgspec.Struct, array_like=True, tag=4):
    seq: U64
    source_id: Short


class _Gossip(msgspec.Struct, array_like=True, tag=5):
    source_id: Short


class _PushPull(msgspec.Struct, array_like=True, tag=6):
    source_id: Short
    source_addr: Short
    states: list[_Update]
    reply: bool


_SwimMsg = _Ping | _PingReq | _Ack | _Nack | _Gossip | _PushPull


class _Rec(msgspec.Struct, array_like=True):
    info_hash: Short
    ip: bytes  # 6 or 18 bytes (compact IPv4/IPv6 + port), or empty when ``name`` is set
    name: Short  # "host:port" of a DNS name, or empty
    last_seen_ns: Stamp
    peer_id: bytes
    flags: Annotated[int, msgspec.Meta(ge=0, le=FLAG_SEEDER | FLAG_TOMBSTONE)]
    origin: U32
    version: U64


class _Swim(msgspec.Struct, array_like=True, tag=1):
    msg: _SwimMsg
    piggyback: list[_Update]


_Counter = tuple[Short, Short, U64]


class _Rumors(msgspec.Struct, array_like=True, tag=2):
    items: list[_Rec]
    counters: list[_Counter] = []


class _SyncRoot(msgspec.Struct, array_like=True, tag=3):
    sync_id: U32
    root: U64
    count: I64


class _SyncOk(msgspec.Struct, array_like=True, tag=4):
    sync_id: U32


class _SyncGroups(msgspec.Struct, array_like=True, tag=5):
    sync_id: U32
    hashes: Annotated[list[U64], msgspec.Meta(max_length=GROUPS)]


class _SyncBuckets(msgspec.Struct, array_like=True, tag=6):
    sync_id: U32
    buckets: Annotated[list[tuple[U32, U64]], msgspec.Meta(max_length=BUCKETS)]


class _Delta(msgspec.Struct, array_like=True, tag=7):
    sync_id: U32
    buckets: Annotated[list[U32], msgspec.Meta(max_length=BUCKETS)]
    items: list[_Rec]
    reply: bool
    counters: list[_Counter] = []


class Hello(msgspec.Struct, array_like=True, tag=8, frozen=True):
    """The first frame each way on a stream."""

    version: int
    cluster: Short
    member_id: Short
    addr: Short


class Error(msgspec.Struct, array_like=True, tag=9, frozen=True):
    """The last frame before a refusing side closes."""

    reason: Short


_Any = _Swim | _Rumors | _SyncRoot | _SyncOk | _SyncGroups | _SyncBuckets | _Delta | Hello | Error
_decoder = msgspec.msgpack.Decoder(_Any)
_encoder = msgspec.msgpack.Encoder()


# -- domain <-> wire ---------------------------------------------------------------------


def _update_out(u: m.Update) -> _Update:
    if isinstance(u, m.Alive):
        return _Alive(u.node_id, u.addr, u.incarnation)
    if isinstance(u, m.Suspect):
        return _Suspect(u.node_id, u.incarnation, u.from_id)
    return _Dead(u.node_id, u.incarnation, u.from_id)


def _update_in(u: _Update) -> m.Update:
    if isinstance(u, _Alive):
        _check_addr(u.addr)
        return m.Alive(u.node_id, u.addr, u.incarnation)
    if isinstance(u, _Suspect):
        return m.Suspect(u.node_id, u.incarnation, u.from_id)
    return m.Dead(u.node_id, u.incarnation, u.from_id)


def _swim_out(msg: m.Message) -> _SwimMsg:
    if isinstance(msg, m.Ping):
        return _Ping(msg.seq, msg.target_id, msg.source_id, msg.source_addr)
    if isinstance(msg, m.PingReq):
        return _PingReq(msg.seq, msg.target_id, msg.target_addr, msg.source_id, msg.source_addr)
    if isinstance(msg, m.Ack):
        return _Ack(msg.seq, msg.source_id)
    if isinstance(msg, m.Nack):
        return _Nack(msg.seq, msg.source_id)
    if isinstance(msg, m.Gossip):
        return _Gossip(msg.source_id)
    states = [_update_out(u) for u in msg.states]
    return _PushPull(msg.source_id, msg.source_addr, states, msg.reply)


def _swim_in(msg: _SwimMsg) -> m.Message:
    if isinstance(msg, _Ping):
        _check_addr(msg.source_addr)
        return m.Ping(msg.seq, msg.target_id, msg.source_id, msg.source_addr)
    if isinstance(msg, _PingReq):
        _check_addr(msg.source_addr)
        _check_addr(msg.target_addr)
        return m.PingReq(msg.seq, msg.target_id, msg.target_addr, msg.source_id, msg.source_addr)
    if isinstance(msg, _Ack):
        return m.Ack(msg.seq, msg.source_id)
    if isinstance(msg, _Nack):
        return m.Nack(msg.seq, msg.source_id)
    if isinstance(msg, _Gossip):
        return m.Gossip(msg.source_id)
    _check_addr(msg.source_addr)
    return m.PushPull(
        msg.source_id, msg.source_addr, tuple(_update_in(u) for u in msg.states), msg.reply
    )


def _rec_out(info_hash: str, r: Record) -> _Rec:
    if isinstance(r.addr, bytes):
        return _Rec(info_hash, r.addr, "", r.last_seen_ns, r.peer_id, r.flags, r.origin, r.version)
    return _Rec(info_hash, b"", r.addr, r.last_seen_ns, r.peer_id, r.flags, r.origin, r.version)


def _rec_in(w: _Rec) -> rep.ItemRecord:
    try:
        parse_info_hash(w.info_hash)
        addr: AddrKey
        if w.name:
            addr = parse_addr(w.name)
            if addr != w.name:
                raise InvalidInput("addr name is not canonical")
        elif is_ip_key(w.ip):
            addr = w.ip
        elif len(w.ip) == IPV6_KEY_SIZE and is_ipv4_mapped(w.ip) and w.ip[-2:] != b"\x00\x00":
            # the store keys such a peer on its IPv4 key
            raise InvalidInput("addr is not canonical (IPv4-mapped IPv6)")
        else:
            raise InvalidInput("addr must be 6 or 18 bytes with a port")
    except InvalidInput as e:
        raise WireError(f"record: {e.reason}") from None
    if len(w.peer_id) > MAX_PEER_ID_BYTES:
        raise WireError("record: peer_id too long")
    if not w.origin:
        raise WireError("record: origin must not be 0")
    return w.info_hash, Record(addr, w.last_seen_ns, w.peer_id, w.flags, w.origin, w.version)


def _counters_in(counters: list[tuple[str, str, int]]) -> tuple[rep.Counter, ...]:
    for info_hash, node_id, _ in counters:
        try:
            parse_info_hash(info_hash)
        except InvalidInput as e:
            raise WireError(f"counter: {e.reason}") from None
        if not 0 < len(node_id) <= 64:
            raise WireError("counter: node id must be 1-64 characters")
    return tuple((ih, n, c) for ih, n, c in counters)


def _check_addr(addr: str) -> None:
    try:
        parse_addr(addr)
    except InvalidInput as e:
        raise WireError(f"member addr: {e.reason}") from None


def to_wire(msg: object) -> Any:
    """The wire schema object of a domain message."""
    if isinstance(msg, SwimPacket):
        return _Swim(_swim_out(msg.msg), [_update_out(u) for u in msg.piggyback])
    if isinstance(msg, rep.Rumors):
        return _Rumors([_rec_out(ih, r) for ih, r in msg.items], list(msg.counters))
    if isinstance(msg, rep.SyncRoot):
        return _SyncRoot(msg.sync_id, msg.root, msg.size)
    if isinstance(msg, rep.SyncOk):
        return _SyncOk(msg.sync_id)
    if isinstance(msg, rep.SyncGroups):
        return _SyncGroups(msg.sync_id, list(msg.hashes))
    if isinstance(msg, rep.SyncBuckets):
        return _SyncBuckets(msg.sync_id, list(msg.buckets))
    if isinstance(msg, rep.Delta):
        items = [_rec_out(ih, r) for ih, r in msg.items]
        return _Delta(msg.sync_id, list(msg.buckets), items, msg.reply, list(msg.counters))
    if isinstance(msg, Hello | Error):
        return msg
    raise TypeError(f"not a v2 message: {type(msg).__name__}")


def from_wire(w: Any) -> object:
    """The validated domain message of a decoded wire object (raises WireError)."""
    if isinstance(w, _Swim):
        return SwimPacket(_swim_in(w.msg), tuple(_update_in(u) for u in w.piggyback))
    if isinstance(w, _Rumors):
        return rep.Rumors(tuple(_rec_in(r) for r in w.items), _counters_in(w.counters))
    if isinstance(w, _SyncRoot):
        return rep.SyncRoot(w.sync_id, w.root, w.count)
    if isinstance(w, _SyncOk):
        return rep.SyncOk(w.sync_id)
    if isinstance(w, _SyncGroups):
        return rep.SyncGroups(w.sync_id, tuple(w.hashes))
    if isinstance(w, _SyncBuckets):
        return rep.SyncBuckets(w.sync_id, tuple((b, h) for b, h in w.buckets))
    if isinstance(w, _Delta):
        items = tuple(_rec_in(r) for r in w.items)
        return rep.Delta(w.sync_id, tuple(w.buckets), items, w.reply, _counters_in(w.counters))
    return w  # Hello, Error


def encode(msg: object) -> bytes:
    """One message as msgpack (no framing)."""
    return _encoder.encode(to_wire(msg))


def decode(data: bytes) -> object:
    """One msgpack message -> a validated domain message, or WireError."""
    try:
        w = _decoder.decode(data)
    except msgspec.ValidationError as e:
        raise WireError(f"invalid v2 message: {e}") from None
    except msgspec.DecodeError:
        raise WireError("v2 message is not valid msgpack") from None
    return from_wire(w)


# -- datagrams ---------------------------------------------------------------------------


def encode_datagram(tag: bytes, msg: object) -> bytes:
    data = PREFACE + tag + encode(msg)
    if len(data) > MAX_DATAGRAM_BYTES:
        raise MessageTooLarge(f"datagram exceeds {MAX_DATAGRAM_BYTES} bytes")
    return data


def decode_datagram(tag: bytes, data: bytes) -> object:
    if len(data) > MAX_DATAGRAM_BYTES:
        raise MessageTooLarge(f"datagram exceeds {MAX_DATAGRAM_BYTES} bytes")
    if not data.startswith(PREFACE):
        raise WireError("not a chisme v2 datagram")
    if data[len(PREFACE) : len(PREFACE) + 4] != tag:
        raise WireError("datagram of another cluster")
    return decode(data[len(PREFACE) + 4 :])


# -- streams -------------------------------------------------------------------------------


def encode_frame(msg: object) -> bytes:
    body = encode(msg)
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Sans-I/O frame splitter for a v2 stream: ``feed`` bytes, get whole messages."""

    def __init__(self, max_bytes: int, *, expect_preface: bool) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._preface = expect_preface

    def feed(self, data: bytes) -> list[object]:
        self._buf += data
        out: list[object] = []
        buf = self._buf
        if self._preface:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise WireError("not a chisme v2 stream")
                return out
            if not buf.startswith(PREFACE):
                raise WireError("not a chisme v2 stream")
            del buf[: len(PREFACE)]
            self._preface = False
        pos = 0
        while len(buf) - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > self.max_bytes:
                raise MessageTooLarge(f"frame exceeds {self.max_bytes} bytes")
            if len(buf) - pos - 4 < size:
                break
            out.append(decode(bytes(buf[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out
