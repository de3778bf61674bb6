"""The node port's v1 messages mapped onto the node (docs/WIRE.md): a ``lookup`` is answered
from this node's store, ``members`` with the cluster as this node sees it, and an ``announce``
or ``gossip`` goes to the cluster role, which merges it (and, in v2, adopts it)."""

from __future__ import annotations

import msgspec

from chisme.clock import Clock
from chisme.cluster.role import ClusterRole
from chisme.core.store import Store
from chisme.metrics import Metrics
from chisme.wire import v1


class NodePortHandler:
    """Answers one decoded v1 message (the ``V1Service`` of :mod:`chisme.net.tcp`)."""

    def __init__(self, store: Store, role: ClusterRole, clock: Clock, metrics: Metrics) -> None:
        self.store = store
        self.role = role
        self.clock = clock
        self.metrics = metrics
        m = metrics.messages_in
        self._lookups = m.labels("v1", "lookup")
        self._members = m.labels("v1", "members")
        self._bytes_in = metrics.gossip_bytes.labels("in")

    def handle_v1(self, msg: v1.Message, peer: str, size: int = 0) -> bytes | None:
        """Apply one message that arrived in ``size`` bytes from ``peer``; the reply, if the
        message has one."""
        if isinstance(msg, v1.Lookup):
            self._lookups.inc()
            return v1.encode_providers(
                self.store.lookup(msg.info_hash, self.clock.wall_ns(), msg.limit)
            )
        if isinstance(msg, v1.Members):
            self._members.inc()
            return msgspec.json.encode(self.role.members()) + b"\n"
        self._bytes_in.inc(size)
        self.role.deliver(peer, msg)
        return None

    def reject(self, surface: str, reason: str) -> None:
        self.metrics.reject(surface, reason)
