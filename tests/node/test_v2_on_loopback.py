"""v2 clusters of in-process nodes on real loopback sockets (docs/v2.md): what only sockets
show. The cluster behaviour itself (membership, rumors, tombstones, TTLs, leases, restarts,
v1 peers) runs on virtual time in test_v2_on_memory.py.

Every node runs ``Config.profile("local", protocol="v2")`` on port 0 (its UDP socket takes
the same number) and knows ONE seed. Nothing is driven by hand: the roles tick on their own
timers, and tests wait on predicates under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from chisme import Client, Config, Node
from chisme.core import swim as m
from chisme.core.keys import parse_addr
from chisme.core.records import Record
from chisme.core.replication import SwimPacket, origin_id
from chisme.net import tcp
from chisme.wire import v1, v2
from chisme.wire.rfc3339 import format_rfc3339
from conftest import tracker_announce

if TYPE_CHECKING:
    from conftest import WaitUntil

log = logging.getLogger("tests.v2")

IH = "3f2a" * 10
IH2 = "c0ffee" * 6
P1 = "10.0.0.1:6881"
P2 = "10.0.0.2:6881"
P3 = "10.0.0.3:6881"
P4 = "[2001:db8::4]:6881"
DEADLINE_S = 10.0

Start = Callable[..., Coroutine[Any, Any, Node]]


def v2_config(**overrides: Any) -> Config:
    base: dict[str, Any] = {
        "protocol": "v2", "listen": "127.0.0.1:0", "api": "", "tracker_http": "",
        "tracker_udp": "",
    }
    return Config.profile("local", **{**base, **overrides})


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """``await start(**overrides)``: a v2 node (stopped, with a graceful leave, at the end)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: Any) -> Node:
            return await stack.enter_async_context(Node(v2_config(**overrides)))

        yield make


async def cluster(start: Start, n: int, **overrides: Any) -> list[Node]:
    """A seed and n - 1 nodes that know only the seed's address."""
    seed = await start(**overrides)
    return [seed, *[await start(peers=(seed.node_address,), **overrides) for _ in range(n - 1)]]


def states(node: Node) -> dict[str, str]:
    """member id -> state, as ``node`` sees the cluster (the v1 peers it gossips to aside)."""
    return {x["id"]: x["state"] for x in node.members() if x["state"] != "v1"}


def all_alive(nodes: Sequence[Node]) -> bool:
    ids = {n.member_id for n in nodes}
    return all(states(n) == dict.fromkeys(ids, "alive") for n in nodes)


def addrs(node: Node, info_hash: str = IH) -> set[str]:
    return {p.addr for p in node.local_lookup(info_hash)}


async def timed(wait_until: WaitUntil, predicate: Callable[[], bool], what: str,
                timeout_s: float = DEADLINE_S) -> float:
    """Wait for ``predicate``; log and return how long it took (reported, never asserted)."""
    t0 = time.monotonic()
    await wait_until(predicate, timeout_s=timeout_s, what=what)
    took = time.monotonic() - t0
    log.info("%s: %.3f s", what, took)
    return took


# -- §2 membership from one seed -------------------------------------------------------------


async def test_a_member_that_missed_a_join_learns_it_from_the_strangers_probe(
    start: Start, wait_until: WaitUntil
) -> None:
    """A ping from a member we never heard of makes us ask it for a full state exchange:
    here a hand-driven stranger pings a node and gets the node's push/pull on a stream."""
    a = await start()
    with contextlib.ExitStack() as stack:
        # the stranger's node port: TCP and UDP on one number, as a node binds them
        listener, udp_sock, port = _bind_pair(stack)
        stranger = f"127.0.0.1:{port}"
        got: asyncio.Queue[object] = asyncio.Queue()

        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            frames = v2.FrameReader(1 << 20, expect_preface=True)
            with contextlib.suppress(ConnectionError):
                while chunk := await r.read(65536):
                    for msg in frames.feed(chunk):
                        got.put_nowait(msg)
            w.close()

        server = await asyncio.start_server(serve, sock=listener)
        stack.callback(server.close)
        ping = SwimPacket(m.Ping(7, a.member_id, "stranger.1", stranger), ())
        udp_sock.sendto(v2.encode_datagram(v2.cluster_tag("chisme"), ping), a.addresses["node"])
        async with asyncio.timeout(DEADLINE_S):
            first = await got.get()
            request = await got.get()
        assert first == v2.Hello(v2.VERSION, "chisme", a.member_id, a.node_address)
        assert isinstance(request, SwimPacket) and isinstance(request.msg, m.PushPull)
        assert request.msg.source_id == a.member_id and not request.msg.reply
        assert m.Alive(a.member_id, a.node_address, 0) in request.msg.states


