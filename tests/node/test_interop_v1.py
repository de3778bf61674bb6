"""Interoperability with the original Go design (docs/WIRE.md), exact bytes, both directions.

(a) A "Go peer" (a raw asyncio TCP server standing in for ``overlay/gossip.go``) receives what
    a chisme node sends: announce pushes, gossip rounds, lookups. The bytes are compared with
    what Go's ``json.NewEncoder(conn).Encode(wireMsg{…})`` writes: field order, ``omitempty``,
    RFC 3339 with up to 9 fractional digits and trailing zeros trimmed, HTML escaping, a
    trailing newline, one message per connection.
(b) Bytes exactly as a Go node writes them are accepted by a chisme node (9-digit stamps,
    ``±hh:mm`` offsets, no ``peer_id``, unknown fields, ``providers`` omitted, the zero time),
    and a Go-style lookup gets a reply Go's decoder accepts (a JSON array and ``\\n``; ``[]``
    for an unknown key), without the client having to close its side first.
Finally, records with equal timestamps converge to the same state on two nodes whatever the
order they arrive in (the seed's "replace only if newer" does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator

import pytest

from chisme import Client, Node
from chisme.core.keys import parse_addr
from chisme.core.records import Record
from conftest import push_round

IH = "3f2a" * 10
T = 1_795_628_171_123_456_789  # 2026-11-25T17:36:11.123456789Z
T_TEXT = "2026-11-25T17:36:11.123456789Z"
SEC = 1_000_000_000
GO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?(Z|[+-]\d\d:\d\d)")


class GoPeer:
    """A stand-in for a node of the original design: records each connection's bytes.

    Like Go's ``handleConn``, it decodes one message per connection; a ``lookup`` is answered
    with ``lookup_reply`` while the asker keeps its side open. Other messages are read to EOF
    so the test sees everything the connection carried (one message, nothing after it).
    """

    def __init__(self) -> None:
        self.conns: list[bytes] = []
        self.lookup_reply = b"[]\n"
        self.addr = ""
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if line.startswith(b'{"type":"lookup"'):
                writer.write(self.lookup_reply)
                await writer.drain()
                self.conns.append(line)
            else:
                self.conns.append(line + await reader.read())
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.addr = "127.0.0.1:%d" % self._server.sockets[0].getsockname()[1]  # noqa: UP031

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


@pytest.fixture
async def go_peer() -> AsyncIterator[GoPeer]:
    peer = GoPeer()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.close()


@pytest.fixture
def clock_t(clock):
    clock.set_wall(T)
    return clock


# -- (a) what chisme sends, byte for byte --------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (T, "2026-11-25T17:36:11.123456789Z"),  # 9 digits
        (T - 123_456_789 + 500_000_000, "2026-11-25T17:36:11.5Z"),  # trailing zeros trimmed
        (T - 123_456_789 + 120_000_000, "2026-11-25T17:36:11.12Z"),
        (T - 123_456_789 + 1_000, "2026-11-25T17:36:11.000001Z"),
        (T - 123_456_789, "2026-11-25T17:36:11Z"),  # no fraction at all
    ],
)
async def test_announce_push_is_what_go_encodes(
    node, clock, go_peer: GoPeer, wait_until, ns: int, text: str
) -> None:
    clock.set_wall(ns)
    n: Node = await node(clock=clock, peers=(go_peer.addr,))
    await n.announce(IH, "10.0.0.5:6881")
    await wait_until(lambda: len(go_peer.conns) == 1)
    assert go_peer.conns == [
        b'{"type":"announce","info_hash":"' + IH.encode()
        + b'","providers":[{"addr":"10.0.0.5:6881","last_seen":"' + text.encode() + b'"}]}\n'
    ]


async def test_announce_with_peer_id_ipv6_and_html_escaping(
    node, clock_t, go_peer: GoPeer, wait_until
) -> None:
    n: Node = await node(clock=clock_t, peers=(go_peer.addr,))
    await n.announce(IH, "[2001:DB8::1]:6881", "-qB4650-<&>")
    await wait_until(lambda: len(go_peer.conns) == 1)
    # peer_id sits between addr and last_seen (struct order); Go escapes < > & in strings;
    # the IPv6 address is in its canonical (RFC 5952) form
    assert go_peer.conns[0] == (
        b'{"type":"announce","info_hash":"' + IH.encode() + b'","providers":[{'
        b'"addr":"[2001:db8::1]:6881",'
        b'"peer_id":"-qB4650-\\u003c\\u0026\\u003e",'
        b'"last_seen":"' + T_TEXT.encode() + b'"}]}\n'
    )


async def test_gossip_round_sends_one_message_per_key_per_connection(
    node, clock_t, go_peer: GoPeer, wait_until
) -> None:
    n: Node = await node(clock=clock_t)  # no peers while announcing: no pushes
    ih2 = "ab" * 20
    await n.announce(IH, "10.0.0.5:6881", "p5")
    clock_t.advance(0.5)
    await n.announce(IH, "10.0.0.6:6881")
    await n.announce(ih2, "example.org:80")
    n.role.peers[:] = [go_peer.addr]

    assert await push_round(n) == 2
    await wait_until(lambda: len(go_peer.conns) == 2)
    t_plus = "2026-11-25T17:36:11.623456789Z"
    expected = {
        b'{"type":"gossip","info_hash":"' + IH.encode() + b'","providers":['
        b'{"addr":"10.0.0.6:6881","last_seen":"' + t_plus.encode() + b'"},'
        b'{"addr":"10.0.0.5:6881","peer_id":"p5","last_seen":"' + T_TEXT.encode() + b'"}]}\n',
        b'{"type":"gossip","info_hash":"' + ih2.encode() + b'","providers":['
        b'{"addr":"example.org:80","last_seen":"' + t_plus.encode() + b'"}]}\n',
    }
    assert set(go_peer.conns) == expected  # each connection carried exactly one message
    for raw in go_peer.conns:
        for p in json.loads(raw)["providers"]:
            assert GO_TIME.fullmatch(p["last_seen"])


async def test_lookup_is_what_go_encodes_and_a_go_reply_is_merged(
    node, clock_t, go_peer: GoPeer
) -> None:
    # the Go node answers as json.Encoder writes its []ProviderMeta: offsets kept as parsed
    go_peer.lookup_reply = (
        b'[{"addr":"10.9.9.9:1","peer_id":"go","last_seen":"2026-11-25T19:36:11.123456789+02:00"},'
        b'{"addr":"10.9.9.8:1","last_seen":"2026-11-25T17:36:10Z"}]\n'
    )
    n: Node = await node(clock=clock_t, peers=(go_peer.addr,))
    await n.announce(IH, "10.0.0.5:6881")
    clock_t.advance(1)
    got = await n.lookup(IH)
    # Go's Lookup request: limit 0 is omitempty'd (the other connection is the announce push)
    lookups = [c for c in go_peer.conns if c.startswith(b'{"type":"lookup"')]
    assert lookups == [b'{"type":"lookup","info_hash":"' + IH.encode() + b'"}\n']
    assert [(p.addr, p.last_seen_ns, p.peer_id) for p in got] == [
        ("10.9.9.9:1", T, "go"),  # +02:00 read exactly, 9 digits kept; ties broken by order
        ("10.0.0.5:6881", T, ""),
        ("10.9.9.8:1", T - 123_456_789 - SEC, ""),
    ]


async def test_a_go_nil_slice_reply_reads_as_no_providers(node, go_peer: GoPeer) -> None:
    go_peer.lookup_reply = b"null\n"  # what Go's encoder writes for a nil []ProviderMeta
    assert await Client(go_peer.addr).lookup(IH) == []
    n: Node = await node(peers=(go_peer.addr,))
    assert await n.lookup(IH) == []
    assert n.metrics.send_failures.labels("WireError")._value.get() == 0


# -- (b) what Go sends, accepted by chisme ------------------------------------------------


GO_ANNOUNCE = (
    b'{"type":"announce","info_hash":"' + IH.encode() + b'","providers":[{"addr":"10.0.0.5:6881",'
    b'"peer_id":"-qB4650-abc","last_seen":"2026-11-25T19:36:11.123456789+02:00"}]}\n'
)


async def test_go_announce_bytes_are_merged_exactly(node, clock_t, exchange) -> None:
    n: Node = await node(clock=clock_t)
    assert await exchange(n.node_address, GO_ANNOUNCE) == b""  # fire-and-forget: no reply
    assert n.store.snapshot() == {
        (IH, parse_addr("10.0.0.5:6881")): Record(parse_addr("10.0.0.5:6881"), T, b"-qB4650-abc")
    }


@pytest.mark.parametrize(
    ("raw", "expected_ns"),
    [
        pytest.param(
            b'{"type":"gossip","info_hash":"IH","providers":[{"addr":"10.0.0.7:1",'
            b'"last_seen":"2026-11-25T12:06:11.123456789-05:30"}]}\n', T, id="negative offset"),
        pytest.param(
            b'{"providers":[{"last_seen":"2026-11-25T17:36:11.1Z","x":1,"addr":"10.0.0.7:1"}],'
            b'"info_hash":"IH","type":"gossip","extra":{"nested":[1,{"a":null}]}}',
            T - 23_456_789, id="unknown fields, any order, no newline"),
        pytest.param(
            b'{"type":"announce","info_hash":"IH","providers":[{"addr":"10.0.0.7:1",'
            b'"last_seen":"0001-01-01T00:00:00Z"}]}\n', T, id="Go zero time is stamped now"),
        pytest.param(
            b'{"type":"announce","info_hash":"IH","providers":[{"addr":"10.0.0.7:1"}]}\n', T,
            id="missing last_seen is stamped now"),
        pytest.param(
            b'{"type":"gossip","info_hash":"IH","providers":[{"addr":"10.0.0.7:1",'
            b'"last_seen":"2026-11-25T18:36:11Z"}]}\n', T, id="clock an hour ahead is clamped"),
        pytest.param(
            b'{"type":"gossip","info_hash":"IH","providers":[{"addr":"10.0.0.7:1",'
            b'"last_seen":"2026-11-25T17:36:11.123456789Z","peer_id":""}],"limit":0}\n', T,
            id="empty peer_id and limit present"),
    ],
)
async def test_go_style_messages_are_accepted(
    node, clock_t, exchange, raw: bytes, expected_ns: int
) -> None:
    n: Node = await node(clock=clock_t)
    raw = raw.replace(b"IH", IH.encode())
    assert await exchange(n.node_address, raw) == b""
    (p,) = n.local_lookup(IH)
    assert (p.addr, p.last_seen_ns, p.peer_id) == ("10.0.0.7:1", expected_ns, "")


async def test_go_messages_without_providers_change_nothing(node, clock_t, exchange) -> None:
    n: Node = await node(clock=clock_t)
    await exchange(n.node_address, GO_ANNOUNCE)
    before = n.store.snapshot()
    for raw in (
        b'{"type":"gossip","info_hash":"' + IH.encode() + b'"}\n',  # providers omitted
        b'{"type":"announce","info_hash":"' + IH.encode() + b'","providers":null}\n',
        b'{"type":"gossip","info_hash":"' + IH.encode() + b'","providers":[]}\n',
    ):
        assert await exchange(n.node_address, raw) == b""
    assert n.store.snapshot() == before
    assert n.metrics.rejected.collect()[0].samples == []


async def lookup_like_go(addr: tuple[str, int], request: bytes) -> bytes:
    """Go's queryPeerLookup: write the request, keep the connection open, decode one value."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            reply = await reader.readline()
            assert await reader.read() == b""  # then the responder closes
        return reply
    finally:
        writer.close()


