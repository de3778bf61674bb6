"""Every metric chisme exports, in one place (Prometheus text via prometheus-client).

Each node owns its own registry, so many nodes can live in one process (tests, simulator).
Gauges about the store are read at scrape time through callbacks: counting costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric

# the *_created series only add noise to every counter
disable_created_metrics()  # type: ignore[no-untyped-call]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INDEX_RE = re.compile(r"\[\d+\]")


class Metrics:
    """The node's metrics. Methods are cheap enough for the hot paths."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.records = Gauge("chisme_records", "Provider records held", registry=r)
        self.keys = Gauge("chisme_keys", "Info hashes held", registry=r)
        self.tombstones = Gauge("chisme_tombstones", "Tombstones held", registry=r)
        # Counted on the node port's hot path, three per v1 message (~2 µs each through
        # prometheus-client's labels() and locks, in a ~35 µs message): plain ints.
        self.messages_in = FastCounter(
            "chisme_messages_in", "Node messages received", ("protocol", "type"), registry=r
        )
        self.messages_out = Counter(
            "chisme_messages_out", "Node messages sent", ["protocol", "type"], registry=r
        )
        self.rejected = Counter(
            "chisme_rejected_messages", "Messages rejected", ["surface", "reason"], registry=r
        )
        self.send_failures = Counter(
            "chisme_peer_send_failures", "Sends to peers that failed", ["reason"], registry=r
        )
        self.gossip_bytes = FastCounter(
            "chisme_gossip_bytes", "Node-to-node bytes", ("direction",), registry=r
        )
        self.merged = FastCounter(
            "chisme_merged_records", "Records merged", ("outcome",), registry=r
        )
        self.expired = Counter("chisme_expired_records", "Records freed by expiry", registry=r)
        self.lookup_seconds = Histogram(
            "chisme_lookup_seconds",
            "Overlay lookup latency",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.members = Gauge("chisme_members", "Cluster members", ["state"], registry=r)
        # BitTorrent tracker front ends
        # Counted once per request on the tracker's hot path: plain ints, read at scrape time.
        self.announces = FastCounter(
            "chisme_tracker_announces", "Tracker announces", ("protocol", "outcome"), registry=r
        )
        self.scrapes = FastCounter(
            "chisme_tracker_scrapes", "Tracker scrapes", ("protocol", "outcome"), registry=r
        )
        self.tracker_torrents = Gauge("chisme_tracker_torrents", "Torrents tracked", registry=r)
        self.tracker_seeders = Gauge("chisme_tracker_seeders", "Seeders held", registry=r)
        self.tracker_leechers = Gauge("chisme_tracker_leechers", "Leechers held", registry=r)
        self.tracker_overlay = Counter(
            "chisme_tracker_overlay_completions",
            "Announces whose peer list the overlay lookup completed (awaited), or that were "
            "answered from the local store because too many were in flight (over_cap)",
            ["protocol", "outcome"],
            registry=r,
        )
        self.udp_connects = Counter(
            "chisme_tracker_udp_connects", "UDP tracker connect requests answered", registry=r
        )
        self.udp_dropped = Counter(
            "chisme_tracker_udp_dropped",
            "UDP tracker datagrams dropped without a reply",
            ["reason"],
            registry=r,
        )
        self.udp_errors = Counter(
            "chisme_tracker_udp_errors", "UDP tracker error replies (action 3) sent", registry=r
        )
        self.access_reloads = Counter(
            "chisme_tracker_access_reloads",
            "Allow/deny list reloads",
            ["outcome"],
            registry=r,
        )

    def watch_store(
        self,
        records: Callable[[], float],
        keys: Callable[[], float],
        tombstones: Callable[[], float],
    ) -> None:
        self.records.set_function(records)
        self.keys.set_function(keys)
        self.tombstones.set_function(tombstones)

    def watch_tracker(
        self,
        torrents: Callable[[], float],
        seeders: Callable[[], float],
        leechers: Callable[[], float],
    ) -> None:
        """Tracker gauges, read at scrape time (nothing is counted on the announce path)."""
        self.tracker_torrents.set_function(torrents)
        self.tracker_seeders.set_function(seeders)
        self.tracker_leechers.set_function(leechers)

    def reject(self, surface: str, reason: str) -> None:
        """Count a rejected message by surface and reason. The reason is a short stable
        sentence; "providers[7].addr: ..." counts as "providers[].addr", so a peer cannot mint
        a label per index (label cardinality stays bounded)."""
        reason = _INDEX_RE.sub("[]", reason.split(":", 1)[0][:60])
        self.rejected.labels(surface, reason).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _Count:
    """One labelled child of a :class:`FastCounter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class FastCounter:
    """A labelled counter without prometheus-client's per-increment lock (~0.25 µs, a few
    percent of a tracker request): the event loop is single-threaded, and a scrape reads
    plain ints. Bind children once with :meth:`labels`; exposition matches ``Counter``'s."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._children: dict[tuple[str, ...], _Count] = {}
        registry.register(self)

    def labels(self, *values: str) -> _Count:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _Count()
        return child

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family
