"""The providers of one key in packed slots (a :class:`Swarm`), and sampling them in O(want).

The layout only: what a record means, when it expires, what wins a merge and what the store
is bounded to are :mod:`chisme.core.store`'s. The store keeps the totals; a swarm keeps its
slots consistent (the seeder/leecher partition, the address index, the family counts).

Memory (≈ 140 B per record at 10^6 records, bench/bench_store.py): per key parallel slots
(addresses, stamps, and one packed chunk per slot for origin, version and peer id), with
leechers packed before seeders, so that a tracker reply samples peers in O(numwant) without
scanning a swarm, and counts seeders/leechers in O(1).
"""

from __future__ import annotations

import random
import struct
from array import array
from collections.abc import Sequence

from chisme.core.keys import IPV4_KEY_SIZE, AddrKey
from chisme.core.records import FLAG_SEEDER, Record, tombstone_record

# Per slot, one fixed-size chunk of Swarm.meta: origin (u32), version (u64), peer id length
# (u8; _LONG: kept in Swarm.long_pids), then up to 20 peer id bytes inline (BitTorrent's).
# One bytearray rather than an array per field: each array costs a 64-byte header plus its
# growth slack per key, ~20 B per record in swarms of 10 (bench/bench_store.py).
_META = struct.Struct("<IQB")
_HEAD = _META.size  # 13
_PID_INLINE = 20
_SLOT = _HEAD + _PID_INLINE
_ORIGIN = struct.Struct("<I")
_VERSION = struct.Struct("<Q")
_LONG = 255
# A swarm of at most this many slots finds an address by scanning its list (list.index, in C:
# about 1 µs at 32) instead of keeping an address -> slot dict, which costs ~35 B per record
# in the common small swarm. Above it the dict is built; below half of it, dropped.
_INDEX_MIN = 32