async def test_go_lookup_gets_a_reply_go_decodes(node, clock_t, exchange) -> None:
    n: Node = await node(clock=clock_t)
    await exchange(n.node_address, GO_ANNOUNCE)
    clock_t.advance(0.5)
    await n.announce(IH, "10.0.0.6:6881")
    clock_t.advance(0.25)
    await n.announce(IH, "[2001:db8::9]:7000", "v6")
    addr = n.addresses["node"]

    reply = await lookup_like_go(
        addr, b'{"type":"lookup","info_hash":"' + IH.encode() + b'","limit":2}\n'
    )
    assert reply == (
        b'[{"addr":"[2001:db8::9]:7000","peer_id":"v6","last_seen":"2026-11-25T17:36:11.873456789Z"},'
        b'{"addr":"10.0.0.6:6881","last_seen":"2026-11-25T17:36:11.623456789Z"}]\n'
    )
    full = await lookup_like_go(addr, b'{"type":"lookup","info_hash":"' + IH.encode()
                                + b'","limit":-1}\n')
    providers = json.loads(full)
    assert [p["addr"] for p in providers] == ["[2001:db8::9]:7000", "10.0.0.6:6881",
                                              "10.0.0.5:6881"]
    assert providers[2] == {"addr": "10.0.0.5:6881", "peer_id": "-qB4650-abc",
                            "last_seen": T_TEXT}  # the +02:00 stamp, in UTC, same instant
    assert all(GO_TIME.fullmatch(p["last_seen"]) for p in providers)

    unknown = await lookup_like_go(addr, b'{"type":"lookup","info_hash":"nobody"}\n')
    assert unknown == b"[]\n"


