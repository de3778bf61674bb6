"""The v1 role: the original design's replication with a static peer list (``--protocol v1``).

No membership: the peers are the configured list; every ``gossip_interval_s`` a full push to
each (:mod:`chisme.cluster.v1_push`), a push per first-hand change, and lookups ask them.
"""

from __future__ import annotations

import random
from typing import Any

from chisme.clock import Clock
from chisme.cluster.role import ClusterObserver
from chisme.cluster.v1_push import V1Push
from chisme.core.records import Record
from chisme.core.store import Store
from chisme.net.transport import Transport
from chisme.wire import v1


class V1Role:
    """A node of the original design's kind (see the module docstring)."""

    protocol = "v1"

    def __init__(
        self,
        store: Store,
        transport: Transport,
        clock: Clock,
        rng: random.Random,
        observer: ClusterObserver,
        *,
        node_id: str,
        peers: list[str],
        interval_s: float,
        jitter: float,
        first_round_ns: int | None = None,
    ) -> None:
        self.member_id = node_id
        self.store = store
        self.transport = transport
        self.push = V1Push(
            store, transport, clock, rng, observer,
            peers=peers, interval_s=interval_s, jitter=jitter, adopt=False,
            first_round_ns=first_round_ns,
        )
        self.observer = observer

    @property
    def peers(self) -> list[str]:
        return self.push.peers

    def start(self) -> None:
        self.transport.set_timer(self.push.next_round_ns)

    def leave(self) -> None:
        pass  # the original design has no goodbye: peers just stop hearing from us

    def deliver(self, src: str, msg: object) -> None:
        if isinstance(msg, v1.Announce | v1.Gossip):
            self.observer.received("v1", "announce" if isinstance(msg, v1.Announce) else "gossip")
            self.push.merge(msg)

    def on_timer(self) -> None:
        self.push.run_due()
        self.transport.set_timer(self.push.next_round_ns)

    def published(self, info_hash: str, rec: Record) -> None:
        self.push.push(info_hash, rec)

    def poke(self) -> None:
        pass  # the next full push carries the change

    def counted(self, info_hash: str, node_id: str, count: int) -> None:
        pass  # v1 rounds carry the counters (``downloaded``)

    def fanout(self) -> list[str]:
        return self.push.peers

    def has_fanout(self) -> bool:
        return bool(self.push.peers)

    def members(self) -> list[dict[str, Any]]:
        return [{"id": "", "addr": p, "state": "static", "incarnation": 0} for p in self.peers]

    def status(self) -> dict[str, Any]:
        return {"protocol": "v1", "member_id": self.member_id, "peers": list(self.peers),
                "members_alive": None}
