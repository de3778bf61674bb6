"""The v1 full push: every key with something live or a tombstone, for any peer list."""

from __future__ import annotations

from chisme.core.records import FLAG_TOMBSTONE
from chisme.core.replication.full_push import plan_full_push
from chisme.core.store import Store

S = 1_000_000_000
NOW = 1_764_000_000 * S
TTL = 90 * S
P1, P2 = bytes([10, 0, 0, 1, 0x1A, 0xE1]), bytes([10, 0, 0, 2, 0x1A, 0xE1])


def test_a_round_carries_live_records_and_tombstones_per_key() -> None:
    store = Store(TTL, tombstone_ttl_ns=2 * TTL)
    store.announce("live", P1, NOW)
    store.announce("live", P2, NOW - TTL - 1)  # expired, not yet swept
    store.remove("gone", P1, NOW - TTL - 1)  # a tombstone outlives the record TTL
    store.announce("stale", P1, NOW - TTL - 1)
    plan = plan_full_push(store, ["10.0.0.9:7070"], NOW)
    assert [(ih, [r.addr for r in recs], [t.addr for t in tombs]) for ih, recs, tombs in plan] == [
        ("live", [P1], []),
        ("gone", [], [P1]),
    ]
    assert all(t.flags == FLAG_TOMBSTONE for _, _, tombs in plan for t in tombs)
    assert plan_full_push(store, [], NOW) == []  # nobody to tell
