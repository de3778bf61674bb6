"""The packed slot layout of one key: slots against a plain dict through inserts, updates,
deletes and side changes (the seeder/leecher partition, the address index, the family
counts, long peer ids), tombstones, the refresh fast path, and the slot sampler.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from chisme.core.keys import AddrKey
from chisme.core.records import FLAG_SEEDER, Record, tombstone_record
from chisme.core.swarm import _INDEX_MIN, Swarm, sample_live, sample_slots

ADDRS: list[AddrKey] = [
    *(bytes([10, 0, i // 256, i % 256, 0x1A, 0xE1]) for i in range(2 * _INDEX_MIN + 8)),
    bytes(15) + b"\x01\x1a\xe1",
    bytes(15) + b"\x02\x1a\xe1",
    "peer.example:6881",
]
PIDS = [b"", b"-qB4650-abcdefghijkl", b"-TR3000-" + b"x" * 30, b"\xff" * 21]
Slot = tuple[int, bytes, bool, int, int]  # seen, peer id, seeder, origin, version


def _check(swarm: Swarm, model: dict[AddrKey, Slot]) -> None:
    """Every slot is the model's, seeders after leechers; counts and the index agree."""
    got = {r.addr: (r.last_seen_ns, r.peer_id, r.seeder, r.origin, r.version)
           for r in swarm.records()}
    assert got == model
    assert len(swarm) == len(model)
    assert swarm.n_leech == sum(1 for s in model.values() if not s[2])
    assert all(not swarm.record(i).seeder for i in range(swarm.n_leech))
    assert swarm.n4 == sum(1 for a in model if isinstance(a, bytes) and len(a) == 6)
    assert swarm.n6 == sum(1 for a in model if isinstance(a, bytes) and len(a) == 18)
    for i, addr in enumerate(swarm.addrs):
        assert swarm.find(addr) == i
        assert swarm.current(addr) == swarm.record(i)
        assert (swarm.origin(i), swarm.version(i)) == model[addr][3:]
        assert swarm.peer_id(i) == model[addr][1]
    if len(swarm) > _INDEX_MIN:
        assert swarm.index is not None
    elif len(swarm) < _INDEX_MIN // 2:  # between the two, the index may stay
        assert swarm.index is None
    if len(swarm):
        assert swarm.min_seen <= min(s[0] for s in model.values())
        assert swarm.seen[swarm.stalest()] == min(s[0] for s in model.values())


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, len(ADDRS) - 1),
            st.sampled_from(PIDS),
            st.booleans(),
            st.integers(0, 2**32 - 1),
            st.sampled_from([0, 1, 2**64 - 1]),
        ),
        max_size=300,
    )
)
def test_slots_follow_a_dict_through_every_mutation(
    ops: list[tuple[int, int, bytes, bool, int, int]],
) -> None:
    swarm = Swarm()
    model: dict[AddrKey, Slot] = {}
    for step, (op, a, pid, seeder, origin, version) in enumerate(ops):
        addr = ADDRS[a]
        i = swarm.find(addr)
        if op == 2 and i is not None:
            swarm.delete(i)
            del model[addr]
        elif i is None:
            swarm.insert(addr, step, pid, seeder, origin, version=version)
            model[addr] = (step, pid, seeder, origin, version)
        else:
            swarm.update(i, step, pid, seeder, origin, version=version)
            model[addr] = (step, pid, seeder, origin, version)
        _check(swarm, model)


def test_tombstones_are_kept_apart_from_slots() -> None:
    swarm = Swarm()
    a, b, c = ADDRS[:3]
    swarm.insert(a, 5, b"p", True, 1, version=2)
    assert swarm.tomb(a) is None and swarm.pop_tomb(a) is None and swarm.tomb_records() == []
    swarm.put_tomb(tombstone_record(b, 30, 7, 8))
    swarm.put_tomb(tombstone_record(c, 10, 0, 0))
    swarm.put_tomb(tombstone_record(c, 20, 3, 4))  # replaces c's
    assert swarm.current(b) == tombstone_record(b, 30, 7, 8)
    assert swarm.current(a) == Record(a, 5, b"p", FLAG_SEEDER, 1, 2)
    assert swarm.tomb_records() == [tombstone_record(b, 30, 7, 8), tombstone_record(c, 20, 3, 4)]
    assert swarm.tomb_records(since_ns=25) == [tombstone_record(b, 30, 7, 8)]
    assert swarm.stalest_tomb() == c
    assert swarm.pop_tombs_before(25) == [tombstone_record(c, 20, 3, 4)]
    assert swarm.pop_tomb(b) == tombstone_record(b, 30, 7, 8)
    assert swarm.tombs is None  # the last one gone: no empty dict kept per key
    assert len(swarm) == 1


