"""The provider service: announce, remove and look up providers of a key (the overlay's own
operations, as the JSON API, the CLI, the library and v1 lookups use them).

- ``announce`` stores a provider here, stamped now, and tells the cluster (v1: an ``announce``
  push to every peer; v2: a rumor at the next gossip tick);
- ``remove`` is a timestamped delete (a tombstone) that replicates the same way;
- ``lookup`` answers from this node's store plus up to ``lookup_fanout`` other nodes' answers
  that arrive within ``lookup_timeout_s``, freshest first; ``local_lookup`` asks nobody.
"""

from __future__ import annotations

from chisme.clock import Clock
from chisme.cluster.role import ClusterRole
from chisme.core.keys import parse_addr, parse_info_hash
from chisme.core.lookup import merge_answers
from chisme.core.records import Provider, Record, parse_peer_id, to_provider
from chisme.core.store import Store
from chisme.metrics import Metrics
from chisme.service.overlay import Overlay

REPLICA_TTL_NS = 1 << 62
"""v2 answers are cut by the answering member's liveness, not by stamps (see ``lookup``)."""


class ProviderService:
    """See the module docstring. Built by the node."""

    def __init__(
        self,
        store: Store,
        role: ClusterRole,
        overlay: Overlay,
        clock: Clock,
        metrics: Metrics,
        *,
        ttl_ns: int,
        max_clock_skew_ns: int,
        lookup_timeout_s: float,
        replicated: bool,
    ) -> None:
        self.store = store
        self.role = role
        self.overlay = overlay
        self.clock = clock
        self.metrics = metrics
        self.max_clock_skew_ns = max_clock_skew_ns
        self.lookup_timeout_s = lookup_timeout_s
        # v2: a replica's stamp is the origin's last *change* (refreshes cost no traffic) and
        # the origin's lease keeps the record live; members answer with what their store
        # holds live. A TTL cut on stamps here dropped every provider older than a TTL that
        # was not held by its own origin (seen: a replica's overlay lookup returned nothing).
        self.answer_ttl_ns = REPLICA_TTL_NS if replicated else ttl_ns

    def announce(
        self, info_hash: str, addr: str, peer_id: str = "", *, seeder: bool = False
    ) -> Record:
        """Store a provider here (stamped now) and tell the cluster."""
        info_hash = parse_info_hash(info_hash)  # a hex info hash in either case: one key
        key = parse_addr(addr)
        pid = parse_peer_id(peer_id)
        rec = self.store.announce(info_hash, key, self.clock.wall_ns(), peer_id=pid,
                                  seeder=seeder)
        self.role.published(info_hash, rec)
        return rec

    def remove(self, info_hash: str, addr: str) -> Record:
        """A provider left: tombstone it here and tell the cluster."""
        info_hash = parse_info_hash(info_hash)
        rec = self.store.remove(info_hash, parse_addr(addr), self.clock.wall_ns())
        self.role.published(info_hash, rec)
        return rec

    def local_lookup(self, info_hash: str, limit: int = 0) -> list[Provider]:
        """Live providers in this node's store only, freshest first."""
        info_hash = parse_info_hash(info_hash)
        return self.store.lookup(info_hash, self.clock.wall_ns(), limit)

    async def lookup(self, info_hash: str, limit: int = 0) -> list[Provider]:
        """This node's providers plus other nodes' answers that arrive in time, freshest
        first, at most ``limit`` (0: all)."""
        info_hash = parse_info_hash(info_hash)
        started = self.clock.mono_ns()
        local = self.store.live_records(info_hash, self.clock.wall_ns())
        remote = await self.overlay.ask(info_hash, self.lookup_timeout_s)
        merged = merge_answers(
            [local, *remote], self.clock.wall_ns(), self.answer_ttl_ns, self.max_clock_skew_ns,
            limit,
        )
        self.metrics.lookup_seconds.observe((self.clock.mono_ns() - started) / 1e9)
        return [to_provider(r) for r in merged]
