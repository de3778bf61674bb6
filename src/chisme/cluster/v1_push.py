"""The original design's replication (docs/DESIGN.md): what a node pushes to its v1 peers, and
how it merges what they push to it.

- every ``gossip_interval_s`` (± jitter) a full push: one ``gossip`` message per live key,
  carrying its live providers (tombstones in chisme's ``removed`` extension, download counters
  in ``downloaded``), to every peer;
- a first-hand change goes to every peer at once: an ``announce`` for a provider, a
  ``gossip`` with the tombstone for a removal;
- what peers push is merged with clamped stamps (a v1 stamp is another machine's clock).

Both roles use it: a v1 node with its static peers, a v2 node with the nodes of the original
design it knows (``adopt``: what they tell it becomes its own, so v2 members replicate it).
"""

from __future__ import annotations

import random

from chisme.clock import Clock
from chisme.cluster.role import ClusterObserver
from chisme.core.records import Record
from chisme.core.replication import plan_full_push
from chisme.core.store import MergeResult, Store
from chisme.net.transport import Transport
from chisme.wire import v1


class V1Push:
    """Pushes to, and merges from, a set of v1 peers (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        clock: Clock,
        rng: random.Random,
        observer: ClusterObserver,
        *,
        peers: list[str],
        interval_s: float,
        jitter: float,
        adopt: bool,
        first_round_ns: int | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.clock = clock
        self.rng = rng
        self.observer = observer
        self.peers = peers
        self.interval_s = interval_s
        self.jitter = jitter
        self.adopt = adopt
        # the first full push one interval after the start, unless told (the simulator
        # starts nodes at random phases)
        self.next_round_ns = (
            clock.mono_ns() + self._delay_ns() if first_round_ns is None else first_round_ns
        )

    def _delay_ns(self) -> int:
        j = self.jitter
        return int(self.interval_s * (1 + self.rng.uniform(-j, j)) * 1e9)

    def add_peer(self, addr: str) -> bool:
        """Push to ``addr`` from now on; False if it was a peer already."""
        if addr in self.peers:
            return False
        self.peers.append(addr)
        return True

    # -- pushing --------------------------------------------------------------------------

    def run_due(self) -> int:
        """The full push, if its time has come; returns the messages sent."""
        if self.clock.mono_ns() < self.next_round_ns:
            return 0
        self.next_round_ns = self.clock.mono_ns() + self._delay_ns()
        return self.round()

    def round(self) -> int:
        """One full push: every live key's providers to every peer (O(keys x providers x
        peers) bytes whatever changed: what v2 replaces). Returns the messages sent."""
        if not self.peers:
            return 0
        store = self.store
        msgs: list[v1.Message] = [
            v1.Gossip(info_hash, records, store.downloaded_counters(info_hash), tombs)
            for info_hash, records, tombs in plan_full_push(store, self.peers, self.clock.wall_ns())
        ]
        if not msgs:
            return 0
        for peer in self.peers:
            self.transport.send_v1(peer, msgs)
        self.observer.sent("v1", "gossip", len(msgs) * len(self.peers))
        return len(msgs) * len(self.peers)

    def push(self, info_hash: str, rec: Record) -> None:
        """A first-hand change, to every peer at once: an announce, or a tombstone."""
        if not self.peers:
            return
        if rec.tombstone:
            msg: v1.Message = v1.Gossip(info_hash, [], removed=[rec])
            kind = "gossip"
        else:
            msg, kind = v1.Announce(info_hash, [rec]), "announce"
        for peer in self.peers:
            self.transport.send_v1(peer, (msg,))
        self.observer.sent("v1", kind, len(self.peers))

    # -- merging --------------------------------------------------------------------------

    def merge(self, msg: v1.Announce | v1.Gossip) -> MergeResult:
        """Merge what a v1 peer pushed (stamps clamped to this node's clock plus the skew)."""
        records = msg.records
        if isinstance(msg, v1.Gossip) and msg.removed:
            records = [*records, *msg.removed]
        result = self.store.merge(msg.info_hash, records, self.clock.wall_ns(), adopt=self.adopt)
        if isinstance(msg, v1.Gossip) and msg.downloaded:
            self.store.merge_downloaded(msg.info_hash, msg.downloaded)
        self.observer.merged(result.inserted, result.replaced, result.ignored)
        return result