async def test_an_upper_case_hex_announce_is_keyed_in_lower_case(node, clock_t, exchange) -> None:
    n: Node = await node(clock=clock_t)
    addr = n.addresses["node"]
    upper = GO_ANNOUNCE.replace(IH.encode(), IH.upper().encode())
    assert upper != GO_ANNOUNCE
    assert await exchange(n.node_address, upper) == b""
    key = parse_addr("10.0.0.5:6881")
    assert n.store.snapshot() == {(IH, key): Record(key, T, b"-qB4650-abc")}
    for asked in (IH, IH.upper(), IH[:20] + IH[20:].upper()):
        reply = await lookup_like_go(
            addr, b'{"type":"lookup","info_hash":"' + asked.encode() + b'"}\n'
        )
        assert [p["addr"] for p in json.loads(reply)] == ["10.0.0.5:6881"], asked


async def test_other_keys_stay_byte_for_byte_on_the_wire(node, clock_t, exchange) -> None:
    n: Node = await node(clock=clock_t)
    addr = n.addresses["node"]
    keys = ("AB" * 19 + "XY", "Movie-2026.MKV")  # the first: 40 characters, not all hex
    for key in keys:
        assert await exchange(n.node_address, GO_ANNOUNCE.replace(IH.encode(), key.encode())) == b""
        lower = b'{"type":"lookup","info_hash":"' + key.lower().encode() + b'"}\n'
        assert await lookup_like_go(addr, lower) == b"[]\n"
        exact = b'{"type":"lookup","info_hash":"' + key.encode() + b'"}\n'
        assert len(json.loads(await lookup_like_go(addr, exact))) == 1
    assert sorted(ih for ih, _ in n.store.snapshot()) == list(keys)


