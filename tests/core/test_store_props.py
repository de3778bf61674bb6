"""The store's laws as properties: merge is commutative, associative and idempotent, expiry
commutes with merge, merge keeps the greatest record, lookups are sorted, limited and live;
and a stateful model of the store against a plain dict.
"""

from __future__ import annotations

import random

from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chisme.core.keys import AddrKey, format_addr
from chisme.core.records import (
    FLAG_SEEDER,
    FLAG_TOMBSTONE,
    Provider,
    Record,
    order_key,
    to_provider,
)
from chisme.core.store import Replication, Store, lookup_rank

S = 1_000_000_000
NOW = 1_764_000_000 * S
TTL = 90 * S
TOMB_TTL = 300 * S  # longer than TTL: the case where tombstones and records expire apart
SKEW = 5 * S
KEYS = ["3f2a" * 10, "beef" * 10, "k"]
ADDRS: list[AddrKey] = [
    bytes([10, 0, 0, i, 0x1A, 0xE1]) for i in range(1, 6)
] + [bytes(15) + b"\x01\x1a\xe1", "peer.example:6881"]
PIDS = [b"", b"-qB4650-abcdefghijkl", b"-TR3000-" + b"x" * 30, b"\xff" * 21]

Snapshot = dict[tuple[str, AddrKey], Record]


def new_store(origin: int = 0) -> Store:
    """A store; with ``origin``, one whose first-hand records are that origin's."""
    hooks = Replication(origin, lambda ih, old, new: None, lambda: True) if origin else None
    return Store(TTL, tombstone_ttl_ns=TOMB_TTL, max_clock_skew_ns=SKEW,
                 max_per_key=10**6, max_records=10**9, replication=hooks)


# A stamp is an offset from "now" in seconds (dead, live, within or beyond the skew),
# or one of the special values merge must normalise: 0 and far in the future.
_offsets = st.one_of(
    st.integers(-400, 10).map(lambda s: s * S),
    st.integers(-3, 3),  # ties and near-ties at the nanosecond
    st.sampled_from([-TTL, -TTL - 1, -TOMB_TTL, -TOMB_TTL - 1, SKEW, SKEW + 1]),
)


@st.composite
def records(draw: st.DrawFn, now: int = NOW, addrs: list[AddrKey] = ADDRS) -> Record:
    special = draw(st.sampled_from([None] * 8 + [0, 2**62]))
    seen = now + draw(_offsets) if special is None else special
    return Record(
        draw(st.sampled_from(addrs)),
        seen,
        draw(st.sampled_from(PIDS)),
        draw(st.sampled_from([0, FLAG_SEEDER, FLAG_TOMBSTONE, FLAG_TOMBSTONE | FLAG_SEEDER, 4])),
        draw(st.integers(0, 3)),
        draw(st.sampled_from([0, 0, 1, 2, 2**64 - 1])),  # v2 origin version
    )


# few keys and addresses, so that records collide and merges have something to decide
batches = st.lists(st.tuples(st.sampled_from(KEYS[:2]), records(addrs=ADDRS[:3])), max_size=20)
Batch = list[tuple[str, Record]]


def apply(store: Store, batch: Batch, now: int) -> Store:
    for key, rec in batch:
        store.merge(key, [rec], now)
    return store


def state(batch: Batch, now: int = NOW) -> Snapshot:
    return apply(new_store(), batch, now).snapshot()


def join(*snaps: Snapshot, now: int = NOW) -> Snapshot:
    store = new_store()
    for snap in snaps:
        for (key, _), rec in snap.items():
            store.merge(key, [rec], now)
    return store.snapshot()


def normalise(r: Record, now: int) -> Record:
    """What merge makes of an incoming record (docs/WIRE.md: 0 is now, far future is now)."""
    seen = now if r.last_seen_ns == 0 or r.last_seen_ns > now + SKEW else r.last_seen_ns
    if r.flags & FLAG_TOMBSTONE:
        return Record(r.addr, seen, b"", FLAG_TOMBSTONE, r.origin, r.version)
    return Record(r.addr, seen, r.peer_id, r.flags & FLAG_SEEDER, r.origin, r.version)