def _bind_pair(stack: contextlib.ExitStack) -> tuple[socket.socket, socket.socket, int]:
    for _ in range(20):
        tcp_sock = stack.enter_context(socket.socket())
        tcp_sock.bind(("127.0.0.1", 0))
        port = tcp_sock.getsockname()[1]
        udp_sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        try:
            udp_sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        tcp_sock.listen()
        tcp_sock.setblocking(False)
        return tcp_sock, udp_sock, port
    pytest.skip("no free TCP+UDP port pair")


async def test_a_node_of_another_cluster_is_refused_and_does_not_join(
    start: Start, wait_until: WaitUntil
) -> None:
    a, b = await cluster(start, 2)
    await wait_until(lambda: all_alive([a, b]))
    x = await start(peers=(a.node_address,), cluster_name="another")
    # both ends refuse the stream of x's join: the seed (wrong cluster in x's hello) and x
    # (wrong cluster in the seed's)
    refused = a.metrics.send_failures.labels("bad_frame")
    await wait_until(lambda: refused._value.get() >= 1, what="the seed to refuse x's stream")
    theirs = x.metrics.send_failures.labels("bad_frame")
    await wait_until(lambda: theirs._value.get() >= 1, what="x to refuse the seed's hello")
    # x also probes nobody, and nobody learnt of x
    assert states(x) == {x.member_id: "alive"}
    assert x.member_id not in states(a) and x.member_id not in states(b)
    await a.announce(IH, P1)
    await wait_until(lambda: addrs(b) == {P1}, what="the cluster still works")
    assert x.local_lookup(IH) == []
    assert x.role.fanout() == []


# -- §3 dissemination: announces, removes, the TTL ---------------------------------------------


async def test_announces_at_one_node_reach_every_node(
    start: Start, wait_until: WaitUntil
) -> None:
    nodes = await cluster(start, 5)
    await wait_until(lambda: all_alive(nodes), what="the cluster to form")
    a, b, c = nodes[1], nodes[2], nodes[3]
    mine = await a.announce(IH, P1, "from-api")  # the embedding API
    await Client(b.node_address).announce(IH, P2, "from-v1")  # a v1 client
    # a BitTorrent client (the HTTP/UDP front ends call the tracker service so)
    answer = tracker_announce(c, IH, parse_addr(P3), b"-qB4650-abcdefghijkl", seeder=True)
    if not isinstance(answer, tuple):
        answer = await answer
    await timed(wait_until, lambda: all(addrs(n) == {P1, P2, P3} for n in nodes),
                "3 announces at 3 nodes: everywhere")
    for n in nodes:
        got = {p.addr: p for p in n.local_lookup(IH)}
        assert got[P1].last_seen_ns == mine.last_seen_ns and got[P1].peer_id == "from-api"
        assert got[P2].peer_id == "from-v1"
        assert got[P3].seeder and got[P3].peer_id == "-qB4650-abcdefghijkl"
        held = n.store.get(IH, parse_addr(P1))
        assert held is not None and held.origin == origin_id(a.member_id)
    # replicas hold exactly the origin's records
    snaps = [n.store.snapshot() for n in nodes]
    assert all(s == snaps[0] for s in snaps)


# -- restarts ----------------------------------------------------------------------------------


