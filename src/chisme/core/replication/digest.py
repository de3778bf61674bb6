"""The two-level XOR digest of a store's replicated records, kept incrementally (docs/v2.md §4).

Every replicated record (origin != 0) contributes :func:`record_hash` to the bucket of its
key (:func:`bucket_of`); a group's hash is the XOR of its ``PER_GROUP`` buckets, the root
the XOR of all. Two members compare roots, then groups, then buckets, and exchange only the
records of the buckets that differ. The same numbers on every node: nothing here depends
on the node that computes it.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from array import array
from collections.abc import Sequence

from chisme.core.records import Record

BUCKETS = 4096
GROUPS = 64
PER_GROUP = BUCKETS // GROUPS


def bucket_of(info_hash: str) -> int:
    """The digest bucket of a key: every record of a key is in one bucket. CRC-32 (in C,
    the same on every node) spreads keys well enough; the record hash below is the strong one.
    """
    return zlib.crc32(info_hash.encode()) % BUCKETS


_IDS = struct.Struct(">IQ")


def record_hash(info_hash: str, rec: Record) -> int:
    """What two replicas must agree on for a record: its identity and origin version.

    BLAKE2b, not a CRC: the digest XORs record hashes, and a linear hash would let different
    sets of records XOR to the same value. The stamp is not hashed: an origin's silent
    refreshes change nothing.
    """
    addr = rec.addr if isinstance(rec.addr, bytes) else rec.addr.encode()
    data = b"".join((info_hash.encode(), b"\x00", addr, _IDS.pack(rec.origin, rec.version)))
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Digest:
    """Two-level XOR digest of the replicated records, kept incrementally: the store's
    observer (:meth:`on_change`). ``keys[b]`` holds the keys seen in bucket ``b`` (a key
    whose records all went away is dropped when a sync next reads the bucket)."""

    def __init__(self) -> None:
        self.buckets = array("Q", bytes(8 * BUCKETS))
        self.groups = array("Q", bytes(8 * GROUPS))
        self.root = 0
        self.count = 0
        self.keys: list[set[str]] = [set() for _ in range(BUCKETS)]

    def toggle(self, info_hash: str, rec: Record, sign: int) -> None:
        b = bucket_of(info_hash)
        h = record_hash(info_hash, rec)
        self.buckets[b] ^= h
        self.groups[b // PER_GROUP] ^= h
        self.root ^= h
        self.count += sign
        if sign > 0:
            self.keys[b].add(info_hash)

    def on_change(self, info_hash: str, old: Record | None, new: Record | None) -> None:
        """The store's observer: a replicated record appeared, changed or went away."""
        if old is not None and old.origin:
            self.toggle(info_hash, old, -1)
        if new is not None and new.origin:
            self.toggle(info_hash, new, +1)


__all__: Sequence[str] = ("BUCKETS", "GROUPS", "PER_GROUP", "Digest", "bucket_of", "record_hash")
