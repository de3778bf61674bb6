"""Three nodes on real loopback TCP: gossip spreads announces, the TTL removes a provider that
stopped announcing from every node and frees its memory, and a restarted node gets its state
back from its peers.

Topology: most tests wire the three nodes all-to-all, as the seed design is deployed (every
node's bootstrap list names the others), so *one* gossip round of the node that holds a record
reaches both others. ``test_ring_forwards_what_a_node_learnt_second_hand`` uses a ring
(A knows B, B knows C, C knows A) to show the other half of the seed's behaviour: a round
pushes the whole live store, including records learnt from other nodes, so a record crosses
any connected topology, one hop per round.

Peers are wired after the nodes started, because ports are 0 (the OS picks them): ``peers``
is the node's live bootstrap list. Rounds are driven by calling ``push_round(node)`` and
``sweep_round()`` directly; one test relies on the ticker instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys

import pytest

from chisme import Client, Node
from conftest import push_round

IH = "3f2a" * 10
IH2 = "c0ffee" * 6
P1 = "10.0.0.5:6881"
P2 = "10.0.0.6:6881"
P3 = "[2001:db8::7]:51413"


def has(node: Node, info_hash: str, addr: str) -> bool:
    return any(p.addr == addr for p in node.local_lookup(info_hash))


def wire_all_to_all(*nodes: Node) -> None:
    for n in nodes:
        n.role.peers[:] = [m.node_address for m in nodes if m is not n]


def sent(node: Node, kind: str) -> float:
    return node.metrics.messages_out.labels("v1", kind)._value.get()  # type: ignore[no-any-return]


async def test_announce_to_a_is_returned_by_c_after_one_gossip_round(node) -> None:
    a, b, c = await node(), await node(), await node()
    wire_all_to_all(a, b, c)
    # A client announces to A over v1: a node does not push what it merged from the wire,
    # so only A's gossip can carry it on.
    await Client(a.node_address).announce(IH, P1, "-qB4650-abc")
    assert has(a, IH, P1)
    assert await Client(c.node_address).lookup(IH) == []

    assert await push_round(a) == 2  # one key, two peers

    # C's own store answers a v1 lookup (local only, as the seed) ...
    providers = await Client(c.node_address).lookup(IH)
    assert [(p.addr, p.peer_id) for p in providers] == [(P1, "-qB4650-abc")]
    assert providers[0].last_seen_ns == a.local_lookup(IH)[0].last_seen_ns
    # ... and B got the same round.
    assert has(b, IH, P1)
    assert a.store.snapshot() == b.store.snapshot() == c.store.snapshot()


async def test_overlay_lookup_asks_peers(node) -> None:
    a, b, c = await node(), await node(), await node()
    wire_all_to_all(a, b, c)
    await Client(a.node_address).announce(IH, P1)
    await Client(b.node_address).announce(IH, P2)
    # no gossip yet: C's lookup asks its peers (fanout 3 >= 2 peers) and merges the answers
    assert c.local_lookup(IH) == []
    got = await c.lookup(IH)
    assert sorted(p.addr for p in got) == [P1, P2]
    assert got == sorted(got, key=lambda p: p.last_seen_ns, reverse=True)
    assert [p.addr for p in await c.lookup(IH, limit=1)] == [got[0].addr]
    assert c.local_lookup(IH) == []  # an overlay lookup reads, it does not copy


async def test_own_announce_is_pushed_to_every_peer(node, wait_until) -> None:
    a, b, c = await node(), await node(), await node()
    wire_all_to_all(a, b, c)
    rec = await a.announce(IH, P3, "peer-3")
    await wait_until(lambda: has(b, IH, P3) and has(c, IH, P3), what="the announce push")
    for n in (b, c):
        (p,) = n.local_lookup(IH)
        assert (p.addr, p.peer_id, p.last_seen_ns) == (P3, "peer-3", rec.last_seen_ns)
    await wait_until(lambda: sent(a, "announce") == 2, what="both sends counted")


async def test_ring_forwards_what_a_node_learnt_second_hand(node) -> None:
    a, b, c = await node(), await node(), await node()
    a.role.peers[:] = [b.node_address]
    b.role.peers[:] = [c.node_address]
    c.role.peers[:] = [a.node_address]
    await Client(a.node_address).announce(IH, P1)

    await push_round(a)
    assert has(b, IH, P1)
    assert not has(c, IH, P1)
    await push_round(b)  # B forwards what it learnt from A
    assert has(c, IH, P1)


async def test_the_gossip_ticker_spreads_announces(node, wait_until) -> None:
    a, b, c = [await node(gossip_interval_s=0.05) for _ in range(3)]
    wire_all_to_all(a, b, c)
    await Client(a.node_address).announce(IH, P1)
    await Client(c.node_address).announce(IH2, P2)
    await wait_until(
        lambda: all(has(n, IH, P1) and has(n, IH2, P2) for n in (a, b, c)),
        what="the gossip ticker to spread both records",
    )
    assert sent(a, "gossip") >= 1


async def test_a_provider_that_stops_announcing_expires_everywhere_and_is_freed(
    node, clock, wait_until
) -> None:
    a, b, c = [await node(clock=clock, ttl_s=10) for _ in range(3)]
    wire_all_to_all(a, b, c)
    await a.announce(IH, P1)  # P1 will stop announcing
    await a.announce(IH, P2)  # P2 keeps announcing
    await a.announce(IH2, P1)
    await push_round(a)
    nodes = (a, b, c)
    assert all(n.store.num_records == 3 and n.store.num_keys == 2 for n in nodes)

    clock.advance(6)
    await a.announce(IH, P2)  # P2 refreshes; P1 is silent
    await wait_until(lambda: all(n.local_lookup(IH)[0].addr == P2 for n in nodes))
    clock.advance(5)  # P1 last seen 11 s ago (> ttl 10 s), P2 5 s ago

    for n in nodes:
        assert [p.addr for p in n.local_lookup(IH)] == [P2]  # lookups never return expired
        assert n.local_lookup(IH2) == []
        assert [p.addr for p in await n.lookup(IH)] == [P2]
        assert await Client(n.node_address).lookup(IH2) == []
        assert n.sweep_round() == 2  # memory: P1 under both keys
        assert (n.store.num_records, n.store.num_keys) == (1, 1)
        assert IH2 not in n.store
    # gossip cannot bring P1 back: nobody sends what is not live
    await push_round(a)
    await push_round(b)
    assert all(n.store.num_records == 1 for n in nodes)

    clock.advance(11)  # P2 stops too
    for n in nodes:
        assert await n.lookup(IH) == []
        assert n.sweep_round() == 1
        assert (n.store.num_records, n.store.num_keys) == (0, 0)
        assert n.store.snapshot() == {}
        assert n.metrics.expired._value.get() == 3
        metrics = n.metrics.render().decode()
        assert "chisme_records 0.0" in metrics
        assert "chisme_keys 0.0" in metrics


async def test_expiry_with_the_real_clock_and_the_sweep_ticker(node, wait_until) -> None:
    nodes = [await node(ttl_s=1, sweep_interval_s=0.05) for _ in range(3)]
    wire_all_to_all(*nodes)
    await nodes[0].announce(IH, P1)
    await push_round(nodes[0])
    assert all(n.store.num_records == 1 for n in nodes)
    await wait_until(
        lambda: all((n.store.num_records, n.store.num_keys) == (0, 0) for n in nodes),
        what="the sweeper to free the expired record on every node",
    )
    for n in nodes:
        assert await n.lookup(IH) == []


async def test_a_restarted_node_gets_its_state_back_from_its_peers(
    node, config, wait_until
) -> None:
    a, c = await node(), await node()
    async with Node(config(gossip_interval_s=3600, sweep_interval_s=3600)) as b:
        b_addr = b.node_address
        wire_all_to_all(a, b, c)
        await a.announce(IH, P1, "from-a")
        await b.announce(IH, P2, "from-b")  # B's own announce: pushed to A and C
        await c.announce(IH2, P3)
        await wait_until(lambda: len(a.store.snapshot()) == len(c.store.snapshot()) == 3)
        for n in (a, b, c):
            await push_round(n)
        before = b.store.snapshot()
        assert len(before) == 3
    # B is down: the others keep serving, its absence costs a failed send, not a stall
    assert await push_round(a) == 4  # 2 keys x 2 peers attempted
    assert a.metrics.send_failures.labels("PeerUnreachable")._value.get() >= 2
    assert sorted(p.addr for p in await a.lookup(IH)) == [P1, P2]

    # a new Node object on the same port, knowing its peers, starts empty ...
    async with Node(config(listen=b_addr, gossip_interval_s=3600)) as b2:
        b2.role.peers[:] = [a.node_address, c.node_address]
        assert b2.node_address == b_addr
        assert b2.store.num_records == 0
        # ... and one round of its peers brings everything back, stamps included
        await push_round(a)
        await push_round(c)
        assert b2.store.snapshot() == before
        assert sorted(p.addr for p in await Client(b_addr).lookup(IH)) == [P1, P2]


async def _start_cli_node(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chisme.cli", "node", "--api", "", "--tracker-http", "",
        "--tracker-udp", "", "--gossip-interval", "3600", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while line := (await proc.stderr.readline()).decode():
            if m := re.search(r"listening on (\S+) \(v1 JSON\)", line):
                return proc, m.group(1)
    proc.kill()
    await proc.wait()
    raise AssertionError("the node exited before it listened")


async def test_a_killed_process_restarted_on_its_port_gets_its_state_back(
    node, wait_until
) -> None:
    """B is a real ``chisme node`` process: SIGKILL (no clean shutdown), then a new process
    on the same port; A's and C's next gossip rounds restore what B held."""
    a, c = await node(), await node()
    proc, b_addr = await _start_cli_node("--listen", "127.0.0.1:0",
                                         "--peer", a.node_address, "--peer", c.node_address)
    try:
        a.role.peers[:] = [b_addr, c.node_address]
        c.role.peers[:] = [a.node_address, b_addr]
        await a.announce(IH, P1, "from-a")
        await c.announce(IH2, P3)
        await Client(b_addr).announce(IH, P2)  # known to B only, until B gossips
        for n in (a, c):
            await push_round(n)

        async def b_holds_both() -> bool:
            return sorted(p.addr for p in await Client(b_addr).lookup(IH)) == [P1, P2]

        await wait_until(b_holds_both, what="B to apply the fire-and-forget announce")
        # no push still in flight that could reach the restarted B before the gossip does
        await wait_until(lambda: sent(a, "announce") == sent(c, "announce") == 2)

        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        proc, again = await _start_cli_node("--listen", b_addr)
        assert again == b_addr
        assert await Client(b_addr).lookup(IH) == []  # a new process starts empty
        await push_round(a)
        await push_round(c)
        # everything A and C held comes back (P2 lived only in B's memory: it is gone)
        assert [(p.addr, p.peer_id) for p in await Client(b_addr).lookup(IH)] == [(P1, "from-a")]
        assert [p.addr for p in await Client(b_addr).lookup(IH2)] == [P3]
        restored = (await Client(b_addr).lookup(IH))[0]
        assert restored.last_seen_ns == a.local_lookup(IH)[0].last_seen_ns
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert proc.returncode == 0


async def test_unreachable_and_silent_peers_never_stall_the_node(node) -> None:
    a = await node(lookup_timeout_s=0.2, peer_timeout_s=0.2)
    # a bound but not listening socket: connections to it are refused
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    silent_conns: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        silent_conns.append(w)  # accept, read nothing, answer nothing

    async def garbage(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b'{"not": "an array"}\n')
        await w.drain()
        w.close()

    silent_srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    garbage_srv = await asyncio.start_server(garbage, "127.0.0.1", 0)
    try:
        a.role.peers[:] = [
            f"127.0.0.1:{closed.getsockname()[1]}",
            f"127.0.0.1:{silent_srv.sockets[0].getsockname()[1]}",
            f"127.0.0.1:{garbage_srv.sockets[0].getsockname()[1]}",
        ]
        await a.announce(IH, P1)
        got = await a.lookup(IH)  # the silent peer times out; the answers that came are kept
        assert [p.addr for p in got] == [P1]
        assert await push_round(a) == 3
        failures = a.metrics.send_failures
        assert failures.labels("PeerUnreachable")._value.get() >= 1
        assert failures.labels("WireError")._value.get() >= 1
        assert [p.addr for p in await Client(a.node_address).lookup(IH)] == [P1]
    finally:
        closed.close()
        for w in silent_conns:
            w.close()
        for srv in (silent_srv, garbage_srv):
            srv.close()
            with contextlib.suppress(Exception):
                await srv.wait_closed()


async def test_nodes_on_ipv6_loopback(node) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    a, b = await node(listen="[::1]:0", api="[::1]:0"), await node(listen="[::1]:0")
    assert a.node_address.startswith("[::1]:")
    a.role.peers[:] = [b.node_address]
    await Client(a.node_address).announce(IH, P3)
    await push_round(a)
    assert [p.addr for p in await Client(b.node_address).lookup(IH)] == [P3]
