"""The v1 role (the original design's replication) on the in-memory network, driven by hand:
what it pushes, when, and how it merges what its peers push."""

from __future__ import annotations

import random

from chisme.cluster.role import QuietObserver
from chisme.cluster.v1 import V1Role
from chisme.core.keys import parse_addr
from chisme.core.records import Record
from chisme.core.store import Store
from chisme.net.memory import Batch, MemoryNetwork, MemoryTransport, NetworkClock, NodeCodec
from chisme.wire import v1

S = 1_000_000_000
IH = "3f2a" * 10
P1 = parse_addr("10.0.0.1:6881")


class Inbox:
    """An endpoint that keeps what it receives (a peer of the original design)."""

    def __init__(self) -> None:
        self.got: list[object] = []

    def deliver(self, src: str, msg: object) -> None:
        self.got.extend(msg.msgs if isinstance(msg, Batch) else (msg,))

    def on_timer(self) -> None:
        pass


def setup(peers: int = 2) -> tuple[MemoryNetwork, V1Role, list[Inbox]]:
    net = MemoryNetwork(NodeCodec(), rng=random.Random(1), verify=True)
    inboxes = []
    for i in range(peers):
        t = MemoryTransport(net, f"10.0.1.{i}:7070")
        inbox = Inbox()
        t.attach(inbox)
        inboxes.append(inbox)
    me = MemoryTransport(net, "10.0.0.100:7070")
    role = V1Role(Store(90 * S), me, NetworkClock(net), random.Random(2), QuietObserver(),
                  node_id="me", peers=[f"10.0.1.{i}:7070" for i in range(peers)],
                  interval_s=8.0, jitter=0.1)
    me.attach(role)
    return net, role, inboxes


def test_a_first_hand_change_is_pushed_to_every_peer_at_once() -> None:
    net, role, inboxes = setup()
    rec = role.store.announce(IH, P1, NetworkClock(net).wall_ns(), peer_id=b"p")
    role.published(IH, rec)
    tomb = role.store.remove(IH, P1, NetworkClock(net).wall_ns() + 1)
    role.published(IH, tomb)
    net.run_until(S // 10)
    for inbox in inboxes:
        assert inbox.got == [v1.Announce(IH, [rec]), v1.Gossip(IH, [], removed=[tomb])]


def test_the_full_push_runs_every_interval_with_jitter() -> None:
    net, role, inboxes = setup()
    role.store.announce(IH, P1, NetworkClock(net).wall_ns())
    role.start()
    rounds: list[int] = []
    seen = 0
    for step in range(1, 441):  # 44 virtual seconds in 0.1 s steps
        net.run_until(step * S // 10)
        if len(inboxes[0].got) > seen:
            seen = len(inboxes[0].got)
            rounds.append(step)
    gaps = [b - a for a, b in zip([0, *rounds], rounds, strict=False)]
    assert len(rounds) == 5  # at 8 s +- 10 %, then every 8 s +- 10 %
    assert all(72 <= g <= 89 for g in gaps), gaps  # 8 s +- 10 %, in 0.1 s steps
    assert all(isinstance(m, v1.Gossip) and m.info_hash == IH for m in inboxes[1].got)


def test_what_peers_push_is_merged_with_its_download_counters() -> None:
    """The simulator's old copy of this role never merged ``downloaded``: the roles are now the
    same code in both."""
    net, role, _ = setup()
    stamp = NetworkClock(net).wall_ns() - S
    role.deliver("10.0.1.0:7070", v1.Gossip(IH, [Record(P1, stamp)], {"other": 3}))
    assert role.store.get(IH, P1) == Record(P1, stamp)
    assert role.store.counts(IH).downloaded == 3
    # a stamp far in the future is clamped to this node's now (a v1 stamp is another clock)
    role.deliver("10.0.1.0:7070", v1.Announce(IH, [Record(P1, stamp + 3600 * S)]))
    held = role.store.get(IH, P1)
    assert held is not None and held.last_seen_ns == NetworkClock(net).wall_ns()


def test_the_peers_are_the_fanout() -> None:
    _, role, _ = setup(3)
    assert role.has_fanout() and role.fanout() == ["10.0.1.0:7070", "10.0.1.1:7070",
                                                   "10.0.1.2:7070"]
    assert [m["state"] for m in role.members()] == ["static"] * 3
