"""net.v2 on real loopback sockets: the handshake on the node port (a stream of another cluster,
another version, or that does not start with a Hello is refused with an Error frame and closed; a
stalled handshake is closed after its deadline), frames both ways on a persistent stream, UDP
datagrams of this cluster answered and of another dropped, streams to a peer that restarted on
its port, and v1 served on the same port while v2 streams are open (docs/v2.md §6).

The far side is either a real :class:`chisme.Node` in v2 mode or a hand-driven raw peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import pytest

from chisme import Client, Config, ConfigError, Node
from chisme.core import replication as rep
from chisme.core import swim as m
from chisme.core.keys import parse_addr
from chisme.core.records import Record
from chisme.core.replication import SwimPacket
from chisme.net import tcp
from chisme.net.v2 import V2Transport, udp_port_free
from chisme.wire import v1, v2

if TYPE_CHECKING:
    from conftest import NodeFactory, WaitUntil

DEADLINE_S = 10.0
IH = "3f2a" * 10
P1 = "10.0.0.5:6881"
P2 = "10.0.0.6:6881"
RAW_ID = "raw-peer.00000001"


V2Node = Callable[..., Coroutine[Any, Any, Node]]


@pytest.fixture
async def v2node(node: NodeFactory) -> V2Node:
    """``await v2node(**overrides)``: a v2 node on free loopback ports, alone (no seeds)."""

    async def make(**overrides: Any) -> Node:
        overrides.setdefault("api", "")
        return await node(protocol="v2", **overrides)

    return make


def drop_count(n: Node, kind: str) -> float:
    """What the v2 transport counted as dropped (bad frames, bad datagrams, unreachable)."""
    return n.metrics.send_failures.labels(kind)._value.get()  # type: ignore[no-any-return]


class RawStream:
    """A hand-driven v2 stream to a node port (the node answers inbound streams without the
    preface: only the dialing side sends it)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = v2.FrameReader(1 << 20, expect_preface=False)
        self.got: list[object] = []

    @classmethod
    async def open(cls, addr: str, first: bytes = v2.PREFACE) -> RawStream:
        host, port = tcp.split_host_port(addr)
        async with asyncio.timeout(DEADLINE_S):
            reader, writer = await asyncio.open_connection(host, port)
        stream = cls(reader, writer)
        if first:
            stream.send_raw(first)
        return stream

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, *msgs: object) -> None:
        self.writer.write(b"".join(v2.encode_frame(x) for x in msgs))

    async def next(self) -> object:
        """The next message from the node (EOF first fails the test)."""
        async with asyncio.timeout(DEADLINE_S):
            while not self.got:
                chunk = await self.reader.read(65536)
                assert chunk, "the node closed the stream"
                self.got.extend(self.frames.feed(chunk))
        return self.got.pop(0)

    async def rest(self) -> list[object]:
        """Every message until the node closes the stream."""
        async with asyncio.timeout(DEADLINE_S):
            while chunk := await self.reader.read(65536):
                self.got.extend(self.frames.feed(chunk))
        out, self.got = self.got, []
        return out

    def close(self) -> None:
        self.writer.transport.abort()


@contextlib.asynccontextmanager
async def raw_stream(addr: str, first: bytes = v2.PREFACE) -> AsyncIterator[RawStream]:
    stream = await RawStream.open(addr, first)
    try:
        yield stream
    finally:
        stream.close()


def hello(cluster: str = "chisme", addr: str = "127.0.0.1:9", *, version: int = v2.VERSION,
          member_id: str = RAW_ID) -> v2.Hello:
    return v2.Hello(version, cluster, member_id, addr)


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))


@contextlib.asynccontextmanager
async def udp_socket() -> AsyncIterator[tuple[asyncio.DatagramTransport, _Inbox, str]]:
    loop = asyncio.get_running_loop()
    transport, inbox = await loop.create_datagram_endpoint(_Inbox, local_addr=("127.0.0.1", 0))
    try:
        yield transport, inbox, tcp.format_peer(transport.get_extra_info("sockname"))
    finally:
        transport.close()


# -- the handshake --------------------------------------------------------------------------


async def test_a_peer_of_this_cluster_is_greeted_and_served_on_the_stream(v2node: V2Node) -> None:
    a = await v2node()
    async with raw_stream(a.node_address) as s:
        s.send(hello())
        assert await s.next() == v2.Hello(v2.VERSION, "chisme", a.member_id, a.node_address)
        # an empty digest against an empty store: equal roots
        s.send(rep.SyncRoot(7, 0, 0))
        assert await s.next() == rep.SyncOk(7)