def alive(r: Record, now: int, leases: dict[int, int] | None = None) -> bool:
    if r.tombstone:
        return r.last_seen_ns >= now - TOMB_TTL
    leased = bool(leases) and r.origin != 0 and (leases or {}).get(r.origin, 0) >= now
    return r.last_seen_ns >= now - TTL or leased


# -- the laws ----------------------------------------------------------------------------


@given(batches, batches)
def test_merge_is_commutative(a: Batch, b: Batch) -> None:
    assert state(a + b) == state(b + a)
    assert join(state(a), state(b)) == join(state(b), state(a))


@given(batches, batches, batches)
def test_merge_is_associative(a: Batch, b: Batch, c: Batch) -> None:
    sa, sb, sc = state(a), state(b), state(c)
    assert join(join(sa, sb), sc) == join(sa, join(sb, sc)) == state(a + b + c)


@given(batches)
def test_merge_is_idempotent(a: Batch) -> None:
    store = apply(new_store(), a, NOW)
    once = store.snapshot()
    for key in KEYS[:2]:
        again = store.merge(key, [rec for k, rec in a if k == key], NOW)
        assert (again.inserted, again.replaced, again.changed) == (0, 0, [])
    assert store.snapshot() == once
    assert join(once, once) == once


@given(batches)
def test_merge_is_order_insensitive(a: Batch) -> None:
    shuffled = list(a)
    random.Random(len(a)).shuffle(shuffled)
    assert state(shuffled) == state(a)
    one_call = new_store()
    for key in KEYS[:2]:
        one_call.merge(key, [rec for k, rec in a if k == key], NOW)
    assert one_call.snapshot() == state(a)


@given(batches)
def test_merge_keeps_the_greatest_record(a: Batch) -> None:
    expected: Snapshot = {}
    for key, raw in a:
        rec = normalise(raw, NOW)
        if not alive(rec, NOW):
            continue
        cur = expected.get((key, rec.addr))
        if cur is None or order_key(rec) > order_key(cur):
            expected[key, rec.addr] = rec
    assert state(a) == expected


@given(batches, batches, st.integers(0, 500))
def test_expiry_commutes_with_merge(a: Batch, b: Batch, later_s: int) -> None:
    """sweep_all(merge(A, B)) == merge(sweep_all(A), sweep_all(B)) at a later instant."""
    later = NOW + later_s * S
    left = apply(new_store(), a, NOW)
    for (key, _), rec in state(b).items():
        left.merge(key, [rec], later)
    left.sweep_all(later)

    swept_a = apply(new_store(), a, NOW)
    swept_a.sweep_all(later)
    swept_b = apply(new_store(), b, NOW)
    swept_b.sweep_all(later)
    right = new_store()
    for snap in (swept_a.snapshot(), swept_b.snapshot()):
        for (key, _), rec in snap.items():
            right.merge(key, [rec], later)
    assert left.snapshot() == right.snapshot()
    assert right.sweep_all(later) == 0


@given(batches, st.integers(0, 200), st.integers(-1, 8))
def test_lookup_is_sorted_limited_and_live(a: Batch, later_s: int, limit: int) -> None:
    store = apply(new_store(), a, NOW)
    later = NOW + later_s * S
    snap = store.snapshot()
    for key in KEYS[:2]:
        live = sorted(
            (r for (k, _), r in snap.items() if k == key and not r.tombstone and alive(r, later)),
            key=lookup_rank,
            reverse=True,
        )
        want = live[:limit] if limit > 0 else live
        assert store.live_records(key, later, limit) == want
        assert store.lookup(key, later, limit) == [to_provider(r) for r in want]


# -- the store against a plain dict ------------------------------------------------------


