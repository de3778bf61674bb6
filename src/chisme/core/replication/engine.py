"""A node's duties to its cluster (v2), as one sans-I/O engine: membership + replication.

:class:`ClusterEngine` composes SWIM membership (:mod:`chisme.core.swim`) and record
replication (:class:`~chisme.core.replication.replicator.Replicator`) over one store. The node
shell and the simulator drive it the same way::

    engine = ClusterEngine(member_id, "10.0.0.5:7070", make_store, rng=rng, seeds=[...])
    send_all(engine.start(wall_ns, mono_ns))
    loop:
        on a message from a peer:        send_all(engine.on_message(src, msg, wall, mono))
        when mono >= engine.next_deadline_ns():   send_all(engine.tick(wall, mono))

The engine builds its store: ``make_store(replication)`` is called once, and must pass the
:class:`~chisme.core.store.Replication` it is given to the :class:`Store` it returns (it ties
the store to the engine's digest, origin and membership).

Two clocks: ``wall_ns`` stamps records (last_seen is wall time, docs/WIRE.md); ``mono_ns`` drives
timers (probes, suspicion), which must not jump with the wall clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from chisme.core.replication.digest import Digest
from chisme.core.replication.messages import Out
from chisme.core.replication.origins import origin_id
from chisme.core.replication.replicator import ReplicationConfig, Replicator
from chisme.core.store import Replication, Store
from chisme.core.swim import (
    NEVER_NS,
    Member,
    MemberEvent,
    Membership,
    MemberState,
    Message,
    Ping,
    PingReq,
    PushPull,
    Send,
    SwimConfig,
    Update,
)
from chisme.errors import InvalidInput


class SwimPacket(NamedTuple):
    """A membership message with its piggybacked updates, as it travels."""

    msg: Message
    piggyback: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    swim: SwimConfig = field(default_factory=SwimConfig.lan)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    lease_renew_ns: int = 1_000_000_000  # how often live origins' leases are pushed forward


class _View:
    """Membership as replication sees it: addresses of random alive members."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership

    def random_alive(self, k: int) -> list[str]:
        return [member.addr for member in self.m.random_alive(k)]

    def num_alive(self) -> int:
        return self.m.num_alive()