async def test_the_digest_repair_runs_over_one_stream_both_ways(
    v2node: V2Node, wait_until: WaitUntil
) -> None:
    """A hand peer walks the anti-entropy exchange (docs/v2.md §4) on one persistent stream:
    it learns the node's record and the node learns the peer's."""
    a = await v2node()
    mine = await a.announce(IH, P1, "peer-1")
    async with raw_stream(a.node_address) as s:
        s.send(hello())
        assert isinstance(await s.next(), v2.Hello)
        s.send(rep.SyncRoot(8, 0, 0))
        groups = await s.next()
        assert isinstance(groups, rep.SyncGroups) and groups.sync_id == 8
        assert len(groups.hashes) == rep.GROUPS
        differ = [i for i, h in enumerate(groups.hashes) if h]
        assert len(differ) == 1  # one record: one group differs from an empty digest
        grp = differ[0]
        buckets = tuple((b, 0) for b in range(grp * rep.PER_GROUP, (grp + 1) * rep.PER_GROUP))
        s.send(rep.SyncBuckets(8, buckets))
        delta = await s.next()
        assert isinstance(delta, rep.Delta) and delta.reply and delta.sync_id == 8
        assert delta.items == ((IH, mine),)
        # our answer: what the node lacks, from another origin
        ours = Record(parse_addr(P2), mine.last_seen_ns, b"raw", 0, 0x5EED, 1)
        s.send(rep.Delta(8, (), ((IH, ours),), False))
        await wait_until(lambda: len(a.local_lookup(IH)) == 2, what="the peer's record merged")
        assert {p.addr for p in a.local_lookup(IH)} == {P1, P2}


async def test_a_stream_of_another_cluster_gets_an_error_and_is_closed(v2node: V2Node) -> None:
    a = await v2node()
    async with raw_stream(a.node_address) as s:
        s.send(hello(cluster="not-chisme"), rep.SyncRoot(1, 5, 1))
        got = await s.rest()
    assert got == [
        v2.Hello(v2.VERSION, "chisme", a.member_id, a.node_address),
        v2.Error("wrong cluster"),
    ]  # nothing after the refused hello was served
    assert drop_count(a, "bad_frame") == 1
    assert [x["id"] for x in a.members()] == [a.member_id]
    # the port still serves this cluster
    async with raw_stream(a.node_address) as s:
        s.send(hello(), rep.SyncRoot(2, 0, 0))
        assert isinstance(await s.next(), v2.Hello)
        assert await s.next() == rep.SyncOk(2)


async def test_another_protocol_version_is_refused(v2node: V2Node) -> None:
    a = await v2node()
    async with raw_stream(a.node_address) as s:
        s.send(hello(version=3))
        got = await s.rest()
    assert got[1:] == [v2.Error("unsupported protocol version 3")]


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (v2.PREFACE + v2.encode_frame(rep.SyncRoot(1, 0, 0)), "expected a hello frame first"),
        (v2.PREFACE + v2.encode_frame(v2.Error("hi")), "expected a hello frame first"),
        (b"\x00chisme\x01" + v2.encode_frame(hello()), "not a chisme v2 stream"),
        (b"\x00GET / HTTP/1.1\r\n\r\n", "not a chisme v2 stream"),
        (v2.PREFACE + struct.pack(">I", 1) + b"\xc1", "v2 message is not valid msgpack"),
        (v2.PREFACE + struct.pack(">I", 0xFFFFFFFF), "frame exceeds 1048576 bytes"),
    ],
    ids=["syncroot-first", "error-first", "v1-preface", "http", "not-msgpack", "oversized"],
)
async def test_a_stream_that_does_not_start_with_a_hello_is_refused(
    v2node: V2Node, first: bytes, reason: str
) -> None:
    a = await v2node()
    async with raw_stream(a.node_address, first) as s:
        got = await s.rest()
    assert got == [v2.Hello(v2.VERSION, "chisme", a.member_id, a.node_address), v2.Error(reason)]
    assert a.role.engine is not None and len(a.members()) == 1


@pytest.mark.parametrize("first", [v2.PREFACE, b"\x00chi", v2.PREFACE + b"\x00\x00"],
                         ids=["preface", "partial-preface", "partial-frame"])
async def test_a_stalled_handshake_is_closed_after_its_deadline(
    v2node: V2Node, first: bytes
) -> None:
    a = await v2node(read_timeout_s=0.2)  # the handshake deadline
    async with raw_stream(a.node_address, first) as s:
        got = await s.rest()  # within DEADLINE_S, or the test fails
    assert got[1:] == [v2.Error("handshake timeout")]


