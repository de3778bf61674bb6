"""Replication between chisme members (v2): origin leases, rumors, and digest anti-entropy.

Pure and sans-I/O: :class:`Replicator` reads ``now_ns`` and an ``rng`` from its caller and
returns :class:`~chisme.core.replication.messages.Out` messages for the shell (or the
simulator) to deliver. docs/v2.md has the design; in short:

- the *origin* of a record (the node that accepted it first-hand) versions its changes;
  silent refreshes cost nothing; replicas keep an origin's records while it is alive
  (:meth:`Replicator.renew_leases`), and the origin tombstones what its own TTL expires;
- a change is *rumored* to a few random members, each change a bounded number of times
  (memberlist's transmit-limited queue);
- once per ``sync_interval_ns`` a node compares a two-level XOR digest
  (:mod:`~chisme.core.replication.digest`) with one random member and exchanges only the
  records of the buckets that differ (Merkle-style anti-entropy, as Dynamo's replica
  synchronisation, DeCandia et al. 2007 §4.7; docs/v2.md §4), so
  an idle cluster exchanges a root hash and little else.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chisme.core.broadcast import TransmitLimitedQueue
from chisme.core.keys import AddrKey
from chisme.core.records import Record, order_key
from chisme.core.replication.digest import BUCKETS, GROUPS, PER_GROUP, Digest
from chisme.core.replication.messages import (
    Counter,
    Delta,
    ItemRecord,
    Out,
    Rumors,
    SyncBuckets,
    SyncGroups,
    SyncOk,
    SyncRoot,
    record_size,
)
from chisme.core.store import Store


class PeerView(Protocol):
    """What replication needs from membership."""

    def random_alive(self, k: int) -> list[str]: ...

    def num_alive(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    """Rumors (gossip_*, retransmit_mult, max_datagram_bytes) and anti-entropy (sync_*)."""

    gossip_interval_ns: int = 200_000_000
    gossip_nodes: int = 3
    retransmit_mult: int = 4
    sync_interval_ns: int = 1_000_000_000
    sync_timeout_ns: int = 5_000_000_000
    max_concurrent_syncs: int = 8
    max_datagram_bytes: int = 1200
    max_sync_records: int = 800  # about 64 KiB of records per Delta
    # after a Delta that repaired many records (a healed partition, a node back) the next
    # sync starts this soon instead of a sync interval later, so a repair runs at up to 10
    # capped Deltas per second each way (~700 KB/s) rather than one
    sync_burst_ns: int = 100_000_000


def _newer_version(mine: Record, theirs: Record | None) -> bool:
    """Whether a peer that holds ``theirs`` lacks ``mine``: another origin version that wins
    the merge order (the same version with an older stamp is the same replica)."""
    if theirs is None:
        return True
    if (mine.origin, mine.version) == (theirs.origin, theirs.version):
        return False
    return order_key(mine) > order_key(theirs)



class Replicator:
    """Replicates a node's store with its cluster (see the module docstring).

    ``digest`` is the one ``store`` reports its changes to (its
    :class:`~chisme.core.store.Replication`'s ``on_change``), from its first record on.
    """

    def __init__(
        self,
        store: Store,
        digest: Digest,
        view: PeerView,
        config: ReplicationConfig,
        rng: random.Random,
    ) -> None:
        self.store = store
        self.view = view
        self.config = config
        self.rng = rng
        self.digest = digest
        # bounded: past it the most-sent rumors go first, and anti-entropy repairs the rest
        self.rumors: TransmitLimitedQueue[ItemRecord] = TransmitLimitedQueue(
            config.retransmit_mult, max_items=16384
        )
        self.counter_rumors: TransmitLimitedQueue[Counter] = TransmitLimitedQueue(
            config.retransmit_mult, max_items=16384
        )
        self._next_gossip = 0
        self._next_sync = 0
        self._repaired = 0  # records the last merge inserted or replaced
        self._sync_seq = rng.getrandbits(31)
        self._syncs: dict[int, tuple[str, int]] = {}  # sync id -> (peer, started)
        self._serving: dict[tuple[str, int], int] = {}  # (peer, sync id) -> started
        self.on_merged: Callable[[int, int, int], None] | None = None  # metrics hook

    # -- local changes ------------------------------------------------------------------

    def publish(self, changes: Iterable[ItemRecord]) -> None:
        """Queue changes for rumoring (the store's local-origin outbox, or merges).

        Alone (no other live member), there is nobody to tell: a member that appears later
        gets everything by anti-entropy, so a lone node keeps no rumor backlog."""
        if self.view.num_alive() <= 1:
            return
        queue = self.rumors.queue
        for info_hash, rec in changes:
            addr = rec.addr
            key = info_hash + "\x00" + (addr.hex() if isinstance(addr, bytes) else addr)
            queue(key, (info_hash, rec), record_size(info_hash, rec))

    # -- time -----------------------------------------------------------------------------

    def next_deadline_ns(self) -> int:
        """The earliest monotonic time at which :meth:`tick` has work to do."""
        if len(self.rumors) or len(self.counter_rumors) or self.store.has_changes():
            return min(self._next_gossip, self._next_sync)
        return self._next_sync

    def tick(self, wall_ns: int, mono_ns: int) -> list[Out]:
        """Rumor gossip and anti-entropy, when due (timers on the monotonic clock)."""
        out: list[Out] = []
        self.publish(self.store.drain_changes())
        if mono_ns >= self._next_gossip:
            self._next_gossip = mono_ns + self.config.gossip_interval_ns
            out.extend(self.gossip_round())
        if mono_ns >= self._next_sync:
            self._next_sync = mono_ns + self.config.sync_interval_ns
            out.extend(self.start_sync(mono_ns))
        return out

    def publish_counter(self, info_hash: str, node_id: str, count: int) -> None:
        """Rumor a download counter that grew (counters are not in the digest: rumors carry
        them, and every Delta carries those of the keys it covers)."""
        self.counter_rumors.queue(
            f"{info_hash}\x00{node_id}", (info_hash, node_id, count), len(info_hash) + 24
        )

    def gossip_round(self) -> list[Out]:
        """Send queued rumors to ``gossip_nodes`` random alive members."""
        if not len(self.rumors) and not len(self.counter_rumors):
            return []
        targets = self.view.random_alive(self.config.gossip_nodes)
        n = self.view.num_alive()
        out: list[Out] = []
        budget = self.config.max_datagram_bytes - 64
        for to in targets:
            items = self.rumors.take(budget, n + 1)
            used = sum(record_size(ih, r) for ih, r in items)
            counters = self.counter_rumors.take(max(0, budget - used), n + 1)
            if not items and not counters:
                break
            out.append(Out(to, Rumors(tuple(items), tuple(counters)), reliable=False))
        return out

    def start_sync(self, now_ns: int) -> list[Out]:
        """Begin one anti-entropy exchange with a random member, if a slot is free."""
        for sid, (_, started) in list(self._syncs.items()):
            if now_ns - started > self.config.sync_timeout_ns:
                del self._syncs[sid]
        if len(self._syncs) >= self.config.max_concurrent_syncs:
            return []
        targets = self.view.random_alive(1)
        if not targets:
            return []
        self._sync_seq = (self._sync_seq + 1) & 0x7FFFFFFF
        sid = self._sync_seq
        self._syncs[sid] = (targets[0], now_ns)
        return [Out(targets[0], SyncRoot(sid, self.digest.root, self.digest.count), True)]

    # -- messages ------------------------------------------------------------------------

    def on_message(self, src: str, msg: object, now_ns: int, mono_ns: int = 0) -> list[Out]:
        """Apply one replication message from ``src``; return the answers.

        ``now_ns`` is the wall clock (record stamps and expiry)."""
        if isinstance(msg, Rumors):
            self._merge(msg.items, now_ns, rumor=True)
            self._merge_counters(msg.counters)
            return []
        if isinstance(msg, SyncRoot):
            d = self.digest
            if msg.root == d.root or not self._may_serve(src, msg.sync_id, mono_ns):
                return [Out(src, SyncOk(msg.sync_id), True)]  # equal, or we are busy
            return [Out(src, SyncGroups(msg.sync_id, tuple(d.groups)), True)]
        if isinstance(msg, SyncOk):
            self._syncs.pop(msg.sync_id, None)
            return []
        if isinstance(msg, SyncGroups):
            if msg.sync_id not in self._syncs or len(msg.hashes) != GROUPS:
                return []
            groups = [g for g in range(GROUPS) if msg.hashes[g] != self.digest.groups[g]]
            if not groups:
                self._syncs.pop(msg.sync_id, None)
                return []
            buckets = tuple(
                (b, self.digest.buckets[b])
                for g in groups
                for b in range(g * PER_GROUP, (g + 1) * PER_GROUP)
            )
            return [Out(src, SyncBuckets(msg.sync_id, buckets), True)]
        if isinstance(msg, SyncBuckets):
            differ = tuple(
                b for b, h in msg.buckets if 0 <= b < BUCKETS and self.digest.buckets[b] != h
            )
            items, covered = self._records_of(differ, now_ns)
            counters = self._counters_of(items)
            return [Out(src, Delta(msg.sync_id, covered, items, True, counters), True)]
        if isinstance(msg, Delta):
            self._serving.pop((src, msg.sync_id), None)
            theirs = self._merge(msg.items, now_ns, rumor=False)
            if self._repaired >= self.config.max_sync_records // 4:
                # one Delta per sync interval moved ~330 records/s per node: a 5-minute
                # partition of 10^5 records took 150 s to repair
                burst = mono_ns + self.config.sync_burst_ns
                self._next_sync = min(self._next_sync, burst)
            self._merge_counters(msg.counters)
            if not msg.reply:
                return []
            self._syncs.pop(msg.sync_id, None)
            mine, _ = self._records_of(msg.buckets, now_ns)
            lacking = tuple(
                (ih, r) for ih, r in mine if _newer_version(r, theirs.get((ih, r.addr)))
            )
            counters = self._counters_of(mine)
            if not lacking and not counters:
                return []
            return [Out(src, Delta(msg.sync_id, (), lacking, False, counters), True)]
        return []

    def _merge(
        self, items: Iterable[ItemRecord], now_ns: int, *, rumor: bool
    ) -> dict[tuple[str, AddrKey], Record]:
        """Merge replicated records; new ones are rumored on. Returns what the sender had."""
        seen: dict[tuple[str, AddrKey], Record] = {}
        inserted = replaced = ignored = 0
        for info_hash, rec in items:
            seen[info_hash, rec.addr] = rec
            if not rec.origin:
                ignored += 1
                continue
            if rec.origin == self.store.local_origin:
                # only we write our records: one we do not hold (as sent) was forged, or
                # predates what we hold: retract it with a newer tombstone of our own
                held = self.store.get(info_hash, rec.addr)
                stale = held is None or held.origin != rec.origin or held.version < rec.version
                if stale and not rec.tombstone:
                    self.store.remove(info_hash, rec.addr, now_ns)
                ignored += 1
                continue
            held = self.store.get(info_hash, rec.addr)
            result = self.store.merge(info_hash, (rec,), now_ns, clamp=False)
            inserted += result.inserted
            replaced += result.replaced
            ignored += result.ignored
            if result.changed and (
                result.inserted
                or held is None
                or (held.origin, held.version) != (rec.origin, rec.version)
            ):
                # a newer stamp of the same origin version is the origin's silent refresh:
                # keep it, but rumoring it would make every refresh cost cluster-wide traffic
                # again (a Delta from the origin carries its fresh stamps)
                self.publish((info_hash, r) for r in result.changed)
        if self.on_merged is not None:
            self.on_merged(inserted, replaced, ignored)
        self._repaired = inserted + replaced
        return seen

    def _may_serve(self, src: str, sync_id: int, mono_ns: int) -> bool:
        """Cap the syncs we serve at once (a sync we answer costs us a Delta)."""
        serving = self._serving
        for key, started in list(serving.items()):
            if mono_ns - started > self.config.sync_timeout_ns:
                del serving[key]
        if len(serving) >= self.config.max_concurrent_syncs:
            return False
        serving[src, sync_id] = mono_ns
        return True

    def _merge_counters(self, counters: Iterable[Counter]) -> None:
        for info_hash, node_id, count in counters:
            if self.store.merge_downloaded(info_hash, {node_id: count}):
                self.publish_counter(info_hash, node_id, count)

    def _counters_of(self, items: Iterable[ItemRecord]) -> tuple[Counter, ...]:
        out: list[Counter] = []
        for info_hash in dict.fromkeys(ih for ih, _ in items):
            for node_id, count in self.store.downloaded_counters(info_hash).items():
                out.append((info_hash, node_id, count))
        return tuple(out[:4096])

    def _records_of(
        self, buckets: Sequence[int], now_ns: int
    ) -> tuple[tuple[ItemRecord, ...], tuple[int, ...]]:
        """Replicated records of some buckets, up to the Delta cap (whole buckets only)."""
        out: list[ItemRecord] = []
        covered: list[int] = []
        cap = self.config.max_sync_records
        for b in buckets:
            if not 0 <= b < BUCKETS:
                continue
            chunk: list[ItemRecord] = []
            keys = self.digest.keys[b]
            for info_hash in list(keys):
                recs = self.store.replicated(info_hash)
                if not recs:
                    if info_hash not in self.store:
                        keys.discard(info_hash)
                    continue
                chunk.extend((info_hash, r) for r in recs)
            if out and len(out) + len(chunk) > cap:
                break
            out.extend(chunk)
            covered.append(b)
        return tuple(out), tuple(covered)

    # -- leases ---------------------------------------------------------------------------

    def renew_leases(self, alive_origins: Iterable[int], now_ns: int) -> None:
        """Keep the records of live origins alive for another TTL."""
        until = now_ns + self.store.ttl_ns
        for origin in alive_origins:
            if origin != self.store.local_origin:
                self.store.set_lease(origin, until)


__all__: Sequence[str] = ("PeerView", "ReplicationConfig", "Replicator")
