"""The member table's pieces: the snapshots the shell sees, the per-member record, state pools.

:class:`Member`, :class:`MemberState` and :class:`MemberEvent` are public (re-exported by the
package). :class:`Node` (one member's mutable record), :class:`Pool` (the members of one state,
indexable for O(1) random picks) and :func:`sample` are the package's own; the table itself
(``node_id`` -> :class:`Node`, by address, one pool per state, retention) lives in
:class:`~chisme.core.swim.membership.Membership`, whose rules change it.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from chisme.core.swim.messages import Update
    from chisme.core.swim.suspicion import Suspicion


class MemberState(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


class Member(NamedTuple):
    """A snapshot of one member. ``state_since_ns`` is on *our* clock."""

    node_id: str
    addr: str
    incarnation: int
    state: MemberState
    state_since_ns: int


EventKind = Literal["joined", "suspect", "alive", "dead", "left"]


class MemberEvent(NamedTuple):
    """A change of another member, for the shell to log, count or act on.

    ``joined``: first seen (or seen again after being forgotten); ``suspect``; ``alive``: back
    from suspect/dead (a refutation) or moved to a new address; ``dead``: declared failed;
    ``left``: departed gracefully.
    """

    kind: EventKind
    member: Member


class Node:
    """One member as the table holds it (ourselves included); :meth:`snapshot` is its copy."""

    __slots__ = (
        "addr",
        "entry",
        "in_ring",
        "incarnation",
        "node_id",
        "since_ns",
        "slot",
        "state",
        "suspicion",
    )

    def __init__(
        self, node_id: str, addr: str, incarnation: int, state: MemberState, since_ns: int
    ) -> None:
        self.node_id = node_id
        self.addr = addr
        self.incarnation = incarnation
        self.state = state
        self.since_ns = since_ns
        self.slot = -1  # index in the pool of its state (alive, suspect or dead)
        self.in_ring = False  # present in the probe ring
        self.suspicion: Suspicion | None = None
        self.entry: Update | None = None  # cached local_state() entry; None when changed

    def snapshot(self) -> Member:
        return Member(self.node_id, self.addr, self.incarnation, self.state, self.since_ns)


class Pool:
    """An indexable set of nodes with O(1) add, swap-remove and random access."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Node] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, node: Node) -> None:
        node.slot = len(self.items)
        self.items.append(node)

    def remove(self, node: Node) -> None:
        items = self.items
        last = items.pop()
        if last is not node:
            items[node.slot] = last
            last.slot = node.slot
        node.slot = -1


def sample(
    rng: random.Random, pools: tuple[Pool, ...], k: int, exclude: Collection[str]
) -> list[Node]:
    """Up to ``k`` distinct random nodes from the union of ``pools``, skipping ``exclude``.

    O(k) expected: random indices with rejection while the pools are large compared with
    k + len(exclude); a filtered shuffle when they are not (memberlist kRandomNodes).
    """
    total = sum(len(pool) for pool in pools)
    if k <= 0 or total == 0:
        return []
    if total <= 3 * (k + len(exclude)):
        candidates = [node for pool in pools for node in pool.items if node.node_id not in exclude]
        if len(candidates) > k:
            return rng.sample(candidates, k)
        rng.shuffle(candidates)
        return candidates
    chosen: list[Node] = []
    seen: set[int] = set()
    tries = 4 * (k + len(exclude)) + 16
    while len(chosen) < k and tries:
        tries -= 1
        index = int(rng.random() * total)
        if index in seen:
            continue
        seen.add(index)
        for pool in pools:
            if index < len(pool):
                node = pool.items[index]
                if node.node_id not in exclude:
                    chosen.append(node)
                break
            index -= len(pool)
    return chosen
