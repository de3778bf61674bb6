"""What the node's cluster role reports, as metrics and log lines."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from chisme.core.swim import MemberEvent
from chisme.metrics import Metrics

log = logging.getLogger("chisme.node")


class NodeObserver:
    """The :class:`~chisme.cluster.role.ClusterObserver` of a node: Prometheus counters, the
    ``chisme_members{state}`` gauge and a log line per membership change."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        m = metrics.merged
        self._inserted = m.labels("inserted")
        self._replaced = m.labels("replaced")
        self._ignored = m.labels("ignored")

    def sent(self, protocol: str, kind: str, n: int = 1) -> None:
        self.metrics.messages_out.labels(protocol, kind).inc(n)

    def received(self, protocol: str, kind: str) -> None:
        self.metrics.messages_in.labels(protocol, kind).inc()

    def merged(self, inserted: int, replaced: int, ignored: int) -> None:
        if inserted:
            self._inserted.inc(inserted)
        if replaced:
            self._replaced.inc(replaced)
        if ignored:
            self._ignored.inc(ignored)

    def member_events(self, events: Sequence[MemberEvent], counts: Mapping[str, int]) -> None:
        for ev in events:
            log.info("member %s %s at %s", ev.member.node_id, ev.kind, ev.member.addr)
        for state, n in counts.items():
            self.metrics.members.labels(state).set(n)

    def transport(self, direction: str, kind: str, n: int) -> None:
        """The transports' counts: bytes in and out, and drops by reason."""
        if direction in ("in", "out"):
            self.metrics.gossip_bytes.labels(direction).inc(n)
        else:
            self.metrics.send_failures.labels(kind).inc(n)
