"""The v2 role: SWIM membership, rumors and digest anti-entropy over one store (docs/v2.md).

The sans-I/O :class:`~chisme.core.replication.ClusterEngine` decides what to send; this role feeds
it the clock and the messages that arrive, hands what it returns to the transport, and keeps
the transport's one timer at the engine's next deadline (or the next v1 push, for the nodes of
the original design this node also gossips with). A first-hand change pokes the timer, so
rumors leave at the next gossip tick rather than at a polling period.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from chisme.clock import Clock
from chisme.cluster.role import ClusterObserver
from chisme.cluster.v1_push import V1Push
from chisme.core.records import Record
from chisme.core.replication import ClusterConfig, ClusterEngine, Out
from chisme.core.store import Replication, Store
from chisme.core.swim import MemberState
from chisme.net.transport import Transport
from chisme.wire import v1

log = logging.getLogger("chisme.cluster")

MIN_TICK_NS = 1_000_000
"""The engine is not ticked twice within this: a deadline already past does not spin."""


class V2Role:
    """A member of a v2 cluster (see the module docstring)."""

    protocol = "v2"

    def __init__(
        self,
        make_store: Callable[[Replication], Store],
        transport: Transport,
        clock: Clock,
        rng: random.Random,
        observer: ClusterObserver,
        *,
        member_id: str,
        addr: str,
        seeds: Sequence[str],
        config: ClusterConfig,
        v1_peers: list[str],
        v1_interval_s: float,
        v1_jitter: float,
    ) -> None:
        self.member_id = member_id
        self.addr = addr
        self.transport = transport
        self.clock = clock
        self.observer = observer
        # the engine builds the store: its digest and membership are the store's hooks
        self.engine = ClusterEngine(
            member_id, addr, make_store, config=config, rng=rng,
            seeds=[s for s in seeds if s != addr],
        )
        self.store = store = self.engine.store
        self.engine.replicator.on_merged = observer.merged
        self.push = V1Push(
            store, transport, clock, rng, observer,
            peers=v1_peers, interval_s=v1_interval_s, jitter=v1_jitter, adopt=True,
        )
        self.original_seeds: list[str] = []  # seeds that turned out to speak v1 only
        self._armed_at = 1 << 63
        self._poked = False

    # -- driving ----------------------------------------------------------------------

    def start(self) -> None:
        self._send(self.engine.start(self.clock.wall_ns(), self.clock.mono_ns()))
        self._arm(self.clock.mono_ns())

    def leave(self) -> None:
        self._send(self.engine.leave(self.clock.mono_ns()))

    def deliver(self, src: str, msg: object) -> None:
        if isinstance(msg, v1.Announce | v1.Gossip):
            self.observer.received("v1", "announce" if isinstance(msg, v1.Announce) else "gossip")
            self.push.merge(msg)  # adopted: the changes are ours to rumor
            self.poke()
            return
        self.observer.received("v2", type(msg).__name__)
        clock = self.clock
        self._send(self.engine.on_message(src, msg, clock.wall_ns(), clock.mono_ns()))
        self._rearm()

    def on_timer(self) -> None:
        clock = self.clock
        mono = clock.mono_ns()
        self._armed_at = 1 << 63
        self._poked = False
        engine = self.engine
        if mono >= engine.next_deadline_ns() or self.store.has_changes():
            self._send(engine.tick(clock.wall_ns(), mono))
        self.push.run_due()
        self._arm(mono + MIN_TICK_NS)

    def poke(self) -> None:
        """Something changed here: the engine may have work before its timer."""
        if not self._poked:
            self._poked = True
            self._rearm()

    def _rearm(self) -> None:
        due = max(self._next_due(), self.clock.mono_ns())
        if due < self._armed_at:
            self._armed_at = due
            self.transport.set_timer(due)

    def _arm(self, floor_ns: int) -> None:
        self._armed_at = max(self._next_due(), floor_ns)
        self.transport.set_timer(self._armed_at)

    def _next_due(self) -> int:
        return min(self.engine.next_deadline_ns(), self.push.next_round_ns if self.push.peers
                   else 1 << 63)

    def _send(self, outs: list[Out]) -> None:
        send = self.transport.send
        observer = self.observer
        for out in outs:
            observer.sent("v2", type(out.msg).__name__)
            send(out.to, out.msg, out.reliable)
        engine = self.engine
        if engine.events:
            observer.member_events(engine.events, self.member_counts())
            engine.events.clear()

    # -- what the services call -------------------------------------------------------

    def published(self, info_hash: str, rec: Record) -> None:
        self.push.push(info_hash, rec)
        self.poke()

    def counted(self, info_hash: str, node_id: str, count: int) -> None:
        self.engine.replicator.publish_counter(info_hash, node_id, count)
        self.poke()

    def fanout(self) -> list[str]:
        return [a for a in self.engine.alive_addrs() if a != self.addr]

    def has_fanout(self) -> bool:
        return self.engine.membership.num_alive() > 1

    def original_seed(self, addr: str) -> None:
        """A seed answered the v2 hello in v1: a node of the original design. Gossip to it in
        v1 from now on (logged once) and list it among the members."""
        if self.push.add_peer(addr):
            self.original_seeds.append(addr)
            log.warning("seed %s speaks v1 only (a node of the original design): gossiping "
                        "to it in v1", addr)
            self._rearm()

    def members(self) -> list[dict[str, Any]]:
        rows = [
            {"id": m.node_id, "addr": m.addr, "state": str(m.state), "incarnation": m.incarnation}
            for m in self.engine.members()
        ]
        rows += [{"id": "", "addr": a, "state": "v1", "incarnation": 0} for a in self.push.peers]
        return sorted(rows, key=lambda r: (r["addr"], r["state"]))

    def member_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("alive", "suspect", "dead", "left"), 0)
        for member in self.engine.members():
            counts[str(member.state)] = counts.get(str(member.state), 0) + 1
        return counts

    def status(self) -> dict[str, Any]:
        alive = sum(1 for m in self.engine.members() if m.state == MemberState.ALIVE)
        return {"protocol": "v2", "member_id": self.member_id, "members_alive": alive}
