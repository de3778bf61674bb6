"""The BitTorrent tracker service: what the HTTP and UDP tracker front ends call.

A front end decodes a request (:mod:`chisme.tracker.http`, :mod:`chisme.tracker.udp`) and
hands the :class:`~chisme.tracker.types.AnnounceRequest` here with the client's packed source
IP; this service applies the tracker's policy and answers ``(seeders, leechers, peers)``:

- the provider key is the client's source IP with the announced port (BEP 7: the ``ip``
  parameters are never read); the store key is the info hash's lower-case hex;
- ``numwant``: the configured default when the client expressed no preference, capped at
  ``numwant_max`` (and at what the front end's reply can carry);
- ``stopped`` is a removal (a tombstone the cluster replicates), ``completed`` bumps this
  node's download counter (a per-node G-counter the cluster sums);
- a seeder gets leechers first, nobody gets itself; a UDP reply carries one address family;
- overlay completion: when the local store holds fewer peers than wanted and the key was not
  completed lately, the answer is an awaitable that also asks a few other nodes (short
  deadline), so a client's first announce sees peers that announced elsewhere moments ago; at
  most :data:`MAX_OVERLAY_INFLIGHT` wait at once, the rest are answered locally.

The answer is synchronous (a plain tuple, as the store builds it) whenever it can be: that is
the hot path, thousands of announces per second.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import Any, Final

from chisme.clock import Clock
from chisme.cluster.role import ClusterRole
from chisme.core.keys import AddrKey, is_of_family
from chisme.core.records import Record
from chisme.core.store import Counts, Store
from chisme.metrics import Metrics
from chisme.service.overlay import Overlay
from chisme.tracker.access import AccessList
from chisme.tracker.types import AnnounceRequest, Event, TrackerAnswer

NOT_ALLOWED: Final = "info_hash not allowed on this tracker"
MAX_OVERLAY_INFLIGHT: Final = 256
"""Announces waiting on the overlay at once, all front ends together; more are answered from
the local store at once."""
_TOTALS_EVERY_NS: Final = 1_000_000_000
_MAX_RECENT: Final = 100_000


class TrackerService:
    """See the module docstring. Built by the node; shared by every tracker front end."""

    def __init__(  # noqa: PLR0917
        self,
        store: Store,
        role: ClusterRole,
        overlay: Overlay,
        access: AccessList,
        clock: Clock,
        rng: random.Random,
        metrics: Metrics,
        *,
        node_id: str,
        numwant_default: int,
        numwant_max: int,
        overlay_timeout_s: float,
        overlay_every_s: float,
        replicated: bool,
    ) -> None:
        self.store = store
        self.role = role
        self.overlay = overlay
        self.access = access
        self.clock = clock
        self.rng = rng
        self.metrics = metrics
        self.node_id = node_id
        self.numwant_default = numwant_default
        self.numwant_max = numwant_max
        self.overlay_timeout_s = overlay_timeout_s
        self.overlay_every_ns = int(overlay_every_s * 1e9)
        self.replicated = replicated  # v2: replication brings remote peers, do not merge them
        self.overlay_inflight = 0
        self._recent: dict[str, int] = {}  # info hash -> when the overlay was last asked
        self._totals = (-_TOTALS_EVERY_NS, 0, 0, 0)  # (at, torrents, seeders, leechers)
        m = metrics.tracker_overlay
        self._awaited = {p: m.labels(p, "awaited") for p in ("http", "udp")}
        self._over_cap = {p: m.labels(p, "over_cap") for p in ("http", "udp")}

    # -- announce ---------------------------------------------------------------------

    def permits(self, info_hash: bytes) -> bool:
        """Whether the allow/deny lists let ``info_hash`` (20 raw bytes) be tracked here."""
        return self.access.permits(info_hash)

    def announce(
        self,
        a: AnnounceRequest,
        addr: bytes,
        surface: str,
        family_only: bool = False,
        max_peers: int = 1 << 30,
    ) -> TrackerAnswer | Awaitable[TrackerAnswer]:
        """Apply one announce from ``addr``, the compact key of the client's source IP and
        the announced port (6 or 18 bytes); answer it (see the module docstring).
        ``family_only``: peers of the client's address family only (a UDP reply);
        ``max_peers``: what the front end's reply can carry at most. Positional on the hot
        path: keywords cost a dict per call."""
        numwant = self.numwant_default if a.numwant is None else a.numwant
        cap = self.numwant_max if self.numwant_max < max_peers else max_peers
        if numwant > cap:  # noqa: PLR1730  (min() costs a call on the hot path)
            numwant = cap
        info_hash = a.info_hash.hex()
        family = (6 if len(addr) == 18 else 4) if family_only else 0
        store = self.store
        now = self.clock.wall_ns()
        seeder = a.left == 0
        event = a.event
        if event is Event.STOPPED:
            self.role.published(info_hash, store.remove(info_hash, addr, now))
            c = store.counts(info_hash)
            return c.seeders, c.leechers, []
        over_cap = self.overlay_inflight >= MAX_OVERLAY_INFLIGHT
        answer = store.announce_sample(
            info_hash,
            addr,
            now,
            peer_id=a.peer_id,
            seeder=seeder,
            want=numwant,
            rng=self.rng,
            family=family,
        )
        if event is Event.COMPLETED:
            store.count_completed(info_hash, self.node_id)
            count = store.downloaded_counters(info_hash).get(self.node_id, 0)
            self.role.counted(info_hash, self.node_id, count)
        elif store.has_changes():  # a new peer, or one that changed: rumor it soon
            self.role.poke()
        if (
            len(answer[2]) >= numwant
            or not self.role.has_fanout()
            or not self._should_complete(info_hash, now)
        ):
            return answer
        if over_cap:
            self._over_cap[surface].inc()
            return answer
        self._awaited[surface].inc()
        return self._complete(info_hash, addr, seeder, numwant, answer, family)

    def _should_complete(self, info_hash: str, now: int) -> bool:
        recent = self._recent
        last = recent.get(info_hash)
        if last is not None and now - last < self.overlay_every_ns:
            return False
        if len(recent) > _MAX_RECENT:
            recent.clear()
        recent[info_hash] = now
        return True

    async def _complete(  # noqa: PLR0917  (private, called once)
        self,
        info_hash: str,
        addr: AddrKey,
        seeder: bool,
        numwant: int,
        local: TrackerAnswer,
        family: int,
    ) -> TrackerAnswer:
        # counted while it runs (a completion closed before it started holds nothing)
        self.overlay_inflight += 1
        try:
            answers = await self.overlay.ask(info_hash, self.overlay_timeout_s)
        finally:
            self.overlay_inflight -= 1
        store = self.store
        now = self.clock.wall_ns()
        if not self.replicated:
            # v1: what a peer knows is gossip we would get soon anyway
            for records in answers:
                store.merge(info_hash, records, now)
            peers = store.sample_peers(
                info_hash, now, numwant, self.rng, exclude=addr, leechers_first=seeder,
                family=family,
            )
            c = store.counts(info_hash)
            return c.seeders, c.leechers, peers
        # v2: replication brings these within a gossip round. Merging a v1 copy (origin 0,
        # the answering member's stamp) over a replicated record took it out of the digests
        # until the copy expired, so the answer is built beside the store, not in it.
        seeders, leechers, peers = local
        held = set(peers)
        extra: dict[AddrKey, Record] = {}
        for records in answers:
            for r in records:
                a = r.addr
                if (
                    r.tombstone
                    or a == addr
                    or a in held
                    or (family and not is_of_family(a, family))
                    or store.get(info_hash, a) is not None
                ):
                    continue
                extra[a] = r
        # the counts cover the peers handed out: a seeder listed is a seeder counted
        for r in extra.values():
            if r.seeder:
                seeders += 1
            else:
                leechers += 1
        return seeders, leechers, [*peers, *extra][:numwant]

    # -- scrape and stats -------------------------------------------------------------

    def scrape(self, info_hashes: list[bytes]) -> list[Counts]:
        """Counts per info hash (20 raw bytes each), in order; unknown ones count 0."""
        counts = self.store.counts
        return [counts(h.hex()) for h in info_hashes]

    def torrents(self) -> list[bytes]:
        """Every info hash with a live peer here, for a full scrape."""
        store = self.store
        out: list[bytes] = []
        for key in store.keys():
            if len(key) == 40 and store.counts(key)[:2] != (0, 0):
                try:
                    out.append(bytes.fromhex(key))
                except ValueError:
                    continue  # a v1 key that is not a BitTorrent info hash
        return out

    def totals(self) -> tuple[int, int, int]:
        """Torrents with a peer, seeders and leechers: one pass over the keys at most once a
        second (the gauges read it at every scrape of /metrics)."""
        at, torrents, seeders, leechers = self._totals
        now = self.clock.mono_ns()
        if now - at >= _TOTALS_EVERY_NS:
            torrents = seeders = leechers = 0
            counts = self.store.counts
            for key in self.store.keys():
                c = counts(key)
                if c.seeders or c.leechers:
                    torrents += 1
                    seeders += c.seeders
                    leechers += c.leechers
            self._totals = (now, torrents, seeders, leechers)
        return torrents, seeders, leechers

    def stats(self, top: int = 20) -> dict[str, Any]:
        """A human view: torrents with a peer, totals, and the busiest torrents."""
        seeders = leechers = 0
        rows: list[tuple[int, str, Counts]] = []
        counts = self.store.counts
        for key in self.store.keys():
            c = counts(key)
            if not (c.seeders or c.leechers):
                continue  # only tombstones or expired peers left: not a torrent being tracked
            seeders += c.seeders
            leechers += c.leechers
            rows.append((c.seeders + c.leechers, key, c))
        rows.sort(reverse=True)
        return {
            "torrents": len(rows),
            "peers": seeders + leechers,
            "seeders": seeders,
            "leechers": leechers,
            "top": [
                {"info_hash": ih, "seeders": c.seeders, "leechers": c.leechers,
                 "downloaded": c.downloaded}
                for _, ih, c in rows[:top]
            ],
        }
