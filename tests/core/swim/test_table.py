"""The member table's pieces: state pools, random sampling over them, and random_alive on top."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from chisme.core.swim import Alive, Gossip, Membership, MemberState, Suspect, SwimConfig
from chisme.core.swim.table import Node, Pool, sample

ALIVE = MemberState.ALIVE


def make_nodes(n: int) -> list[Node]:
    return [Node(f"n{i}", f"10.0.0.{i}:1", 0, ALIVE, 0) for i in range(n)]


# ------------------------------------------------------------------------------------------
# Pools and sampling


def test_pool_swap_remove_keeps_every_slot_right() -> None:
    rng = random.Random(3)
    members = make_nodes(50)
    pool = Pool()
    for node in members:
        pool.add(node)
    removed = rng.sample(members, 30)
    for node in removed:
        pool.remove(node)
        assert node.slot == -1
    assert len(pool) == 20
    assert set(pool.items) == set(members) - set(removed)
    assert all(pool.items[node.slot] is node for node in pool.items)


@given(
    st.integers(0, 60),
    st.integers(0, 60),
    st.integers(0, 20),
    st.sets(st.integers(0, 130), max_size=20),
    st.integers(0, 2**32),
)
def test_sample_picks_distinct_eligible_nodes(
    n_a: int, n_b: int, k: int, excluded: set[int], seed: int
) -> None:
    members = make_nodes(n_a + n_b)
    a, b = Pool(), Pool()
    for i, node in enumerate(members):
        (a if i < n_a else b).add(node)
    exclude = {f"n{i}" for i in excluded}
    eligible = [node for node in members if node.node_id not in exclude]
    picks = sample(random.Random(seed), (a, b), k, exclude)
    assert len(set(map(id, picks))) == len(picks) <= k
    assert all(node in eligible for node in picks)
    if len(members) <= 3 * (k + len(exclude)):
        # pools small against k + |exclude|: a filtered shuffle, as many as there can be
        assert len(picks) == min(k, len(eligible))


# ------------------------------------------------------------------------------------------
# One node, fed by hand (what it sends is inspected, nothing is delivered)


def lone(config: SwimConfig | None = None, *, seed: int = 7) -> Membership:
    return Membership("me", "10.9.9.9:1", config or SwimConfig.lan(), random.Random(seed))


def with_peers(n: int, config: SwimConfig | None = None) -> Membership:
    m = lone(config)
    m.merge_state([Alive(f"p{i}", f"10.1.0.{i}:1", 0) for i in range(n)], 0, rebroadcast=False)
    m.drain_events()
    return m


# ------------------------------------------------------------------------------------------
# Sampling


def test_random_alive_is_distinct_excludes_and_skips_non_alive() -> None:
    m = with_peers(200)
    m.on_message(Gossip("p1"), (Suspect("p0", 0, "p1"),), 0)
    picks = m.random_alive(10, exclude={"p5", "p6"})
    ids = [p.node_id for p in picks]
    assert len(ids) == len(set(ids)) == 10
    assert not {"me", "p0", "p5", "p6"} & set(ids)
    assert all(p.state is ALIVE for p in picks)
    small = with_peers(3)
    assert sorted(p.node_id for p in small.random_alive(10)) == ["p0", "p1", "p2"]
    assert small.random_alive(0) == []