async def test_a_node_restarted_on_its_port_rejoins_and_catches_up(
    start: Start, wait_until: WaitUntil
) -> None:
    nodes = await cluster(start, 3)
    seed = nodes[0]
    cfg = v2_config(peers=(seed.node_address,))
    async with Node(cfg) as old:
        port_addr = old.node_address
        await wait_until(lambda: all_alive([*nodes, old]))
        await nodes[1].announce(IH, P1)
        await old.announce(IH, P2)
        await wait_until(lambda: all(addrs(n) == {P1, P2} for n in [*nodes, old]))
        old_id = old.member_id
    await wait_until(lambda: all(states(n).get(old_id) == "left" for n in nodes))
    await nodes[2].announce(IH2, P3)  # while it was away
    t0 = time.monotonic()
    async with Node(cfg.replace(listen=port_addr)) as new:
        assert new.node_address == port_addr and new.member_id != old_id
        await wait_until(lambda: all_alive([*nodes, new]), what="the restarted node alive")
        log.info("restart on the same port: alive everywhere after %.3f s",
                 time.monotonic() - t0)
        # the departed process is forgotten (a new member took its address)
        assert all(old_id not in states(n) for n in [*nodes, new])
        await timed(wait_until, lambda: addrs(new) >= {P1} and addrs(new, IH2) == {P3},
                    "the restarted node: caught up")
        # and streams to its address reach the new process: it replicates what it accepts
        await new.announce(IH2, P4)
        await wait_until(lambda: all(addrs(n, IH2) == {P3, P4} for n in nodes))


# -- nodes of the original design (v1 on the same port) ----------------------------------------


async def test_a_v1_node_announce_and_gossip_are_adopted_and_replicated(
    start: Start, wait_until: WaitUntil
) -> None:
    nodes = await cluster(start, 3)
    await wait_until(lambda: all_alive(nodes))
    a = nodes[1]
    # raw v1 JSON, as a Go node of the original design sends them
    stamp = time.time_ns() - 2_000_000_000
    announce = json.dumps({
        "type": "announce", "info_hash": IH,
        "providers": [{"addr": P1, "peer_id": "go-peer", "last_seen": format_rfc3339(stamp)}],
    }).encode()
    await tcp.send_message(a.node_address, announce, DEADLINE_S)
    gossip = v1.encode_message(v1.Gossip(IH2, [Record(parse_addr(P2), stamp),
                                               Record(parse_addr(P4), stamp, b"go-2")]))
    await tcp.send_message(a.node_address, gossip, DEADLINE_S)
    await timed(wait_until, lambda: all(addrs(n) == {P1} and addrs(n, IH2) == {P2, P4}
                                        for n in nodes), "v1 input adopted: everywhere")
    mine = origin_id(a.member_id)
    for n in nodes:
        held = n.store.get(IH2, parse_addr(P4))
        assert held is not None and held.origin == mine and held.last_seen_ns == stamp
        assert held.peer_id == b"go-2"
    version = a.store.get(IH2, parse_addr(P2))
    # the Go node re-gossips the same records every round: no new version, no v2 traffic
    await tcp.send_message(a.node_address, gossip, DEADLINE_S)
    await wait_until(lambda: a.metrics.messages_in.labels("v1", "gossip").value == 2)
    assert a.store.get(IH2, parse_addr(P2)) == version


async def test_v1_lookups_answer_on_v2_nodes(start: Start, wait_until: WaitUntil) -> None:
    nodes = await cluster(start, 3)
    await wait_until(lambda: all_alive(nodes))
    await nodes[0].announce(IH, P1, "p1")
    await nodes[2].announce(IH, P2)
    await wait_until(lambda: all(addrs(n) == {P1, P2} for n in nodes))
    for n in nodes:
        got = await Client(n.node_address).lookup(IH)
        assert sorted(p.addr for p in got) == [P1, P2]
        assert [p.addr for p in await Client(n.node_address).lookup(IH, limit=1)] == [P2]
        assert sorted(p.addr for p in await n.lookup(IH)) == [P1, P2]  # asks alive members
    # an overlay lookup reaches records a member holds that this one does not (yet)
    lonely = nodes[1].store
    lonely.announce(IH2, parse_addr(P3), time.time_ns(), origin=0)  # not replicated
    assert [p.addr for p in await nodes[0].lookup(IH2)] == [P3]


# -- the command line ----------------------------------------------------------------------------


async def test_chisme_members_lists_the_cluster(start: Start, wait_until: WaitUntil) -> None:
    nodes = await cluster(start, 3)
    await wait_until(lambda: all_alive(nodes))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chisme.cli", "members", "--node", nodes[1].node_address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    rows = [line.split("\t") for line in out.decode().splitlines()]
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(
        (n.node_address, "alive", n.member_id) for n in nodes
    )
    assert all(r[3].startswith("incarnation=") for r in rows)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chisme.cli", "members", "--json", "--node", nodes[2].node_address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert {x["id"]: x["state"] for x in json.loads(out)} == {n.member_id: "alive" for n in nodes}