class Swarm:
    """The providers of one key. Slots ``[0, n_leech)`` are leechers, the rest seeders;
    tombstones are kept apart, by address.

    ``index`` (address -> slot) exists only while the swarm has more than ``_INDEX_MIN``
    slots; use :meth:`find`.
    """

    __slots__ = (
        "addrs",
        "downloaded",
        "index",
        "long_pids",
        "meta",
        "min_seen",
        "n4",
        "n6",
        "n_leech",
        "seen",
        "tombs",
    )

    def __init__(self) -> None:
        self.index: dict[AddrKey, int] | None = None
        self.addrs: list[AddrKey] = []
        self.seen = array("q")
        self.meta = bytearray()  # _SLOT bytes per slot: origin, version, peer id
        self.n_leech = 0
        self.n4 = 0  # slots whose address is an IPv4 key
        self.n6 = 0  # ... an IPv6 key; the rest are host:port names
        self.min_seen = 1 << 62  # a lower bound of ``seen`` over the slots
        # addr -> (seen, origin, version): a tuple rather than a Record, to stay small
        self.tombs: dict[AddrKey, tuple[int, int, int]] | None = None
        self.long_pids: dict[AddrKey, bytes] | None = None
        self.downloaded: dict[str, int] | None = None  # node id -> completed count

    def __len__(self) -> int:
        return len(self.addrs)

    def copy(self) -> Swarm:
        """An independent copy (every container copied; addresses and peer ids are bytes)."""
        c = Swarm.__new__(Swarm)
        c.index = None if self.index is None else self.index.copy()
        c.addrs = self.addrs.copy()
        c.seen = self.seen[:]
        c.meta = self.meta[:]
        c.n_leech, c.n4, c.n6, c.min_seen = self.n_leech, self.n4, self.n6, self.min_seen
        c.tombs = None if self.tombs is None else self.tombs.copy()
        c.long_pids = None if self.long_pids is None else self.long_pids.copy()
        c.downloaded = None if self.downloaded is None else self.downloaded.copy()
        return c

    # -- slot access ------------------------------------------------------------------

    def origin(self, i: int) -> int:
        return int(_ORIGIN.unpack_from(self.meta, i * _SLOT)[0])

    def version(self, i: int) -> int:
        return int(_VERSION.unpack_from(self.meta, i * _SLOT + 4)[0])

    def peer_id(self, i: int) -> bytes:
        o = i * _SLOT + _HEAD
        n = self.meta[o - 1]
        if n == _LONG:
            assert self.long_pids is not None
            return self.long_pids[self.addrs[i]]
        return bytes(self.meta[o : o + n])

    def record(self, i: int) -> Record:
        o = i * _SLOT
        origin, version, n = _META.unpack_from(self.meta, o)
        if n == _LONG:
            assert self.long_pids is not None
            pid = self.long_pids[self.addrs[i]]
        else:
            pid = bytes(self.meta[o + _HEAD : o + _HEAD + n])
        flags = FLAG_SEEDER if i >= self.n_leech else 0
        return Record(self.addrs[i], self.seen[i], pid, flags, origin, version)

    def records(self) -> list[Record]:
        """Every slot's record, in slot order."""
        return [self.record(i) for i in range(len(self.addrs))]

    def find(self, addr: AddrKey) -> int | None:
        """The slot of ``addr``, or None."""
        if self.index is not None:
            return self.index.get(addr)
        addrs = self.addrs
        # a membership test first: a miss (every new provider) must not pay for list.index's
        # ValueError, whose message formats the address
        return addrs.index(addr) if addr in addrs else None

    def current(self, addr: AddrKey) -> Record | None:
        """The record held for ``addr``: a slot, a tombstone, or None."""
        i = self.find(addr)
        if i is not None:
            return self.record(i)
        return self.tomb(addr) if self.tombs else None

    def restamp(self, addr: AddrKey, now_ns: int, peer_id: bytes, seeder: bool, origin: int) -> int:
        """Raise the stamp of ``addr``'s slot to ``max(now_ns, stamp + 1)`` if the slot holds
        this very provider: the same side (seeder or not), the same inline peer id, the same
        ``origin``, and version 0 if the origin is 0 (such announces carry none). Returns the
        slot, or -1 (nothing changed). One call and no Record: the tracker's refresh path.
        """
        if self.index is not None:  # find, inlined: one frame per announce less
            i = self.index.get(addr, -1)
        else:
            addrs = self.addrs
            i = addrs.index(addr) if addr in addrs else -1
        if i < 0 or (i >= self.n_leech) != seeder:
            return -1
        meta = self.meta
        o = i * _SLOT
        n = len(peer_id)
        if (
            n <= _PID_INLINE
            and meta[o + _HEAD - 1] == n  # an inline peer id of the same length...
            and meta[o + _HEAD : o + _HEAD + n] == peer_id  # ...and bytes
            and _ORIGIN.unpack_from(meta, o)[0] == origin
            and (origin or not _VERSION.unpack_from(meta, o + 4)[0])
        ):
            seen = self.seen
            prev = seen[i]
            seen[i] = now_ns if now_ns > prev else prev + 1
            return i
        return -1

    def others(self, family: int) -> int:
        """Slots whose address is not of ``family`` (4 or 6; 0: none are)."""
        if family == 4:
            return len(self.addrs) - self.n4
        if family == 6:
            return len(self.addrs) - self.n6
        return 0

    def stalest(self) -> int:
        """The slot with the smallest ``seen`` (O(n); only on eviction)."""
        seen = self.seen
        return seen.index(min(seen))  # both loops in C

    # -- slot mutations (the Store keeps the totals) ------------------------------------

    def insert(
        self, addr: AddrKey, seen: int, pid: bytes, seeder: bool, origin: int, *, version: int = 0
    ) -> None:
        i = len(self.addrs)
        self.addrs.append(addr)
        self._count_family(addr, 1)
        if self.index is not None:
            self.index[addr] = i
        elif i >= _INDEX_MIN:
            self.index = {a: k for k, a in enumerate(self.addrs)}
        self.seen.append(seen)
        self.meta.extend(bytes(_SLOT))
        self._set_meta(i, addr, pid, origin, version)
        if not seeder:
            self._swap(i, self.n_leech)
            self.n_leech += 1
        self.min_seen = min(self.min_seen, seen)

    def update(
        self, i: int, seen: int, pid: bytes, seeder: bool, origin: int, *, version: int = 0
    ) -> None:
        self.seen[i] = seen
        self._set_meta(i, self.addrs[i], pid, origin, version)
        if seeder and i < self.n_leech:  # leecher -> seeder: hand it to the seeder side
            self._swap(i, self.n_leech - 1)
            self.n_leech -= 1
        elif not seeder and i >= self.n_leech:
            self._swap(i, self.n_leech)
            self.n_leech += 1

    def delete(self, i: int) -> None:
        if i < self.n_leech:
            self._swap(i, self.n_leech - 1)
            i = self.n_leech - 1
            self.n_leech -= 1
        last = len(self.addrs) - 1
        self._swap(i, last)
        addr = self.addrs.pop()
        self._count_family(addr, -1)
        self.seen.pop()
        del self.meta[last * _SLOT :]
        if self.index is not None:
            del self.index[addr]
            if last < _INDEX_MIN // 2:
                self.index = None
        if self.long_pids is not None:
            self.long_pids.pop(addr, None)

    def _set_meta(self, i: int, addr: AddrKey, pid: bytes, origin: int, version: int) -> None:
        o = i * _SLOT
        n = len(pid)
        if n <= _PID_INLINE:
            _META.pack_into(self.meta, o, origin, version, n)
            self.meta[o + _HEAD : o + _HEAD + n] = pid
            if self.long_pids is not None:
                self.long_pids.pop(addr, None)
        else:
            _META.pack_into(self.meta, o, origin, version, _LONG)
            if self.long_pids is None:
                self.long_pids = {}
            self.long_pids[addr] = pid

    def _swap(self, i: int, j: int) -> None:
        if i == j:
            return
        a, b = self.addrs[i], self.addrs[j]
        self.addrs[i], self.addrs[j] = b, a
        if self.index is not None:
            self.index[a], self.index[b] = j, i
        self.seen[i], self.seen[j] = self.seen[j], self.seen[i]
        oi, oj = i * _SLOT, j * _SLOT
        meta = self.meta
        meta[oi : oi + _SLOT], meta[oj : oj + _SLOT] = meta[oj : oj + _SLOT], meta[oi : oi + _SLOT]

    def _count_family(self, addr: AddrKey, by: int) -> None:
        if isinstance(addr, bytes):
            if len(addr) == IPV4_KEY_SIZE:
                self.n4 += by
            else:
                self.n6 += by

    # -- tombstones -----------------------------------------------------------------------

    def tomb(self, addr: AddrKey) -> Record | None:
        """The tombstone held for ``addr``, or None."""
        t = self.tombs.get(addr) if self.tombs else None
        return None if t is None else tombstone_record(addr, *t)

    def tomb_records(self, since_ns: int = 0) -> list[Record]:
        """The tombstones held, those stamped ``since_ns`` or later."""
        if not self.tombs:
            return []
        return [tombstone_record(a, *t) for a, t in self.tombs.items() if t[0] >= since_ns]

    def put_tomb(self, tomb: Record) -> None:
        """Hold ``tomb`` for its address (replacing a tombstone held for it)."""
        if self.tombs is None:
            self.tombs = {}
        self.tombs[tomb.addr] = (tomb.last_seen_ns, tomb.origin, tomb.version)

    def pop_tomb(self, addr: AddrKey) -> Record | None:
        """Drop the tombstone of ``addr``; returns it, or None if none was held."""
        tombs = self.tombs
        t = tombs.pop(addr, None) if tombs else None
        if tombs is not None and not tombs:
            self.tombs = None
        return None if t is None else tombstone_record(addr, *t)

    def stalest_tomb(self) -> AddrKey:
        """The address of the oldest tombstone (O(tombstones); only when they are full)."""
        tombs = self.tombs
        assert tombs
        return min(tombs, key=lambda a: tombs[a][0])

    def pop_tombs_before(self, cutoff_ns: int) -> list[Record]:
        """Drop the tombstones stamped before ``cutoff_ns``; returns them."""
        if not self.tombs:
            return []
        dead = [a for a, t in self.tombs.items() if t[0] < cutoff_ns]
        out = [tombstone_record(a, *self.tombs.pop(a)) for a in dead]
        if not self.tombs:
            self.tombs = None
        return out


