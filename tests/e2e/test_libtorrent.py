"""End to end with a real BitTorrent client: two libtorrent sessions meet through a two-node
chisme cluster and transfer a file.

Seeder A announces over HTTP to node A; downloader B announces over UDP to node B. DHT, local
peer discovery, UPnP and NAT-PMP are off, so the tracker is their only way to meet, and B's very
first announce must already list A: node B holds nothing for the torrent and completes its peer
list from the overlay (node A).

libtorrent's pitfalls (checked with libtorrent 2.1.1), as the code below cites them:
1. both sessions are on 127.0.0.1: with the default ``allow_multiple_connections_per_ip=False``
   libtorrent bans the whole address once it sees two peers there ("peer banned");
2. ``add_torrent_params`` defaults to paused | auto_managed: clearing auto_managed alone leaves the
   torrent paused forever;
3. a hybrid torrent (2.x's default) announces twice per tracker, its v1 hash and its v2 hash cut
   to 20 bytes: the torrent is made ``v1_only``;
4. SSRF mitigation (on by default) lets an HTTP tracker on loopback through only when its path
   starts with ``/announce``;
5. a plain ``force_reannounce()`` is dropped until the tracker's min interval has passed;
   ``ignore_min_interval`` sends it within about a second;
6. ``event=stopped`` over UDP is lost when the session is destroyed at once: the session lives on
   until the tracker got it.

The sessions block in libtorrent calls, so they run in a worker thread while the nodes keep
serving on the test's event loop. Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import filecmp
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chisme.core.keys import ip_port_key
from chisme.node import Node

if TYPE_CHECKING:
    from conftest import NodeFactory, WaitUntil

lt: Any = pytest.importorskip("libtorrent")

SEED_READY_S = 15.0
DOWNLOAD_S = 40.0
REANNOUNCE_EVERY_S = 2.0  # pitfall 5: a reply without A would otherwise wait min interval


def settings() -> dict[str, Any]:
    c = lt.alert.category_t
    return {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,  # pitfall 1: both peers are 127.0.0.1
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": c.error_notification | c.tracker_notification | c.connect_notification
        | c.status_notification | c.peer_notification,
    }


def make_torrent(path: Path, tracker_url: str) -> tuple[bytes, str]:
    ct = lt.create_torrent(lt.list_files(str(path)), 256 * 1024, lt.create_torrent.v1_only)
    ct.set_priv(True)
    ct.add_tracker(tracker_url)
    lt.set_piece_hashes(ct, str(path.parent))
    data: bytes = lt.bencode(ct.generate())
    return data, str(lt.torrent_info(data).info_hashes().v1)


@dataclass
class Transfer:
    """What the worker thread reports back."""

    seeding_after_s: float = -1.0
    log: list[str] = field(default_factory=list)
    first_reply_peers: int = -1  # peers in B's first tracker reply
    reannounces: int = 0
    seeder_port: int = 0
    leecher_port: int = 0
    sessions: list[tuple[Any, Any]] = field(default_factory=list)  # (session, handle), B first


def start(data: bytes, save_path: Path, tracker_url: str) -> tuple[Any, Any]:
    ses = lt.session(settings(), 0)  # 0: no default plugins (ut_pex, ut_metadata, smart_ban)
    atp = lt.load_torrent_buffer(data)
    atp.save_path = str(save_path)
    atp.trackers = [tracker_url]
    atp.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)  # pitfall 2
    return ses, ses.add_torrent(atp)


def pump(tag: str, ses: Any, out: Transfer) -> list[Any]:
    alerts: list[Any] = ses.pop_alerts()
    out.log.extend(f"{tag} {type(a).__name__}: {a.message()}" for a in alerts)
    return alerts


def run_sessions(
    data: bytes, seed_dir: Path, leech_dir: Path, http_url: str, udp_url: str
) -> Transfer:
    """Seeder over HTTP, downloader over UDP; returns once B seeds or a deadline passes.

    The sessions stay alive (``out.sessions``) for :func:`stop_sessions`.
    """
    out = Transfer()
    a_ses, ha = start(data, seed_dir, http_url)
    out.sessions.append((a_ses, ha))
    deadline = time.monotonic() + SEED_READY_S
    replied = False
    while time.monotonic() < deadline and not (ha.status().is_seeding and replied):
        a_ses.wait_for_alert(200)
        alerts = pump("A", a_ses, out)
        replied = replied or any(type(x).__name__ == "tracker_reply_alert" for x in alerts)
    if not (ha.status().is_seeding and replied):
        out.log.append("A never seeded or never got a tracker reply")
        return out
    out.seeder_port = a_ses.listen_port()

    began = time.monotonic()
    b_ses, hb = start(data, leech_dir, udp_url)
    out.sessions.insert(0, (b_ses, hb))
    out.leecher_port = b_ses.listen_port()
    deadline = began + DOWNLOAD_S
    next_reannounce = began + REANNOUNCE_EVERY_S
    while not hb.status().is_seeding and time.monotonic() < deadline:
        b_ses.wait_for_alert(200)
        pump("A", a_ses, out)
        for alert in pump("B", b_ses, out):
            if out.first_reply_peers < 0 and type(alert).__name__ == "tracker_reply_alert":
                out.first_reply_peers = alert.num_peers
        if time.monotonic() >= next_reannounce and hb.status().num_peers == 0:
            hb.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
            next_reannounce += REANNOUNCE_EVERY_S
            out.reannounces += 1
    if hb.status().is_seeding:
        out.seeding_after_s = time.monotonic() - began
        # Let B's 'completed' announce get its reply before the torrent is removed: an
        # announce still in flight makes libtorrent skip the 'stopped' one ("unreachable").
        deadline = time.monotonic() + SEED_READY_S
        while not completed_answered(out.log) and time.monotonic() < deadline:
            b_ses.wait_for_alert(200)
            pump("B", b_ses, out)
    return out


def completed_answered(log: list[str]) -> bool:
    """True once B's tracker replied to B's 'completed' announce (the log is in order)."""
    sent = False
    for line in log:
        if line.startswith("B tracker_announce_alert") and "(completed)" in line:
            sent = True
        elif sent and line.startswith("B tracker_reply_alert"):
            return True
    return False


def stop_sessions(out: Transfer) -> None:
    """Remove the torrents: each session announces event=stopped (it must live on until the
    tracker got it: UDP's stopped is lost if the session is destroyed at once, pitfall 6)."""
    for ses, h in out.sessions:
        ses.pause()
        ses.remove_torrent(h)


def close_sessions(out: Transfer) -> None:
    out.sessions.clear()  # the last references: each session shuts down (~0.1 s)


async def test_two_sessions_meet_through_two_nodes(
    node: NodeFactory, wait_until: WaitUntil, tmp_path: Path
) -> None:
    # a generous overlay deadline: the assertion on B's first reply must not depend on load
    trackers = {
        "tracker_http": "127.0.0.1:0",
        "tracker_udp": "127.0.0.1:0",
        "tracker_lookup_timeout_s": 3.0,
    }
    node_a: Node = await node(**trackers)
    node_b: Node = await node(**trackers, peers=(node_a.node_address,))
    node_a.role.peers.append(node_b.node_address)
    http_host, http_port = node_a.addresses["tracker_http"]
    udp_host, udp_port = node_b.addresses["tracker_udp"]

    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    payload = seed_dir / "payload.bin"
    size = random.randrange(4 << 20, 16 << 20)
    payload.write_bytes(os.urandom(size))
    data, info_hash = make_torrent(payload, f"http://{http_host}:{http_port}/announce")

    transfer = Transfer()
    try:
        transfer = await asyncio.to_thread(
            run_sessions,
            data,
            seed_dir,
            leech_dir,
            f"http://{http_host}:{http_port}/announce",
            f"udp://{udp_host}:{udp_port}/announce",
        )
        log = "\n".join(transfer.log[-80:])
        assert transfer.seeding_after_s >= 0, f"B did not finish downloading {size} bytes:\n{log}"
        # node B held nothing: it completed its very first reply from node A (the overlay)
        assert transfer.first_reply_peers == 1, log
        await asyncio.to_thread(stop_sessions, transfer)
        await check_the_trackers(node_a, node_b, info_hash, transfer, wait_until)
    finally:
        await asyncio.to_thread(close_sessions, transfer)  # before the nodes stop
    # Compared once the sessions are gone: a session that verified every piece (seeding) may
    # still hold some in its disk write buffer; its shutdown writes them out.
    assert filecmp.cmp(payload, leech_dir / payload.name, shallow=False)


async def check_the_trackers(
    node_a: Node, node_b: Node, info_hash: str, transfer: Transfer, wait_until: WaitUntil
) -> None:

    # Both announced where they were told to, and event=stopped reached both nodes.
    seeder = ip_port_key(bytes([127, 0, 0, 1]), transfer.seeder_port)
    leecher = ip_port_key(bytes([127, 0, 0, 1]), transfer.leecher_port)
    text_a, text_b = node_a.metrics.render().decode(), node_b.metrics.render().decode()
    assert 'chisme_tracker_announces_total{outcome="ok",protocol="http"}' in text_a
    assert 'chisme_tracker_announces_total{outcome="ok",protocol="udp"}' in text_b

    def stopped(n: Node, addr: bytes) -> bool:
        rec = n.store.get(info_hash, addr)
        return rec is not None and rec.tombstone

    await wait_until(lambda: stopped(node_a, seeder), what="A's event=stopped at node A")
    await wait_until(lambda: stopped(node_b, leecher), what="B's event=stopped at node B")