async def test_a_greeted_stream_is_not_cut_by_the_handshake_deadline(v2node: V2Node) -> None:
    a = await v2node(read_timeout_s=0.2)
    async with raw_stream(a.node_address) as greeted, raw_stream(a.node_address) as stalled:
        greeted.send(hello())
        assert isinstance(await greeted.next(), v2.Hello)
        # the stalled twin, opened after it, is cut: the deadline has passed for both
        assert (await stalled.rest())[1:] == [v2.Error("handshake timeout")]
        greeted.send(rep.SyncRoot(9, 0, 0))
        assert await greeted.next() == rep.SyncOk(9)


# -- v1 on the same port ------------------------------------------------------------------------


async def test_v1_is_served_on_the_port_while_v2_streams_are_open(
    v2node: V2Node, wait_until: WaitUntil
) -> None:
    a = await v2node()
    b = await v2node(peers=(a.node_address,))
    await wait_until(
        lambda: len(a.role.fanout()) == len(b.role.fanout()) == 1,
        what="a and b to join (a stream and datagrams between them)",
    )
    streams = [await RawStream.open(a.node_address) for _ in range(3)]
    try:
        for i, s in enumerate(streams):
            s.send(hello(addr=f"127.0.0.1:{9 + i}"))  # replies go to the stream of that addr
            assert isinstance(await s.next(), v2.Hello)
        client = Client(a.node_address)
        await client.announce(IH, P1, "v1-client")
        await wait_until(lambda: bool(a.local_lookup(IH)), what="the v1 announce")
        assert [(p.addr, p.peer_id) for p in await client.lookup(IH)] == [(P1, "v1-client")]
        raw = await tcp.request(a.node_address, v1.encode_message(v1.Members()), DEADLINE_S,
                                1 << 20)
        assert b.member_id.encode() in raw
        # and the open streams still work
        for i, s in enumerate(streams):
            s.send(rep.SyncRoot(i, 1, 1))
            assert isinstance(await s.next(), rep.SyncGroups)
        # a v1 message that is bad gets its v1 error, as before
        reply = await tcp.request(a.node_address, b'{"type":"nope"}', DEADLINE_S, 1 << 20)
        assert b"error" in reply
    finally:
        for s in streams:
            s.close()


# -- datagrams -----------------------------------------------------------------------------------


async def test_a_ping_datagram_is_acked_to_its_source_addr(v2node: V2Node) -> None:
    a = await v2node()
    tag = v2.cluster_tag("chisme")
    host, port = a.addresses["node"]
    async with udp_socket() as (udp, inbox, me):
        ping = SwimPacket(m.Ping(41, a.member_id, RAW_ID, me), ())
        udp.sendto(v2.encode_datagram(tag, ping), (host, port))
        async with asyncio.timeout(DEADLINE_S):
            data, src = await inbox.queue.get()
        assert src == (host, port)  # datagrams leave from the node port
        reply = v2.decode_datagram(tag, data)
        assert isinstance(reply, SwimPacket) and reply.msg == m.Ack(41, a.member_id)


async def test_datagrams_of_another_cluster_or_garbage_are_dropped(
    v2node: V2Node, wait_until: WaitUntil
) -> None:
    a = await v2node()
    host, port = a.addresses["node"]
    async with udp_socket() as (udp, inbox, me):
        ping = SwimPacket(m.Ping(1, a.member_id, RAW_ID, me), ())
        udp.sendto(v2.encode_datagram(v2.cluster_tag("elsewhere"), ping), (host, port))
        udp.sendto(b"\x00chisme\x02garbage", (host, port))
        udp.sendto(b'{"type":"lookup"}', (host, port))
        udp.sendto(v2.PREFACE + v2.cluster_tag("chisme"), (host, port))  # no message
        await wait_until(lambda: drop_count(a, "bad_datagram") == 4, what="4 drops counted")
        assert inbox.queue.empty()
        # the node still answers its own cluster
        good = SwimPacket(m.Ping(2, a.member_id, RAW_ID, me), ())
        udp.sendto(v2.encode_datagram(v2.cluster_tag("chisme"), good), (host, port))
        async with asyncio.timeout(DEADLINE_S):
            data, _ = await inbox.queue.get()
        reply = v2.decode_datagram(v2.cluster_tag("chisme"), data)
        assert isinstance(reply, SwimPacket) and reply.msg == m.Ack(2, a.member_id)
    assert [x["id"] for x in a.members()] == [a.member_id]


# -- the transport on its own: dialing, refusals, a restarted peer -----------------------------