class StoreModel(RuleBasedStateMachine):
    """Every operation on a Store and on a dict of the greatest record per (key, addr).

    The dict keeps expired records until the store is seen to free them: only the store
    knows which expired records a partial sweep has freed, and it may free only those.
    """

    def __init__(self) -> None:
        super().__init__()
        self.store = new_store()
        self.model: Snapshot = {}
        self.leases: dict[int, int] = {}
        self.now = NOW
        self.rng = random.Random(0)

    @initialize(seed=st.integers(0, 2**32))
    def seed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    # -- the model's view

    def _alive(self, r: Record) -> bool:
        return alive(r, self.now, self.leases)

    def _view(self) -> Snapshot:
        return {k: r for k, r in self.model.items() if self._alive(r)}

    def _store_view(self) -> Snapshot:
        return {k: r for k, r in self.store.snapshot().items() if self._alive(r)}

    def _stamp(self, key: str, addr: AddrKey) -> int:
        prev = self.model.get((key, addr))
        return self.now if prev is None else max(self.now, prev.last_seen_ns + 1)

    # -- rules

    @rule(key=st.sampled_from(KEYS), addr=st.sampled_from(ADDRS), pid=st.sampled_from(PIDS),
          seeder=st.booleans(), origin=st.integers(0, 3))
    def announce(self, key: str, addr: AddrKey, pid: bytes, seeder: bool, origin: int) -> None:
        expected = Record(addr, self._stamp(key, addr), pid, FLAG_SEEDER if seeder else 0, origin)
        got = self.store.announce(key, addr, self.now, peer_id=pid, seeder=seeder, origin=origin)
        assert got == expected
        self.model[key, addr] = expected

    @rule(key=st.sampled_from(KEYS), addr=st.sampled_from(ADDRS), origin=st.integers(0, 3))
    def remove(self, key: str, addr: AddrKey, origin: int) -> None:
        expected = Record(addr, self._stamp(key, addr), b"", FLAG_TOMBSTONE, origin)
        assert self.store.remove(key, addr, self.now, origin=origin) == expected
        self.model[key, addr] = expected

    @rule(key=st.sampled_from(KEYS), data=st.data())
    def merge(self, key: str, data: st.DataObject) -> None:
        batch = data.draw(st.lists(records(self.now), max_size=8))
        inserted = replaced = 0
        changed = []
        for raw in batch:
            rec = normalise(raw, self.now)
            if not self._alive(rec):
                continue
            old = self.model.get((key, rec.addr))
            if old is not None and self._alive(old):
                if order_key(rec) <= order_key(old):
                    continue
                replaced += 1
            else:
                inserted += 1
            self.model[key, rec.addr] = rec
            changed.append(rec)
        result = self.store.merge(key, batch, self.now)
        assert result.changed == changed
        assert (result.inserted, result.replaced) == (inserted, replaced)
        assert result.ignored == len(batch) - inserted - replaced

    @rule(seconds=st.sampled_from([0, 1, 5, 30, 60, 89, 90, 91, 200, 301, 1000]),
          nanos=st.integers(0, 2))
    def advance(self, seconds: int, nanos: int) -> None:
        self.now += seconds * S + nanos

    @rule(origin=st.integers(1, 3), seconds=st.integers(0, 400))
    def set_lease(self, origin: int, seconds: int) -> None:
        self.store.set_lease(origin, self.now + seconds * S)
        self.leases[origin] = self.now + seconds * S

    @rule(origin=st.integers(1, 3))
    def drop_lease(self, origin: int) -> None:
        self.store.drop_lease(origin)
        self.leases.pop(origin, None)

    @rule(max_keys=st.integers(1, 2))
    def sweep(self, max_keys: int) -> None:
        self.store.sweep(self.now, max_keys=max_keys)
        held = self.store.snapshot()
        for k in [k for k in self.model if k not in held]:
            assert not self._alive(self.model[k]), "sweep freed a live record"
            del self.model[k]

    @rule()
    def sweep_all(self) -> None:
        self.store.sweep_all(self.now)
        self.model = self._view()
        assert self.store.snapshot() == self.model
        assert self.store.num_records == sum(1 for r in self.model.values() if not r.tombstone)
        assert self.store.num_tombstones == sum(1 for r in self.model.values() if r.tombstone)
        assert set(self.store.keys()) == {k for k, _ in self.model}
        for key in KEYS:
            live = [r for (k, _), r in self.model.items() if k == key and not r.tombstone]
            seeders = sum(1 for r in live if r.seeder)
            assert self.store.counts(key)[:2] == (seeders, len(live) - seeders)

    @rule(key=st.sampled_from(KEYS), limit=st.integers(-1, 8))
    def lookup(self, key: str, limit: int) -> None:
        def presented(r: Record) -> Record:
            # a record alive on its origin's lease is vouched for half a TTL before the
            # lease's last renewal, if that is fresher than its stamp
            lease = self.leases.get(r.origin, 0) if r.origin else 0
            vouched = lease - TTL - TTL // 2
            if lease >= self.now and vouched > r.last_seen_ns:
                return r._replace(last_seen_ns=vouched)
            return r

        live = sorted(
            (presented(r) for (k, _), r in self._view().items() if k == key and not r.tombstone),
            key=lookup_rank,
            reverse=True,
        )
        want = live[:limit] if limit > 0 else live
        assert self.store.lookup(key, self.now, limit) == [to_provider(r) for r in want]

    @rule(key=st.sampled_from(KEYS), want=st.integers(0, 8), first=st.booleans(),
          exclude=st.sampled_from([*ADDRS, None]))
    def sample_peers(self, key: str, want: int, first: bool, exclude: AddrKey | None) -> None:
        got = self.store.sample_peers(key, self.now, want, self.rng, exclude=exclude,
                                      leechers_first=first)
        view = self._view()
        live = {a: r for (k, a), r in view.items() if k == key and not r.tombstone}
        assert len(got) <= want and len(set(got)) == len(got)
        assert exclude not in got
        assert set(got) <= set(live)
        if first:
            seeders = [live[a].seeder for a in got]
            assert seeders == sorted(seeders)  # every leecher before every seeder

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def get(self, data: st.DataObject) -> None:
        key, addr = data.draw(st.sampled_from(sorted(self.model, key=repr)))
        rec = self.model[key, addr]
        assert self.store.get(key, addr) == rec

    # -- invariants

    @invariant()
    def same_live_state(self) -> None:
        assert self._store_view() == self._view()

    @invariant()
    def counters_match_what_is_held(self) -> None:
        snap = self.store.snapshot()
        assert self.store.num_records == sum(1 for r in snap.values() if not r.tombstone)
        assert self.store.num_tombstones == sum(1 for r in snap.values() if r.tombstone)
        for key in KEYS:
            live = [r for (k, _), r in snap.items() if k == key and not r.tombstone]
            assert sum(self.store.counts(key)[:2]) == len(live)
            # the address-family counts a one-family sample relies on (Swarm.others)
            v4 = sum(1 for r in live if isinstance(r.addr, bytes) and len(r.addr) == 6)
            v6 = sum(1 for r in live if isinstance(r.addr, bytes) and len(r.addr) == 18)
            swarm = self.store._swarms.get(key)
            held = (swarm.n4, swarm.n6) if swarm is not None else (0, 0)
            assert held == (v4, v6)

    @invariant()
    def tombstones_match(self) -> None:
        for key in KEYS:
            want = {r for (k, _), r in self._view().items() if k == key and r.tombstone}
            assert set(self.store.tombstones(key, self.now)) == want


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# -- a small, full store: only its own invariants hold, but they must always hold ---------


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from([*KEYS, "x", "y", "z"]),
                          st.sampled_from(ADDRS), st.integers(0, 120)), max_size=60))
