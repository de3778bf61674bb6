"""What every cluster role offers the node and the services (:class:`ClusterRole`), and what it
reports as it works (:class:`ClusterObserver`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from chisme.core.records import Record
from chisme.core.store import Store
from chisme.core.swim import MemberEvent


class ClusterObserver(Protocol):
    """Counts and logs what a role did (the node's metrics; the simulator's figures)."""

    def sent(self, protocol: str, kind: str, n: int = 1) -> None:
        """``n`` messages of ``kind`` went to the transport."""
        ...

    def received(self, protocol: str, kind: str) -> None: ...

    def merged(self, inserted: int, replaced: int, ignored: int) -> None:
        """Records received from other nodes were merged into the store."""
        ...

    def member_events(self, events: Sequence[MemberEvent], counts: Mapping[str, int]) -> None:
        """Members joined, were suspected, died or left (v2); ``counts``: members by state
        now."""
        ...


class QuietObserver:
    """An observer that keeps nothing."""

    def sent(self, protocol: str, kind: str, n: int = 1) -> None:
        pass

    def received(self, protocol: str, kind: str) -> None:
        pass

    def merged(self, inserted: int, replaced: int, ignored: int) -> None:
        pass

    def member_events(self, events: Sequence[MemberEvent], counts: Mapping[str, int]) -> None:
        pass


class ClusterRole(Protocol):
    """A node's replication and membership, whatever the protocol (see the package docs)."""

    protocol: str
    """``"v1"`` or ``"v2"``."""
    member_id: str
    """This process in the cluster (v2: ``node_id`` + a per-start generation)."""
    store: Store
    """The store it replicates (in v2 built by the engine, whose digest observes it)."""

    def start(self) -> None:
        """Begin: join through the seeds (v2), arm the first round."""
        ...

    def leave(self) -> None:
        """Say goodbye before the node stops (v2: a graceful leave)."""
        ...

    def deliver(self, src: str, msg: object) -> None:
        """A node-to-node message from ``src`` (a v2 message, or a v1 announce/gossip)."""
        ...

    def on_timer(self) -> None:
        """The role's timer is due: run what is due, arm the next."""
        ...

    def published(self, info_hash: str, rec: Record) -> None:
        """A record changed here first-hand (an announce or a removal through a service)."""
        ...

    def poke(self) -> None:
        """The store holds first-hand changes (a tracker announce of a new peer): replicate
        them soon (v2); v1 rounds carry them anyway."""
        ...

    def counted(self, info_hash: str, node_id: str, count: int) -> None:
        """This node's completed-downloads counter of ``info_hash`` grew to ``count``."""
        ...

    def fanout(self) -> list[str]:
        """Whom an overlay lookup may ask: the static peers (v1), the alive members (v2)."""
        ...

    def has_fanout(self) -> bool:
        """Whether anyone may be asked (O(1): the tracker asks on its hot path)."""
        ...

    def members(self) -> list[dict[str, Any]]:
        """The cluster as this node sees it, for ``chisme members`` and the API."""
        ...

    def status(self) -> dict[str, Any]:
        """This role's part of the node's status."""
        ...