class Endpoint:
    """A bare V2Transport (no node), recording what it receives and what it counts."""

    def __init__(self, tg: asyncio.TaskGroup, cluster: str = "chisme") -> None:
        self.got: list[tuple[str, object]] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.v1_peers: list[str] = []
        self.transport = V2Transport(
            cluster=cluster,
            member_id="endpoint.1",
            addr="127.0.0.1:9",  # never dialed back: replies ride our own stream
            max_frame_bytes=1 << 20,
            dial_timeout_s=DEADLINE_S,
            handshake_timeout_s=DEADLINE_S,
            deliver=lambda src, msg: self.got.append((src, msg)),
            spawn=tg.create_task,
            count=self._count,
            on_v1_peer=self.v1_peers.append,
        )

    def _count(self, direction: str, kind: str, n: int) -> None:
        self.counts[direction, kind] = self.counts.get((direction, kind), 0) + (
            1 if direction == "drop" else n
        )

    def send(self, to: str, msg: object) -> None:
        self.transport.send(to, msg, True)


@contextlib.asynccontextmanager
async def endpoint(cluster: str = "chisme") -> AsyncIterator[Endpoint]:
    async with asyncio.TaskGroup() as tg:
        ep = Endpoint(tg, cluster)
        try:
            yield ep
        finally:
            await ep.transport.close()


async def test_a_dialed_stream_carries_requests_and_replies(
    v2node: V2Node, wait_until: WaitUntil
) -> None:
    a = await v2node()
    async with endpoint() as ep:
        for i in range(3):
            ep.send(a.node_address, rep.SyncRoot(i, 0, 0))
        await wait_until(lambda: len(ep.got) == 3, what="three answers")
        assert ep.got == [(a.node_address, rep.SyncOk(i)) for i in range(3)]
        assert ep.counts.get(("drop", "unreachable"), 0) == 0


async def test_a_dial_to_a_closed_port_is_dropped_and_counted(wait_until: WaitUntil) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: refused
        addr = tcp.format_peer(s.getsockname())
        async with endpoint() as ep:
            ep.send(addr, rep.SyncRoot(1, 0, 0))
            ep.send(addr, rep.SyncRoot(2, 0, 0))  # queued behind the same dial
            await wait_until(lambda: ep.counts.get(("drop", "unreachable")) == 1)
            ep.send(addr, rep.SyncRoot(3, 0, 0))  # a later send dials again
            await wait_until(lambda: ep.counts.get(("drop", "unreachable")) == 2)
            assert ep.got == []


async def test_a_node_of_another_cluster_refuses_our_dial(
    v2node: V2Node, wait_until: WaitUntil
) -> None:
    a = await v2node(cluster_name="elsewhere")
    async with endpoint() as ep:
        ep.send(a.node_address, rep.SyncRoot(1, 0, 0))
        await wait_until(lambda: drop_count(a, "bad_frame") == 1, what="a's refusal")
        await wait_until(lambda: not _open_streams(ep), what="our side to close too")
        assert ep.got == []
        assert [x["id"] for x in a.members()] == [a.member_id]


def _open_streams(ep: Endpoint) -> list[str]:
    return [k for k, s in ep.transport._streams.items() if s.open]


async def test_a_peer_restarted_on_its_port_is_reached_on_a_new_stream(
    config: Callable[..., Config], wait_until: WaitUntil
) -> None:
    """The stream to the old process dies with it; the next reliable send dials the new one."""
    cfg = config(protocol="v2", api="")
    async with endpoint() as ep:
        async with Node(cfg) as old:
            addr = old.node_address
            ep.send(addr, rep.SyncRoot(1, 0, 0))
            await wait_until(lambda: len(ep.got) == 1)
            assert _open_streams(ep) == [addr]
        await wait_until(lambda: not _open_streams(ep), what="the old stream's end noticed")
        async with Node(cfg.replace(listen=addr)) as new:
            assert new.member_id != old.member_id
            await new.announce(IH, P1)  # its digest root is no longer 0
            ep.send(addr, rep.SyncRoot(2, 0, 0))
            await wait_until(lambda: len(ep.got) == 2, what="the new process's answer")
            src, reply = ep.got[1]
            assert src == addr and isinstance(reply, rep.SyncGroups) and reply.sync_id == 2


# -- bounds and shutdown ---------------------------------------------------------------------------