def test_a_bounded_store_keeps_its_bounds_and_counters(
    ops: list[tuple[int, str, AddrKey, int]],
) -> None:
    store = Store(TTL, tombstone_ttl_ns=TOMB_TTL, max_per_key=3, max_records=7)
    now = NOW
    rng = random.Random(1)
    for op, key, addr, dt in ops:
        now += dt * S // 4
        if op == 0:
            store.announce(key, addr, now, seeder=dt % 2 == 0)
        elif op == 1:
            store.remove(key, addr, now)
        elif op == 2:
            store.merge(key, [Record(addr, now - dt * S, b"", dt % 2, 0)], now)
        elif op == 3:
            store.sweep(now, max_keys=2)
        else:
            store.sample_peers(key, now, 3, rng)
        snap = store.snapshot()
        assert store.num_records == sum(1 for r in snap.values() if not r.tombstone) <= 7
        assert store.num_tombstones == sum(1 for r in snap.values() if r.tombstone)
        for k in store.keys():
            live = [r for (kk, _), r in snap.items() if kk == k and not r.tombstone]
            tombs = [r for (kk, _), r in snap.items() if kk == k and r.tombstone]
            assert len(live) <= 3 and len(tombs) <= 3
            assert sum(store.counts(k)[:2]) == len(live)
            got = store.lookup(k, now)
            assert all(isinstance(p, Provider) for p in got)
            assert [p.last_seen_ns for p in got] == sorted(
                (p.last_seen_ns for p in got), reverse=True)
            assert {p.addr for p in got} <= {format_addr(r.addr) for r in live}


