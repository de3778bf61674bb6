"""The UDP tracker front end (BEP 15) on real loopback sockets against real nodes.

Packets are built here from BEP 15's byte layout (not with the codec under test). Silence is
checked without sleeping: the server answers datagrams in order on one socket, so after a bad
packet the test sends a connect, and the first reply must be that connect's answer.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from chisme.core.keys import ip_port_key
from chisme.errors import ConfigError
from chisme.frontends.udp_tracker import UdpTracker
from chisme.node import Node
from chisme.service.tracker import MAX_OVERLAY_INFLIGHT
from conftest import tracker_announce

if TYPE_CHECKING:
    from conftest import NodeFactory

DEADLINE_S = 10.0
MAGIC = 0x41727101980
IH = bytes.fromhex("0123456789abcdef00ff2b2f3d26253f202d7e41")
IH2 = bytes.fromhex("fedcba9876543210fedcba9876543210fedcba98")
LOCAL = socket.inet_aton("127.0.0.1")
LOCAL6 = socket.inet_pton(socket.AF_INET6, "::1")
NONE, COMPLETED, STARTED, STOPPED = 0, 1, 2, 3


def key(port: int, ip: bytes = LOCAL) -> bytes:
    return ip_port_key(ip, port)


def connect_packet(tid: int, magic: int = MAGIC) -> bytes:
    return struct.pack(">QII", magic, 0, tid)


def announce_packet(
    cid: int,
    tid: int,
    port: int,
    *,
    info_hash: bytes = IH,
    left: int = 1000,
    event: int = NONE,
    numwant: int = -1,
    ip: int = 0,
    downloaded: int = 0,
    uploaded: int = 0,
) -> bytes:
    peer_id = b"-LT2110-%012d" % port
    return struct.pack(
        ">QII20s20sqqqIIIiH",
        cid, 1, tid, info_hash, peer_id, downloaded, left, uploaded, event, ip, 0x1234,
        numwant, port,
    )


def scrape_packet(cid: int, tid: int, hashes: list[bytes]) -> bytes:
    return struct.pack(">QII", cid, 2, tid) + b"".join(hashes)


class Announced(NamedTuple):
    interval: int
    leechers: int
    seeders: int
    peers: list[bytes]


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)


class UdpClient:
    """A BEP 15 client on one connected socket."""

    def __init__(self, transport: asyncio.DatagramTransport, inbox: _Inbox, v6: bool) -> None:
        self.transport = transport
        self.inbox = inbox
        self.entry = 18 if v6 else 6
        self.tid = 1000
        self.cid = 0

    @classmethod
    async def open(cls, addr: tuple[str, int]) -> UdpClient:
        loop = asyncio.get_running_loop()
        transport, inbox = await loop.create_datagram_endpoint(_Inbox, remote_addr=addr)
        return cls(transport, inbox, ":" in addr[0])

    def close(self) -> None:
        self.transport.close()

    def next_tid(self) -> int:
        self.tid += 1
        return self.tid

    async def request(self, data: bytes) -> bytes:
        self.transport.sendto(data)
        async with asyncio.timeout(DEADLINE_S):
            return await self.inbox.replies.get()

    async def connect(self) -> int:
        tid = self.next_tid()
        reply = await self.request(connect_packet(tid))
        action, got_tid, cid = struct.unpack(">IIQ", reply)
        assert (action, got_tid, len(reply)) == (0, tid, 16)
        self.cid = cid
        return cid

    async def announce(self, port: int, **fields: Any) -> Announced:
        tid = self.next_tid()
        reply = await self.request(announce_packet(self.cid, tid, port, **fields))
        action, got_tid, interval, leechers, seeders = struct.unpack_from(">IIiii", reply)
        assert (action, got_tid) == (1, tid), reply
        body = reply[20:]
        assert len(body) % self.entry == 0
        peers = [body[i : i + self.entry] for i in range(0, len(body), self.entry)]
        return Announced(interval, leechers, seeders, peers)

    async def scrape(self, hashes: list[bytes]) -> list[tuple[int, int, int]]:
        tid = self.next_tid()
        reply = await self.request(scrape_packet(self.cid, tid, hashes))
        action, got_tid = struct.unpack_from(">II", reply)
        assert (action, got_tid, len(reply)) == (2, tid, 8 + 12 * len(hashes))
        flat = struct.unpack_from(f">{3 * len(hashes)}i", reply, 8)
        return [tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)]  # type: ignore[misc]

    async def error(self, data: bytes) -> tuple[int, str]:
        """Send ``data``; expect a BEP 15 error; return its (transaction id, message)."""
        reply = await self.request(data)
        action, tid = struct.unpack_from(">II", reply)
        assert action == 3, reply
        return tid, reply[8:].decode()

    async def silent(self, data: bytes) -> None:
        """Send ``data``, then a connect: the first reply must answer the connect."""
        self.transport.sendto(data)
        tid = self.next_tid()
        reply = await self.request(connect_packet(tid))
        assert reply[:8] == struct.pack(">II", 0, tid), f"{data!r} was answered: {reply!r}"


async def tracker(node: NodeFactory, host: str = "127.0.0.1", **overrides: Any) -> Node:
    addr = f"[{host}]:0" if ":" in host else f"{host}:0"
    return await node(tracker_udp=addr, **overrides)


async def client(n: Node) -> UdpClient:
    c = await UdpClient.open(n.addresses["tracker_udp"])
    await c.connect()
    return c


def metric(n: Node, line: str) -> bool:
    return line in n.metrics.render().decode()


# -- connect, announce, scrape -------------------------------------------------------------


async def test_connect_then_announce(node: NodeFactory) -> None:
    n = await tracker(node, ttl_s=90.0)
    c = await client(n)
    try:
        first = await c.announce(7001)
        assert first == Announced(60, 1, 0, [])
        second = await c.announce(7002, left=0)
        assert second == Announced(60, 1, 1, [key(7001)])
        rec = n.store.get(IH.hex(), key(7002))
        assert rec is not None and rec.seeder and rec.peer_id == b"-LT2110-000000007002"
    finally:
        c.close()
    assert metric(n, 'chisme_tracker_announces_total{outcome="ok",protocol="udp"} 2.0')
    assert metric(n, "chisme_tracker_udp_connects_total 1.0")


async def test_requester_never_gets_itself_and_seeders_get_leechers_first(
    node: NodeFactory,
) -> None:
    n = await tracker(node)
    c = await client(n)
    try:
        for _ in range(3):
            assert (await c.announce(7000, left=0)).peers == []
        for port in range(7100, 7110):
            await c.announce(port, left=0)
        leechers = {key(port) for port in range(7200, 7203)}
        for port in range(7200, 7203):
            await c.announce(port)
        for _ in range(5):
            got = (await c.announce(7100, left=0, numwant=3)).peers
            assert set(got) == leechers
            got = (await c.announce(7000, left=0, numwant=200)).peers
            assert key(7000) not in got and len(got) == 13
    finally:
        c.close()


async def test_numwant_default_and_caps(node: NodeFactory) -> None:
    n = await tracker(node, numwant_default=7, numwant_max=12)
    c = await client(n)
    try:
        for port in range(7000, 7030):
            await c.announce(port, numwant=1)
        assert len((await c.announce(8000, numwant=-1)).peers) == 7
        assert len((await c.announce(8000, numwant=0)).peers) == 7
        assert len((await c.announce(8000, numwant=3)).peers) == 3
        assert len((await c.announce(8000, numwant=50)).peers) == 12
        assert len((await c.announce(8000, numwant=2**31 - 1)).peers) == 12
    finally:
        c.close()


async def test_ip_field_is_ignored(node: NodeFactory) -> None:
    n = await tracker(node)
    c = await client(n)
    try:
        await c.announce(7001, ip=0x0A000001)  # claims 10.0.0.1
    finally:
        c.close()
    assert list(n.store.snapshot()) == [(IH.hex(), key(7001))]


async def test_stopped_removes_and_completed_counts(node: NodeFactory) -> None:
    n = await tracker(node)
    c = await client(n)
    try:
        await c.announce(7001, event=STARTED)
        await c.announce(7002, event=STARTED)
        await c.announce(7002, event=COMPLETED, left=0)
        gone = await c.announce(7001, event=STOPPED)
        assert gone == Announced(60, 0, 1, [])
        assert (await c.announce(7002, left=0)).peers == []
        assert await c.scrape([IH, IH2]) == [(1, 1, 0), (0, 0, 0)]
    finally:
        c.close()
    assert n.store.get(IH.hex(), key(7001)).tombstone  # type: ignore[union-attr]


async def test_scrape_many_hashes_and_the_cap(node: NodeFactory) -> None:
    n = await tracker(node)
    c = await client(n)
    try:
        await c.announce(7001, left=0)
        await c.announce(7002, info_hash=IH2)
        hashes = [IH, IH2] + [bytes([i]) * 20 for i in range(72)]
        got = await c.scrape(hashes)
        assert got[:3] == [(1, 0, 0), (0, 0, 1), (0, 0, 0)] and len(got) == 74
        tid, message = await c.error(scrape_packet(c.cid, 77, [*hashes, bytes(20)]))
        assert (tid, message) == (77, "too many info_hash (max 74)")
    finally:
        c.close()


# -- bad packets -----------------------------------------------------------------------------


async def test_short_and_unauthenticated_packets_are_dropped_silently(node: NodeFactory) -> None:
    n = await tracker(node)
    c = await client(n)
    try:
        await c.announce(7001)
        before = n.store.snapshot()
        for size in range(1, 16):  # too short to carry a transaction id (asyncio sends no b"")
            await c.silent(announce_packet(c.cid, 1, 7002)[:size])
        wrong = c.cid ^ 1
        await c.silent(announce_packet(wrong, 2, 7002))  # a wrong connection id
        await c.silent(announce_packet(0, 2, 7002))
        await c.silent(scrape_packet(wrong, 3, [IH]))
        await c.silent(connect_packet(4, magic=MAGIC + 1))  # not a connect, no valid id
        await c.silent(announce_packet(wrong, 5, 7002)[:50])  # truncated and unproven
        await c.silent(struct.pack(">QII", wrong, 9, 6))  # unknown action, unproven
        assert n.store.snapshot() == before
        assert (await c.announce(7002)).peers == [key(7001)]  # still served
    finally:
        c.close()
    assert metric(n, 'chisme_tracker_udp_dropped_total{reason="short"} 15.0')
    assert metric(n, 'chisme_tracker_udp_dropped_total{reason="bad_connection_id"} 6.0')


BAD_FROM_A_PROVEN_SENDER = [
    (lambda cid: announce_packet(cid, 9, 7002)[:97], "announce shorter than 98 bytes"),
    (lambda cid: announce_packet(cid, 9, 7002, event=4), "invalid event"),
    (lambda cid: announce_packet(cid, 9, 0), "invalid port"),
    (lambda cid: announce_packet(cid, 9, 7002, left=-1), "invalid left"),
    (lambda cid: announce_packet(cid, 9, 7002, downloaded=-5), "invalid downloaded"),
    (lambda cid: scrape_packet(cid, 9, []), "scrape without info_hash"),
    (lambda cid: scrape_packet(cid, 9, [IH])[:-1], "scrape with a partial info_hash"),
    (lambda cid: struct.pack(">QII", cid, 7, 9) + b"junk", "unknown action"),
]


@pytest.mark.parametrize(("build", "reason"), BAD_FROM_A_PROVEN_SENDER)
async def test_bad_packet_from_a_proven_sender_gets_an_error(
    node: NodeFactory, build: Any, reason: str
) -> None:
    n = await tracker(node)
    c = await client(n)
    try:
        await c.announce(7001)
        before = n.store.snapshot()
        assert await c.error(build(c.cid)) == (9, reason)
        assert n.store.snapshot() == before
        assert (await c.announce(7002)).peers == [key(7001)]
    finally:
        c.close()
    label = f'reason="{reason}",surface="tracker_udp"'
    assert metric(n, f"chisme_rejected_messages_total{{{label}}} 1.0")
    assert metric(n, "chisme_tracker_udp_errors_total 1.0")


async def test_every_truncation_of_an_announce(node: NodeFactory) -> None:
    n = await tracker(node)
    c = await client(n)
    try:
        packet = announce_packet(c.cid, 55, 7002)
        for size in range(1, 16):
            await c.silent(packet[:size])
        for size in range(16, 98):
            assert await c.error(packet[:size]) == (55, "announce shorter than 98 bytes")
        assert (await c.announce(7003)).peers == []
        assert n.store.num_records == 1
    finally:
        c.close()


async def test_garbage_never_breaks_the_server(node: NodeFactory) -> None:
    n = await tracker(node)
    c = await client(n)
    rng = random.Random(15)
    try:
        for _ in range(300):
            await c.silent(rng.randbytes(rng.randrange(0, 120)))  # random ids never check out
        for action in range(5):  # proven sender, garbage body: an error or a valid reply
            c.transport.sendto(struct.pack(">QII", c.cid, action, 1) + rng.randbytes(40))
            reply = await c.inbox.replies.get()
            assert struct.unpack_from(">I", reply)[0] in (action, 3)
        assert n.store.num_records == 0
        assert (await c.announce(7001)).interval == n.config.announce_interval
    finally:
        c.close()


# -- address families, connection ids across nodes ---------------------------------------------


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this machine")
async def test_ipv6_replies_carry_18_byte_peers_capped_to_one_datagram(
    node: NodeFactory,
) -> None:
    n = await tracker(node, host="::1")
    c = await client(n)
    try:
        for port in range(7000, 7080):
            await c.announce(port, numwant=1)
        reply = await c.announce(8000, numwant=200)
        assert len(reply.peers) == 66  # 20 + 66 * 18 = 1,208 bytes
        assert all(p[:16] == LOCAL6 for p in reply.peers)
        assert key(8000, LOCAL6) not in reply.peers
        assert n.store.get(IH.hex(), key(7000, LOCAL6)) is not None
    finally:
        c.close()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this machine")
async def test_an_ipv6_client_gets_every_ipv6_peer_of_a_mostly_ipv4_swarm(
    node: NodeFactory,
) -> None:
    """A UDP reply carries one family: the sample is drawn from the client's family, not
    drawn from all and then filtered (which left ~1 of these 5 in a swarm of 200 IPv4)."""
    n = await tracker(node, host="::1")
    for port in range(7000, 7200):  # IPv4 peers, e.g. announced at another node or over HTTP
        tracker_announce(n, IH.hex(), key(port), b"-qB4650-%012d" % port, numwant=0)
    c = await client(n)
    try:
        for port in range(8000, 8005):
            await c.announce(port, numwant=1)
        reply = await c.announce(8005, numwant=50)
        assert sorted(reply.peers) == [key(p, LOCAL6) for p in range(8000, 8005)]
        assert (reply.leechers, reply.seeders) == (206, 0)
    finally:
        c.close()


async def test_a_connection_id_works_at_every_node_with_the_cluster_key(
    node: NodeFactory,
) -> None:
    a = await tracker(node)
    b = await tracker(node)
    other = await tracker(node, connection_id_key="another-cluster-key-0123456789")
    at_a = await client(a)
    at_b = await UdpClient.open(b.addresses["tracker_udp"])
    at_other = await UdpClient.open(other.addresses["tracker_udp"])
    try:
        at_b.cid = at_other.cid = at_a.cid  # connected at A only
        await at_b.announce(7001)
        await at_other.silent(announce_packet(at_a.cid, 1, 7001))
        assert other.store.num_records == 0
    finally:
        for c in (at_a, at_b, at_other):
            c.close()


# -- a two-node cluster --------------------------------------------------------------------------


async def cluster(node: NodeFactory) -> tuple[Node, Node]:
    a = await tracker(node)
    b = await tracker(node, peers=(a.node_address,))
    a.role.peers.append(b.node_address)
    return a, b


async def test_first_announce_at_b_sees_a_peer_that_announced_at_a(node: NodeFactory) -> None:
    a, b = await cluster(node)
    at_a, at_b = await client(a), await client(b)
    try:
        await at_a.announce(7001, left=0)
        reply = await at_b.announce(7002)  # completed from the overlay in a child task
        assert reply.peers == [key(7001)]
        assert metric(b, 'chisme_tracker_overlay_completions_total{outcome="awaited",'
                         'protocol="udp"} 1.0')
        await at_a.announce(7003, event=STOPPED)  # never seen: a tombstone only
        await at_a.announce(7001, event=STOPPED)
        fresh = await at_b.announce(7004, info_hash=IH2)
        assert fresh.peers == []
    finally:
        at_a.close()
        at_b.close()


async def test_over_the_cap_answers_from_the_local_store(node: NodeFactory) -> None:
    a, b = await cluster(node)
    front = UdpTracker(b.tracker, b.config, b.spawn, b.metrics)
    host, port = await front.start("127.0.0.1", 0)
    at_a, at_b = await client(a), await UdpClient.open((host, port))
    try:
        await at_b.connect()
        await at_a.announce(7001)
        b.tracker.overlay_inflight = MAX_OVERLAY_INFLIGHT
        reply = await at_b.announce(7002)
        assert reply == Announced(b.config.announce_interval, 1, 0, [])  # A's peer not asked
        assert b.store.get(IH.hex(), key(7002)) is not None  # but the announce was applied
        assert metric(b, 'chisme_tracker_overlay_completions_total{outcome="over_cap",'
                         'protocol="udp"} 1.0')
        b.tracker.overlay_inflight = 0
        assert (await at_b.announce(7003)).peers != []
    finally:
        at_a.close()
        at_b.close()
        await front.close()


async def test_denied_hash_gets_an_error(node: NodeFactory, tmp_path: Any) -> None:
    deny = tmp_path / "deny.txt"
    deny.write_text(IH2.hex() + "\n")
    n = await tracker(node, deny_list=str(deny))
    c = await client(n)
    try:
        packet = announce_packet(c.cid, 31, 7001, info_hash=IH2)
        assert await c.error(packet) == (31, "info_hash not allowed on this tracker")
        await c.announce(7001)
        assert await c.scrape([IH, IH2]) == [(0, 0, 1), (0, 0, 0)]
        assert n.store.num_keys == 1
    finally:
        c.close()
    assert metric(n, 'chisme_tracker_announces_total{outcome="denied",protocol="udp"} 1.0')


async def test_a_udp_port_in_use_is_a_config_error(node: NodeFactory) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on udp 127.0.0.1:{port}"):
            await node(tracker_udp=f"127.0.0.1:{port}")