# -- equal timestamps converge --------------------------------------------------------------


async def test_equal_timestamps_converge_whatever_the_order(node, clock_t, exchange) -> None:
    n1: Node = await node(clock=clock_t)
    n2: Node = await node(clock=clock_t)

    def gossip(peer_id: str, seeder_addr: str = "10.0.0.5:6881") -> bytes:
        return (b'{"type":"gossip","info_hash":"' + IH.encode() + b'","providers":[{"addr":"'
                + seeder_addr.encode() + b'","peer_id":"' + peer_id.encode()
                + b'","last_seen":"' + T_TEXT.encode() + b'"}]}\n')

    # same address, same instant, different records: the seed keeps whichever came first
    for raw in (gossip("alpha"), gossip("omega")):
        await exchange(n1.node_address, raw)
    for raw in (gossip("omega"), gossip("alpha")):
        await exchange(n2.node_address, raw)
    # and both in one message, in both orders
    both = (b'{"type":"gossip","info_hash":"' + IH.encode() + b'","providers":['
            b'{"addr":"10.0.0.8:1","peer_id":"x","last_seen":"' + T_TEXT.encode() + b'"},'
            b'{"addr":"10.0.0.8:1","peer_id":"y","last_seen":"' + T_TEXT.encode() + b'"}]}\n')
    await exchange(n1.node_address, both)
    await exchange(n2.node_address, both.replace(b'"x"', b'"tmp"').replace(b'"y"', b'"x"')
                   .replace(b'"tmp"', b'"y"'))

    assert n1.store.snapshot() == n2.store.snapshot()
    r1 = await lookup_like_go(n1.addresses["node"],
                              b'{"type":"lookup","info_hash":"' + IH.encode() + b'"}\n')
    r2 = await lookup_like_go(n2.addresses["node"],
                              b'{"type":"lookup","info_hash":"' + IH.encode() + b'"}\n')
    assert r1 == r2
    assert {p["addr"]: p["peer_id"] for p in json.loads(r1)} == {
        "10.0.0.5:6881": "omega",  # the greater record under the total order wins
        "10.0.0.8:1": "y",
    }
