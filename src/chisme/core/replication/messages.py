"""The v2 replication messages (rumors and the anti-entropy exchange), as the engine sends them.

Primitive fields only: :mod:`chisme.wire.v2` encodes them. docs/v2.md §3-4 has the exchange:
:class:`Rumors` carry fresh changes in datagrams; a sync is :class:`SyncRoot`, then
:class:`SyncOk` (equal digests) or :class:`SyncGroups` -> :class:`SyncBuckets` ->
:class:`Delta` (-> :class:`Delta`) on the reliable stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from chisme.core.records import Record

ItemRecord = tuple[str, Record]
"""One replicated record: (info hash, record)."""

Counter = tuple[str, str, int]
"""A BitTorrent ``completed`` counter: (info hash, node id that counted, count); max wins."""


def record_size(info_hash: str, rec: Record) -> int:
    """A close estimate of a record's encoded size, for byte budgets."""
    return len(info_hash) + len(rec.addr) + len(rec.peer_id) + 32


class Rumors(NamedTuple):
    """Fresh changes, pushed to a few random members (unreliable datagram)."""

    items: tuple[ItemRecord, ...]
    counters: tuple[Counter, ...] = ()


class SyncRoot(NamedTuple):
    sync_id: int
    root: int
    size: int  # records in the digest


class SyncOk(NamedTuple):
    sync_id: int


class SyncGroups(NamedTuple):
    sync_id: int
    hashes: tuple[int, ...]  # digest.GROUPS group hashes


class SyncBuckets(NamedTuple):
    sync_id: int
    buckets: tuple[tuple[int, int], ...]  # (bucket, hash) for every bucket of differing groups


class Delta(NamedTuple):
    sync_id: int
    buckets: tuple[int, ...]  # the buckets this delta covers
    items: tuple[ItemRecord, ...]
    reply: bool  # True: the receiver answers with what the sender lacks
    counters: tuple[Counter, ...] = ()  # the download counters of the keys covered


class Out(NamedTuple):
    """A message for the shell to send: reliable (TCP stream) or not (UDP datagram)."""

    to: str
    msg: object
    reliable: bool


__all__: Sequence[str] = (
    "Counter",
    "Delta",
    "ItemRecord",
    "Out",
    "Rumors",
    "SyncBuckets",
    "SyncGroups",
    "SyncOk",
    "SyncRoot",
    "record_size",
)
