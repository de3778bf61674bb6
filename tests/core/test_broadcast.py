"""The transmit-limited broadcast queue (memberlist queue.go): limits, order, bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chisme.core.broadcast import TransmitLimitedQueue, retransmit_limit
from chisme.errors import ConfigError


def test_retransmit_limit_is_mult_times_ceil_log10_n_plus_1() -> None:
    # memberlist util.go retransmitLimit, RetransmitMult 4 (LAN): 8 / 12 / 16 at 10 / 100 / 1000.
    assert [retransmit_limit(4, n) for n in (1, 9, 10, 99, 100, 999, 1000)] == [
        4,
        4,
        8,
        8,
        12,
        12,
        16,
    ]
    assert retransmit_limit(4, 0) == 1  # floor: never zero


def test_each_item_is_sent_exactly_the_limit_then_dropped() -> None:
    q: TransmitLimitedQueue[str] = TransmitLimitedQueue(retransmit_mult=3)
    q.queue("a", "A", 10)
    sent = 0
    while q:
        assert q.take(100, num_nodes=50) == ["A"]
        sent += 1
    assert sent == retransmit_limit(3, 50) == 6
    assert len(q) == 0 and "a" not in q
    assert q.take(100, num_nodes=50) == []


def test_newer_item_with_the_same_key_invalidates_the_older() -> None:
    q: TransmitLimitedQueue[str] = TransmitLimitedQueue(retransmit_mult=4)
    q.queue("node-1", "alive 1", 10)
    q.queue("node-2", "alive 2", 10)
    assert q.take(10, num_nodes=5) == ["alive 2"]  # sent once
    q.queue("node-2", "suspect 2", 10)  # replaces it, transmit count back to 0
    q.queue("node-1", "dead 1", 10)
    assert len(q) == 2
    assert q.take(100, num_nodes=5) == ["dead 1", "suspect 2"]
    assert "alive 1" not in list(q) and "alive 2" not in list(q)


def test_least_transmitted_first_then_newest_first() -> None:
    q: TransmitLimitedQueue[str] = TransmitLimitedQueue(retransmit_mult=4)
    q.queue("old", "old", 10)
    assert q.take(10, num_nodes=100) == ["old"]
    assert q.take(10, num_nodes=100) == ["old"]
    q.queue("x", "x", 10)
    q.queue("y", "y", 10)
    # y and x were never sent: they come first, the newest (LIFO) before the older.
    assert q.take(25, num_nodes=100) == ["y", "x"]
    assert q.take(100, num_nodes=100) == ["y", "x", "old"]
    assert list(q) == ["y", "x", "old"]


def test_budget_is_respected_and_an_item_that_does_not_fit_waits_its_turn() -> None:
    q: TransmitLimitedQueue[str] = TransmitLimitedQueue(retransmit_mult=4)
    q.queue("small", "small", 30)
    q.queue("big", "big", 80)
    assert q.take(100, num_nodes=10) == ["big"]  # newest first; small (30) no longer fits
    assert q.take(100, num_nodes=10) == ["small"]  # least sent first; big is skipped, not blocking
    # Both sent once: the one that arrived last at that count goes first, then the other.
    assert q.take(100, num_nodes=10) == ["small"]
    assert q.take(100, num_nodes=10) == ["big"]
    assert q.take(0, num_nodes=10) == []
    assert q.take(10, num_nodes=10) == []  # nothing fits: nothing is counted as sent
    assert len(q) == 2


def test_limit_follows_the_current_cluster_size() -> None:
    q: TransmitLimitedQueue[str] = TransmitLimitedQueue(retransmit_mult=4)
    q.queue("a", "A", 10)
    for _ in range(10):
        assert q.take(100, num_nodes=1000) == ["A"]  # limit 16 at 1000 nodes
    assert q.take(100, num_nodes=5) == []  # the cluster shrank: limit 4, already exceeded
    assert len(q) == 0


def test_bounded_size_drops_the_most_sent_first() -> None:
    q: TransmitLimitedQueue[str] = TransmitLimitedQueue(retransmit_mult=4, max_items=3)
    q.queue("a", "a", 10)
    q.queue("b", "b", 10)
    assert q.take(10, num_nodes=100) == ["b"]
    assert q.take(10, num_nodes=100) == ["a"]
    assert q.take(10, num_nodes=100) == ["a"]  # a: 2 transmissions, b: 1
    q.queue("c", "c", 10)
    q.queue("d", "d", 10)  # over the cap: a, the most sent, goes
    assert sorted(q) == ["b", "c", "d"]
    q.queue("e", "e", 10)  # then b (sent once) goes before the unsent c and d
    assert sorted(q) == ["c", "d", "e"]
    q.queue("f", "f", 10)  # all unsent now: the oldest, c, goes
    assert sorted(q) == ["d", "e", "f"]


def test_discard_and_clear() -> None:
    q: TransmitLimitedQueue[int] = TransmitLimitedQueue(retransmit_mult=2)
    q.queue("a", 1, 5)
    q.queue("b", 2, 5)
    q.discard("a")
    q.discard("missing")
    assert list(q) == [2]
    q.clear()
    assert not q and q.take(100, num_nodes=3) == []


def test_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        TransmitLimitedQueue(retransmit_mult=0)
    with pytest.raises(ConfigError):
        TransmitLimitedQueue(retransmit_mult=1, max_items=0)


def test_take_is_bounded_work_on_a_long_queue() -> None:
    # A packet's worth of items is found without walking the whole queue.
    q: TransmitLimitedQueue[int] = TransmitLimitedQueue(retransmit_mult=4, max_items=100_000)
    for i in range(50_000):
        q.queue(str(i), i, 40)
    out = q.take(1200, num_nodes=1000)
    assert out == list(range(49_999, 49_969, -1))  # 30 x 40 B, newest first


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("queue"), st.integers(0, 7), st.integers(1, 60)),
            st.tuples(st.just("take"), st.integers(0, 200), st.integers(0, 2000)),
        ),
        max_size=80,
    )
)
def test_model(ops: list[tuple[str, int, int]]) -> None:
    """Against a plain model: budgets hold, keys are unique, each item is sent at most its limit,
    nothing is sent twice in one take, and least-transmitted items come first."""
    q: TransmitLimitedQueue[tuple[str, int]] = TransmitLimitedQueue(retransmit_mult=2, max_items=5)
    sent: dict[tuple[str, int], int] = {}
    sizes: dict[tuple[str, int], int] = {}
    version = 0
    for op, a, b in ops:
        if op == "queue":
            version += 1
            item = (str(a), version)
            q.queue(str(a), item, b)
            sizes[item] = b
            sent[item] = 0
            assert len(q) <= 5
        else:
            before = {item: sent[item] for item in q}
            out = q.take(a, num_nodes=b)
            assert sum(sizes[item] for item in out) <= a
            assert len(set(out)) == len(out)
            assert all(item in before for item in out)
            counts = [before[item] for item in out]
            assert counts == sorted(counts)
            for item in out:
                sent[item] += 1
                assert sent[item] <= retransmit_limit(2, b)
            keys = [key for key, _ in q]
            assert len(keys) == len(set(keys))


def test_generic_over_item_type() -> None:
    rng = random.Random(3)
    q: TransmitLimitedQueue[bytes] = TransmitLimitedQueue(retransmit_mult=1)
    payloads = [rng.randbytes(20) for _ in range(5)]
    for i, p in enumerate(payloads):
        q.queue(f"rumor:{i}", p, len(p))
    assert q.take(1000, num_nodes=3) == payloads[::-1]
    assert len(q) == 0  # limit 1 at 3 nodes: each sent once
