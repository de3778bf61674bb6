"""Provider records: the value a store holds for one (info hash, address), and its total order.

A record is *the greatest wins*: merge keeps, for each (info hash, address), the record with
the greatest :func:`order_key` — ``last_seen_ns`` first, then the rest of the record — so that
replicas that saw the same records in any order, any number of times, hold the same state
(docs/DESIGN.md §1: "replace only if newer" is not commutative on equal timestamps).
"""

from __future__ import annotations

from typing import NamedTuple

from chisme.core.keys import AddrKey, format_addr
from chisme.errors import InvalidInput

FLAG_SEEDER = 1
"""The provider has the whole content (BitTorrent ``left == 0``)."""
FLAG_TOMBSTONE = 2
"""The provider left (BitTorrent ``event=stopped``): a timestamped delete."""

MAX_PEER_ID_BYTES = 128
"""Longest accepted peer id (BitTorrent's are 20 bytes; v1 peers send short free text)."""

MAX_ORIGIN = 2**32 - 1
"""Largest origin (node) id: the store keeps origins as unsigned 32-bit integers."""

MAX_VERSION = 2**64 - 1
"""Largest version (an origin's change counter): the store keeps versions as unsigned 64-bit."""


class Record(NamedTuple):
    """One provider record as the store merges it.

    ``last_seen_ns`` is integer nanoseconds since the Unix epoch, on the clock of the node
    that stamped it. ``origin`` names the node that accepted it first-hand (0: unknown/v1).
    """

    addr: AddrKey
    last_seen_ns: int
    peer_id: bytes = b""
    flags: int = 0
    origin: int = 0
    version: int = 0  # the origin's change counter (v2); 0 for v1 records

    @property
    def seeder(self) -> bool:
        return bool(self.flags & FLAG_SEEDER)

    @property
    def tombstone(self) -> bool:
        return bool(self.flags & FLAG_TOMBSTONE)


def tombstone_record(addr: AddrKey, last_seen_ns: int, origin: int = 0, version: int = 0) -> Record:
    """The record of a provider that left at ``last_seen_ns``: no peer id, no other flag."""
    return Record(addr, last_seen_ns, b"", FLAG_TOMBSTONE, origin, version)


def order_key(r: Record) -> tuple[int, int, bytes, int, int]:
    """The total order merge uses: freshest wins, ties broken by the rest of the record.

    A tombstone beats a live record of the same instant (its flag bit is the highest).
    """
    return (r.last_seen_ns, r.flags, r.peer_id, r.origin, r.version)


class Provider(NamedTuple):
    """A live provider as lookups return it: the JSON-API and v1 view of a record."""

    addr: str
    last_seen_ns: int
    peer_id: str = ""
    seeder: bool = False


def parse_peer_id(text: str) -> bytes:
    """A peer id given as text (API, CLI, library): its UTF-8 bytes, at most
    :data:`MAX_PEER_ID_BYTES`, else :class:`InvalidInput`."""
    pid = text.encode("utf-8")
    if len(pid) > MAX_PEER_ID_BYTES:
        raise InvalidInput(f"peer_id must be at most {MAX_PEER_ID_BYTES} bytes")
    return pid


def peer_id_text(peer_id: bytes) -> str:
    """The text of a peer id: UTF-8 when it is, else Latin-1 (BitTorrent ids are raw bytes)."""
    if peer_id.isascii():
        return peer_id.decode("ascii")
    try:
        return peer_id.decode("utf-8")
    except UnicodeDecodeError:
        return peer_id.decode("latin-1")


def to_provider(r: Record) -> Provider:
    """The user-facing view of a record."""
    return Provider(format_addr(r.addr), r.last_seen_ns, peer_id_text(r.peer_id), r.seeder)
