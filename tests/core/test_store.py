"""The provider store, behaviour by behaviour: seed semantics, stamps, tombstones, expiry,
bounds, the seeder/leecher partition, peer sampling and completed counters.

Pure: a manual ``now``, seeded ``random.Random``.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from chisme.core.keys import AddrKey, format_addr, parse_addr
from chisme.core.records import (
    FLAG_SEEDER,
    FLAG_TOMBSTONE,
    MAX_PEER_ID_BYTES,
    Provider,
    Record,
)
from chisme.core.store import Counts, MergeResult, Replication, Store
from chisme.errors import InvalidInput

S = 1_000_000_000
NOW = 1_764_000_000 * S  # 2025-11-24, in ns
TTL = 90 * S
IH = "3f2a" * 10
IH2 = "beef" * 10


def ip(i: int, port: int = 6881) -> bytes:
    """The compact key of 10.x.y.z:port for a small integer i."""
    return bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]) + port.to_bytes(2, "big")


def live(addr: AddrKey, seen: int, peer_id: bytes = b"", seeder: bool = False,
         origin: int = 0) -> Record:
    return Record(addr, seen, peer_id, FLAG_SEEDER if seeder else 0, origin)


def tomb(addr: AddrKey, seen: int, origin: int = 0) -> Record:
    return Record(addr, seen, b"", FLAG_TOMBSTONE, origin)


def held(store: Store) -> int:
    """Records held, counted the slow way (to check ``num_records``)."""
    return sum(1 for r in store.snapshot().values() if not r.tombstone)


# -- construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl_ns": 0},
        {"ttl_ns": -1},
        {"ttl_ns": TTL, "max_per_key": 0},
        {"ttl_ns": TTL, "max_records": 0},
        {"ttl_ns": TTL, "tombstone_ttl_ns": TTL - 1},
    ],
)
def test_store_rejects_bad_config(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        Store(**kwargs)


# -- announce (seed behaviour) -----------------------------------------------------------


@pytest.mark.parametrize("key", ["", "a b", "x" * 129, "tab\there", "é"])
def test_announce_rejects_invalid_key(key: str) -> None:
    store = Store(TTL)
    with pytest.raises(InvalidInput):
        store.announce(key, ip(1), NOW)
    assert store.num_keys == 0 and store.num_records == 0


@pytest.mark.parametrize(
    "addr",
    [
        b"",
        "",
        b"\x0a\x00\x00\x01\x00",  # 5 bytes
        b"\x0a\x00\x00\x01\x00\x00",  # port 0
        bytes(18),  # [::]:0
        "1.2.3.4:80",  # an IP must be given as its compact key
        "Example.com:80",  # a name must be given lowercased
        "example.com:0",
        "example.com",
        parse_addr("[::1]:80")[:-2] + b"\x00\x00",
        bytes(10) + b"\xff\xff" + bytes([1, 2, 3, 4]) + b"\x00\x50",  # IPv4-mapped, not canonical
    ],
)
def test_announce_rejects_invalid_addr(addr: AddrKey) -> None:
    store = Store(TTL)
    with pytest.raises(InvalidInput):
        store.announce(IH, addr, NOW)
    store.announce(IH, ip(1), NOW)
    with pytest.raises(InvalidInput):  # also on a key that exists
        store.announce(IH, addr, NOW)
    assert store.num_records == 1
    assert [p.addr for p in store.lookup(IH, NOW)] == ["10.0.0.1:6881"]


def test_announce_rejects_long_peer_id_and_bad_origin() -> None:
    store = Store(TTL)
    store.announce(IH, ip(1), NOW)
    for kwargs in ({"peer_id": b"x" * (MAX_PEER_ID_BYTES + 1)}, {"origin": -1},
                   {"origin": 2**32}):
        for addr in (ip(1), ip(2)):  # the refresh path and the insert path
            with pytest.raises(InvalidInput):
                store.announce(IH, addr, NOW + S, **kwargs)  # type: ignore[arg-type]
    assert store.snapshot() == {(IH, ip(1)): live(ip(1), NOW)}
    assert store.lookup(IH, NOW + S) == [Provider("10.0.0.1:6881", NOW)]


def test_announce_accepts_dns_and_ipv6_keys() -> None:
    store = Store(TTL)
    store.announce(IH, "tracker.example.org:6881", NOW)
    store.announce(IH, parse_addr("[2001:db8::1]:6881"), NOW + 1)
    assert [p.addr for p in store.lookup(IH, NOW + 1)] == [
        "[2001:db8::1]:6881",
        "tracker.example.org:6881",
    ]


def test_announce_stamps_now() -> None:
    store = Store(TTL)
    rec = store.announce(IH, ip(1), NOW, peer_id=b"-qB4650-abcdefghijkl", seeder=True, origin=7)
    assert rec == Record(ip(1), NOW, b"-qB4650-abcdefghijkl", FLAG_SEEDER, 7)
    assert store.get(IH, ip(1)) == rec
    assert store.lookup(IH, NOW) == [Provider("10.0.0.1:6881", NOW, "-qB4650-abcdefghijkl", True)]
    assert store.counts(IH) == Counts(1, 0, 0)
    assert store.num_records == 1 and store.num_keys == 1 and IH in store


def test_announce_stamps_past_the_previous_stamp() -> None:
    store = Store(TTL)
    assert store.announce(IH, ip(1), NOW).last_seen_ns == NOW
    assert store.announce(IH, ip(1), NOW).last_seen_ns == NOW + 1  # same instant
    assert store.announce(IH, ip(1), NOW - S).last_seen_ns == NOW + 2  # clock went back
    # a peer's clock ran ahead (within the allowed skew): our announce still wins
    store.merge(IH, [live(ip(2), NOW + 3 * S)], NOW)
    assert store.announce(IH, ip(2), NOW).last_seen_ns == NOW + 3 * S + 1
    assert store.announce(IH, ip(1), NOW + 10 * S).last_seen_ns == NOW + 10 * S


def test_announce_over_an_unswept_expired_record_revives_it() -> None:
    store = Store(TTL)
    store.announce(IH, ip(1), NOW)
    later = NOW + 2 * TTL
    assert store.lookup(IH, later) == []
    assert store.announce(IH, ip(1), later).last_seen_ns == later
    assert store.lookup(IH, later) == [Provider("10.0.0.1:6881", later)]
    assert store.num_records == 1


# -- merge (seed behaviour and the fixes) ------------------------------------------------


def test_merge_inserts_and_keeps_the_freshest() -> None:
    store = Store(TTL)
    r = store.merge(IH, [live(ip(1), NOW - 5 * S), live(ip(2), NOW - 5 * S)], NOW)
    assert r == MergeResult(2, 0, 0, [live(ip(1), NOW - 5 * S), live(ip(2), NOW - 5 * S)])
    r = store.merge(IH, [live(ip(1), NOW - 6 * S), live(ip(2), NOW - 4 * S, b"p")], NOW)
    assert r == MergeResult(0, 1, 1, [live(ip(2), NOW - 4 * S, b"p")])
    assert store.get(IH, ip(1)) == live(ip(1), NOW - 5 * S)
    assert store.get(IH, ip(2)) == live(ip(2), NOW - 4 * S, b"p")
    assert store.merge(IH, [], NOW) == MergeResult(0, 0, 0, [])


def test_merge_stamps_zero_with_now() -> None:
    store = Store(TTL)
    r = store.merge(IH, [live(ip(1), 0)], NOW)
    assert r.changed == [live(ip(1), NOW)]
    assert store.get(IH, ip(1)) == live(ip(1), NOW)


def test_merge_clamps_future_stamps_beyond_the_skew() -> None:
    skew = 5 * S
    store = Store(TTL, max_clock_skew_ns=skew)
    store.merge(IH, [live(ip(1), NOW + skew), live(ip(2), NOW + skew + 1),
                     live(ip(3), 2**62)], NOW)
    assert store.get(IH, ip(1)) == live(ip(1), NOW + skew)  # within the skew: kept
    assert store.get(IH, ip(2)) == live(ip(2), NOW)
    assert store.get(IH, ip(3)) == live(ip(3), NOW)
    # a clamped record cannot pin itself: a later real announce replaces it
    store.merge(IH, [live(ip(3), NOW + S)], NOW + S)
    assert store.get(IH, ip(3)) == live(ip(3), NOW + S)


def test_merge_ignores_records_dead_on_arrival() -> None:
    store = Store(TTL)
    r = store.merge(IH, [live(ip(1), NOW - TTL - 1), live(ip(2), NOW - TTL)], NOW)
    assert (r.inserted, r.ignored) == (1, 1)
    assert store.get(IH, ip(1)) is None
    assert store.num_records == 1


def test_merge_breaks_ties_by_the_rest_of_the_record() -> None:
    a = live(ip(1), NOW, b"aaa")
    b = live(ip(1), NOW, b"bbb")
    c = live(ip(1), NOW, b"aaa", seeder=True)
    d = tomb(ip(1), NOW)
    for batch in ([a, b, c, d], [d, c, b, a], [b, d, a, c]):
        store = Store(TTL)
        for r in batch:
            store.merge(IH, [r], NOW)
        assert store.get(IH, ip(1)) == d  # a tombstone wins over a live record of its instant
    for batch in ([a, b, c], [c, b, a]):
        store = Store(TTL)
        store.merge(IH, batch, NOW)
        assert store.get(IH, ip(1)) == c  # then seeder over leecher


def test_merge_normalises_flags_and_tombstones() -> None:
    store = Store(TTL)
    store.merge(IH, [Record(ip(1), NOW, b"p", FLAG_SEEDER | 0x40, 3),
                     Record(ip(2), NOW, b"p", FLAG_TOMBSTONE | FLAG_SEEDER, 3)], NOW)
    assert store.get(IH, ip(1)) == Record(ip(1), NOW, b"p", FLAG_SEEDER, 3)
    assert store.get(IH, ip(2)) == tomb(ip(2), NOW, 3)


def test_merge_validates_the_whole_batch_before_applying_any() -> None:
    store = Store(TTL)
    bad_batches = [
        [live(ip(1), NOW), live(ip(2), NOW, origin=2**32)],
        [live(ip(1), NOW), live(ip(2), NOW, origin=-1)],
        [live(ip(1), NOW), live(ip(2), NOW, b"x" * (MAX_PEER_ID_BYTES + 1))],
        [live(ip(1), NOW), Record(ip(2), NOW, b"", 0, 1, -1)],  # version out of range
        [live(ip(1), NOW), Record(ip(2), NOW, b"", 0, 1, 2**64)],
        [live(ip(1), NOW), Record(ip(2), NOW, b"", FLAG_TOMBSTONE, 1, 2**64)],
    ]
    for batch in bad_batches:
        with pytest.raises(InvalidInput):
            store.merge(IH, batch, NOW)
    assert store.snapshot() == {} and store.num_records == 0
    store.merge(IH, [live(ip(1), NOW, origin=2**32 - 1)], NOW)
    assert store.get(IH, ip(1)) == live(ip(1), NOW, origin=2**32 - 1)
    store.merge(IH, [Record(ip(2), NOW, b"p", FLAG_SEEDER, 1, 2**64 - 1)], NOW)
    assert store.get(IH, ip(2)) == Record(ip(2), NOW, b"p", FLAG_SEEDER, 1, 2**64 - 1)


def test_merge_replaces_an_unswept_expired_record_with_anything_live() -> None:
    # What a store holds must not depend on when its sweeper last ran.
    store = Store(10 * S, tombstone_ttl_ns=100 * S)
    store.merge(IH, [live(ip(1), NOW)], NOW)
    later = NOW + 50 * S  # the record expired but was not swept
    old_tomb = tomb(ip(1), NOW - S)  # older than the expired record, still a live tombstone
    r = store.merge(IH, [old_tomb], later)
    assert r.inserted == 1
    assert store.get(IH, ip(1)) == old_tomb
    assert store.num_records == 0 and store.num_tombstones == 1
    swept = Store(10 * S, tombstone_ttl_ns=100 * S)
    swept.merge(IH, [live(ip(1), NOW)], NOW)
    swept.sweep_all(later)
    swept.merge(IH, [old_tomb], later)
    assert swept.snapshot() == store.snapshot()


# -- lookup ------------------------------------------------------------------------------


def test_lookup_returns_live_only_freshest_first_and_limited() -> None:
    store = Store(TTL)
    for i in range(10):
        store.merge(IH, [live(ip(i), NOW - i * 20 * S)], NOW)  # i >= 5 are dead on arrival
    store.announce(IH, ip(100), NOW - 2 * TTL)  # own announce in the past: expired at NOW
    got = store.lookup(IH, NOW)
    assert [p.last_seen_ns for p in got] == [NOW - i * 20 * S for i in range(5)]
    assert store.lookup(IH, NOW, limit=2) == got[:2]
    assert store.lookup(IH, NOW, limit=0) == got
    assert store.lookup(IH, NOW, limit=-1) == got
    assert store.lookup(IH, NOW, limit=100) == got
    # the boundary: last_seen >= now - ttl is live
    assert [p.addr for p in store.lookup(IH, NOW + 20 * S + 10 * S)] == [
        format_addr(ip(i)) for i in range(4)
    ]
    assert len(store.lookup(IH, NOW - 60 * S + TTL)) == 4  # ip(3) at NOW-60s: exactly ttl old
    assert len(store.lookup(IH, NOW - 60 * S + TTL + 1)) == 3


def test_lookup_of_an_unknown_key_is_empty() -> None:
    store = Store(TTL)
    assert store.lookup(IH, NOW) == []
    assert store.live_records(IH, NOW) == []
    assert store.tombstones(IH, NOW) == []
    assert store.get(IH, ip(1)) is None
    assert store.counts(IH) == Counts(0, 0, 0)
    assert store.sample_peers(IH, NOW, 50, random.Random(1)) == []


def test_lookup_shows_provider_text() -> None:
    store = Store(TTL)
    store.announce(IH, ip(1), NOW, peer_id=b"\xff\xfe-bin", seeder=False)
    store.announce(IH, "host.example:1", NOW + 1, peer_id="ñ".encode())
    assert store.lookup(IH, NOW + 1) == [
        Provider("host.example:1", NOW + 1, "ñ", False),
        Provider("10.0.0.1:6881", NOW, "\xff\xfe-bin", False),  # not UTF-8: Latin-1
    ]


# -- tombstones --------------------------------------------------------------------------


def test_remove_wins_over_older_announces() -> None:
    store = Store(TTL)
    store.announce(IH, ip(1), NOW)
    t = store.remove(IH, ip(1), NOW)
    assert t == tomb(ip(1), NOW + 1)  # stamped past the announce it deletes
    assert store.lookup(IH, NOW + 1) == []
    assert store.counts(IH) == Counts(0, 0, 0)
    assert store.num_records == 0 and store.num_tombstones == 1
    assert store.tombstones(IH, NOW + 1) == [t]
    r = store.merge(IH, [live(ip(1), NOW), live(ip(1), NOW + 1)], NOW + 1)  # gossip echoes
    assert r.ignored == 2
    assert store.lookup(IH, NOW + 1) == []


def test_remove_of_an_unknown_provider_still_blocks_older_gossip() -> None:
    store = Store(TTL)
    store.remove(IH, ip(1), NOW)
    assert store.num_keys == 1 and store.num_tombstones == 1
    assert store.merge(IH, [live(ip(1), NOW - S)], NOW).ignored == 1
    assert store.lookup(IH, NOW) == []


def test_remove_loses_to_a_newer_announce() -> None:
    store = Store(TTL)
    store.remove(IH, ip(1), NOW)
    r = store.merge(IH, [live(ip(1), NOW + S, b"pid", seeder=True)], NOW + S)
    assert r == MergeResult(0, 1, 0, [live(ip(1), NOW + S, b"pid", seeder=True)])
    assert store.lookup(IH, NOW + S) == [Provider("10.0.0.1:6881", NOW + S, "pid", True)]
    assert store.num_tombstones == 0 and store.num_records == 1
    assert store.tombstones(IH, NOW + S) == []


def test_a_later_announce_resurrects_a_removed_provider() -> None:
    store = Store(TTL)
    store.announce(IH, ip(1), NOW)
    store.remove(IH, ip(1), NOW + 5)
    rec = store.announce(IH, ip(1), NOW + 5)  # same instant: stamped past the tombstone
    assert rec.last_seen_ns == NOW + 6
    assert store.lookup(IH, NOW + 6) == [Provider("10.0.0.1:6881", NOW + 6)]
    assert store.num_tombstones == 0 and store.num_records == 1


def test_tombstones_expire_after_their_ttl() -> None:
    tomb_ttl = 3 * TTL
    store = Store(TTL, tombstone_ttl_ns=tomb_ttl)
    store.announce(IH, ip(1), NOW)
    t = store.remove(IH, ip(1), NOW + S)
    assert store.tombstones(IH, NOW + S + tomb_ttl) == [t]
    store.sweep_all(NOW + S + tomb_ttl)
    assert store.num_tombstones == 1
    gone = NOW + S + tomb_ttl + 1
    assert store.tombstones(IH, gone) == []
    assert store.get(IH, ip(1)) == t  # held until swept
    assert store.sweep_all(gone) == 1
    assert store.num_tombstones == 0 and store.num_keys == 0
    assert store.get(IH, ip(1)) is None
    # what it deleted is long expired: it cannot come back through gossip
    assert store.merge(IH, [live(ip(1), NOW)], gone).ignored == 1


def test_remove_validates_its_input() -> None:
    store = Store(TTL)
    with pytest.raises(InvalidInput):
        store.remove("", ip(1), NOW)
    with pytest.raises(InvalidInput):
        store.remove(IH, b"", NOW)
    with pytest.raises(InvalidInput):
        store.remove(IH, ip(1), NOW, origin=2**32)
    assert store.num_keys == 0


def test_tombstones_per_key_are_bounded() -> None:
    store = Store(TTL, max_per_key=4)
    for i in range(10):
        store.remove(IH, ip(i), NOW + i)
    assert store.num_tombstones == 4
    assert sorted(r.addr for r in store.tombstones(IH, NOW + 10)) == [ip(i) for i in range(6, 10)]


# -- expiry frees memory -----------------------------------------------------------------


def test_sweep_frees_expired_records_and_empty_keys() -> None:
    store = Store(TTL)
    for k in range(20):
        for i in range(5):
            store.announce(f"key{k}", ip(i), NOW + k * S)
    store.announce("fresh", ip(1), NOW + TTL)
    store.remove("tombs", ip(1), NOW + TTL)
    assert (store.num_records, store.num_keys, store.num_tombstones) == (101, 22, 1)
    at = NOW + TTL + 10 * S  # key0..key9 expired, key10..key19 live
    assert store.sweep_all(at) == 50
    assert store.num_records == 51 == held(store)
    assert store.num_keys == 12
    assert "key0" not in store and "key10" in store and "fresh" in store and "tombs" in store
    assert store.sweep_all(at) == 0
    assert store.sweep_all(NOW + 10 * TTL) == 52
    assert (store.num_records, store.num_keys, store.num_tombstones) == (0, 0, 0)
    assert store.keys() == [] and store.snapshot() == {}


def test_sweep_is_incremental_over_many_calls() -> None:
    store = Store(TTL)
    n_keys = 1000
    for k in range(n_keys):
        store.announce(f"k{k}", ip(1), NOW)
        store.announce(f"k{k}", ip(2), NOW)
    at = NOW + TTL + 1
    calls = 0
    previous = store.num_keys
    while store.num_keys:
        freed = store.sweep(at, max_keys=7)
        calls += 1
        assert freed <= 2 * 7
        assert previous - 7 <= store.num_keys <= previous
        assert store.num_records == 2 * store.num_keys
        previous = store.num_keys
        assert calls <= n_keys // 7 + 2
    assert store.num_records == 0
    assert store.sweep(at, max_keys=7) == 0


def test_sweep_cursor_mid_list_and_new_keys() -> None:
    store = Store(TTL)
    for k in range(100):
        store.announce(f"k{k}", ip(1), NOW)
    store.sweep(NOW, max_keys=37)  # move the cursor: nothing expired
    for k in range(100, 150):  # keys added behind the cursor
        store.announce(f"k{k}", ip(1), NOW)
    for k in range(0, 150, 3):  # some refreshed
        store.announce(f"k{k}", ip(1), NOW + TTL)
    assert store.sweep_all(NOW + TTL + 1) == 100
    assert store.num_keys == 50 == store.num_records
    assert sorted(store.keys()) == sorted(f"k{k}" for k in range(0, 150, 3))


def test_lookup_never_returns_expired_records_swept_or_not() -> None:
    store = Store(TTL)
    store.announce(IH, ip(1), NOW)
    store.announce(IH, ip(2), NOW + 10 * S)
    at = NOW + TTL + 5 * S
    assert [p.addr for p in store.lookup(IH, at)] == ["10.0.0.2:6881"]
    assert store.counts(IH) == Counts(0, 2, 0)  # counts are O(1): held until swept
    store.sweep_all(at)
    assert store.counts(IH) == Counts(0, 1, 0)
    assert [p.addr for p in store.lookup(IH, at)] == ["10.0.0.2:6881"]


def test_a_lease_keeps_an_origins_records_alive() -> None:
    store = Store(TTL)
    store.announce(IH, ip(1), NOW, origin=9)
    store.announce(IH, ip(2), NOW, origin=0)
    store.set_lease(9, NOW + 5 * TTL)
    at = NOW + 3 * TTL
    assert [p.addr for p in store.lookup(IH, at)] == ["10.0.0.1:6881"]
    assert store.sweep_all(at) == 1
    assert store.num_records == 1
    assert store.merge(IH2, [live(ip(3), NOW, origin=9)], at).inserted == 1  # not dead on arrival
    assert store.sweep_all(at + S) == 0
    store.drop_lease(9)
    assert store.lookup(IH, at + S) == []
    assert store.sweep_all(at + S) == 2
    assert store.num_records == 0 and store.num_keys == 0


# -- bounds ------------------------------------------------------------------------------


def test_a_full_key_evicts_its_stalest_for_a_fresher_record() -> None:
    store = Store(TTL, max_per_key=3)
    for i in range(3):
        store.merge(IH, [live(ip(i), NOW - (10 - i) * S)], NOW)
    r = store.merge(IH, [live(ip(9), NOW)], NOW)
    assert r.inserted == 1
    assert sorted(a for (_, a) in store.snapshot()) == [ip(1), ip(2), ip(9)]
    assert store.num_records == 3


def test_a_full_key_ignores_an_incoming_record_staler_than_all() -> None:
    store = Store(TTL, max_per_key=3)
    for i in range(3):
        store.merge(IH, [live(ip(i), NOW - i * S)], NOW)
    before = store.snapshot()
    r = store.merge(IH, [live(ip(9), NOW - 5 * S), live(ip(8), NOW - 2 * S)], NOW)
    assert (r.inserted, r.ignored) == (0, 2)  # NOW-2s ties the stalest: still ignored
    assert store.snapshot() == before


def test_a_full_key_keeps_a_tombstone_when_it_ignores_the_announce_over_it() -> None:
    store = Store(TTL, max_per_key=2)
    store.remove(IH, ip(9), NOW - 20 * S)
    store.merge(IH, [live(ip(1), NOW), live(ip(2), NOW)], NOW)
    r = store.merge(IH, [live(ip(9), NOW - 10 * S)], NOW)  # newer than the tombstone
    assert r.ignored == 1
    assert store.get(IH, ip(9)) == tomb(ip(9), NOW - 20 * S)
    assert store.num_tombstones == 1
    # so an older echo of what it deleted stays deleted
    assert store.merge(IH, [live(ip(9), NOW - 30 * S)], NOW).ignored == 1


def test_a_flood_never_exceeds_max_records() -> None:
    cap = 200
    store = Store(TTL, max_records=cap, max_per_key=50)
    rng = random.Random(7)
    for n in range(10 * cap):
        key = f"k{rng.randrange(60)}" if n % 2 else f"new{n}"
        store.announce(key, ip(n), NOW + n)
        assert store.num_records <= cap
    assert store.num_records == cap == held(store)
    assert store.lookup(f"new{10 * cap - 2}", NOW + 10 * cap) != []  # the newest is held


def test_a_flood_into_one_key_never_exceeds_max_records() -> None:
    store = Store(TTL, max_records=100, max_per_key=1000)
    for n in range(1000):
        store.merge(IH, [live(ip(n), NOW + n)], NOW + n)
        assert store.num_records <= 100
    # one key, so the sample is the whole store: the 100 freshest are held
    assert sorted(a for (_, a) in store.snapshot()) == [ip(n) for n in range(900, 1000)]


@pytest.mark.parametrize("passes", [0, 1, 3])
def test_a_full_store_frees_expired_records_first(passes: int) -> None:
    cap = 100
    store = Store(TTL, max_records=cap)
    for k in range(cap):
        store.announce(f"old{k}", ip(1), NOW - k)
    for _ in range(passes):  # sweep passes while nothing is expired yet
        store.sweep(NOW, max_keys=40)
    later = NOW + TTL + 1  # every record expired, none swept
    for k in range(cap):
        store.announce(f"new{k}", ip(2), later + k)
    assert store.num_records == cap == held(store)
    assert all(ih.startswith("new") for (ih, _) in store.snapshot())
    assert len(store.lookup("new0", later + cap)) == 1


def test_a_full_store_evicts_the_stalest_of_a_sample() -> None:
    store = Store(TTL, max_records=50)
    for k in range(10):
        for j in range(5):
            store.merge(f"k{k}", [live(ip(j), NOW - 60 * S + j * 10 * S + k)], NOW)
    before = store.snapshot()
    for n in range(10):
        store.announce(f"fresh{n}", ip(1), NOW)
        after = store.snapshot()
        gone = set(before) - set(after)
        assert len(gone) == 1
        ((key, addr),) = gone
        own = [r.last_seen_ns for (k, _), r in before.items() if k == key]
        assert before[key, addr].last_seen_ns == min(own) < NOW  # the stalest of its key
        before = after
    assert store.num_records == 50


def test_a_full_store_evicts_when_most_keys_hold_only_tombstones() -> None:
    store = Store(TTL, max_records=5)
    for k in range(50):  # providers that came and left: keys with tombstones only
        store.announce(f"t{k}", ip(1), NOW)
        store.remove(f"t{k}", ip(1), NOW)
    for i in range(5):
        store.announce(IH, ip(i), NOW + i)
    for i in range(5, 20):
        store.announce(f"n{i}", ip(i), NOW + i)
        assert store.num_records <= 5 == held(store)
    assert store.num_tombstones == 50


# -- seeder / leecher partition and peer ids ---------------------------------------------


def _check_against_model(store: Store, model: dict[AddrKey, tuple[bool, bytes]]) -> None:
    snap = {a: r for (_, a), r in store.snapshot().items() if not r.tombstone}
    assert {a: (r.seeder, r.peer_id) for a, r in snap.items()} == model
    seeders = sum(1 for s, _ in model.values() if s)
    c = store.counts(IH)
    assert (c.seeders, c.leechers) == (seeders, len(model) - seeders)
    assert store.num_records == len(model)
    found = {p.addr: p.seeder for p in store.lookup(IH, NOW + 10**6)}
    assert found == {format_addr(a): s for a, (s, _) in model.items()}


def test_the_partition_and_peer_ids_survive_flips_swaps_and_deletes() -> None:
    rng = random.Random(2024)
    store = Store(10**18, max_per_key=10_000)
    model: dict[AddrKey, tuple[bool, bytes]] = {}
    pids = [b"", b"-TR3000-", b"x" * 20, b"y" * 21, b"z" * 64, b"w" * MAX_PEER_ID_BYTES]
    now = NOW
    for step in range(3000):
        now += 1
        addr = ip(rng.randrange(40))
        op = rng.random()
        if op < 0.6:
            seeder = rng.random() < 0.5
            pid = rng.choice(pids) + bytes([step % 7])[: rng.randrange(2)]
            pid = pid[:MAX_PEER_ID_BYTES]
            store.announce(IH, addr, now, peer_id=pid, seeder=seeder)
            model[addr] = (seeder, pid)
        elif op < 0.8:
            store.remove(IH, addr, now)
            model.pop(addr, None)
        else:
            seeder = rng.random() < 0.5
            pid = rng.choice(pids)
            store.merge(IH, [live(addr, now, pid, seeder)], now)
            model[addr] = (seeder, pid)
        if step % 50 == 0:
            _check_against_model(store, model)
    _check_against_model(store, model)


def test_expiry_keeps_the_partition() -> None:
    rng = random.Random(5)
    store = Store(TTL, max_per_key=10_000)
    model: dict[AddrKey, tuple[bool, bytes]] = {}
    for i in range(300):
        seeder = rng.random() < 0.3
        pid = b"p" * rng.choice([0, 20, 21, 40])
        stale = rng.random() < 0.5
        store.announce(IH, ip(i), NOW - (TTL + 1 if stale else 0), peer_id=pid, seeder=seeder)
        if not stale:
            model[ip(i)] = (seeder, pid)
    store.sweep_all(NOW)
    snap = {a: (r.seeder, r.peer_id) for (_, a), r in store.snapshot().items()}
    assert snap == model
    seeders = sum(1 for s, _ in model.values() if s)
    assert store.counts(IH) == Counts(seeders, len(model) - seeders, 0)


# -- sampling ----------------------------------------------------------------------------


def _swarm(store: Store, n_seed: int, n_leech: int, now: int) -> None:
    for i in range(n_seed):
        store.announce(IH, ip(i), now, seeder=True)
    for i in range(n_seed, n_seed + n_leech):
        store.announce(IH, ip(i), now, seeder=False)


def test_sample_peers_basic_laws() -> None:
    store = Store(TTL)
    _swarm(store, 30, 30, NOW)
    _swarm(store, 0, 0, NOW)
    for i in range(60, 80):  # expired, not swept
        store.announce(IH, ip(i), NOW - TTL - 1, seeder=i % 2 == 0)
    rng = random.Random(3)
    live_addrs = {ip(i) for i in range(60)}
    for want in (0, 1, 5, 49, 50, 59, 60, 61, 200):
        for _ in range(20):
            exclude = ip(rng.randrange(80))
            got = store.sample_peers(IH, NOW, want, rng, exclude=exclude)
            assert len(got) <= max(want, 0)
            assert len(set(got)) == len(got)
            assert exclude not in got
            assert set(got) <= live_addrs
    assert store.sample_peers(IH, NOW, -1, rng) == []
    # with nothing expired a sample is full-sized
    store.sweep_all(NOW)
    assert len(store.sample_peers(IH, NOW, 50, rng, exclude=ip(0))) == 50
    assert len(store.sample_peers(IH, NOW, 100, rng, exclude=ip(0))) == 59
    assert len(store.sample_peers(IH, NOW, 100, rng, exclude=ip(99))) == 60


def test_sample_peers_leechers_first() -> None:
    store = Store(TTL)
    _swarm(store, 20, 10, NOW)
    leechers = {ip(i) for i in range(20, 30)}
    rng = random.Random(4)
    for want in (5, 10, 15, 30):
        got = store.sample_peers(IH, NOW, want, rng, leechers_first=True, exclude=ip(0))
        n = min(want, 10)
        assert set(got[:n]) <= leechers
        assert not set(got[n:]) & leechers
        assert len(got) == min(want, 29)
    got = store.sample_peers(IH, NOW, 10, rng, leechers_first=True, exclude=ip(25))
    assert set(got[:9]) == leechers - {ip(25)} and got[9] not in leechers


def test_sample_peers_covers_the_swarm() -> None:
    store = Store(TTL)
    _swarm(store, 150, 150, NOW)
    rng = random.Random(11)
    seen: Counter[AddrKey] = Counter()
    draws = 200
    for _ in range(draws):
        seen.update(store.sample_peers(IH, NOW, 50, rng))
    assert len(seen) == 300  # every peer appears
    expected = draws * 50 / 300  # ≈ 33 each
    assert min(seen.values()) > expected / 3
    assert max(seen.values()) < expected * 3


def test_sample_peers_of_one_address_family() -> None:
    """A UDP reply carries one family: a v6 client in a mostly-v4 swarm still gets every v6
    peer, and a v4 client a full list of v4 ones (names are never in either)."""
    store = Store(TTL)
    v4 = [ip(i) for i in range(60)]
    v6 = [bytes(15) + bytes([i]) + b"\x1a\xe1" for i in range(1, 6)]
    for a in [*v4, *v6, "peer.example:6881"]:
        store.announce(IH, a, NOW, seeder=a in v4[:20])
    rng = random.Random(5)
    for _ in range(20):
        got6 = store.sample_peers(IH, NOW, 50, rng, exclude=v6[0], family=6)
        assert sorted(got6) == sorted(v6[1:])
        got4 = store.sample_peers(IH, NOW, 50, rng, exclude=v4[0], family=4)
        assert len(got4) == 50 and set(got4) <= set(v4[1:]) and len(set(got4)) == 50
        first = store.sample_peers(IH, NOW, 45, rng, leechers_first=True, family=4)
        assert set(first[:40]) == set(v4[20:]) and set(first[40:]) <= set(v4[:20])
    counts = store.announce_sample(IH, v6[1], NOW, peer_id=b"", seeder=False, want=50, rng=rng,
                                   family=6)
    assert counts[:2] == (20, 46) and sorted(counts[2]) == sorted([v6[0], *v6[2:]])
    store.remove(IH, v6[0], NOW + 1)
    assert sorted(store.sample_peers(IH, NOW + 1, 50, rng, family=6)) == sorted(v6[1:])


def test_family_counts_follow_removals() -> None:
    """A removed IPv4 peer stops counting as IPv4: otherwise an IPv6 peer that joins later
    would pass for IPv4 (the sample trusts the counts to skip its family filter)."""
    store = Store(TTL)
    v6 = bytes(15) + b"\x01\x1a\xe1"
    store.announce(IH, ip(1), NOW)
    store.announce(IH, ip(2), NOW)
    store.remove(IH, ip(1), NOW + 1)
    store.announce(IH, v6, NOW + 2)
    rng = random.Random(1)
    assert store.sample_peers(IH, NOW + 2, 50, rng, family=4) == [ip(2)]
    assert store.sample_peers(IH, NOW + 2, 50, rng, family=6) == [v6]
    store.sweep_all(NOW + TTL + 2)  # ip(2) expires: no IPv4 peer is left
    assert store.sample_peers(IH, NOW + TTL + 2, 50, rng, family=4) == []


# -- completed counters ------------------------------------------------------------------


def test_completed_counters_count_and_max_merge() -> None:
    store = Store(TTL)
    store.count_completed(IH, "a")  # unknown key: nothing to count on
    assert store.downloaded_counters(IH) == {}
    store.announce(IH, ip(1), NOW)
    store.count_completed(IH, "a")
    store.count_completed(IH, "a", by=2)
    store.count_completed(IH, "b")
    assert store.downloaded_counters(IH) == {"a": 3, "b": 1}
    assert store.counts(IH).downloaded == 4
    assert store.merge_downloaded(IH, {"a": 2, "b": 1}) is False  # nothing grew
    assert store.merge_downloaded(IH, {"a": 5, "c": 7}) is True
    assert store.downloaded_counters(IH) == {"a": 5, "b": 1, "c": 7}
    assert store.merge_downloaded(IH, {"a": 5, "c": 7}) is False  # idempotent
    assert store.merge_downloaded(IH, {}) is False
    assert store.merge_downloaded(IH2, {"a": 1}) is False  # unknown key
    got = store.downloaded_counters(IH)
    got["a"] = 0  # a copy
    assert store.counts(IH) == Counts(0, 1, 13)


def test_completed_counters_merge_commutes() -> None:
    batches = [{"a": 3, "b": 1}, {"a": 1, "c": 4}, {"b": 6}]
    results = []
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2, 1]):
        store = Store(TTL)
        store.announce(IH, ip(1), NOW)
        for i in order:
            store.merge_downloaded(IH, batches[i])
        results.append(store.downloaded_counters(IH))
    assert results[0] == results[1] == results[2] == {"a": 3, "b": 6, "c": 4}


def test_removals_of_unknown_providers_cannot_grow_memory_past_the_tombstone_budget() -> None:
    store = Store(90 * 10**9, max_records=40)
    now = 10**18
    for i in range(200):
        store.remove(f"k{i}", ip(i), now)
    assert store.num_tombstones == store.max_tombstones == 10
    store.announce("held", ip(1), now)
    store.remove("held", ip(1), now + 1)  # a provider we hold still gets its tombstone
    assert store.get("held", ip(1)) is not None
    assert store.num_tombstones == 11


# -- replication hooks (v2), fixed at construction ------------------------------------------


class _Hooks:
    """A store's replication side, recorded: what on_change was told, and whether changes
    are wanted (a lone member wants none)."""

    def __init__(self, origin: int, wanted: bool = True) -> None:
        self.told: list[tuple[str, Record | None, Record | None]] = []
        self.wanted = wanted
        self.replication = Replication(origin, self.on_change, lambda: self.wanted)

    def on_change(self, info_hash: str, old: Record | None, new: Record | None) -> None:
        self.told.append((info_hash, old, new))


def test_a_replicated_store_versions_its_own_records_and_reports_every_change() -> None:
    hooks = _Hooks(7)
    store = Store(TTL, replication=hooks.replication)
    assert store.local_origin == 7 and store.last_version == 0
    a = store.announce(IH, ip(1), NOW)
    assert (a.origin, a.version) == (7, 1)
    refresh = store.announce(IH, ip(1), NOW + S)
    assert refresh.version == 1  # a refresh is no change to replicate
    b = store.merge(IH, [live(ip(2), NOW, origin=3)], NOW).changed[0]  # another origin's
    assert store.merge(IH, [live(ip(3), NOW)], NOW).inserted == 1  # a v1 record: not told
    gone = store.remove(IH, ip(1), NOW + 2 * S)
    assert (gone.origin, gone.version) == (7, 2)
    assert store.last_version == 2
    assert hooks.told == [(IH, None, a), (IH, None, b), (IH, refresh, gone)]
    assert store.drain_changes() == [(IH, a), (IH, gone)]
    assert store.drain_changes() == []


def test_a_lone_member_queues_no_changes_but_still_reports_them() -> None:
    hooks = _Hooks(7, wanted=False)
    store = Store(TTL, replication=hooks.replication)
    rec = store.announce(IH, ip(1), NOW)
    assert not store.has_changes() and hooks.told == [(IH, None, rec)]
    hooks.wanted = True  # another member came up
    rec2 = store.announce(IH, ip(2), NOW)
    assert store.drain_changes() == [(IH, rec2)]


def test_a_store_without_replication_has_no_origin_and_no_changes() -> None:
    store = Store(TTL)
    rec = store.announce(IH, ip(1), NOW)
    assert (rec.origin, rec.version, store.local_origin) == (0, 0, 0)
    assert not store.has_changes()
    with pytest.raises(InvalidInput):
        Store(TTL, replication=_Hooks(2**32).replication)


def test_copy_from_holds_the_same_state_under_its_own_origin() -> None:
    ref = Store(TTL, max_per_key=60)
    for i in range(40):  # past the address index's threshold
        ref.announce(IH, ip(i), NOW + i, peer_id=b"p" * (i % 30), seeder=i % 3 == 0, origin=5)
    ref.remove(IH, ip(3), NOW + S, origin=5)
    ref.merge(IH2, [live(ip(1), NOW, origin=9), tomb(ip(2), NOW, origin=9)], NOW)
    ref.count_completed(IH, "n1", by=4)
    ref.set_lease(9, NOW + 3 * TTL)
    hooks = _Hooks(5)
    store = Store(TTL, max_per_key=60, replication=hooks.replication)
    store.announce("stale" * 8, ip(1), NOW)
    store.drain_changes()
    hooks.told.clear()
    store.announce("pending" * 5, ip(1), NOW)  # an outbox entry the copy drops
    store.copy_from(ref, version=41)
    assert store.snapshot() == ref.snapshot()
    assert (store.num_records, store.num_tombstones, store.num_keys) == (
        ref.num_records, ref.num_tombstones, ref.num_keys
    )
    assert store.counts(IH) == ref.counts(IH)
    at = NOW + 2 * TTL  # only the lease keeps IH2's record alive: the lease came along
    assert store.live_records(IH2, at) == ref.live_records(IH2, at) != []
    assert store.local_origin == 5 and store.last_version == 41
    assert not store.has_changes()
    assert len(hooks.told) == 1  # only the announce before the copy: the copy reports nothing
    # the copy is independent of the original, both ways
    nxt = store.announce(IH, ip(50), NOW + 2 * S)
    assert nxt.version == 42
    ref.announce(IH, ip(51), NOW + 2 * S)
    assert store.get(IH, ip(51)) is None and ref.get(IH, ip(50)) is None
    store.sweep_all(NOW + 2 * TTL)
    expired = store.get(IH, ip(0))  # its origin's own record: expiry leaves a tombstone
    assert expired is not None and expired.tombstone and expired.version == 43
    assert ref.get(IH, ip(0)) == Record(ip(0), NOW, b"", FLAG_SEEDER, 5)
    with pytest.raises(InvalidInput):
        Store(2 * TTL).copy_from(ref, version=0)  # another TTL
    with pytest.raises(InvalidInput):
        Store(TTL, max_per_key=60).copy_from(ref, version=-1)
