"""v2 clusters of whole nodes on the in-memory network, on virtual time (docs/v2.md).

Each node is a real :class:`~chisme.Node` (services, cluster role, sweeper) whose transport is
the memory network and whose clock is its virtual time; nothing is driven by hand: the roles
tick on their own timers and the tests wait on predicates under a (virtual) deadline. What
only sockets can show (handshakes, another cluster refused, the v1 port, restarts on a real
port) is in test_v2_on_loopback.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chisme import Node
from chisme.core.keys import parse_addr
from chisme.core.records import Record
from chisme.core.replication import origin_id
from chisme.net.memory import MemoryTransport
from chisme.tracker.types import Event
from chisme.wire import v1
from conftest import MemoryCluster, OnMemory, tracker_announce

if TYPE_CHECKING:
    from conftest import WaitUntil

IH = "3f2a" * 10
IH2 = "c0ffee" * 6 + "c0ffee0011223344"[:4]
P1 = "10.9.0.1:6881"
P2 = "10.9.0.2:6881"
P3 = "10.9.0.3:6881"
P4 = "[2001:db8::4]:6881"


def states(node: Node) -> dict[str, str]:
    """member id -> state, as ``node`` sees the cluster (the v1 peers it gossips to aside)."""
    return {x["id"]: x["state"] for x in node.members() if x["state"] != "v1"}


def all_alive(nodes: Sequence[Node]) -> bool:
    ids = {n.member_id for n in nodes}
    return all(states(n) == dict.fromkeys(ids, "alive") for n in nodes)


def addrs(node: Node, info_hash: str = IH) -> set[str]:
    return {p.addr for p in node.local_lookup(info_hash)}


def now_s() -> float:
    return asyncio.get_running_loop().time()


# -- membership -----------------------------------------------------------------------------


def test_five_nodes_from_one_seed_learn_each_other(on_memory: OnMemory,
                                                   wait_until: WaitUntil) -> None:
    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(5)
        await wait_until(lambda: all_alive(nodes), what="5 nodes from one seed: all alive")
        assert now_s() < 2.0  # local profile: a few probe rounds
        for n in nodes:
            assert sorted(n.role.fanout()) == sorted(x.node_address for x in nodes if x is not n)
            assert n.status()["members_alive"] == 5
            rows = {x["id"]: x for x in n.members()}
            assert {rows[x.member_id]["addr"] for x in nodes} == {x.node_address for x in nodes}
        gauge = 'chisme_members{state="alive"} 5.0'
        await wait_until(lambda: all(gauge in n.metrics.render().decode() for n in nodes),
                         what="the members gauge")

    on_memory(body)


def test_a_node_started_before_its_seed_joins_when_the_seed_comes_up(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    """Processes start in any order: a join nobody answered is retried (backing off), not
    left to the seed reconnect every 10-30 s."""

    async def body(c: MemoryCluster) -> None:
        early = await c.start(peers=("10.0.0.99:7070",))
        await asyncio.sleep(3.0)
        assert early.role.fanout() == []
        seed = await c.start(addr="10.0.0.99:7070")
        started = now_s()
        await wait_until(lambda: all_alive([early, seed]), what="joined")
        assert now_s() - started < 5.0

    on_memory(body)


def test_a_crashed_member_is_declared_dead_everywhere_and_its_records_expire(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(5, ttl_s=3.0, sweep_interval_s=0.2)
        await wait_until(lambda: all_alive(nodes))
        victim, rest = nodes[3], [n for n in nodes if n is not nodes[3]]
        await victim.announce(IH, P1)
        await wait_until(lambda: all(addrs(n) == {P1} for n in rest))
        gone = victim.member_id
        await c.kill(victim)
        killed = now_s()
        await wait_until(lambda: all(states(n).get(gone) == "dead" for n in rest),
                         timeout_s=30.0, what="the crash detected everywhere")
        assert now_s() - killed < 15.0
        # no lease for a dead origin: its records go a TTL after their stamp
        await wait_until(lambda: all(addrs(n) == set() for n in rest), what="records expired")
        await wait_until(lambda: all(n.store.num_records == 0 for n in rest), what="freed")

    on_memory(body)


# -- dissemination: announces, removes, the TTL -------------------------------------------------


def test_announces_at_one_node_reach_every_node(on_memory: OnMemory,
                                                wait_until: WaitUntil) -> None:
    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(5)
        await wait_until(lambda: all_alive(nodes))
        a, b, n3 = nodes[1], nodes[2], nodes[3]
        mine = await a.announce(IH, P1, "from-api")  # the embedding API
        # a v1 client of the original design, announcing to b over v1
        client = MemoryTransport(c.net, "10.0.1.1:5000")
        client.send_v1(b.node_address, [v1.Announce(IH, [Record(parse_addr(P2), 0, b"from-v1")])])
        # a BitTorrent client (the HTTP/UDP front ends call the tracker service so)
        answer = tracker_announce(n3, IH, parse_addr(P3), b"-qB4650-abcdefghijkl", seeder=True)
        if not isinstance(answer, tuple):
            await answer
        started = now_s()
        await wait_until(lambda: all(addrs(n) == {P1, P2, P3} for n in nodes))
        assert now_s() - started < 1.0  # rumors: a few gossip ticks
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

    on_memory(body)


def test_a_remove_spreads_as_a_tombstone(on_memory: OnMemory, wait_until: WaitUntil) -> None:
    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(4)
        await wait_until(lambda: all_alive(nodes))
        a, b = nodes[1], nodes[2]
        await a.announce(IH, P1)
        await a.announce(IH, P2)
        await wait_until(lambda: all(addrs(n) == {P1, P2} for n in nodes))
        gone = await a.remove(IH, P1)  # at its origin
        assert gone.tombstone
        await wait_until(lambda: all(addrs(n) == {P2} for n in nodes), what="the tombstone")
        for n in nodes:
            held = n.store.get(IH, parse_addr(P1))
            assert held is not None and held.tombstone and held.last_seen_ns == gone.last_seen_ns
        # a BitTorrent "stopped" at another node than the origin removes it too
        stopped = tracker_announce(b, IH, parse_addr(P2), event=Event.STOPPED, numwant=0)
        assert isinstance(stopped, tuple)
        await wait_until(lambda: all(addrs(n) == set() for n in nodes), what="the stopped event")
        assert all(n.store.num_tombstones == 2 for n in nodes)
        for n in nodes:
            assert await n.lookup(IH) == []

    on_memory(body)


def test_a_provider_that_stops_announcing_disappears_everywhere_after_the_ttl(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    """P1 announces once; P2 keeps announcing at its node. P1 goes from every node about a
    TTL later (its origin tombstones it); P2 stays everywhere although replicas never see its
    refreshes (they cost no traffic: the origin's lease keeps it)."""

    async def body(c: MemoryCluster) -> None:
        ttl = 3.0
        nodes = await c.cluster(4, ttl_s=ttl, sweep_interval_s=0.1)
        await wait_until(lambda: all_alive(nodes))
        a, b = nodes[1], nodes[2]
        t0 = now_s()
        await a.announce(IH, P1)
        await b.announce(IH, P2)
        await wait_until(lambda: all(addrs(n) == {P1, P2} for n in nodes))
        replica = a.store.get(IH, parse_addr(P2))
        assert replica is not None

        async def keep_announcing() -> None:
            while True:
                await b.announce(IH, P2)
                await asyncio.sleep(ttl / 4)  # a client's announce interval

        flaps: list[str] = []  # nodes seen without P2 (a lease that lapsed while b was alive)

        def p2_lost() -> bool:
            flaps.extend(n.node_address for n in nodes if P2 not in addrs(n))
            return bool(flaps)

        async with asyncio.TaskGroup() as tg:
            refresher = tg.create_task(keep_announcing())
            await wait_until(lambda: not p2_lost() and all(addrs(n) == {P2} for n in nodes),
                             what="P1 to expire everywhere")
            assert ttl <= now_s() - t0 < ttl + 2.0
            deadline = now_s() + 5 * ttl  # P2 outlives several TTLs everywhere
            await wait_until(lambda: p2_lost() or now_s() > deadline, timeout_s=6 * ttl)
            refresher.cancel()
        assert flaps == [], "P2 lapsed while its origin was alive and it kept announcing"
        held = a.store.get(IH, parse_addr(P2))
        assert held is not None and held.version == replica.version  # no new version
        assert held.last_seen_ns == replica.last_seen_ns  # not even a new stamp
        for n in nodes:
            assert {p.addr for p in await n.lookup(IH)} == {P2}

    on_memory(body)


def test_a_replica_looks_up_a_provider_its_origin_keeps_alive(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    """A provider that keeps announcing at its origin keeps its first stamp on replicas (its
    refreshes cost no traffic); their lookups must still return it after a TTL."""

    async def body(c: MemoryCluster) -> None:
        ttl = 2.0
        nodes = await c.cluster(3, ttl_s=ttl, sweep_interval_s=0.1, lookup_fanout=0)
        await wait_until(lambda: all_alive(nodes))
        a, b = nodes[0], nodes[1]
        await a.announce(IH, P1)
        await wait_until(lambda: P1 in addrs(b))
        held = b.store.get(IH, parse_addr(P1))
        assert held is not None

        async def refresh() -> None:
            while True:
                await a.announce(IH, P1)
                await asyncio.sleep(ttl / 4)

        async with asyncio.TaskGroup() as tg:
            refresher = tg.create_task(refresh())
            await asyncio.sleep(2 * ttl)
            still = b.store.get(IH, parse_addr(P1))
            overlay = [p.addr for p in await b.lookup(IH)]
            refresher.cancel()
        assert still == held  # the replica's record is unchanged ...
        assert overlay == [P1]  # ... and still served (a TTL cut on the stamp served [])

    on_memory(body)


def test_a_tracker_announce_completed_from_the_overlay_keeps_replicas_in_sync(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    """A BitTorrent client's first announce at n3 asks members for peers; their answers
    must not be written over n3's replicated records (a v1 copy left its digest different),
    and the counts cover the peers handed out."""

    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(3)
        await wait_until(lambda: all_alive(nodes))
        a, n3 = nodes[0], nodes[2]
        await a.announce(IH, P1, seeder=True)
        await wait_until(lambda: all(P1 in addrs(n) for n in nodes))
        # a provider only a holds (not replicated), so n3 must ask to hand it out
        a.store.announce(IH, parse_addr(P2), c.clock.wall_ns(), origin=0, seeder=True)
        answer = tracker_announce(n3, IH, parse_addr(P3))
        assert not isinstance(answer, tuple)  # n3 held fewer than numwant: it asked
        seeders, leechers, peers = await answer
        assert set(peers) == {parse_addr(P1), parse_addr(P2)}
        assert (seeders, leechers) == (2, 1)  # P1 and P2 seed; P3 (the client) leeches
        held = n3.store.get(IH, parse_addr(P1))
        assert held is not None and held.origin == origin_id(a.member_id)
        assert n3.store.get(IH, parse_addr(P2)) is None  # the answer is not merged in

        def roots() -> set[int]:
            return {n.role.engine.replicator.digest.root for n in nodes}

        a.store.remove(IH, parse_addr(P2), c.clock.wall_ns())  # back to replicated records only
        await wait_until(lambda: len(roots()) == 1 and all(P3 in addrs(n) for n in nodes),
                         what="identical digests on every node")

    on_memory(body)


def test_records_of_a_member_that_left_expire_everywhere(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    """No lease for a departed origin: its records expire a TTL after their stamp."""

    async def body(c: MemoryCluster) -> None:
        ttl = 2.0
        nodes = await c.cluster(3, ttl_s=ttl, sweep_interval_s=0.1)
        await wait_until(lambda: all_alive(nodes))
        d = await c.start(peers=(nodes[0].node_address,), ttl_s=ttl)
        await wait_until(lambda: all_alive([*nodes, d]))
        await d.announce(IH, P4)
        await wait_until(lambda: all(addrs(n) == {P4} for n in nodes))
        await c.stop(d)
        await wait_until(lambda: all(states(n).get(d.member_id) == "left" for n in nodes),
                         what="a graceful leave: left everywhere")
        left = now_s()
        await wait_until(lambda: all(addrs(n) == set() for n in nodes), what="records expired")
        assert now_s() - left <= ttl + 1.0

    on_memory(body)


def test_a_node_restarted_on_its_address_rejoins_and_catches_up(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(3)
        seed = nodes[0]
        old = await c.start(peers=(seed.node_address,))
        await wait_until(lambda: all_alive([*nodes, old]))
        await nodes[1].announce(IH, P1)
        await old.announce(IH, P2)
        await wait_until(lambda: all(addrs(n) == {P1, P2} for n in [*nodes, old]))
        old_id, addr = old.member_id, old.node_address
        await c.stop(old)
        await wait_until(lambda: all(states(n).get(old_id) == "left" for n in nodes))
        await nodes[2].announce(IH2, P3)  # while it was away
        await asyncio.sleep(0.001)  # a restarted process: a new member id (a new generation)
        new = await c.start(addr=addr, peers=(seed.node_address,))
        assert new.member_id != old_id
        await wait_until(lambda: all_alive([*nodes, new]), what="the restarted node alive")
        assert all(old_id not in states(n) for n in [*nodes, new])  # forgotten
        await wait_until(lambda: addrs(new) >= {P1} and addrs(new, IH2) == {P3},
                         what="the restarted node caught up")
        await new.announce(IH2, P4)  # it replicates what it accepts
        await wait_until(lambda: all(addrs(n, IH2) == {P3, P4} for n in nodes))

    on_memory(body)


# -- nodes of the original design ---------------------------------------------------------------


def test_v1_input_is_adopted_and_replicated_and_a_regossip_costs_nothing(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(3)
        await wait_until(lambda: all_alive(nodes))
        a = nodes[1]
        go = MemoryTransport(c.net, "10.0.1.2:7070")  # a node of the original design
        stamp = c.clock.wall_ns() - 2_000_000_000
        gossip = v1.Gossip(IH2, [Record(parse_addr(P2), stamp), Record(parse_addr(P4), stamp,
                                                                        b"go-2")])
        go.send_v1(a.node_address, [gossip])
        await wait_until(lambda: all(addrs(n, IH2) == {P2, P4} for n in nodes))
        mine = origin_id(a.member_id)
        for n in nodes:
            held = n.store.get(IH2, parse_addr(P4))
            assert held is not None and held.origin == mine and held.last_seen_ns == stamp
            assert held.peer_id == b"go-2"
        version = a.store.get(IH2, parse_addr(P2))
        rumors = a.role.engine.replicator.rumors  # type: ignore[attr-defined]
        await wait_until(lambda: len(rumors) == 0, what="the rumors retransmitted out")
        sent = a.metrics.messages_out.labels("v2", "Rumors")._value.get()
        go.send_v1(a.node_address, [gossip])  # every round, the same records again
        await asyncio.sleep(1.0)
        assert a.store.get(IH2, parse_addr(P2)) == version  # no new version ...
        assert a.metrics.messages_out.labels("v2", "Rumors")._value.get() == sent  # ... no rumor

    on_memory(body)


def test_a_v1_peer_of_a_replica_keeps_a_provider_its_origin_keeps_alive(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    async def body(c: MemoryCluster) -> None:
        ttl = 2.0
        old = await c.start(protocol="v1", ttl_s=ttl, gossip_interval_s=0.2)
        a = await c.start(ttl_s=ttl)
        b = await c.start(ttl_s=ttl, peers=(a.node_address,), v1_peers=(old.node_address,),
                          gossip_interval_s=0.2)
        await wait_until(lambda: all_alive([a, b]))
        await a.announce(IH, P1)

        async def refresh() -> None:
            while True:
                await a.announce(IH, P1)
                await asyncio.sleep(ttl / 4)

        async with asyncio.TaskGroup() as tg:
            refresher = tg.create_task(refresh())
            await wait_until(lambda: P1 in addrs(old), what="b's v1 gossip to reach old")
            await asyncio.sleep(3 * ttl)
            at_b, at_old = addrs(b), addrs(old)
            refresher.cancel()
        assert P1 in at_b
        assert P1 in at_old

    on_memory(body)


def test_v1_lookups_are_answered_and_an_overlay_lookup_asks_members(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    async def body(c: MemoryCluster) -> None:
        nodes = await c.cluster(3)
        await wait_until(lambda: all_alive(nodes))
        await nodes[0].announce(IH, P1, "p1")
        await nodes[2].announce(IH, P2)
        await wait_until(lambda: all(addrs(n) == {P1, P2} for n in nodes))
        client = MemoryTransport(c.net, "10.0.1.3:5000")
        for n in nodes:
            got = await client.ask(n.node_address, IH, 1.0)
            assert sorted(r.addr for r in got) == sorted(parse_addr(p) for p in (P1, P2))
            assert sorted(p.addr for p in await n.lookup(IH)) == [P1, P2]
        # an overlay lookup reaches records a member holds that this one does not
        nodes[1].store.announce(IH2, parse_addr(P3), c.clock.wall_ns(), origin=0)
        assert [p.addr for p in await nodes[0].lookup(IH2)] == [P3]

    on_memory(body)
