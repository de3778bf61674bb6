"""The transmit-limited broadcast queue: which gossip rides on the next outgoing packet.

This is memberlist's ``TransmitLimitedQueue`` (hashicorp/memberlist queue.go @1b4c746), kept generic
so that it carries SWIM membership updates today and provider-record rumors later:

- every item has a *key*; queueing a newer item under a key that is still queued invalidates the
  older one, as memberlist's ``NamedBroadcast`` does (a newer ``Alive`` about a node replaces the
  older ``Suspect`` about it: nobody needs the stale one any more);
- :meth:`TransmitLimitedQueue.take` fills a byte budget with the *least transmitted* items
  first, and among items sent equally often the *newest* first (memberlist orders its btree by
  transmits, then by id descending; Consul's scale fixes made the queue LIFO so that fresh news is
  not starved by a backlog);
- an item is handed out at most ``retransmit_mult * ceil(log10(num_nodes + 1))`` times (memberlist
  util.go ``retransmitLimit``; SWIM §4.1 shows that O(log N) rounds of infection-style dissemination
  reach every member with high probability), then dropped;
- the queue is bounded: past ``max_items`` the most-sent (then oldest) items are dropped first, as
  memberlist's ``Prune`` removes from the far end of its btree.

Cost: ``queue`` is O(1); ``take`` is O(items returned + a bounded number of items that did not fit
+ distinct transmit counts), independent of the queue length. Items are bucketed by transmit count
(at most ``retransmit_limit`` buckets, 16 at 1,000 nodes); within a bucket a dict keeps arrival
order, so "newest first" means "most recently arrived in this bucket". Memberlist's exact btree
order (by original submission id) would need a sorted structure for no practical gain.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Generic, TypeVar

from chisme.errors import ConfigError

T = TypeVar("T")

_MAX_SKIPS = 16
"""Items too big for the remaining budget that one ``take`` steps over before giving up.

memberlist searches its whole btree for something that still fits; bounding the search keeps
``take`` O(1) per packet at the price of occasionally leaving a few bytes unused.
"""


def retransmit_limit(retransmit_mult: int, num_nodes: int) -> int:
    """How many times one item is transmitted: ``mult * ceil(log10(n + 1))``, at least 1.

    memberlist util.go ``retransmitLimit`` (log10, although its doc comment says log). For the
    LAN multiplier 4: 4 transmissions up to 9 nodes, 8 up to 99, 12 up to 999, 16 up to 9,999.
    The floor of 1 only matters for ``num_nodes == 0``, where memberlist would send nothing.
    """
    return max(1, retransmit_mult * math.ceil(math.log10(max(num_nodes, 0) + 1)))


class _Entry(Generic[T]):
    __slots__ = ("item", "key", "size", "transmits")

    def __init__(self, key: str, item: T, size: int) -> None:
        self.key = key
        self.item = item
        self.size = size
        self.transmits = 0


class TransmitLimitedQueue(Generic[T]):
    """Items waiting to be piggybacked, least transmitted first (memberlist queue.go).

    >>> q: TransmitLimitedQueue[str] = TransmitLimitedQueue(retransmit_mult=1)
    >>> q.queue("node-a", "alive a", size=10)
    >>> q.queue("node-a", "suspect a", size=10)   # invalidates "alive a"
    >>> q.take(max_bytes=100, num_nodes=5)
    ['suspect a']
    >>> len(q)                                     # limit 1 * ceil(log10(6)) = 1: sent, dropped
    0
    """

    __slots__ = ("_buckets", "_by_key", "_max_items", "_mult")

    def __init__(self, retransmit_mult: int, max_items: int = 4096) -> None:
        if retransmit_mult < 1:
            raise ConfigError("retransmit_mult must be at least 1")
        if max_items < 1:
            raise ConfigError("max_items must be at least 1")
        self._mult = retransmit_mult
        self._max_items = max_items
        self._by_key: dict[str, _Entry[T]] = {}
        # _buckets[t]: the entries transmitted t times, keyed by key, in order of arrival.
        self._buckets: list[dict[str, _Entry[T]]] = [{}]

    @property
    def retransmit_mult(self) -> int:
        return self._mult

    def __len__(self) -> int:
        return len(self._by_key)

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[T]:
        """The queued items, least transmitted and newest first (for inspection and tests)."""
        for bucket in self._buckets:
            for entry in reversed(bucket.values()):
                yield entry.item

    def queue(self, key: str, item: T, size: int) -> None:
        """Queue ``item`` (``size`` bytes on the wire, roughly) under ``key``; replaces older."""
        old = self._by_key.get(key)
        if old is not None:
            del self._buckets[old.transmits][key]
        entry = _Entry(key, item, max(size, 1))
        self._by_key[key] = entry
        self._buckets[0][key] = entry
        if len(self._by_key) > self._max_items:
            self._prune(self._max_items)

    def discard(self, key: str) -> None:
        """Drop the item queued under ``key``, if any."""
        entry = self._by_key.pop(key, None)
        if entry is not None:
            del self._buckets[entry.transmits][key]

    def clear(self) -> None:
        self._by_key.clear()
        self._buckets = [{}]

    def take(self, max_bytes: int, num_nodes: int) -> list[T]:
        """Items whose sizes sum to at most ``max_bytes``, least transmitted (then newest) first.

        Each returned item counts one transmission; an item that reaches
        :func:`retransmit_limit` for ``num_nodes`` (the current cluster size, as memberlist's
        ``NumNodes`` callback) is dropped from the queue.
        """
        if not self._by_key or max_bytes <= 0:
            return []
        limit = retransmit_limit(self._mult, num_nodes)
        out: list[T] = []
        taken: list[_Entry[T]] = []
        free = max_bytes
        skips = 0
        for transmits, bucket in enumerate(self._buckets):
            if not bucket:
                continue
            if transmits >= limit:
                # The cluster shrank since these were queued: they have been sent enough.
                for key in bucket:
                    del self._by_key[key]
                bucket.clear()
                continue
            for entry in reversed(bucket.values()):
                if entry.size > free:
                    skips += 1
                    if skips > _MAX_SKIPS:
                        break
                    continue
                out.append(entry.item)
                taken.append(entry)
                free -= entry.size
                if free <= 0:
                    break
            if free <= 0 or skips > _MAX_SKIPS:
                break
        # Move what was sent one bucket up, oldest first, so that within the next bucket the
        # newest still comes out first. Done after the walk so nothing is sent twice per take.
        for entry in reversed(taken):
            del self._buckets[entry.transmits][entry.key]
            entry.transmits += 1
            if entry.transmits >= limit:
                del self._by_key[entry.key]
                continue
            if entry.transmits == len(self._buckets):
                self._buckets.append({})
            self._buckets[entry.transmits][entry.key] = entry
        return out

    def _prune(self, keep: int) -> None:
        """Drop the most-sent, then oldest, items until ``keep`` remain (memberlist Prune)."""
        for bucket in reversed(self._buckets):
            while bucket and len(self._by_key) > keep:
                key = next(iter(bucket))
                del bucket[key]
                del self._by_key[key]
            if len(self._by_key) <= keep:
                return