class ClusterEngine:
    """Membership and replication for one node (see the module docstring)."""

    def __init__(
        self,
        member_id: str,
        addr: str,
        make_store: Callable[[Replication], Store],
        *,
        config: ClusterConfig = ClusterConfig(),
        rng: random.Random,
        seeds: Sequence[str] = (),
    ) -> None:
        self.member_id = member_id
        self.addr = addr
        self.config = config
        self.origin = origin_id(member_id)
        self.membership = Membership(member_id, addr, config.swim, rng, seeds)
        digest = Digest()  # first: the store reports to it from its first record on
        # alone, nobody would hear of local changes (a member that joins later gets them by
        # anti-entropy): the store queues none, the digest is kept as ever
        self.store = make_store(Replication(self.origin, digest.on_change, self._not_alone))
        if self.store.local_origin != self.origin:
            raise InvalidInput("make_store must build the store with the replication it gets")
        view = _View(self.membership)
        self.replicator = Replicator(self.store, digest, view, config.replication, rng)
        self._origins: dict[str, int] = {}
        # origins of alive and suspect members by id, kept up to date from membership events
        self._live: dict[str, int] | None = None
        self._dropped = 0
        self._next_lease_ns = 0
        self._met: dict[str, int] = {}  # unknown member id -> when we may ask it again
        self._next_join_ns = NEVER_NS  # while nobody answered our join: when to ask again
        self._join_backoff_ns = config.swim.probe_interval_ns
        self.events: list[MemberEvent] = []  # drained by the shell (logs, metrics)

    # -- driving ----------------------------------------------------------------------

    def start(self, wall_ns: int, mono_ns: int) -> list[Out]:
        """Join through the seeds (again, backing off, until one answers)."""
        if self.membership.seeds:
            self._next_join_ns = mono_ns + self._join_backoff_ns
        return self._outs(self.membership.join(mono_ns))

    def next_deadline_ns(self) -> int:
        """The earliest monotonic time at which :meth:`tick` has work to do."""
        return min(
            self.membership.next_deadline_ns(),
            self._next_lease_ns,
            self.replicator.next_deadline_ns(),
            self._next_join_ns,
        )

    def tick(self, wall_ns: int, mono_ns: int) -> list[Out]:
        out = self._outs(self.membership.tick(mono_ns))
        self._take_events()
        if mono_ns >= self._next_join_ns:
            out.extend(self._retry_join(mono_ns))
        if mono_ns >= self._next_lease_ns:
            # a lease lasts one TTL from its renewal: renewing only every TTL (or less often)
            # let a live origin's records lapse between two renewals (ttl_s <= 1 s)
            every = min(self.config.lease_renew_ns, self.store.ttl_ns // 4)
            self._next_lease_ns = mono_ns + every
            self.replicator.renew_leases(self._live_origins(), wall_ns)
        out.extend(self.replicator.tick(wall_ns, mono_ns))
        return out

    def on_message(self, src: str, msg: object, wall_ns: int, mono_ns: int) -> list[Out]:
        """Handle one message from the member at ``src``."""
        if isinstance(msg, SwimPacket):
            out = self._outs(self.membership.on_message(msg.msg, msg.piggyback, mono_ns))
            out.extend(self._meet(msg.msg, mono_ns))
            self._take_events()
            return out
        return self.replicator.on_message(src, msg, wall_ns, mono_ns)

    def leave(self, mono_ns: int) -> list[Out]:
        return self._outs(self.membership.leave(mono_ns))

    # -- queries ------------------------------------------------------------------------

    def members(self) -> list[Member]:
        return self.membership.members()

    def alive_addrs(self) -> list[str]:
        return [m.addr for m in self.membership.members() if m.state == MemberState.ALIVE]

    # -- internals ------------------------------------------------------------------------

    def _not_alone(self) -> bool:
        return self.membership.num_alive() > 1

    def _outs(self, sends: list[Send]) -> list[Out]:
        return [
            Out(s.to_addr, SwimPacket(s.msg, s.piggyback), isinstance(s.msg, PushPull))
            for s in sends
        ]

    def _retry_join(self, mono_ns: int) -> list[Out]:
        """Nobody answered our join yet (a seed down, or started after us): ask the seeds
        again after 1, 2, 4 ... probe intervals, up to the reconnect interval. Left to the
        periodic seed reconnect alone, a node started a moment before its seed stayed alone
        for up to ``reconnect_interval_ns`` (10 s local, 30 s lan); Serf's retry_join waits 30 s.
        """
        m = self.membership
        if m.num_members() > 1 or m.has_left:
            self._next_join_ns = NEVER_NS  # joined: reconnects and push/pull take over
            return []
        cap = max(m.config.reconnect_interval_ns, m.config.probe_interval_ns)
        self._join_backoff_ns = min(2 * self._join_backoff_ns, cap)
        self._next_join_ns = mono_ns + self._join_backoff_ns
        return self._outs(m.join(mono_ns))

    def _meet(self, msg: Message, mono_ns: int) -> list[Out]:
        """A member we never heard of probes us: we missed every copy of its join.

        Gossip reaches each member only with high probability; in a small cluster an update
        has 2-3 transmissions, some spent on members that know it (or on its subject), and a
        member that missed it waited for the next push/pull (15-30 s). Ask the stranger for a
        full state exchange instead, at most once per probe interval.
        """
        if not isinstance(msg, Ping | PingReq) or msg.source_id == self.member_id:
            return []
        if self.membership.get(msg.source_id) is not None or self.membership.has_left:
            return []
        if self._met.get(msg.source_id, 0) > mono_ns:
            return []
        if len(self._met) >= 1024:
            self._met.clear()
        self._met[msg.source_id] = mono_ns + self.config.swim.probe_interval_ns
        request = PushPull(self.member_id, self.addr, tuple(self.membership.local_state()))
        return [Out(msg.source_addr, SwimPacket(request, ()), True)]

    def _take_events(self) -> None:
        events = self.membership.drain_events()
        live = self._live
        if self.membership.events_dropped != self._dropped:
            self._live = None  # a change we did not see: rebuild from the table
        elif live is not None:
            # every change of the live set is an event (joined, suspect, alive, dead, left);
            # a dead or left member's origin gets no lease renewal from now on, so its
            # records expire a TTL after the last one
            for ev in events:
                member = ev.member
                if member.state in (MemberState.ALIVE, MemberState.SUSPECT):
                    live[member.node_id] = self._origin_of(member.node_id)
                else:
                    live.pop(member.node_id, None)
        self.events.extend(events)
        if len(self.events) > 10_000:
            del self.events[:-1000]

    def _live_origins(self) -> Iterable[int]:
        """Origins of the alive and suspect members. Scanned from the member table once
        (and again only if membership dropped events), then kept by :meth:`_take_events`:
        rebuilding it from N member snapshots every second cost O(N^2) per second across a
        cluster, the simulator's largest cost at 1,000 nodes (every suspicion under loss is
        a membership change, so "rebuild after a change" did not help)."""
        if self._live is None or self.membership.events_dropped != self._dropped:
            self._dropped = self.membership.events_dropped
            self._live = {
                m.node_id: self._origin_of(m.node_id)
                for m in self.membership.members()
                if m.state in (MemberState.ALIVE, MemberState.SUSPECT)
            }
        return self._live.values()

    def _origin_of(self, node_id: str) -> int:
        o = self._origins.get(node_id)
        if o is None:
            if len(self._origins) > 65536:
                self._origins.clear()
            o = self._origins[node_id] = origin_id(node_id)
        return o


__all__: Sequence[str] = ("ClusterConfig", "ClusterEngine", "SwimPacket")
