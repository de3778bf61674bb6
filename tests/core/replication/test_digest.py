"""The replication digest: XOR laws (any order, toggles cancel), the two levels agree, and the
numbers are the same on every node (golden values)."""

from __future__ import annotations

import random
from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from chisme.core.records import Record, tombstone_record
from chisme.core.replication.digest import BUCKETS, PER_GROUP, Digest, bucket_of, record_hash

ADDRS = [bytes([10, 0, 0, i, 0x1A, 0xE1]) for i in range(8)] + ["peer.example:6881"]
items = st.lists(
    st.tuples(
        st.sampled_from(["a" * 40, "b" * 40, "k"]),
        st.builds(
            Record,
            st.sampled_from(ADDRS),
            st.integers(0, 2**62),
            st.sampled_from([b"", b"-qB4650-abcdefghijkl"]),
            st.sampled_from([0, 1, 2]),
            st.integers(1, 2**32 - 1),
            st.integers(0, 2**64 - 1),
        ),
    ),
    unique_by=lambda x: (x[0], x[1].addr, x[1].origin, x[1].version),
    max_size=30,
)


def _state(d: Digest) -> tuple[int, int, list[int], list[int]]:
    return d.root, d.count, list(d.buckets), list(d.groups)


@given(items, st.randoms(use_true_random=False))
def test_any_order_gives_the_same_digest_and_removals_cancel(
    recs: list[tuple[str, Record]], rnd: random.Random
) -> None:
    a, b = Digest(), Digest()
    for ih, r in recs:
        a.on_change(ih, None, r)
    shuffled = recs[:]
    rnd.shuffle(shuffled)
    for ih, r in shuffled:
        b.on_change(ih, None, r)
    assert _state(a) == _state(b)
    # the levels agree: a group is the XOR of its buckets, the root the XOR of the groups
    for g in range(len(a.groups)):
        assert a.groups[g] == reduce(int.__xor__, a.buckets[g * PER_GROUP:(g + 1) * PER_GROUP], 0)
    assert a.root == reduce(int.__xor__, a.groups, 0)
    for ih, r in shuffled:
        b.on_change(ih, r, None)
    assert _state(b) == _state(Digest())


def test_only_replicated_identity_and_version_count() -> None:
    ih, addr = "a" * 40, ADDRS[0]
    rec = Record(addr, 10, b"p", 1, 7, 3)
    assert record_hash(ih, rec) == record_hash(ih, rec._replace(last_seen_ns=99))  # stamp
    assert record_hash(ih, rec) != record_hash(ih, rec._replace(version=4))
    d = Digest()
    d.on_change(ih, None, Record(addr, 10))  # a v1 record (origin 0) is not replicated
    assert _state(d) == _state(Digest())
    d.on_change(ih, None, rec)
    d.on_change(ih, rec, tombstone_record(addr, 11, 7, 4))  # a change: one record still
    assert d.count == 1 and d.keys[bucket_of(ih)] == {ih}


def test_the_numbers_are_the_same_on_every_node() -> None:
    """Golden values: a change here splits every cluster of mixed versions."""
    assert bucket_of("3f2a" * 10) == 2787
    assert all(0 <= bucket_of(f"k{i}") < BUCKETS for i in range(100))
    assert record_hash("3f2a" * 10, Record(ADDRS[1], 5, b"", 0, 7, 3)) == 0x4A6D853F42BD7A43