# -- sampling slots -------------------------------------------------------------------------


def sample_live(
    swarm: Swarm, want: int, skip: int, leechers_first: bool, rng: random.Random
) -> list[AddrKey]:
    """Up to ``want`` slots of a swarm with no expired slot, never slot ``skip`` (-1: none);
    leechers before seeders with ``leechers_first``."""
    addrs = swarm.addrs
    n = len(addrs)
    if not leechers_first:
        return sample_slots(addrs, 0, n, want, skip, rng)
    nl = swarm.n_leech
    got = sample_slots(addrs, 0, nl, want, skip, rng)
    if len(got) < want:
        got += sample_slots(addrs, nl, n, want - len(got), skip, rng)
    return got


def sample_slots(  # noqa: PLR0917  (positional: the tracker's hot path)
    addrs: list[AddrKey],
    lo: int,
    hi: int,
    want: int,
    skip: int,
    rng: random.Random,
) -> list[AddrKey]:
    """Up to ``want`` of ``addrs[lo:hi]``, never slot ``skip`` (-1: none), all live: slices only.

    Slots ``start + j * step`` (mod the range's size) for ``j < take``, from a random start
    with a random stride such that they never wrap past the start (``take * step <= size``),
    so no slot is taken twice; a range that fits whole is rotated to a random start instead.
    ``take`` has one spare when ``skip`` lies in the range, and the position of ``skip`` in
    the result is arithmetic, not a search. ``rng.random()`` rather than ``randrange``: a
    third of the cost, and its bias at these sizes is far below 2^-40.
    """
    size = hi - lo
    if size <= 0:
        return []
    if not lo <= skip < hi:
        skip = -1
    take = want + 1 if skip >= 0 else want
    rand = rng.random
    start = int(rand() * size)
    first = lo + start
    if size <= take:
        step = 1
        got = addrs[first:hi]
        got += addrs[lo:first]
    else:
        step = int(rand() * (size // take)) + 1
        end = first + take * step  # each slice is cut to length: no list is built twice
        if end <= hi:
            got = addrs[first:end:step]
        else:
            got = addrs[first:hi:step]
            wrapped = first + len(got) * step - size
            got += addrs[wrapped : wrapped + (take - len(got)) * step : step]
    if skip >= 0:
        offset = (skip - lo - start) % size
        if offset % step == 0 and offset // step < len(got):
            del got[offset // step]
    del got[want:]
    return got


__all__: Sequence[str] = ("Swarm", "sample_live", "sample_slots")