# -- the tracker's one-call announce is announce + sample_peers + counts, draw for draw ----


_A = (KEYS[0], ADDRS[0], PIDS[1], False)


@settings(max_examples=200, deadline=None)
@example(local_origin=0, family=0, ops=[(1, *_A, 2, 0), (0, *_A, 3, 0)])  # v1 copy, then ours
@example(local_origin=7, family=0, ops=[(0, *_A, 3, 0), (0, *_A, 3, 0), (0, *_A, 3, 100)])
@given(
    local_origin=st.sampled_from([0, 7]),
    family=st.sampled_from([0, 4, 6]),
    ops=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.sampled_from(KEYS[:2]),
            st.sampled_from(ADDRS[:2] + ADDRS[-2:]),  # few: the same provider again, often
            st.sampled_from(PIDS[:3]),
            st.booleans(),
            st.integers(-1, 6),
            st.sampled_from([0, 1, 30, 100]),
        ),
        max_size=60,
    ),
)
def test_announce_sample_is_announce_then_sample(
    local_origin: int, family: int, ops: list[tuple[int, str, AddrKey, bytes, bool, int, int]]
) -> None:
    """Two stores, one driven by ``announce_sample``, the other by ``announce``,
    ``sample_peers`` and ``counts``: same records, same replication changes, same answers
    (the same random draws), through refreshes, peer id and seeder changes, merges by other
    origins, leases, removals and expiry (the sampler's checked path)."""
    fused, plain = new_store(local_origin), new_store(local_origin)
    for s in (fused, plain):
        s.set_lease(3, NOW + 50 * S)
    rng_f, rng_p = random.Random(5), random.Random(5)
    now = NOW
    for op, key, addr, pid, seeder, want, dt in ops:
        now += dt * S
        if op == 0:
            got = fused.announce_sample(
                key, addr, now, peer_id=pid, seeder=seeder, want=want, rng=rng_f, family=family
            )
            plain.announce(key, addr, now, peer_id=pid, seeder=seeder)
            peers = plain.sample_peers(
                key, now, want, rng_p, exclude=addr, leechers_first=seeder, family=family
            )
            assert got == (*plain.counts(key)[:2], peers)
            assert addr not in peers
        elif op == 1:
            origin = 3 if want % 2 else 0  # another member's, or a v1 copy
            rec = Record(addr, now - S, pid, FLAG_SEEDER if seeder else 0, origin, 9)
            for s in (fused, plain):
                s.merge(key, [rec], now)
        elif op == 2:
            for s in (fused, plain):
                s.remove(key, addr, now)
        else:
            for s in (fused, plain):
                s.sweep(now, max_keys=1)
        assert fused.snapshot() == plain.snapshot()
        assert fused.drain_changes() == plain.drain_changes()
