"""The replicator on its own: two members' stores over a hand-driven exchange (a sync repairs
both ways, then answers "equal"), rumors that fit a datagram, and no backlog when alone."""

from __future__ import annotations

import random

from chisme.core.records import Record
from chisme.core.replication.digest import Digest
from chisme.core.replication.messages import Out, Rumors, SyncOk, SyncRoot
from chisme.core.replication.replicator import ReplicationConfig, Replicator
from chisme.core.store import Replication, Store
from chisme.wire import v2

S = 1_000_000_000
NOW = 1_790_000_000 * S
TTL = 90 * S


class _View:
    """Membership as the replicator sees it: the other member, or nobody."""

    def __init__(self, other: str | None) -> None:
        self.others = [other] if other else []

    def random_alive(self, k: int) -> list[str]:
        return self.others[:k]

    def num_alive(self) -> int:
        return 1 + len(self.others)


def _member(origin: int, other: str | None) -> Replicator:
    digest = Digest()
    store = Store(TTL, replication=Replication(origin, digest.on_change, lambda: True))
    return Replicator(store, digest, _View(other), ReplicationConfig(), random.Random(origin))


def _addr(i: int) -> bytes:
    return bytes([10, 0, i // 256, i % 256, 0x1A, 0xE1])


def _exchange(members: dict[str, Replicator], outs: list[tuple[str, Out]]) -> list[object]:
    """Deliver until nothing is left to send; returns every message sent."""
    sent: list[object] = []
    while outs:
        src, out = outs.pop(0)
        sent.append(out.msg)
        outs.extend((out.to, o) for o in members[out.to].on_message(src, out.msg, NOW, 0))
    return sent


def test_a_sync_repairs_both_sides_then_finds_them_equal() -> None:
    a, b = _member(7, "b"), _member(9, "a")
    for i in range(30):
        a.store.announce(f"k{i % 7}", _addr(i), NOW, peer_id=b"-qB4650-abcdefghijkl")
    for i in range(5):
        b.store.announce("k1", _addr(100 + i), NOW, seeder=True)
    b.store.remove("k2", _addr(200), NOW)
    members = {"a": a, "b": b}
    sent = _exchange(members, [("a", o) for o in a.start_sync(0)])
    assert [type(m).__name__ for m in sent] == [
        "SyncRoot", "SyncGroups", "SyncBuckets", "Delta", "Delta"
    ]
    held = [
        {(ih, r.addr, r.origin, r.version) for ih, r in m.store.iter_all()} for m in (a, b)
    ]
    assert held[0] == held[1] and len(held[0]) == 36
    assert (a.digest.root, a.digest.count) == (b.digest.root, b.digest.count)
    again = _exchange(members, [("b", o) for o in b.start_sync(0)])
    root = again[0]
    assert isinstance(root, SyncRoot) and (root.root, root.size) == (b.digest.root, 36)
    assert again[1:] == [SyncOk(root.sync_id)]


def test_rumors_fit_a_datagram_and_a_lone_member_keeps_none() -> None:
    a = _member(7, "b")
    changes = [
        (f"{i:040x}", Record(_addr(i), NOW, b"-TR3000-" + b"x" * 40, 0, 7, i + 1))
        for i in range(200)
    ]
    a.publish(changes)
    outs = a.gossip_round()
    assert outs and all(isinstance(o.msg, Rumors) and not o.reliable for o in outs)
    limit = a.config.max_datagram_bytes
    assert all(len(v2.encode(o.msg)) <= limit for o in outs)
    alone = _member(7, None)
    alone.publish(changes)
    assert alone.gossip_round() == [] and len(alone.rumors) == 0