async def test_inbound_streams_are_capped(v2node: V2Node, wait_until: WaitUntil) -> None:
    """The node port's connection cap stops counting a connection handed over to v2: the
    v2 side keeps its own (``max_connections`` inbound streams)."""
    a = await v2node(max_connections=2)
    async with raw_stream(a.node_address) as s1, raw_stream(a.node_address) as s2:
        for i, s in enumerate((s1, s2)):
            s.send(hello(addr=f"127.0.0.1:{20 + i}"))
            assert isinstance(await s.next(), v2.Hello)
        async with raw_stream(a.node_address) as s3:
            s3.send(hello(addr="127.0.0.1:22"))
            assert await s3.rest() == [v2.Error("too many v2 streams")]
        assert drop_count(a, "too_many_streams") == 1
        # v1 still has its slots
        assert await Client(a.node_address).lookup(IH) == []
        s1.close()
        v2t = a.sockets.v2
        await wait_until(lambda: v2t is not None and v2t.inbound == 1, what="a slot freed")
        async with raw_stream(a.node_address) as s4:
            s4.send(hello(addr="127.0.0.1:23"), rep.SyncRoot(1, 0, 0))
            assert isinstance(await s4.next(), v2.Hello)
            assert await s4.next() == rep.SyncOk(1)
        s2.send(rep.SyncRoot(2, 0, 0))
        assert await s2.next() == rep.SyncOk(2)


async def test_a_stopped_node_closes_every_v2_stream(config: Callable[..., Config]) -> None:
    """Registered, duplicate (a second stream claiming the same peer address) and
    mid-handshake streams all see EOF when the node stops."""
    async with Node(config(protocol="v2", api="")) as a:
        first = await RawStream.open(a.node_address)
        dup = await RawStream.open(a.node_address)
        stalled = await RawStream.open(a.node_address)
        try:
            for s in (first, dup):
                s.send(hello(addr="127.0.0.1:30"))
                assert isinstance(await s.next(), v2.Hello)
            assert isinstance(await stalled.next(), v2.Hello)  # its own hello never comes
        except BaseException:
            for s in (first, dup, stalled):
                s.close()
            raise
    try:
        for s in (first, dup, stalled):
            assert await s.rest() in ([], [v2.Error("handshake timeout")])
    finally:
        for s in (first, dup, stalled):
            s.close()


async def test_a_udp_port_taken_is_a_config_error(config: Callable[..., Config]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        node = Node(config(protocol="v2", api="", listen=f"127.0.0.1:{port}"))
        with pytest.raises(ConfigError) as info:
            await node.__aenter__()
    if "on udp" not in str(info.value):
        pytest.skip(f"TCP port {port} was not free either: {info.value}")
    assert f"cannot listen on udp 127.0.0.1:{port}" in str(info.value)


async def test_a_seed_that_speaks_only_v1_is_named_as_such(
    config: Callable[..., Config], wait_until: WaitUntil, caplog: pytest.LogCaptureFixture
) -> None:
    """A v2 dial to a node that speaks v1 only (protocol v1) gets a v1 JSON error back: the
    transport names the address as a v1 peer (the node then gossips to it in v1)."""
    async with Node(config(protocol="v1", api="")) as old, endpoint() as ep:
        with caplog.at_level(logging.INFO, logger="chisme.v2"):
            ep.send(old.node_address, rep.SyncRoot(1, 0, 0))
            await wait_until(lambda: ep.v1_peers == [old.node_address])
        assert "answered the v2 hello in v1 JSON" in caplog.text
        assert ep.got == []


def test_udp_port_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert not udp_port_free("127.0.0.1", port)
    assert udp_port_free("127.0.0.1", port)  # released


async def test_port_0_is_chosen_again_when_its_udp_twin_is_taken(
    config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS picks a free TCP port for port 0; when UDP on that number is taken, the node
    lets go of it and asks again instead of failing to start (a rare, random failure)."""
    import chisme.node.node_port  # noqa: PLC0415

    tried: list[int] = []

    def first_taken(host: str, port: int) -> bool:
        tried.append(port)
        return len(tried) > 1 and udp_port_free(host, port)

    monkeypatch.setattr(chisme.node.node_port, "udp_port_free", first_taken)
    async with Node(config(protocol="v2", api="")) as a:
        assert len(tried) >= 2
        assert a.addresses["node"][1] == tried[-1]
        async with raw_stream(a.node_address) as s:  # TCP and UDP on the final number
            s.send(hello(), rep.SyncRoot(1, 0, 0))
            assert isinstance(await s.next(), v2.Hello)
            assert await s.next() == rep.SyncOk(1)
        async with udp_socket() as (udp, inbox, me):
            ping = SwimPacket(m.Ping(3, a.member_id, RAW_ID, me), ())
            udp.sendto(v2.encode_datagram(v2.cluster_tag("chisme"), ping), a.addresses["node"])
            async with asyncio.timeout(DEADLINE_S):
                data, _ = await inbox.queue.get()
            assert isinstance(v2.decode_datagram(v2.cluster_tag("chisme"), data), SwimPacket)
