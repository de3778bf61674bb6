"""The tracker service's policy, on whole nodes on the in-memory network (virtual time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chisme.core.keys import ip_port_key
from chisme.service.tracker import MAX_OVERLAY_INFLIGHT
from chisme.tracker.types import Event
from conftest import MemoryCluster, OnMemory, tracker_announce

if TYPE_CHECKING:
    from conftest import WaitUntil

IH = "ab" * 20
IH2 = "cd" * 20


def peer(i: int) -> bytes:
    return ip_port_key(bytes([10, 1, i // 256, i % 256]), 6881)


def test_numwant_none_is_the_configured_default_and_requests_are_capped(
    on_memory: OnMemory,
) -> None:
    async def body(c: MemoryCluster) -> None:
        n = await c.start(numwant_default=7, numwant_max=30)
        for i in range(60):
            tracker_announce(n, IH, peer(i), numwant=0)
        me = peer(100)
        assert len(tracker_announce(n, IH, me, numwant=None)[2]) == 7  # type: ignore[index]
        assert len(tracker_announce(n, IH, me, numwant=3)[2]) == 3  # type: ignore[index]
        assert len(tracker_announce(n, IH, me, numwant=200)[2]) == 30  # type: ignore[index]
        # a front end whose reply holds fewer (UDP over IPv6) caps it further
        a = tracker_request(IH, me)
        assert len(n.tracker.announce(a, me, "udp", max_peers=5)[2]) == 5  # type: ignore[index]

    on_memory(body)


def tracker_request(info_hash: str, addr: bytes):  # type: ignore[no-untyped-def]
    from chisme.tracker.types import AnnounceRequest  # noqa: PLC0415

    return AnnounceRequest(bytes.fromhex(info_hash), b"-qB4650-" + b"x" * 12,
                           int.from_bytes(addr[-2:]), 0, 0, 1, Event.NONE, 200, True, True,
                           None, None)


def test_stopped_removes_everywhere_and_completed_counts_once_per_node(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    async def body(c: MemoryCluster) -> None:
        a, b = await c.cluster(2)
        await wait_until(lambda: b.role.has_fanout() and a.role.has_fanout())
        seeders, leechers, peers = tracker_announce(a, IH, peer(1), numwant=0)  # type: ignore[misc]
        assert (seeders, leechers, peers) == (0, 1, [])
        await wait_until(lambda: b.store.get(IH, peer(1)) is not None, what="replicated")
        tracker_announce(a, IH, peer(1), seeder=True, event=Event.COMPLETED, numwant=0)
        tracker_announce(b, IH, peer(2), seeder=True, event=Event.COMPLETED, numwant=0)
        await wait_until(lambda: a.store.counts(IH).downloaded == b.store.counts(IH).downloaded
                         == 2, what="the download counters summed on both nodes")
        answer = tracker_announce(b, IH, peer(1), event=Event.STOPPED, numwant=0)
        assert isinstance(answer, tuple) and answer[2] == []
        await wait_until(lambda: all((rec := n.store.get(IH, peer(1))) is not None
                                     and rec.tombstone for n in (a, b)), what="the tombstone")

    on_memory(body)


def test_over_the_in_flight_cap_an_announce_is_answered_from_the_local_store(
    on_memory: OnMemory, wait_until: WaitUntil
) -> None:
    async def body(c: MemoryCluster) -> None:
        _, b = await c.cluster(2)
        await wait_until(b.role.has_fanout)
        b.tracker.overlay_inflight = MAX_OVERLAY_INFLIGHT
        answer = tracker_announce(b, IH, peer(1))
        assert isinstance(answer, tuple)  # answered at once, nobody asked
        assert b.store.get(IH, peer(1)) is not None  # the announce itself applied
        text = b.metrics.render().decode()
        assert 'chisme_tracker_overlay_completions_total{outcome="over_cap",protocol="http"} 1.0' \
            in text
        b.tracker.overlay_inflight = 0
        pending = tracker_announce(b, IH2, peer(2))
        assert not isinstance(pending, tuple)  # below the cap it asks again
        assert (await pending)[2] == []

    on_memory(body)


def test_stats_and_full_scrape_count_torrents_with_a_live_peer_only(
    on_memory: OnMemory,
) -> None:
    """A key holding only a tombstone (or a v1 key) is no torrent being tracked."""

    async def body(c: MemoryCluster) -> None:
        n = await c.start()
        tracker_announce(n, IH, peer(1), seeder=True)
        tracker_announce(n, IH, peer(3))
        tracker_announce(n, IH2, peer(2))
        tracker_announce(n, IH2, peer(2), event=Event.STOPPED, numwant=0)
        await n.announce("not-a-bittorrent-key", "10.0.0.9:80")
        stats = n.tracker.stats()
        assert (stats["torrents"], stats["seeders"], stats["leechers"]) == (2, 1, 2)
        assert [row["info_hash"] for row in stats["top"]] == [IH, "not-a-bittorrent-key"]
        assert n.tracker.torrents() == [bytes.fromhex(IH)]
        assert n.tracker.totals() == (2, 1, 2)

    on_memory(body)
