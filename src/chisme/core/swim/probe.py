"""The probe cycle's bookkeeping: the probe order, the probe under way, probes relayed for others.

[SWIM] §4.3: members are probed round-robin over a list shuffled once per pass
(:class:`ProbeRing`); §3.1: one probe at a time (:class:`Probe`), and indirect probes run on
behalf of a prober that asked by ping-req (:class:`Relay`). The state machine decides what to
send and when (``Membership._step_probe`` and what it calls).
"""

from __future__ import annotations

import random

from chisme.core.swim.table import MemberState, Node, Pool

_ALIVE = MemberState.ALIVE
_SUSPECT = MemberState.SUSPECT

MAX_RELAYS = 1024
"""Indirect probes we run for others at once; more requests are dropped (a DoS bound)."""


class Probe:
    """Our probe under way: a direct ping until ``timeout_ns``, then indirect until ``end_ns``."""

    __slots__ = (
        "end_ns",
        "expected_nacks",
        "incarnation",
        "indirect",
        "nacks",
        "node",
        "seq",
        "timeout_ns",
    )

    def __init__(self, seq: int, node: Node, timeout_ns: int, end_ns: int) -> None:
        self.seq = seq
        self.node = node
        self.incarnation = node.incarnation
        self.timeout_ns = timeout_ns
        self.end_ns = end_ns
        self.indirect = False
        self.expected_nacks = 0
        self.nacks = 0


class Relay:
    """Our ping for a requester's ping-req: its ack is relayed back, or a nack at ``nack_at_ns``."""

    __slots__ = ("nack_at_ns", "requester_addr", "requester_seq", "seq", "target_id")

    def __init__(
        self, seq: int, requester_seq: int, requester_addr: str, target_id: str, nack_at_ns: int
    ) -> None:
        self.seq = seq
        self.requester_seq = requester_seq
        self.requester_addr = requester_addr
        self.target_id = target_id
        self.nack_at_ns = nack_at_ns


class ProbeRing:
    """The probe order: ALIVE and SUSPECT members, visited round-robin, reshuffled every pass.

    ``nodes`` is the member table, ``alive`` and ``suspect`` its pools; a node that left them
    (or the table) since it was placed in the ring is skipped when its turn comes.
    """

    __slots__ = ("_alive", "_idx", "_nodes", "_ring", "_rng", "_suspect")

    def __init__(
        self, rng: random.Random, nodes: dict[str, Node], alive: Pool, suspect: Pool
    ) -> None:
        self._rng = rng
        self._nodes = nodes
        self._alive = alive
        self._suspect = suspect
        self._ring: list[Node] = []
        self._idx = 0

    def next_target(self) -> Node | None:
        """The next ALIVE or SUSPECT member of the shuffled ring; reshuffle after a full pass."""
        for _ in range(2):
            ring = self._ring
            while self._idx < len(ring):
                node = ring[self._idx]
                self._idx += 1
                if (node.state is _ALIVE or node.state is _SUSPECT) and self._nodes.get(
                    node.node_id
                ) is node:
                    return node
            self._rebuild()
            if not self._ring:
                return None
        return None

    def insert(self, node: Node) -> None:
        """Place a member that became ALIVE or SUSPECT, unless it is in the ring already."""
        # memberlist aliveNode: append and swap with a random offset, so that a new member is
        # probed after a random delay rather than always at the end of the pass.
        if node.in_ring:
            return
        node.in_ring = True
        ring = self._ring
        n = len(ring)
        ring.append(node)
        offset = int(self._rng.random() * (n + 1))  # randrange costs 10x more
        ring[offset], ring[n] = ring[n], ring[offset]

    def _rebuild(self) -> None:
        for node in self._ring:
            node.in_ring = False
        ring = [*self._alive.items, *self._suspect.items]
        self._rng.shuffle(ring)
        for node in ring:
            node.in_ring = True
        self._ring = ring
        self._idx = 0
