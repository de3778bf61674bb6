"""The v2 role on the in-memory network: its one timer follows the engine's deadlines, a local
change pokes it, and a seed of the original design becomes a v1 peer."""

from __future__ import annotations

import random

from chisme.cluster.role import QuietObserver
from chisme.cluster.v2 import V2Role
from chisme.core.keys import parse_addr
from chisme.core.replication import ClusterConfig
from chisme.core.store import Replication, Store
from chisme.core.swim import SwimConfig
from chisme.net.memory import MemoryNetwork, MemoryTransport, NetworkClock, NodeCodec

S = 1_000_000_000
IH = "3f2a" * 10


def make_role(net: MemoryNetwork, addr: str, seeds: list[str]) -> V2Role:
    transport = MemoryTransport(net, addr)

    def store(replication: Replication) -> Store:
        return Store(90 * S, replication=replication)

    role = V2Role(
        store, transport, NetworkClock(net), random.Random(addr), QuietObserver(),
        member_id=f"{addr}.1", addr=addr, seeds=seeds,
        config=ClusterConfig(swim=SwimConfig.local()), v1_peers=[], v1_interval_s=8.0,
        v1_jitter=0.1,
    )
    transport.attach(role)
    return role


def test_a_two_member_cluster_forms_and_a_poke_sends_a_change_at_once() -> None:
    net = MemoryNetwork(NodeCodec(), rng=random.Random(1), verify=True)
    a = make_role(net, "10.0.0.1:7070", [])
    b = make_role(net, "10.0.0.2:7070", ["10.0.0.1:7070"])
    a.start()
    b.start()
    net.run_until(2 * S)
    assert a.has_fanout() and b.fanout() == ["10.0.0.1:7070"]
    clock = NetworkClock(net)
    rec = a.store.announce(IH, parse_addr("10.9.0.1:6881"), clock.wall_ns())
    a.published(IH, rec)  # pokes: the rumor goes at the next gossip tick, not a poll later
    net.run_until(net.now_ns + 250_000_000)
    assert b.store.get(IH, rec.addr) == rec


def test_a_seed_of_the_original_design_becomes_a_v1_peer_once() -> None:
    net = MemoryNetwork(NodeCodec(), rng=random.Random(1))
    role = make_role(net, "10.0.0.1:7070", ["10.0.0.9:7070"])
    role.original_seed("10.0.0.9:7070")
    role.original_seed("10.0.0.9:7070")
    assert role.push.peers == ["10.0.0.9:7070"]
    assert role.original_seeds == ["10.0.0.9:7070"]
    rows = [r for r in role.members() if r["state"] == "v1"]
    assert rows == [{"id": "", "addr": "10.0.0.9:7070", "state": "v1", "incarnation": 0}]