@settings(max_examples=200, deadline=None)
@given(
    held_pid=st.sampled_from(PIDS),
    held_seeder=st.booleans(),
    held_origin=st.sampled_from([0, 7]),
    held_version=st.sampled_from([0, 3]),
    pid=st.sampled_from(PIDS),
    seeder=st.booleans(),
    origin=st.sampled_from([0, 7]),
    now=st.sampled_from([50, 100, 101, 200]),
)
def test_restamp_is_an_update_that_changes_only_the_stamp(
    held_pid: bytes,
    held_seeder: bool,
    held_origin: int,
    held_version: int,
    pid: bytes,
    seeder: bool,
    origin: int,
    now: int,
) -> None:
    """It takes the slot exactly when the slot holds this provider as an announce would
    leave it (a short peer id only: long ones live apart), and then only raises the stamp."""
    swarm = Swarm()
    for k in range(4):
        swarm.insert(ADDRS[k], 100, b"o", k % 2 == 0, 9)
    addr = ADDRS[5]
    swarm.insert(addr, 100, held_pid, held_seeder, held_origin, version=held_version)
    before = swarm.current(addr)
    assert before is not None
    same = (
        (held_pid, held_seeder, held_origin) == (pid, seeder, origin)
        and len(pid) <= 20
        and (origin or not held_version)
    )
    i = swarm.restamp(addr, now, pid, seeder, origin)
    assert swarm.restamp(ADDRS[6], now, pid, seeder, origin) == -1  # not held
    if not same:
        assert i == -1
        assert swarm.current(addr) == before
        return
    assert swarm.addrs[i] == addr
    assert swarm.current(addr) == before._replace(last_seen_ns=max(now, 101))


# -- the sampler's slices pick exactly the arithmetic progression it promises --------------


@settings(max_examples=400, deadline=None)
@given(
    size=st.integers(0, 70),
    lo=st.integers(0, 5),
    want=st.integers(1, 60),
    skip=st.integers(-1, 80),
    seed=st.integers(0, 2**32),
)
def test_sample_slots_takes_a_progression_from_a_random_start(
    size: int, lo: int, want: int, skip: int, seed: int
) -> None:
    """Slots ``start + j * step`` (mod size) of ``addrs[lo:lo+size]``, ``skip`` left out,
    at most ``want``: the reference below, built slot by slot, on the same two draws."""
    addrs: list[AddrKey] = [bytes([10, 0, i // 256, i % 256, 0, 1]) for i in range(lo + size + 3)]
    hi = lo + size
    got = sample_slots(addrs, lo, hi, want, skip, random.Random(seed))
    rng = random.Random(seed)
    want_slots: list[int] = []
    if size:
        in_range = lo <= skip < hi
        take = want + 1 if in_range else want
        start = int(rng.random() * size)
        step = 1 if size <= take else int(rng.random() * (size // take)) + 1
        slots = [lo + (start + j * step) % size for j in range(min(take, size))]
        want_slots = [i for i in slots if i != skip][:want]
        assert len(set(slots)) == len(slots)  # a progression never wraps onto itself
    assert got == [addrs[i] for i in want_slots]
    assert addrs[skip] not in got if 0 <= skip < len(addrs) else True
    assert len(got) == min(want, size - (lo <= skip < hi))


@settings(max_examples=200, deadline=None)
@given(n_leech=st.integers(0, 12), n_seed=st.integers(0, 12), want=st.integers(1, 30),
       skip=st.integers(-1, 25), seed=st.integers(0, 2**32))
def test_sample_live_takes_leechers_first(
    n_leech: int, n_seed: int, want: int, skip: int, seed: int
) -> None:
    swarm = Swarm()
    for k in range(n_leech + n_seed):
        swarm.insert(ADDRS[k], 1, b"", k >= n_leech, 0)
    leechers = set(swarm.addrs[: swarm.n_leech])
    got = sample_live(swarm, want, skip, True, random.Random(seed))
    total = n_leech + n_seed - (0 <= skip < n_leech + n_seed)
    assert len(got) == len(set(got)) == min(want, total)
    if 0 <= skip < len(swarm):
        assert swarm.addrs[skip] not in got
    taken = sum(1 for a in got if a in leechers)
    assert got[:taken] == [a for a in got if a in leechers]  # leechers come first...
    assert taken == min(want, len(leechers - {swarm.addrs[skip]} if 0 <= skip < len(swarm)
                                  else leechers))  # ...and all of them if room
