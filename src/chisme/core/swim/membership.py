"""The SWIM + Lifeguard state machine: one node's view of the cluster, sans I/O.

:class:`Membership` holds the member table and applies the protocol's rules to it: the probe
cycle, updates with incarnation precedence (SWIM §4.2), suspicion timers, dissemination, full
state push/pull, retention of failed and left members, and reconnects. The package docstring
(:mod:`chisme.core.swim`) gives the sources, the driver loop and every deliberate deviation.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Collection, Iterable, Sequence

from chisme.core.broadcast import TransmitLimitedQueue
from chisme.core.swim.config import SwimConfig, push_pull_interval_ns
from chisme.core.swim.messages import (
    Ack,
    Alive,
    Dead,
    Gossip,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Send,
    Suspect,
    Update,
    estimate_size,
)
from chisme.core.swim.probe import MAX_RELAYS, Probe, ProbeRing, Relay
from chisme.core.swim.suspicion import Suspicion
from chisme.core.swim.table import EventKind, Member, MemberEvent, MemberState, Node, Pool, sample
from chisme.errors import ConfigError

NEVER_NS = 2**63 - 1
"""What :meth:`Membership.next_deadline_ns` returns when no timer is pending (after leaving)."""

_ALIVE = MemberState.ALIVE
_SUSPECT = MemberState.SUSPECT
_DEAD = MemberState.DEAD
_LEFT = MemberState.LEFT


class Membership:
    """One node's view of the cluster, driven by :meth:`tick` and :meth:`on_message`.

    Every method is O(1) in the cluster size except the whole-table ones (:meth:`members`,
    :meth:`local_state`, :meth:`merge_state`, the push/pull they serve) and the reshuffle of the
    probe order once per full pass (amortised O(1) per probe, as memberlist's ``resetNodes``).
    """

    def __init__(
        self,
        self_id: str,
        self_addr: str,
        config: SwimConfig,
        rng: random.Random,
        seeds: Sequence[str] = (),
    ) -> None:
        if not self_id:
            raise ConfigError("node id must not be empty")
        if not self_addr:
            raise ConfigError("node address must not be empty")
        self._id = self_id
        self._addr = self_addr
        self._cfg = config
        self._rng = rng
        self._seeds: tuple[str, ...] = tuple(dict.fromkeys(s for s in seeds if s != self_addr))

        self._me = Node(self_id, self_addr, 0, _ALIVE, 0)
        self._nodes: dict[str, Node] = {self_id: self._me}
        self._by_addr: dict[str, Node] = {self_addr: self._me}
        self._alive = Pool()  # ALIVE members other than us
        self._suspect = Pool()
        self._dead = Pool()  # failed (not left) members still kept for reconnects
        self._left = False

        self._queue: TransmitLimitedQueue[Update] = TransmitLimitedQueue(
            config.retransmit_mult, config.max_queued_broadcasts
        )
        self._rebroadcast = True
        self._accused = False  # the message being handled accused us (see _buddy)
        self._events: deque[MemberEvent] = deque(maxlen=config.max_events)
        self.events_dropped = 0
        self._state_cache: tuple[Update, ...] | None = None

        # probing (SWIM §4.3: round-robin over a list shuffled once per pass)
        self._ring = ProbeRing(rng, self._nodes, self._alive, self._suspect)
        self._probe: Probe | None = None
        self._seq = 0
        self._awareness = 0
        self._relays: dict[int, Relay] = {}
        self._relay_queue: deque[Relay] = deque()  # FIFO: every relay lives probe_timeout_ns
        self._checks: deque[tuple[Node, Suspicion]] = deque()  # expired suspicions to probe

        # timers
        self._started = False
        self._now_ns = 0  # the latest now_ns we were given
        self._next_probe_ns = 0
        self._next_gossip_ns = 0
        self._next_push_pull_ns = 0
        self._next_reconnect_ns = 0
        self._suspicions: list[tuple[int, int, str, Suspicion]] = []  # heap by deadline
        self._heap_seq = 0
        self._reap_left: deque[tuple[int, Node]] = deque()  # FIFO: constant retention
        self._reap_dead: deque[tuple[int, Node]] = deque()
        self._tombstones: dict[str, tuple[int, int]] = {}  # node_id -> (incarnation, until_ns)
        self._tomb_queue: deque[tuple[int, str]] = deque()

        # memberlist setAlive(): our own Alive is the first thing we gossip.
        self._queue_update(Alive(self_id, self_addr, 0))

    # ---------------------------------------------------------------- queries

    @property
    def self_id(self) -> str:
        return self._id

    @property
    def self_addr(self) -> str:
        return self._addr

    @property
    def config(self) -> SwimConfig:
        return self._cfg

    @property
    def incarnation(self) -> int:
        """Our own incarnation number; it grows each time we refute a suspicion (SWIM §4.2)."""
        return self._me.incarnation

    @property
    def health_score(self) -> int:
        """Lifeguard's local health score, 0 (healthy) to ``awareness_max - 1``."""
        return self._awareness

    @property
    def has_left(self) -> bool:
        return self._left

    @property
    def seeds(self) -> tuple[str, ...]:
        return self._seeds

    def pending_broadcasts(self) -> int:
        """Updates still waiting to be sent (after :meth:`leave`: wait for 0 or a deadline)."""
        return len(self._queue)

    def get(self, node_id: str) -> Member | None:
        """The member ``node_id`` (ourselves included), or None if unknown or forgotten."""
        node = self._nodes.get(node_id)
        return None if node is None else node.snapshot()

    def members(self) -> list[Member]:
        """Every known member in every state, ourselves included. O(N)."""
        return [node.snapshot() for node in self._nodes.values()]

    def alive_ids(self) -> list[str]:
        """Ids of members in state ALIVE, ourselves included (unless we left); unordered. O(N)."""
        ids = [node.node_id for node in self._alive.items]
        if not self._left:
            ids.append(self._id)
        return ids

    def num_alive(self) -> int:
        """``len(alive_ids())`` in O(1)."""
        return len(self._alive) + (0 if self._left else 1)

    def num_members(self) -> int:
        """Members not dead or left (alive or suspect), ourselves included: SWIM's N. O(1)."""
        return 1 + len(self._alive) + len(self._suspect)

    def random_alive(self, k: int, exclude: Collection[str] = ()) -> list[Member]:
        """Up to ``k`` distinct random ALIVE members other than us, none in ``exclude``. O(k)."""
        return [node.snapshot() for node in sample(self._rng, (self._alive,), k, exclude)]

    def drain_events(self) -> list[MemberEvent]:
        """The member events since the last call, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def next_deadline_ns(self) -> int:
        """The earliest time at which :meth:`tick` has work to do.

        Any message handled in the meantime may bring it forward; ask again after every call.
        Before the first call of any method taking ``now_ns`` this is 0 (tick at once).
        """
        if not self._started:
            return 0
        cfg = self._cfg
        best = NEVER_NS
        if not self._left:
            probe = self._probe
            if probe is None:
                best = self._now_ns if self._checks else self._next_probe_ns
            else:
                best = probe.end_ns if probe.indirect else probe.timeout_ns
            if cfg.push_pull_interval_ns and self._next_push_pull_ns < best:
                best = self._next_push_pull_ns
            if cfg.reconnect_interval_ns and self._next_reconnect_ns < best:
                best = self._next_reconnect_ns
        if self._next_gossip_ns < best and self._gossip_due_possible():
            best = self._next_gossip_ns
        if self._relay_queue and self._relay_queue[0].nack_at_ns < best:
            best = self._relay_queue[0].nack_at_ns
        heap = self._suspicions
        while heap and heap[0][3] is not self._live_suspicion(heap[0][2]):
            heapq.heappop(heap)  # stale: refuted, confirmed earlier, or declared dead
        if heap and heap[0][0] < best:
            best = heap[0][0]
        for fifo in (self._reap_left, self._reap_dead):
            if fifo and fifo[0][0] < best:
                best = fifo[0][0]
        if self._tomb_queue and self._tomb_queue[0][0] < best:
            best = self._tomb_queue[0][0]
        return best

    # ---------------------------------------------------------------- driving

    def join(self, now_ns: int) -> list[Send]:
        """Start a full state exchange with every seed (memberlist Join)."""
        self._start(now_ns)
        if self._left:
            return []
        request = self._push_pull_request()
        return [Send(seed, request) for seed in self._seeds]

    def tick(self, now_ns: int) -> list[Send]:
        """Do every time-based step that is due at ``now_ns`` and return what to send."""
        self._start(now_ns)
        out: list[Send] = []
        self._expire_relays(now_ns, out)
        self._expire_suspicions(now_ns)
        if not self._left:
            self._step_probe(now_ns, out)
        cfg = self._cfg
        if self._gossip_due_possible() and now_ns >= self._next_gossip_ns:
            self._gossip(out)
            self._next_gossip_ns = now_ns + cfg.gossip_interval_ns
        if not self._left:
            if cfg.push_pull_interval_ns and now_ns >= self._next_push_pull_ns:
                self._push_pull_random(out)
                self._next_push_pull_ns = now_ns + push_pull_interval_ns(
                    cfg.push_pull_interval_ns, self.num_members()
                )
            if cfg.reconnect_interval_ns and now_ns >= self._next_reconnect_ns:
                self._reconnect(out)
                self._next_reconnect_ns = now_ns + cfg.reconnect_interval_ns
        self._reap(now_ns)
        return out

    def on_message(self, msg: Message, piggyback: Iterable[Update], now_ns: int) -> list[Send]:
        """Handle one received message and its piggybacked updates; return the replies."""
        self._start(now_ns)
        self._accused = False
        for update in piggyback:
            self._apply(update, now_ns)
        if isinstance(msg, Ping):
            return self._on_ping(msg)
        out: list[Send] = []
        if isinstance(msg, Ack):
            out = self._on_ack(msg)
        elif isinstance(msg, PingReq):
            out = self._on_ping_req(msg, now_ns)
        elif isinstance(msg, Nack):
            probe = self._probe
            if probe is not None and probe.seq == msg.seq:
                probe.nacks += 1
        elif isinstance(msg, PushPull):
            self.merge_state(msg.states, now_ns)
            if not msg.reply and not self._left:
                reply = PushPull(self._id, self._addr, self._local_state_tuple(), reply=True)
                return [Send(msg.source_addr, reply)]  # carries our Alive anyway
        # (Gossip: the piggyback was the message.)
        self._buddy(msg, out)
        return out

    def local_state(self) -> list[Update]:
        """Our whole table as updates, for a push/pull (memberlist pushNodeState list)."""
        return list(self._local_state_tuple())

    def merge_state(
        self, updates: Iterable[Update], now_ns: int, *, rebroadcast: bool = True
    ) -> None:
        """Merge a remote full state (memberlist mergeRemoteState).

        As memberlist does, a remote "dead" only makes us *suspect* the member (we run our own
        suspicion timer); a remote "left" is applied as is. Accepted changes are re-gossiped
        unless ``rebroadcast`` is False (loading a snapshot, or a simulator's initial view).
        """
        # Not _start(): loading a view before the first tick must not fix timers for N = 1.
        self._now_ns = now_ns
        self._rebroadcast = rebroadcast
        try:
            for update in updates:
                if isinstance(update, Alive):
                    self._on_alive(update, now_ns)
                elif isinstance(update, Dead) and update.left:
                    self._on_dead(update, now_ns)
                else:
                    self._on_suspect(Suspect(update.node_id, update.incarnation, self._id), now_ns)
        finally:
            self._rebroadcast = True

    def leave(self, now_ns: int) -> list[Send]:
        """Leave gracefully: gossip ``Dead(self, from=self)``, i.e. *left* (memberlist Leave).

        Keep delivering messages and ticking until :meth:`pending_broadcasts` is 0 (or a short
        deadline passes), then stop. Probing, push/pull and reconnects stop at once; leaving
        is final for this ``node_id``.
        """
        self._start(now_ns)
        if self._left:
            return []
        self._left = True
        me = self._me
        me.state = _LEFT
        me.since_ns = now_ns
        me.entry = None
        self._probe = None
        self._state_cache = None
        self._queue_update(Dead(self._id, me.incarnation, self._id))
        targets = sample(self._rng, (self._alive, self._suspect), self._cfg.gossip_nodes, ())
        return [self._packet(node.addr, Gossip(self._id)) for node in targets]

    # ---------------------------------------------------------------- probe cycle

    def _start(self, now_ns: int) -> None:
        self._now_ns = now_ns
        if self._started:
            return
        self._started = True
        cfg = self._cfg
        rng = self._rng
        # Random stagger so that nodes started together do not probe in lock step
        # (memberlist staggers push/pull the same way).
        self._next_probe_ns = now_ns + rng.randrange(cfg.probe_interval_ns)
        self._next_gossip_ns = now_ns + rng.randrange(max(1, cfg.gossip_interval_ns))
        pp = push_pull_interval_ns(max(1, cfg.push_pull_interval_ns), self.num_members())
        self._next_push_pull_ns = now_ns + rng.randrange(pp)
        self._next_reconnect_ns = now_ns + rng.randrange(max(1, cfg.reconnect_interval_ns))

    def _step_probe(self, now_ns: int, out: list[Send]) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.indirect and now_ns >= probe.timeout_ns:
                self._send_indirect(probe, now_ns, out)
            if now_ns >= probe.end_ns:
                self._probe = None
                self._probe_failed(probe, now_ns)
        if self._probe is None and (now_ns >= self._next_probe_ns or self._checks):
            self._start_probe(now_ns, out)

    def _start_probe(self, now_ns: int, out: list[Send]) -> None:
        cfg = self._cfg
        # Lifeguard LHA-probe: a node that seems unhealthy itself stretches its probe interval
        # (memberlist awareness.ScaleTimeout), giving acks and nacks more time before it accuses.
        interval = cfg.probe_interval_ns * (self._awareness + 1)
        self._next_probe_ns = now_ns + interval
        node = self._next_check() or self._ring.next_target()
        if node is None:
            return
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        probe = Probe(self._seq, node, now_ns + cfg.probe_timeout_ns, now_ns + interval)
        self._probe = probe
        ping = Ping(probe.seq, node.node_id, self._id, self._addr)
        if node.state is _ALIVE:
            out.append(self._packet(node.addr, ping))
        else:
            # Lifeguard buddy system (memberlist probeNode): tell a suspect it is suspected.
            accuse = Suspect(node.node_id, node.incarnation, self._id)
            out.append(self._packet(node.addr, ping, (accuse,)))

    def _send_indirect(self, probe: Probe, now_ns: int, out: list[Send]) -> None:
        probe.indirect = True
        # A late tick must not eat the indirect phase: give it its nominal length from now.
        window = probe.end_ns - probe.timeout_ns
        if now_ns + window > probe.end_ns:
            probe.end_ns = now_ns + window
            self._next_probe_ns = max(self._next_probe_ns, probe.end_ns)
        target = probe.node
        # SWIM §3.1: k random members that are ALIVE (memberlist: not us, not the target).
        helpers = sample(self._rng, (self._alive,), self._cfg.indirect_checks, (target.node_id,))
        request = PingReq(probe.seq, target.node_id, target.addr, self._id, self._addr)
        for helper in helpers:
            out.append(self._packet(helper.addr, request))
        probe.expected_nacks = len(helpers)

    def _probe_failed(self, probe: Probe, now_ns: int) -> None:
        # Lifeguard LHA: a missing nack says *we* may be the slow one (memberlist probeNode).
        if probe.expected_nacks > 0:
            self._adjust_health(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._adjust_health(1)
        node = probe.node
        if self._nodes.get(node.node_id) is node and node.state in (_ALIVE, _SUSPECT):
            self._on_suspect(Suspect(node.node_id, probe.incarnation, self._id), now_ns)
            suspicion = node.suspicion
            if suspicion is not None and suspicion.checking:
                # The last probe failed too: the suspicion stands (memberlist's timeout).
                self._on_dead(Dead(node.node_id, node.incarnation, self._id), now_ns)

    def _adjust_health(self, delta: int) -> None:
        score = self._awareness + delta
        self._awareness = min(max(score, 0), self._cfg.awareness_max - 1)

    def _buddy(self, msg: Message, out: list[Send]) -> None:
        """Point-to-point repair between a sender and us when one of us is behind on the other.

        Gossip reaches each member only with high probability: at 50 nodes and 10 % loss about
        one member in 1,500 misses every copy of a given refutation, and would keep a live node
        suspect (then dead) or, after a partition, dead for a whole probe pass. Two cheap rules,
        triggered only by disagreement, so they cost nothing in a healthy cluster:

        - *we were accused* by this message (even stale, below our incarnation): its sender is
          behind on us, so it gets our current ``Alive`` directly (this is how a refutation
          reaches whoever missed it);
        - the *sender* is a member we hold suspect or dead: it is obviously running, so we tell
          it what we believe (Lifeguard's buddy system, extended from probes to every message);
          it refutes, and its ``Alive`` comes back to us by the first rule.

        On a :class:`Ping` both ride on the ack (see ``_on_ping``); here they go as one
        :class:`Gossip` packet. Acks and nacks answer our own requests: no accusation for those.
        """
        first: list[Update] = []
        if self._accused and not self._left:
            first.append(self._my_alive())
        source = self._nodes.get(msg.source_id)
        if source is self._me:
            return
        if not isinstance(msg, Ack | Nack):
            accusation = self._accusation_about(source)
            if accusation is not None:
                first.append(accusation)
        if not first:
            return
        if isinstance(msg, PushPull | PingReq):
            addr: str | None = msg.source_addr
        else:
            addr = None if source is None else source.addr
        if addr is not None:
            out.append(self._packet(addr, Gossip(self._id), tuple(first)))

    def _accusation_about(self, node: Node | None) -> Update | None:
        if node is None or node is self._me:
            return None
        if node.state is _SUSPECT:
            return Suspect(node.node_id, node.incarnation, self._id)
        if node.state is _DEAD:
            return Dead(node.node_id, node.incarnation, self._id)
        return None

    def _my_alive(self) -> Alive:
        return Alive(self._id, self._addr, self._me.incarnation)

    def _on_ping(self, msg: Ping) -> list[Send]:
        if msg.target_id != self._id:
            return []  # meant for an earlier process at this address (memberlist handlePing)
        first: tuple[Update, ...] = (self._my_alive(),) if self._accused else ()
        accusation = self._accusation_about(self._nodes.get(msg.source_id))
        if accusation is not None:
            first += (accusation,)  # see _buddy
        return [self._packet(msg.source_addr, Ack(msg.seq, self._id), first)]

    def _on_ack(self, msg: Ack) -> list[Send]:
        probe = self._probe
        if probe is not None and probe.seq == msg.seq:
            self._probe = None
            self._adjust_health(-1)
            suspicion = probe.node.suspicion
            if suspicion is not None and suspicion.checking:
                # Alive after all, but we still lack its refutation (a relayed ack carries
                # none): keep suspecting and look again after the minimum timeout.
                suspicion.checking = False
                suspicion.deadline_ns = self._now_ns + suspicion.min_ns
                self._push_suspicion(probe.node, suspicion)
            return []
        relay = self._relays.pop(msg.seq, None)
        if relay is None:
            return []  # late or unknown: the probe is over
        ack = Ack(relay.requester_seq, relay.target_id)
        return [self._packet(relay.requester_addr, ack)]

    def _on_ping_req(self, msg: PingReq, now_ns: int) -> list[Send]:
        if msg.target_id == self._id:
            return [self._packet(msg.source_addr, Ack(msg.seq, self._id))]
        if len(self._relays) >= MAX_RELAYS:
            return []
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        # memberlist handleIndirectPing: our own ping, an ack handler that relays, and a nack
        # after the (unscaled) probe timeout if the target stays silent.
        relay = Relay(
            self._seq, msg.seq, msg.source_addr, msg.target_id, now_ns + self._cfg.probe_timeout_ns
        )
        self._relays[relay.seq] = relay
        self._relay_queue.append(relay)
        ping = Ping(relay.seq, msg.target_id, self._id, self._addr)
        return [self._packet(msg.target_addr, ping)]

    def _expire_relays(self, now_ns: int, out: list[Send]) -> None:
        queue = self._relay_queue
        while queue and queue[0].nack_at_ns <= now_ns:
            relay = queue.popleft()
            if self._relays.pop(relay.seq, None) is relay:
                out.append(self._packet(relay.requester_addr, Nack(relay.requester_seq, self._id)))

    # ---------------------------------------------------------------- suspicion

    def _live_suspicion(self, node_id: str) -> Suspicion | None:
        node = self._nodes.get(node_id)
        return None if node is None else node.suspicion

    def _push_suspicion(self, node: Node, suspicion: Suspicion) -> None:
        self._heap_seq += 1
        entry = (suspicion.deadline_ns, self._heap_seq, node.node_id, suspicion)
        heapq.heappush(self._suspicions, entry)

    def _expire_suspicions(self, now_ns: int) -> None:
        heap = self._suspicions
        while heap and heap[0][0] <= now_ns:
            deadline, _, node_id, suspicion = heapq.heappop(heap)
            node = self._nodes.get(node_id)
            if node is None or node.suspicion is not suspicion or suspicion.deadline_ns != deadline:
                continue  # refuted, re-scheduled by a confirmation, or already dead
            if self._left:
                # memberlist suspectNode's timeout: dead at its current incarnation.
                self._on_dead(Dead(node_id, node.incarnation, self._id), now_ns)
            elif not suspicion.checking:
                suspicion.checking = True
                self._checks.append((node, suspicion))

    def _next_check(self) -> Node | None:
        """The suspect whose timer fired, to be probed one last time before it is declared dead.

        Not in memberlist, which declares dead when the timer fires. Gossip reaches each member
        only with high probability, so a member that missed every copy of a refutation would
        declare a live node dead (at 50 nodes and 10 % loss, about one false death per 20
        minutes). The last probe carries the buddy ``Suspect``; a live target answers with its
        ack and (see ``_buddy``) its current ``Alive``, which refutes. Costs one probe per
        suspicion that times out here, and at most one probe interval of detection time.
        """
        checks = self._checks
        while checks:
            node, suspicion = checks.popleft()
            if (
                suspicion.checking
                and node.suspicion is suspicion
                and self._nodes.get(node.node_id) is node
            ):
                return node
        return None

    # ---------------------------------------------------------------- updates (SWIM §4.2)

    def _apply(self, update: Update, now_ns: int) -> None:
        if isinstance(update, Alive):
            self._on_alive(update, now_ns)
        elif isinstance(update, Suspect):
            self._on_suspect(update, now_ns)
        else:
            self._on_dead(update, now_ns)

    def _on_alive(self, a: Alive, now_ns: int) -> None:
        node = self._nodes.get(a.node_id)
        if node is self._me:
            # Someone claims to be us with a newer incarnation, or elsewhere: out-bid it.
            if not self._left and (
                a.incarnation > self._me.incarnation
                or (a.incarnation == self._me.incarnation and a.addr != self._addr)
            ):
                self._refute(a.incarnation)
            return
        if node is None:
            tomb = self._tombstones.get(a.node_id)
            if tomb is not None:
                if a.incarnation <= tomb[0]:
                    return  # quarantined: stale gossip about a member we forgot
                del self._tombstones[a.node_id]
            node = Node(a.node_id, a.addr, a.incarnation, _ALIVE, now_ns)
            self._nodes[a.node_id] = node
            node.entry = a  # exactly our state of it: push/pull reuses the object
            self._alive.add(node)
            self._ring.insert(node)
            self._claim_addr(node, now_ns)
            self._state_cache = None
            self._emit("joined", node)
            self._broadcast(a)
            return
        # SWIM: only a strictly newer incarnation overrides what we know.
        if a.incarnation <= node.incarnation:
            return
        node.suspicion = None
        node.incarnation = a.incarnation
        moved = a.addr != node.addr
        if moved:
            if self._by_addr.get(node.addr) is node:
                del self._by_addr[node.addr]
            node.addr = a.addr
            self._claim_addr(node, now_ns)
        node.entry = a
        self._state_cache = None
        if node.state is not _ALIVE:
            self._set_state(node, _ALIVE, now_ns)
            self._emit("alive", node)
        elif moved:
            self._emit("alive", node)
        self._broadcast(a)

    def _on_suspect(self, s: Suspect, now_ns: int) -> None:
        node = self._nodes.get(s.node_id)
        if node is None:
            return  # never heard of it (or forgotten): nothing to suspect
        if node is self._me:
            if not self._left:
                self._accused = True
                if s.incarnation >= self._me.incarnation:
                    self._refute(s.incarnation)
            return
        if s.incarnation < node.incarnation:
            return
        suspicion = node.suspicion
        if suspicion is not None:
            # Lifeguard: an independent accuser shortens the timer; re-gossip so that others
            # count it too (memberlist suspectNode).
            if suspicion.confirm(s.from_id):
                if not suspicion.checking:  # else the last probe under way decides
                    self._push_suspicion(node, suspicion)
                self._broadcast(s)
            return
        if node.state is not _ALIVE:
            return
        node.incarnation = s.incarnation
        self._set_state(node, _SUSPECT, now_ns)
        node.entry = None
        self._state_cache = None
        node.suspicion = Suspicion.start(s.from_id, self._cfg, self.num_members(), now_ns)
        self._push_suspicion(node, node.suspicion)
        self._emit("suspect", node)
        self._broadcast(s)

    def _on_dead(self, d: Dead, now_ns: int) -> None:
        node = self._nodes.get(d.node_id)
        if node is None:
            return
        if node is self._me:
            # memberlist deadNode: refute unless we are the one leaving.
            if not self._left:
                self._accused = True
                if d.incarnation >= self._me.incarnation:
                    self._refute(d.incarnation)
            return
        if d.incarnation < node.incarnation:
            return
        node.suspicion = None
        if node.state is _LEFT or (node.state is _DEAD and not d.left):
            return
        # (DEAD -> LEFT is accepted: a member that said goodbye must not be retried for hours.)
        node.incarnation = d.incarnation
        self._set_state(node, _LEFT if d.left else _DEAD, now_ns)
        node.entry = None
        self._state_cache = None
        self._emit("left" if d.left else "dead", node)
        self._broadcast(d)
        if self._by_addr.get(node.addr) is not node:
            self._forget(node, now_ns)  # a newer member already took its address

    def _refute(self, accused_incarnation: int) -> None:
        """SWIM §4.2 / memberlist refute: out-bid the accusation and gossip that we are alive."""
        me = self._me
        me.incarnation = max(me.incarnation, accused_incarnation) + 1
        me.entry = None
        self._state_cache = None
        # Lifeguard: being accused is a sign that we may be the slow one.
        self._adjust_health(1)
        self._queue_update(self._my_alive())

    def _set_state(self, node: Node, state: MemberState, now_ns: int) -> None:
        old = node.state
        if old is _ALIVE:
            self._alive.remove(node)
        elif old is _SUSPECT:
            self._suspect.remove(node)
        elif old is _DEAD:
            self._dead.remove(node)
        node.state = state
        node.since_ns = now_ns
        if state is _ALIVE:
            self._alive.add(node)
            self._ring.insert(node)
        elif state is _SUSPECT:
            self._suspect.add(node)
            self._ring.insert(node)
        elif state is _DEAD:
            self._dead.add(node)
            self._reap_dead.append((now_ns + self._cfg.reconnect_timeout_ns, node))
            while len(self._dead) > self._cfg.max_dead_members and self._reap_dead:
                _, oldest = self._reap_dead.popleft()
                if oldest.state is _DEAD:
                    self._forget(oldest, now_ns)
        else:
            self._reap_left.append((now_ns + self._cfg.gossip_to_dead_ns, node))

    def _claim_addr(self, node: Node, now_ns: int) -> None:
        previous = self._by_addr.get(node.addr)
        if previous is self._me:
            return  # a stranger claims our address; our own entry stays authoritative
        self._by_addr[node.addr] = node
        if previous is not None and previous is not node and previous.state in (_DEAD, _LEFT):
            self._forget(previous, now_ns)  # a new process replaced it at that address

    def _forget(self, node: Node, now_ns: int) -> None:
        if self._nodes.get(node.node_id) is not node:
            return
        del self._nodes[node.node_id]
        if node.state is _DEAD:
            self._dead.remove(node)
        elif node.state is _ALIVE:
            self._alive.remove(node)
        elif node.state is _SUSPECT:
            self._suspect.remove(node)
        if self._by_addr.get(node.addr) is node:
            del self._by_addr[node.addr]
        node.suspicion = None
        until = now_ns + self._cfg.quarantine_ns
        self._tombstones[node.node_id] = (node.incarnation, until)
        self._tomb_queue.append((until, node.node_id))
        if len(self._tomb_queue) > self._cfg.max_tombstones:
            old_until, old_id = self._tomb_queue.popleft()
            tomb = self._tombstones.get(old_id)
            if tomb is not None and tomb[1] == old_until:  # (else re-forgotten since: keep)
                del self._tombstones[old_id]
        self._state_cache = None

    def _reap(self, now_ns: int) -> None:
        cfg = self._cfg
        for queue, state, keep in (
            (self._reap_left, _LEFT, cfg.gossip_to_dead_ns),
            (self._reap_dead, _DEAD, cfg.reconnect_timeout_ns),
        ):
            while queue and queue[0][0] <= now_ns:
                _, node = queue.popleft()
                if node.state is state and node.since_ns + keep <= now_ns:
                    self._forget(node, now_ns)
        tombs = self._tomb_queue
        while tombs and tombs[0][0] <= now_ns:
            _, node_id = tombs.popleft()
            tomb = self._tombstones.get(node_id)
            if tomb is not None and tomb[1] <= now_ns:
                del self._tombstones[node_id]

    # ---------------------------------------------------------------- dissemination

    def _emit(self, kind: EventKind, node: Node) -> None:
        events = self._events
        if len(events) == events.maxlen:
            self.events_dropped += 1  # the deque drops the oldest
        events.append(
            MemberEvent(
                kind,
                Member(node.node_id, node.addr, node.incarnation, node.state, node.since_ns),
            )
        )

    def _broadcast(self, update: Update) -> None:
        if self._rebroadcast:
            self._queue_update(update)

    def _queue_update(self, update: Update) -> None:
        # memberlist NamedBroadcast keyed by node: the newest word about a node replaces the older.
        self._queue.queue(update.node_id, update, estimate_size(update))

    def _packet(self, to_addr: str, msg: Message, first: tuple[Update, ...] = ()) -> Send:
        """``msg`` to ``to_addr`` with ``first`` and then as much queued gossip as fits."""
        budget = self._cfg.max_packet_bytes - estimate_size(msg)
        for update in first:
            budget -= estimate_size(update)
        if not self._queue or budget <= 0:
            return Send(to_addr, msg, first)
        taken = self._queue.take(budget, self.num_members())
        if not first:
            return Send(to_addr, msg, tuple(taken))
        return Send(to_addr, msg, (*first, *(u for u in taken if u not in first)))

    def _gossip_due_possible(self) -> bool:
        """Gossip rounds happen only with news to send and someone to send it to."""
        cfg = self._cfg
        return bool(
            self._queue
            and cfg.gossip_interval_ns
            and cfg.gossip_nodes
            and (self._alive.items or self._suspect.items)
        )

    def _gossip(self, out: list[Send]) -> None:
        # memberlist gossip(): a few random live members, one packet each, while there is news.
        targets = sample(self._rng, (self._alive, self._suspect), self._cfg.gossip_nodes, ())
        budget = self._cfg.max_packet_bytes - estimate_size(Gossip(self._id))
        for node in targets:
            taken = self._queue.take(budget, self.num_members())
            if not taken:
                return
            out.append(Send(node.addr, Gossip(self._id), tuple(taken)))

    # ---------------------------------------------------------------- push/pull and healing

    def _local_state_tuple(self) -> tuple[Update, ...]:
        cached = self._state_cache
        if cached is not None:
            return cached
        states: list[Update] = []
        append = states.append
        for node in self._nodes.values():
            entry = node.entry
            if entry is None:
                entry = node.entry = self._entry_of(node)
            append(entry)
        self._state_cache = cached = tuple(states)
        return cached

    def _entry_of(self, node: Node) -> Update:
        state = node.state
        if state is _ALIVE:
            return Alive(node.node_id, node.addr, node.incarnation)
        if state is _SUSPECT:
            return Suspect(node.node_id, node.incarnation, self._id)
        if state is _DEAD:
            return Dead(node.node_id, node.incarnation, self._id)
        return Dead(node.node_id, node.incarnation, node.node_id)  # left

    def _push_pull_request(self) -> PushPull:
        return PushPull(self._id, self._addr, self._local_state_tuple())

    def _push_pull_random(self, out: list[Send]) -> None:
        # memberlist pushPull(): one random ALIVE member.
        for node in sample(self._rng, (self._alive,), 1, ()):
            out.append(Send(node.addr, self._push_pull_request()))

    def _reconnect(self, out: list[Send]) -> None:
        """Serf reconnect(): retry one failed member with probability failed / alive; and seeds.

        The probability makes the cluster as a whole try each failed member about once per
        interval; in a partition (failed >= alive) every node tries, which is what heals it.
        """
        others = max(1, len(self._alive) + len(self._suspect))
        rng = self._rng
        dead = self._dead.items
        if dead and rng.random() < len(dead) / others:
            node = dead[rng.randrange(len(dead))]
            if self._by_addr.get(node.addr) is node:
                out.append(Send(node.addr, self._push_pull_request()))
        seeds = [seed for seed in self._seeds if not self._is_live_addr(seed)]
        if seeds and rng.random() < len(seeds) / others:
            out.append(Send(seeds[rng.randrange(len(seeds))], self._push_pull_request()))

    def _is_live_addr(self, addr: str) -> bool:
        node = self._by_addr.get(addr)
        return node is not None and (node.state is _ALIVE or node.state is _SUSPECT)
