"""ClusterEngine (membership + replication) on a tiny deterministic in-test network.

Every message goes through the real v2 codec (encode, then decode) so the codec is exercised
on exactly what the engines send.
"""

from __future__ import annotations

import heapq
import random

import pytest

from chisme.core.keys import parse_addr
from chisme.core.records import Record
from chisme.core.replication import (
    ClusterConfig,
    ClusterEngine,
    Out,
    ReplicationConfig,
    SyncOk,
    SyncRoot,
    record_hash,
)
from chisme.core.store import Replication, Store
from chisme.core.swim import MemberState, SwimConfig
from chisme.errors import InvalidInput
from chisme.wire import v2

S = 1_000_000_000
WALL0 = 1_790_000_000 * S
TTL = 30 * S


def _store(replication: Replication) -> Store:
    return Store(TTL, tombstone_ttl_ns=2 * TTL, replication=replication)


class Net:
    def __init__(self, n: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.now = 0
        self.queue: list[tuple[int, int, str, str, bytes]] = []
        self.seq = 0
        self.engines: dict[str, ClusterEngine] = {}
        self.down: set[str] = set()
        self.sent: list[tuple[str, object]] = []
        cfg = ClusterConfig(swim=SwimConfig.local(), replication=ReplicationConfig())
        addrs = [f"127.0.0.{i + 1}:7070" for i in range(n)]
        for i, addr in enumerate(addrs):
            eng = ClusterEngine(
                f"node{i}", addr, _store, config=cfg, rng=random.Random(seed * 100 + i),
                seeds=[addrs[0]] if i else [],
            )
            self.engines[addr] = eng
            self.send(addr, eng.start(self.wall, self.now))

    @property
    def wall(self) -> int:
        return WALL0 + self.now

    def send(self, src: str, outs: list[Out]) -> None:
        for out in outs:
            data = v2.encode(out.msg)
            self.sent.append((src, out.msg))
            self.seq += 1
            delay = 1_000_000 + self.rng.randrange(2_000_000)
            heapq.heappush(self.queue, (self.now + delay, self.seq, out.to, src, data))

    def run(self, seconds: float) -> None:
        end = self.now + int(seconds * S)
        while self.now < end:
            step = self.now + 20_000_000
            while self.queue and self.queue[0][0] <= step:
                t, _, to, src, data = heapq.heappop(self.queue)
                self.now = max(self.now, t)
                if to in self.down or src in self.down or to not in self.engines:
                    continue
                eng = self.engines[to]
                self.send(to, eng.on_message(src, v2.decode(data), self.wall, self.now))
            self.now = step
            for addr, eng in self.engines.items():
                if addr not in self.down and eng.next_deadline_ns() <= self.now:
                    self.send(addr, eng.tick(self.wall, self.now))


def holders(net: Net, ih: str, addr: bytes | str) -> int:
    return sum(
        1
        for a, e in net.engines.items()
        if a not in net.down and any(r.addr == addr for r in e.store.live_records(ih, net.wall))
    )


def test_members_join_and_an_announce_reaches_everyone() -> None:
    net = Net(6)
    net.run(5)
    for eng in net.engines.values():
        assert eng.membership.num_alive() == 6
    a0 = next(iter(net.engines.values()))
    provider = parse_addr("10.0.0.5:6881")
    a0.store.announce("abc", provider, net.wall, peer_id=b"-qB-1")
    net.run(3)
    assert holders(net, "abc", provider) == 6
    roots = {e.replicator.digest.root for e in net.engines.values()}
    assert len(roots) == 1 and roots != {0}


def test_refresh_costs_nothing_and_idle_syncs_are_root_only() -> None:
    net = Net(4)
    a0 = next(iter(net.engines.values()))
    provider = parse_addr("10.0.0.5:6881")
    net.run(4)
    a0.store.announce("abc", provider, net.wall)
    net.run(3)
    before = len(net.sent)
    for _ in range(5):
        a0.store.announce("abc", provider, net.wall)  # refreshes: same version
        net.run(1)
    later = net.sent[before:]
    assert not any(type(m).__name__ in ("Rumors", "Delta") for _, m in later)
    syncs = [m for _, m in later if isinstance(m, SyncRoot | SyncOk)]
    assert syncs  # anti-entropy still runs, and answers "equal" at once


def test_remove_and_origin_expiry_spread_as_tombstones() -> None:
    net = Net(5)
    engines = list(net.engines.values())
    p1, p2 = parse_addr("10.0.0.5:6881"), parse_addr("10.0.0.6:6881")
    net.run(4)
    engines[1].store.announce("k", p1, net.wall)
    engines[2].store.announce("k", p2, net.wall)
    net.run(3)
    assert holders(net, "k", p1) == 5 and holders(net, "k", p2) == 5
    engines[1].store.remove("k", p1, net.wall)
    net.run(3)
    assert holders(net, "k", p1) == 0
    # p2 stops announcing: its origin's own TTL expires it and tombstones it everywhere
    for _ in range(int(TTL / S) + 5):
        net.run(1)
        for e in engines:
            e.store.sweep(net.wall)
    assert holders(net, "k", p2) == 0


def test_a_dead_origins_records_expire_everywhere_after_the_ttl() -> None:
    net = Net(5)
    engines = list(net.engines.items())
    addr1, e1 = engines[1]
    p = parse_addr("10.0.0.9:6881")
    net.run(4)
    e1.store.announce("x", p, net.wall)
    net.run(3)
    assert holders(net, "x", p) == 5
    net.down.add(addr1)
    net.run(15)
    for addr, e in engines:
        if addr != addr1:
            assert e.membership.get("node1") is not None
            assert e.membership.get("node1").state in (MemberState.DEAD, MemberState.SUSPECT)
    assert holders(net, "x", p) == 4  # still held on the lease ...
    net.run(TTL / S + 5)
    for _, e in engines:
        e.store.sweep_all(net.wall)
    assert holders(net, "x", p) == 0  # ... which ran out a TTL after the origin died


def test_anti_entropy_repairs_what_rumors_missed() -> None:
    net = Net(4)
    engines = list(net.engines.items())
    net.run(4)
    # a node that was partitioned while changes happened
    net.down.add(engines[3][0])
    for i in range(50):
        engines[0][1].store.announce(f"key{i}", parse_addr(f"10.0.1.{i}:6881"), net.wall)
    net.run(8)
    net.down.clear()
    net.run(20)
    roots = {e.replicator.digest.root for _, e in engines}
    assert len(roots) == 1
    assert engines[3][1].store.num_records == 50


def test_download_counters_converge_by_rumor_and_delta() -> None:
    net = Net(5)
    engines = list(net.engines.values())
    p = parse_addr("10.0.0.5:6881")
    net.run(4)
    engines[0].store.announce("t", p, net.wall)
    net.run(2)
    for i, e in enumerate(engines[:3]):
        e.store.count_completed("t", f"node{i}", by=i + 1)
        e.replicator.publish_counter("t", f"node{i}", i + 1)
    net.run(4)
    for e in engines:
        assert e.store.counts("t").downloaded == 1 + 2 + 3


def test_a_record_forged_in_a_live_members_name_is_retracted() -> None:
    net = Net(4)
    engines = list(net.engines.values())
    net.run(4)
    victim = engines[0]
    forged = Record(parse_addr("6.6.6.6:666"), net.wall, b"", 0, victim.origin, 99)
    engines[1].store.merge("f", [forged], net.wall, clamp=False)
    engines[1].replicator.publish([("f", forged)])
    net.run(6)
    assert holders(net, "f", forged.addr) == 0


def test_the_engine_builds_its_store_tied_to_its_origin_digest_and_membership() -> None:
    eng = ClusterEngine("n0", "127.0.0.1:7070", _store, rng=random.Random(1))
    assert eng.store.local_origin == eng.origin
    rec = eng.store.announce("k", parse_addr("10.0.0.5:6881"), WALL0)
    assert (rec.origin, rec.version) == (eng.origin, 1)
    digest = eng.replicator.digest  # told by the store itself, from its first record
    assert (digest.count, digest.root) == (1, record_hash("k", rec))
    assert not eng.store.has_changes()  # alone: nobody to rumor it to
    with pytest.raises(InvalidInput):  # a store that is not tied to the engine
        ClusterEngine("n1", "127.0.0.1:7071", lambda _: Store(TTL), rng=random.Random(1))


def test_a_replica_presents_a_leased_record_half_a_ttl_before_its_last_renewal() -> None:
    """docs/v2.md §4b: the origin shows the provider's last announce; a replica, whose stamp
    is the last change (refreshes are silent), shows about now - ttl/2 once that is fresher."""
    net = Net(2)
    origin, replica = net.engines.values()
    p = parse_addr("10.0.0.5:6881")
    net.run(4)
    first = origin.store.announce("k", p, net.wall)
    net.run(2)
    origin.store.announce("k", p, net.wall)  # a refresh: no traffic
    refreshed = net.wall
    net.run(TTL / S * 0.75)

    def shown(eng: ClusterEngine) -> int:
        (rec,) = eng.store.live_records("k", net.wall)
        return rec.last_seen_ns

    assert shown(origin) == refreshed
    renew_every = min(ClusterConfig().lease_renew_ns, TTL // 4)
    assert net.wall - TTL // 2 - renew_every <= shown(replica) <= net.wall - TTL // 2
    held = replica.store.get("k", p)
    assert held == first  # the replica never heard of the refresh: it holds the last change
