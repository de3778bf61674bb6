"""The provider store: info hash -> providers, merged by a total order, expired, bounded.

Pure: no I/O, no clock. Every operation takes ``now_ns``; the shell owns time.

Semantics (docs/DESIGN.md §1, fixed where the seed design does not hold up):
- *announce* stamps ``max(now, previous + 1)``: a node's own announce always wins over
  what it holds, and stamps stay monotonic even after a peer's clock ran ahead;
- *merge* keeps, per (info hash, address), the greatest record under
  :func:`chisme.core.records.order_key` (``last_seen_ns``, then the rest of the record),
  so merge is commutative, associative and idempotent and replicas converge;
- incoming ``last_seen_ns == 0`` (missing, or Go's zero time) is stamped with now, and one
  further in the future than ``max_clock_skew_ns`` is clamped to now (docs/WIRE.md);
- *remove* writes a timestamped tombstone that wins over older announces and expires
  after ``tombstone_ttl_ns`` — so gossip cannot resurrect a provider that left;
- *expiry frees memory*: :meth:`Store.sweep` drops expired records and empty keys,
  incrementally (a bounded number of keys per call, so the event loop never stalls);
  lookups never return an expired record, swept or not;
- *bounds*: at most ``max_per_key`` live providers per key and ``max_records`` records
  in total. Eviction is stalest first: a full key evicts its stalest provider (when the
  incoming one is fresher); a full store first frees expired records, then evicts the
  stalest provider among a few keys sampled round-robin (as Redis's approximated LRU).

Each key's providers are a :class:`~chisme.core.swarm.Swarm` of packed slots (the memory
layout and the O(want) peer sampling are :mod:`chisme.core.swarm`'s).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from chisme.core.keys import AddrKey, ip_key_size, is_ip_key, parse_addr, parse_info_hash
from chisme.core.records import (
    FLAG_SEEDER,
    FLAG_TOMBSTONE,
    MAX_ORIGIN,
    MAX_PEER_ID_BYTES,
    MAX_VERSION,
    Provider,
    Record,
    order_key,
    to_provider,
    tombstone_record,
)
from chisme.core.swarm import Swarm, sample_live, sample_slots
from chisme.errors import InvalidInput

_MAX_CHANGES = 65536  # local changes waiting for the replicator; rumors are best effort
_SWEEP_SAMPLE = 5  # keys examined per eviction when the store is full


class MergeResult(NamedTuple):
    """What a merge did. ``changed`` lists the records that were inserted or replaced."""

    inserted: int
    replaced: int
    ignored: int
    changed: list[Record]


class Counts(NamedTuple):
    """Swarm counts: live seeders and leechers, and completed downloads (summed per node)."""

    seeders: int
    leechers: int
    downloaded: int


Observer = Callable[[str, Record | None, Record | None], None]
"""Told ``(info_hash, old, new)`` of each change to a record with an origin: ``old`` None for
an insert, ``new`` None for a record that went away (expired, evicted, superseded)."""


class Replication(NamedTuple):
    """What ties a store to v2 replication (:mod:`chisme.core.replication`), given when the
    store is built and fixed for its life; a store of a v1 node has none.

    - ``origin``: this member's origin number. Records the store accepts first-hand carry it,
      each change to one gets the next version of the store's counter, and the change waits
      in the store's outbox (:meth:`Store.drain_changes`) for rumors.
    - ``on_change``: told of every change to a record with an origin (the digest).
    - ``changes_wanted``: asked before a change goes into the outbox; False while nobody
      would hear of it (a lone member: one that joins later gets it by anti-entropy).
    """

    origin: int
    on_change: Observer
    changes_wanted: Callable[[], bool]


class Store:
    """info hash -> providers. See the module docstring for the semantics."""

    def __init__(
        self,
        ttl_ns: int,
        *,
        max_per_key: int = 500,
        max_records: int = 1_000_000,
        max_clock_skew_ns: int = 5_000_000_000,
        tombstone_ttl_ns: int | None = None,
        replication: Replication | None = None,
    ) -> None:
        if ttl_ns <= 0:
            raise InvalidInput("ttl must be positive")
        if max_per_key < 1 or max_records < 1:
            raise InvalidInput("store bounds must be at least 1")
        if tombstone_ttl_ns is not None and tombstone_ttl_ns < ttl_ns:
            # a tombstone must outlive what it deletes, or expiry would resurrect providers
            raise InvalidInput("tombstone ttl must be at least the record ttl")
        self.ttl_ns = ttl_ns
        self.max_per_key = max_per_key
        self.max_records = max_records
        self.max_clock_skew_ns = max_clock_skew_ns
        self.tombstone_ttl_ns = ttl_ns if tombstone_ttl_ns is None else tombstone_ttl_ns
        self.max_tombstones = max(1, max_records // 4)
        self._swarms: dict[str, Swarm] = {}
        self._live = 0  # live slots (not yet swept), all keys
        self._tombs = 0
        self._leases: dict[int, int] = {}  # origin -> lease end (v2 owner leases)
        self._sweep_keys: list[str] = []
        self._sweep_pos = 0
        self._evict_pos = 0
        # A lower bound of every slot's stamp: while it is not expired nothing is, and a full
        # store skips the sweep it would otherwise run before each eviction. Lowered by
        # inserts; recomputed by each full sweep pass (``_pass_min``).
        self._min_seen = 1 << 62
        self._pass_min = 1 << 62
        if replication is not None:
            _check_record(b"", replication.origin)
        # v2 (see Replication): read on every write, so kept as plain attributes
        self._replication = replication
        self._origin = 0 if replication is None else replication.origin
        self._observer = None if replication is None else replication.on_change
        self._changes: list[tuple[str, Record]] = []
        self._version = 0

    @property
    def local_origin(self) -> int:
        """The origin of the records this store accepts first-hand (0: none, a v1 store)."""
        return self._origin

    @property
    def last_version(self) -> int:
        """The version of this store's latest change to a record of its origin."""
        return self._version

    def copy_from(self, other: Store, *, version: int) -> None:
        """Hold what ``other`` holds (records, tombstones, leases, completed counters), as
        a new member preloaded with a converged cluster's state; ``version`` is this
        store's origin's latest version among them (its next change continues from it).

        Both stores must have the same bounds. This store keeps its replication, and its
        outbox is emptied. Nothing is reported to ``on_change``: the caller gives this
        store's replication a copy of ``other``'s digest (the simulator's preload does).
        """
        bounds = ("ttl_ns", "max_per_key", "max_records", "max_clock_skew_ns",
                  "tombstone_ttl_ns")
        if any(getattr(self, b) != getattr(other, b) for b in bounds):
            raise InvalidInput("a store copies only a store of the same bounds")
        if not 0 <= version <= MAX_VERSION:
            raise InvalidInput("version must be in 0-18446744073709551615")
        self._swarms = {ih: swarm.copy() for ih, swarm in other._swarms.items()}
        self._live, self._tombs = other._live, other._tombs
        self._leases = dict(other._leases)
        self._sweep_keys = list(other._sweep_keys)
        self._sweep_pos, self._evict_pos = other._sweep_pos, other._evict_pos
        self._min_seen, self._pass_min = other._min_seen, other._pass_min
        self._changes = []
        self._version = version

    # -- sizes --------------------------------------------------------------------------

    @property
    def num_records(self) -> int:
        """Provider records held (live or expired-not-yet-swept), tombstones excluded."""
        return self._live

    @property
    def num_tombstones(self) -> int:
        return self._tombs

    @property
    def num_keys(self) -> int:
        return len(self._swarms)

    def keys(self) -> list[str]:
        return list(self._swarms)

    def __contains__(self, info_hash: object) -> bool:
        return info_hash in self._swarms

    # -- leases (v2: a live origin keeps its records alive) ------------------------------

    def set_lease(self, origin: int, until_ns: int) -> None:
        """Records stamped by ``origin`` (non-zero) stay live until ``until_ns`` at least."""
        if origin:
            self._leases[origin] = until_ns

    def drop_lease(self, origin: int) -> None:
        self._leases.pop(origin, None)

    def _leased(self, rec: Record, now_ns: int) -> bool:
        """A live record of another member whose lease keeps it alive."""
        o = rec.origin
        if rec.flags & FLAG_TOMBSTONE or o in (0, self._origin):
            return False
        return self._leases.get(o, 0) >= now_ns

    def _alive(self, seen: int, origin: int, cutoff: int, now_ns: int) -> bool:
        return seen >= cutoff or (origin != 0 and self._leases.get(origin, 0) >= now_ns)

    # -- writes -----------------------------------------------------------------------

    def announce(
        self,
        info_hash: str,
        addr: AddrKey,
        now_ns: int,
        *,
        peer_id: bytes = b"",
        seeder: bool = False,
        origin: int | None = None,
    ) -> Record:
        """A provider announced itself here: store it stamped ``max(now, previous + 1)``.

        ``origin`` defaults to :attr:`local_origin`. A local-origin announce that changes
        nothing but the stamp (a refresh) keeps its version: replicas hold the record on the
        origin's lease, so a refresh costs no traffic (docs/v2.md §2).
        """
        if origin is None:
            origin = self._origin
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            parse_info_hash(info_hash)
            _check_addr(addr)
        _check_record(peer_id, origin)
        seen = now_ns
        flags = FLAG_SEEDER if seeder else 0
        local = origin != 0 and origin == self._origin
        if swarm is not None:
            i = swarm.find(addr)
            if i is not None:  # the hot path: a refresh
                prev = swarm.seen[i]
                if prev >= seen:
                    seen = prev + 1
                if not local:
                    old_slot = swarm.record(i) if self._observer is not None else None
                    swarm.update(i, seen, peer_id, seeder, origin)
                    rec = Record(addr, seen, peer_id, flags, origin)
                    if old_slot is not None:
                        self._notify(info_hash, old_slot, rec)
                    return rec
                version = swarm.version(i)
                if (
                    swarm.origin(i) == origin
                    and (i >= swarm.n_leech) == seeder
                    and swarm.peer_id(i) == peer_id
                ):  # a refresh: same version, nothing to replicate
                    swarm.update(i, seen, peer_id, seeder, origin, version=version)
                    return Record(addr, seen, peer_id, flags, origin, version)
                old_slot = swarm.record(i)
                rec = Record(addr, seen, peer_id, flags, origin, self._next_version())
                swarm.update(i, seen, peer_id, seeder, origin, version=rec.version)
                self._notify(info_hash, old_slot, rec)
                self._change(info_hash, rec)
                return rec
            _check_addr(addr)
            old = swarm.current(addr)
            if old is not None and old.last_seen_ns >= seen:
                seen = old.last_seen_ns + 1
        rec = Record(addr, seen, peer_id, flags, origin, self._next_version() if local else 0)
        if self._apply(info_hash, rec, now_ns) and local:
            self._change(info_hash, rec)
        return rec

    def announce_sample(
        self,
        info_hash: str,
        addr: AddrKey,
        now_ns: int,
        *,
        peer_id: bytes,
        seeder: bool,
        want: int,
        rng: random.Random,
        family: int = 0,
    ) -> tuple[int, int, list[AddrKey]]:
        """A tracker announce in one call: :meth:`announce` (this node's origin), then
        :meth:`sample_peers` for it (never ``addr``; leechers first for a seeder; only
        ``family`` if given) and the swarm's counts. Returns ``(seeders, leechers, peers)``.

        The common announce is a refresh: a provider this node holds first-hand, unchanged
        but for its stamp. That one raises the slot's stamp and samples the swarm by the slot
        it already found, allocating nothing else (no Record; nothing to replicate, as in
        :meth:`announce`). Anything else takes :meth:`announce` and :meth:`sample_peers`.
        """
        swarm = self._swarms.get(info_hash)
        # not if the swarm holds other families than ``family``: sample_peers filters them
        if swarm is not None and not swarm.others(family):
            i = swarm.restamp(addr, now_ns, peer_id, seeder, self._origin)
            if i >= 0:
                nl = swarm.n_leech
                total = len(swarm.addrs)
                if want <= 0:
                    return total - nl, nl, []
                if swarm.min_seen >= now_ns - self.ttl_ns:
                    if seeder:
                        return total - nl, nl, sample_live(swarm, want, i, True, rng)
                    return total - nl, nl, sample_slots(swarm.addrs, 0, total, want, i, rng)
                peers = self._sample_checked(
                    swarm, now_ns, want, rng, exclude=addr, leechers_first=seeder
                )
                return total - nl, nl, peers
        self.announce(info_hash, addr, now_ns, peer_id=peer_id, seeder=seeder)
        peers = self.sample_peers(
            info_hash, now_ns, want, rng, exclude=addr, leechers_first=seeder, family=family
        )
        swarm = self._swarms[info_hash]  # an announce always leaves its key held
        nl = swarm.n_leech
        return len(swarm.addrs) - nl, nl, peers

    def remove(
        self, info_hash: str, addr: AddrKey, now_ns: int, *, origin: int | None = None
    ) -> Record:
        """A provider left: write a tombstone stamped ``max(now, previous + 1)``."""
        if origin is None:
            origin = self._origin
        parse_info_hash(info_hash)
        _check_addr(addr)
        _check_record(b"", origin)
        seen = now_ns
        swarm = self._swarms.get(info_hash)
        if swarm is not None:
            old = swarm.current(addr)
            if old is not None and old.last_seen_ns >= seen:
                seen = old.last_seen_ns + 1
        local = origin != 0 and origin == self._origin
        rec = tombstone_record(addr, seen, origin, self._next_version() if local else 0)
        if self._apply(info_hash, rec, now_ns) and local:
            self._change(info_hash, rec)
        return rec

    def merge(
        self,
        info_hash: str,
        records: Iterable[Record],
        now_ns: int,
        *,
        clamp: bool = True,
        adopt: bool = False,
    ) -> MergeResult:
        """Merge records received from a peer (already validated by a codec).

        Per address the greatest record wins. Unknown stamps (0) become now, stamps in the
        future beyond the allowed skew are clamped to now, and records already expired on
        arrival are ignored (they would be freed at once). A batch with a peer id or origin
        the store cannot hold raises :class:`InvalidInput` before anything is merged.

        ``clamp=False`` (v2 replication between members) keeps the origin's stamps as they
        are: replicas must hold identical records, and v2 liveness comes from the origin's
        lease, not from the stamp, so a skewed clock cannot keep a record alive.

        ``adopt=True`` (a v2 node taking v1 announces or gossip first-hand) makes the records
        this node's own: :attr:`local_origin` and a new version when they change anything
        but the version, so an unchanged re-gossip every 8 s costs no v2 traffic.
        """
        batch = records if isinstance(records, list | tuple) else list(records)
        for incoming in batch:
            _check_record(incoming.peer_id, incoming.origin, incoming.version)
        inserted = replaced = ignored = 0
        changed: list[Record] = []
        limit = now_ns + self.max_clock_skew_ns if clamp else 1 << 63
        for incoming in batch:
            rec = incoming
            seen = rec.last_seen_ns
            if seen == 0 or seen > limit:
                seen = now_ns
            flags = rec.flags & (FLAG_SEEDER | FLAG_TOMBSTONE)
            if flags & FLAG_TOMBSTONE:
                rec = tombstone_record(rec.addr, seen, rec.origin, rec.version)
            elif seen != rec.last_seen_ns or flags != rec.flags:
                rec = Record(rec.addr, seen, rec.peer_id, flags, rec.origin, rec.version)
            if adopt and self._origin:
                rec = rec._replace(origin=self._origin, version=0)
                held = self.get(info_hash, rec.addr)
                if held is not None and (
                    order_key(held)[:4] >= order_key(rec)[:4] or self._leased(held, now_ns)
                ):
                    # unchanged, or live on another member's lease: a v1 peer echoing what
                    # this cluster told it must not take the record over
                    ignored += 1
                    continue
                rec = rec._replace(version=self._next_version())
            outcome = self._apply(info_hash, rec, now_ns)
            if outcome == 0:
                ignored += 1
                continue
            if outcome == 1:
                inserted += 1
            else:
                replaced += 1
            changed.append(rec)
            if adopt and self._origin:
                self._change(info_hash, rec)
        return MergeResult(inserted, replaced, ignored, changed)

    def _apply(self, info_hash: str, rec: Record, now_ns: int) -> int:
        """Merge one normalised record. Returns 0 ignored, 1 inserted, 2 replaced.

        A record that is held but expired (not yet swept) counts as absent, and a record
        expired on arrival is ignored whatever is held: so what the store holds never depends
        on when the sweeper last ran (expiry commutes with merge), and neither does merge
        order (with a tombstone ttl longer than the record ttl, an expired live record must
        not beat an older but unexpired tombstone in one order and lose to it in the other).
        """
        tomb = rec.flags & FLAG_TOMBSTONE
        if not self._holds(rec.last_seen_ns, rec.origin, tomb, now_ns):
            return 0  # dead on arrival
        addr = rec.addr
        swarm = self._swarms.get(info_hash)
        held: Record | None = None  # what is in memory, expired or not
        old: Record | None = None  # what counts: held and unexpired
        if swarm is not None:
            held = swarm.current(addr)
            if held is not None and self._holds(
                held.last_seen_ns, held.origin, held.flags & FLAG_TOMBSTONE, now_ns
            ):
                if order_key(rec) <= order_key(held):
                    return 0
                old = held
        if tomb and held is None and self._tombs >= self.max_tombstones:
            # the removal of a provider we do not hold, with the tombstone budget spent: a
            # flood of removals for random keys must not grow memory (nor evict providers)
            return 0
        if swarm is None:
            swarm = self._swarms[info_hash] = Swarm()
            self._sweep_keys.append(info_hash)
        outcome = 1 if old is None else 2
        i = swarm.find(addr)
        if i is not None:  # a slot (live or expired) -> newer live, or -> tombstone
            if not tomb:
                swarm.update(
                    i, rec.last_seen_ns, rec.peer_id, rec.seeder, rec.origin, version=rec.version
                )
                self._notify(info_hash, held, rec)
                return outcome
            swarm.delete(i)
            self._live -= 1
            self._put_tomb(info_hash, swarm, rec)
            self._notify(info_hash, held, rec)
            return outcome
        if tomb:
            if held is not None:  # an older tombstone
                swarm.put_tomb(rec)
            else:
                self._put_tomb(info_hash, swarm, rec)
            self._notify(info_hash, held, rec)
            return outcome
        # a new live slot: make room first, so that an ignored record changes nothing
        if len(swarm) >= self.max_per_key:
            j = swarm.stalest()
            if swarm.seen[j] >= rec.last_seen_ns:
                return 0
            evicted = swarm.record(j) if self._observer is not None else None
            swarm.delete(j)  # stalest first
            self._live -= 1
            if evicted is not None:
                self._notify(info_hash, evicted, None)
        elif self._live >= self.max_records:
            self._make_room(now_ns, keep=info_hash)
        # the tombstone it supersedes (unless making room just swept it)
        superseded = swarm.pop_tomb(addr) if held is not None else None
        if superseded is not None:
            self._tombs -= 1
        swarm.insert(
            addr, rec.last_seen_ns, rec.peer_id, rec.seeder, rec.origin, version=rec.version
        )
        self._notify(info_hash, superseded, rec)
        if rec.last_seen_ns < self._pass_min:
            self._pass_min = rec.last_seen_ns
            self._min_seen = min(self._min_seen, rec.last_seen_ns)
        self._live += 1
        return outcome

    def _holds(self, seen: int, origin: int, tomb: int, now_ns: int) -> bool:
        """Whether a record stamped ``seen`` is unexpired at ``now_ns`` (as sweep decides)."""
        if tomb:
            return seen >= now_ns - self.tombstone_ttl_ns
        return self._alive(seen, origin, now_ns - self.ttl_ns, now_ns)

    def _put_tomb(self, info_hash: str, swarm: Swarm, rec: Record) -> None:
        """Hold a tombstone for an address that has none."""
        if swarm.tombs is not None and len(swarm.tombs) >= self.max_per_key:
            # bounded like live records: stalest first
            stale = swarm.pop_tomb(swarm.stalest_tomb())
            self._tombs -= 1
            self._notify(info_hash, stale, None)
        swarm.put_tomb(rec)
        self._tombs += 1

    # -- v2 replication hooks -----------------------------------------------------------

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    def _notify(self, info_hash: str, old: Record | None, new: Record | None) -> None:
        obs = self._observer
        if obs is None:
            return
        if (old is not None and old.origin) or (new is not None and new.origin):
            obs(info_hash, old, new)

    def _change(self, info_hash: str, rec: Record) -> None:
        # only a store with an origin has local changes: _replication is set
        if self._replication is None or not self._replication.changes_wanted():
            return
        changes = self._changes
        changes.append((info_hash, rec))
        if len(changes) > _MAX_CHANGES:  # nobody drains (no replicator): keep the newest
            del changes[: _MAX_CHANGES // 2]

    def has_changes(self) -> bool:
        return bool(self._changes)

    def drain_changes(self) -> list[tuple[str, Record]]:
        """Changes to records of :attr:`local_origin` since the last call (for rumors)."""
        changes, self._changes = self._changes, []
        return changes

    def replicated(self, info_hash: str) -> list[Record]:
        """Every record of a key held with an origin (live, expired-unswept, tombstones)."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return []
        origin = swarm.origin
        out = [swarm.record(i) for i in range(len(swarm)) if origin(i)]
        out.extend(t for t in swarm.tomb_records() if t.origin)
        return out

    def iter_all(self) -> Iterator[tuple[str, Record]]:
        """Every record held, tombstones included."""
        for ih in list(self._swarms):
            swarm = self._swarms[ih]
            for rec in swarm.records() + swarm.tomb_records():
                yield ih, rec

    def _make_room(self, now_ns: int, keep: str) -> None:
        """The store is full: free one record, expired first, else the stalest of a sample.

        The sample is the next ``_SWEEP_SAMPLE`` non-empty keys round-robin; keys with no
        live slots (tombstones only, or emptied by eviction) are skipped, so one record is
        always freed while ``num_records >= max_records``.
        """
        if self._min_seen < now_ns - self.ttl_ns:  # some slot may have expired
            swarm_kept = self._swarms[keep]
            self.sweep(now_ns, max_keys=64)
            if self._swarms.get(keep) is not swarm_kept:  # the sweep freed it (it was empty)
                self._swarms[keep] = swarm_kept
                self._sweep_keys.append(keep)
            if self._live < self.max_records:
                return
        keys = self._sweep_keys
        best: Swarm | None = None
        best_i = 0
        sampled = 0
        for _ in range(len(keys)):
            self._evict_pos = (self._evict_pos + 1) % len(keys)
            swarm = self._swarms.get(keys[self._evict_pos])
            if swarm is None or len(swarm) == 0:
                continue
            j = swarm.stalest()
            if best is None or swarm.seen[j] < best.seen[best_i]:
                best, best_i = swarm, j
            sampled += 1
            if sampled >= _SWEEP_SAMPLE:
                break
        if best is not None:
            evicted = best.record(best_i) if self._observer is not None else None
            best.delete(best_i)
            self._live -= 1
            if evicted is not None:
                self._notify(keys[self._evict_pos], evicted, None)

    # -- downloads (BitTorrent 'completed'), a per-node counter merged by max -----------

    def count_completed(self, info_hash: str, node_id: str, by: int = 1) -> None:
        if by < 1:
            raise InvalidInput("a download count only grows")
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return
        if swarm.downloaded is None:
            swarm.downloaded = {}
        swarm.downloaded[node_id] = swarm.downloaded.get(node_id, 0) + by

    def merge_downloaded(self, info_hash: str, counters: dict[str, int]) -> bool:
        """Merge per-node completed counters by max (a G-counter). True if anything grew."""
        swarm = self._swarms.get(info_hash)
        if swarm is None or not counters:
            return False
        if swarm.downloaded is None:
            swarm.downloaded = {}
        grew = False
        mine = swarm.downloaded
        for node, n in counters.items():
            if n > mine.get(node, 0):
                mine[node] = n
                grew = True
        return grew

    def downloaded_counters(self, info_hash: str) -> dict[str, int]:
        swarm = self._swarms.get(info_hash)
        if swarm is None or swarm.downloaded is None:
            return {}
        return dict(swarm.downloaded)

    # -- reads ------------------------------------------------------------------------

    def lookup(self, info_hash: str, now_ns: int, limit: int = 0) -> list[Provider]:
        """Live providers, freshest first, at most ``limit`` (0 or less: all)."""
        return [to_provider(r) for r in self.live_records(info_hash, now_ns, limit)]

    def live_records(self, info_hash: str, now_ns: int, limit: int = 0) -> list[Record]:
        """Live records, greatest (freshest) first, at most ``limit`` (0 or less: all).

        Ordered by :func:`lookup_rank`, a total order: replicas that hold the same records
        give the same answer, whatever order the records arrived in.

        A record held on another member's lease (v2) is presented stamped half a TTL before
        the lease's last renewal when that is fresher than its origin's last change: the
        origin does not send refreshes, so its last-change stamp says nothing about liveness,
        and a reader of the stamp (a v1 peer filtering by its TTL) must see a live provider
        as live; half a TTL back, a provider that really announced lately still sorts first.
        """
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return []
        if self._leases:
            return self._leased_records(swarm, now_ns, limit)
        cutoff = now_ns - self.ttl_ns
        seen = swarm.seen
        n = len(seen)
        # min_seen is a lower bound: every slot is live; else (no lease) the stamp decides
        live: Sequence[int] = (
            range(n) if swarm.min_seen >= cutoff else [i for i in range(n) if seen[i] >= cutoff]
        )
        if 0 < limit < len(live):
            # Records are built only for the ``limit`` freshest slots and those tied with the
            # last of them: lookup_rank orders by ``last_seen_ns`` first.
            top = sorted(live, key=seen.__getitem__, reverse=True)
            edge = seen[top[limit - 1]]
            k = limit
            while k < len(top) and seen[top[k]] == edge:
                k += 1
            live = top[:k]
        recs = sorted((swarm.record(i) for i in live), key=lookup_rank, reverse=True)
        return recs[:limit] if limit > 0 else recs

    def _leased_records(self, swarm: Swarm, now_ns: int, limit: int) -> list[Record]:
        cutoff = now_ns - self.ttl_ns
        leases, mine, ttl = self._leases, self._origin, self.ttl_ns
        out: list[Record] = []
        for i in range(len(swarm)):
            rec = swarm.record(i)
            seen, o = rec.last_seen_ns, rec.origin
            lease = leases.get(o, 0) if o and o != mine else 0
            if lease >= now_ns:
                vouched = lease - ttl - ttl // 2  # half a TTL before the last renewal
                if vouched > seen:
                    rec = rec._replace(last_seen_ns=vouched)
            elif seen < cutoff:
                continue
            out.append(rec)
        out.sort(key=lookup_rank, reverse=True)
        return out[:limit] if limit > 0 else out

    def tombstones(self, info_hash: str, now_ns: int) -> list[Record]:
        """Unexpired tombstones of a key (for gossip between chisme nodes)."""
        swarm = self._swarms.get(info_hash)
        if swarm is None or not swarm.tombs:
            return []
        return swarm.tomb_records(since_ns=now_ns - self.tombstone_ttl_ns)

    def get(self, info_hash: str, addr: AddrKey) -> Record | None:
        """The record held for one address, live, expired or tombstone."""
        swarm = self._swarms.get(info_hash)
        return None if swarm is None else swarm.current(addr)

    def counts(self, info_hash: str) -> Counts:
        """Seeders and leechers held (O(1): expired ones count until the next sweep)."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return Counts(0, 0, 0)
        done = sum(swarm.downloaded.values()) if swarm.downloaded else 0
        return Counts(len(swarm) - swarm.n_leech, swarm.n_leech, done)

    def sample_peers(
        self,
        info_hash: str,
        now_ns: int,
        want: int,
        rng: random.Random,
        *,
        exclude: AddrKey | None = None,
        leechers_first: bool = False,
        family: int = 0,
    ) -> list[AddrKey]:
        """A random sample of at most ``want`` live peers, never ``exclude``.

        ``leechers_first`` (for a seeder asking) takes leechers before seeders. ``family``
        (4 or 6) keeps the peers of that address family only, as a UDP tracker reply carries
        one: the sample then takes as many more slots as the swarm holds of other families,
        so it is as full as the family allows, in O(want + others). O(want) otherwise:
        the swarm's slot arrays are sampled by index, never scanned. While no slot of the
        swarm can be expired (``min_seen``, refreshed by the sweeper), the sample is a slice
        of the address list from a random start with a random stride (:func:`_sample_slots`),
        done in C: a few µs per tracker reply instead of ~15 µs of ``rng.sample`` and
        per-slot checks. Slots are in no meaningful order, so every peer is equally likely.
        """
        swarm = self._swarms.get(info_hash)
        if swarm is None or want <= 0:
            return []
        others = swarm.others(family)
        width = ip_key_size(family) if others else 0
        if swarm.min_seen < now_ns - self.ttl_ns:  # some slot may be expired: check each
            return self._sample_checked(
                swarm,
                now_ns,
                want,
                rng,
                exclude=exclude,
                leechers_first=leechers_first,
                width=width,
                spare=others,
            )
        skip = -1  # every slot is live: the fast path
        if exclude is not None:
            found = swarm.find(exclude)
            if found is not None:
                skip = found
        got = sample_live(swarm, want + others, skip, leechers_first, rng)
        if others:
            got = [a for a in got if isinstance(a, bytes) and len(a) == width]
            del got[want:]
        return got

    def _sample_checked(
        self,
        swarm: Swarm,
        now_ns: int,
        want: int,
        rng: random.Random,
        *,
        exclude: AddrKey | None,
        leechers_first: bool,
        width: int = 0,
        spare: int = 0,
    ) -> list[AddrKey]:
        """:meth:`sample_peers` of a swarm that may hold expired slots: each pick is checked.
        ``width`` (6 or 18) keeps only addresses of that length, tested before liveness, with
        ``spare`` more picks per range for the slots of other families."""
        cutoff = now_ns - self.ttl_ns
        n = len(swarm.addrs)
        ranges = [(0, swarm.n_leech), (swarm.n_leech, n)] if leechers_first else [(0, n)]
        out: list[AddrKey] = []
        seen, origin, addrs = swarm.seen, swarm.origin, swarm.addrs
        for lo, hi in ranges:
            need = want - len(out)
            if need <= 0:
                break
            size = hi - lo
            if size <= 0:
                continue
            if width and 2 * spare >= size:  # the family is the minority: list its slots
                # (a name of that length is dropped below)
                picks = [i for i in range(lo, hi) if len(addrs[i]) == width]
                if len(picks) > need + 1:
                    picks = rng.sample(picks, need + 1)
                else:
                    rng.shuffle(picks)
            elif size <= need + 1 + spare:
                picks = list(range(lo, hi))
                rng.shuffle(picks)
            else:
                picks = rng.sample(range(lo, hi), need + 1 + spare)
            for i in picks:
                if len(out) >= want:
                    break
                a = addrs[i]
                if width and not (isinstance(a, bytes) and len(a) == width):
                    continue
                if a != exclude and self._alive(seen[i], origin(i), cutoff, now_ns):
                    out.append(a)
        return out

    # -- expiry -----------------------------------------------------------------------

    def sweep(self, now_ns: int, max_keys: int = 1_000) -> int:
        """Free expired records and tombstones of up to ``max_keys`` keys, round-robin.

        Returns the number of records and tombstones freed. Call it on a timer: a full
        pass over the store takes ``num_keys / max_keys`` calls.
        """
        freed = 0
        cutoff = now_ns - self.ttl_ns
        tomb_cutoff = now_ns - self.tombstone_ttl_ns
        keys = self._sweep_keys
        for _ in range(min(max_keys, len(keys))):
            if self._sweep_pos >= len(keys):
                self._compact_sweep_keys()
                keys = self._sweep_keys
                if not keys:
                    break
            info_hash = keys[self._sweep_pos]
            self._sweep_pos += 1
            swarm = self._swarms.get(info_hash)
            if swarm is None:
                continue
            freed += self._sweep_swarm(info_hash, swarm, cutoff, tomb_cutoff, now_ns)
            if len(swarm) == 0 and not swarm.tombs:
                del self._swarms[info_hash]
            elif swarm.min_seen < self._pass_min:
                self._pass_min = swarm.min_seen
        return freed

    def sweep_all(self, now_ns: int) -> int:
        """Free everything expired now (tests, shutdown, small stores)."""
        freed = 0
        for _ in range(2):  # the cursor may start mid-list
            freed += self.sweep(now_ns, max_keys=len(self._sweep_keys) + 1)
        return freed

    def _compact_sweep_keys(self) -> None:
        # a pass is complete: every key held was swept in it, or had its inserts counted
        self._min_seen, self._pass_min = self._pass_min, 1 << 62
        self._sweep_keys = list(self._swarms)
        self._sweep_pos = 0
        self._evict_pos = 0

    def _sweep_swarm(
        self, info_hash: str, swarm: Swarm, cutoff: int, tomb_cutoff: int, now_ns: int
    ) -> int:
        freed = 0
        if swarm.tombs:
            dead = swarm.pop_tombs_before(tomb_cutoff)
            for tomb in dead:
                if tomb.origin:
                    self._notify(info_hash, tomb, None)
            self._tombs -= len(dead)
            freed += len(dead)
        if swarm.min_seen >= cutoff:
            return freed
        seen, origin = swarm.seen, swarm.origin
        mine = self._origin
        for i in range(len(seen) - 1, -1, -1):  # deleting i only moves already-checked slots
            if seen[i] >= cutoff:
                continue
            o = origin(i)
            if not self._alive(seen[i], o, cutoff, now_ns):
                keep = o != 0 and (o == mine or self._observer is not None)
                old = swarm.record(i) if keep else None
                swarm.delete(i)
                freed += 1
                self._live -= 1
                if old is None:
                    continue
                if o and o == mine:  # our own record expired: replicas learn it by a tombstone
                    seen_at = max(now_ns, old.last_seen_ns + 1)
                    tomb = tombstone_record(old.addr, seen_at, o, self._next_version())
                    self._put_tomb(info_hash, swarm, tomb)
                    self._notify(info_hash, old, tomb)
                    self._change(info_hash, tomb)
                else:
                    self._notify(info_hash, old, None)
        swarm.min_seen = min(seen) if len(seen) else 1 << 62
        if self._leases and len(seen):  # leased records may be older than cutoff
            swarm.min_seen = min(swarm.min_seen, cutoff)
        return freed

    # -- inspection ---------------------------------------------------------------------

    def snapshot(self) -> dict[tuple[str, AddrKey], Record]:
        """Every record held, tombstones included (tests and debugging)."""
        return {(ih, rec.addr): rec for ih, rec in self.iter_all()}


def lookup_rank(r: Record) -> tuple[int, int, bytes, int, bool, AddrKey]:
    """:func:`order_key`, then the address (names after IPs), so that ties between
    providers are ordered the same way on every replica."""
    return (r.last_seen_ns, r.flags, r.peer_id, r.origin, isinstance(r.addr, str), r.addr)


def _check_addr(addr: object) -> None:
    """A store key must be a compact IP key (6 or 18 bytes, port != 0) or ``name:port``.

    An 18-byte key of an IPv4-mapped address is refused: that peer's key is the 6-byte one
    (keys.ip_port_key), and two keys for one peer would list it twice.
    """
    if is_ip_key(addr):
        return
    if isinstance(addr, str) and addr and parse_addr(addr) == addr:
        return
    raise InvalidInput("addr must be host:port with a port in 1-65535")


def _check_record(peer_id: bytes, origin: int, version: int = 0) -> None:
    """What a slot can hold: an origin or version out of range would corrupt a swarm half-way
    through an insert (packing the slot fails after the address and stamp were appended)."""
    if len(peer_id) > MAX_PEER_ID_BYTES:
        raise InvalidInput(f"peer_id must be at most {MAX_PEER_ID_BYTES} bytes")
    if not 0 <= origin <= MAX_ORIGIN:
        raise InvalidInput("origin must be a node id in 0-4294967295")
    if not 0 <= version <= MAX_VERSION:
        raise InvalidInput("version must be in 0-18446744073709551615")


__all__: Sequence[str] = (
    "Counts",
    "MergeResult",
    "Observer",
    "Replication",
    "Store",
    "lookup_rank",
)
