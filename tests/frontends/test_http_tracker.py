"""The HTTP tracker front end on real loopback sockets against real nodes.

Announce and scrape (BEP 3/23/7/48), the answer's rules (never yourself, seeders get leechers
first, numwant caps), bad requests (a bencoded failure, the store unchanged, a good request
still served), allow/deny lists with reloads, IPv6 on ::1, a reverse proxy's header, and a
two-node cluster whose second node answers a client's very first announce with a peer that
announced at the first node.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]  # 0.3.12: no __all__

from chisme.core.keys import ip_port_key
from chisme.errors import ConfigError
from chisme.frontends.http_tracker import FULL_SCRAPE_CACHE_S, HttpTracker
from chisme.net.http_server import Request, Response
from chisme.node import Node
from conftest import push_round, tracker_announce

if TYPE_CHECKING:
    from conftest import Http, HttpReply, NodeFactory, WaitUntil

IH = bytes.fromhex("0123456789abcdef00ff2b2f3d26253f202d7e41")  # needs escaping
IH2 = bytes.fromhex("fedcba9876543210fedcba9876543210fedcba98")
LOCAL = socket.inet_aton("127.0.0.1")


def pid(n: int) -> bytes:
    return b"-LT2110-%012d" % n


def query(info_hash: bytes = IH, port: Any = 6881, **params: Any) -> str:
    """An announce query as libtorrent builds it (binary values %-escaped); a parameter
    given as None is left out."""
    fields: dict[str, Any] = {
        "info_hash": quote_from_bytes(info_hash, safe=""),
        "peer_id": quote_from_bytes(pid(port if isinstance(port, int) else 0), safe=""),
        "port": port,
        "uploaded": 0,
        "downloaded": 0,
        "left": 1000,
        "compact": 1,
    }
    fields.update(params)
    return "&".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def key(port: int, ip: bytes = LOCAL) -> bytes:
    return ip_port_key(ip, port)


def peers_of(reply: dict[bytes, Any]) -> list[bytes]:
    raw = reply[b"peers"]
    return [raw[i : i + 6] for i in range(0, len(raw), 6)]


async def tracker(node: NodeFactory, **overrides: Any) -> Node:
    return await node(tracker_http="127.0.0.1:0", **overrides)


class Client:
    """GETs on one tracker node; each on a fresh connection, as most clients do."""

    def __init__(self, n: Node, http: Http) -> None:
        self.addr = n.addresses["tracker_http"]
        self.http = http

    async def get(self, target: str, headers: dict[str, str] | None = None) -> HttpReply:
        return await self.http(self.addr, "GET", target, headers=headers)

    async def announce(self, **params: Any) -> dict[bytes, Any]:
        reply = await self.get("/announce?" + query(**params))
        assert reply.status == 200, reply
        decoded: dict[bytes, Any] = bdecode(reply.body)
        assert b"failure reason" not in decoded, decoded
        return decoded

    async def failure(self, target: str) -> str:
        reply = await self.get(target)
        assert reply.status == 200, reply
        decoded = bdecode(reply.body)
        assert list(decoded) == [b"failure reason"], decoded
        reason: str = decoded[b"failure reason"].decode()
        return reason

    async def scrape(self, *hashes: bytes) -> dict[bytes, Any]:
        target = "/scrape?" + "&".join(
            "info_hash=" + quote_from_bytes(h, safe="") for h in hashes
        )
        reply = await self.get(target)
        assert reply.status == 200, reply
        decoded: dict[bytes, Any] = bdecode(reply.body)
        return decoded


# -- announce ---------------------------------------------------------------------------


async def test_announce_then_a_second_peer_gets_the_first(node: NodeFactory, http: Http) -> None:
    n = await tracker(node, ttl_s=90.0)
    c = Client(n, http)
    first = await c.announce(port=7001)
    assert first == {
        b"complete": 0,
        b"incomplete": 1,
        b"interval": 60,  # two thirds of the TTL
        b"min interval": 30,
        b"peers": b"",
    }
    second = await c.announce(port=7002, left=0)
    assert peers_of(second) == [key(7001)]
    assert (second[b"complete"], second[b"incomplete"]) == (1, 1)
    hexhash = IH.hex()
    assert n.store.get(hexhash, key(7002)) is not None
    assert n.store.get(hexhash, key(7002)).seeder  # type: ignore[union-attr]
    assert n.store.get(hexhash, key(7001)).peer_id == pid(7001)  # type: ignore[union-attr]


async def test_intervals_come_from_config(node: NodeFactory, http: Http) -> None:
    n = await tracker(node, ttl_s=600.0, announce_interval_s=300.0, min_announce_interval_s=60.0)
    reply = await Client(n, http).announce()
    assert (reply[b"interval"], reply[b"min interval"]) == (300, 60)


async def test_requester_never_gets_itself(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    c = Client(n, http)
    for _ in range(3):
        assert (await c.announce(port=7001))[b"peers"] == b""
    await c.announce(port=7002)
    for _ in range(5):
        assert peers_of(await c.announce(port=7001)) == [key(7002)]


async def test_seeders_get_leechers_first(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    c = Client(n, http)
    for port in range(7100, 7110):
        await c.announce(port=port, left=0)
    leechers = {key(port) for port in range(7200, 7203)}
    for port in range(7200, 7203):
        await c.announce(port=port, left=5)
    for _ in range(5):
        got = peers_of(await c.announce(port=7100, left=0, numwant=3))
        assert set(got) == leechers
        got = peers_of(await c.announce(port=7100, left=0, numwant=5))
        assert set(got[:3]) == leechers and len(got) == 5


async def test_numwant_default_and_caps(node: NodeFactory, http: Http) -> None:
    n = await tracker(node, numwant_default=7, numwant_max=12)
    c = Client(n, http)
    for port in range(7000, 7030):
        await c.announce(port=port, numwant=0)
    assert len(peers_of(await c.announce(port=8000))) == 7  # no numwant: the default
    assert len(peers_of(await c.announce(port=8000, numwant=3))) == 3
    assert len(peers_of(await c.announce(port=8000, numwant=50))) == 12  # capped
    assert len(peers_of(await c.announce(port=8000, numwant=100000))) == 12
    assert len(peers_of(await c.announce(port=8000, numwant=-1))) == 7


async def test_non_compact_list_form(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    c = Client(n, http)
    await c.announce(port=7001)
    reply = await c.announce(port=7002, compact=0)
    assert reply[b"peers"] == [{b"ip": b"127.0.0.1", b"port": 7001}]


async def test_stopped_removes_the_peer(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    c = Client(n, http)
    await c.announce(port=7001)
    await c.announce(port=7002)
    gone = await c.announce(port=7001, event="stopped")
    assert gone[b"peers"] == b""
    assert (gone[b"complete"], gone[b"incomplete"]) == (0, 1)
    assert n.store.get(IH.hex(), key(7001)).tombstone  # type: ignore[union-attr]
    assert (await c.announce(port=7002))[b"peers"] == b""
    files = (await c.scrape(IH))[b"files"]
    assert files[IH] == {b"complete": 0, b"downloaded": 0, b"incomplete": 1}


async def test_completed_counts_downloads(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    c = Client(n, http)
    await c.announce(port=7001, event="started")
    await c.announce(port=7001, event="completed", left=0)
    await c.announce(port=7002, event="completed", left=0)
    files = (await c.scrape(IH))[b"files"]
    assert files[IH] == {b"complete": 2, b"downloaded": 2, b"incomplete": 0}


async def test_keep_alive_serves_many_announces_on_one_connection(
    node: NodeFactory, read_reply: Any
) -> None:
    n = await tracker(node)
    reader, writer = await asyncio.open_connection(*n.addresses["tracker_http"])
    try:
        for port in (7001, 7002, 7001):
            writer.write(f"GET /announce?{query(port=port)} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        replies = [bdecode((await read_reply(reader)).body) for _ in range(3)]
    finally:
        writer.close()
    assert [peers_of(r) for r in replies] == [[], [key(7001)], [key(7002)]]


async def test_announce_path_variants(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    c = Client(n, http)
    for path in ("/announce", "/announce.php", "/tracker/announce"):
        reply = await c.get(f"{path}?{query()}")
        assert b"interval" in bdecode(reply.body)
    assert (await c.get("/")).status == 404
    assert (await c.get("/stats")).status == 404
    assert (await http(c.addr, "POST", "/announce?" + query(), b"")).status == 405


# -- scrape -----------------------------------------------------------------------------


async def test_scrape_many_hashes_and_the_cap(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    c = Client(n, http)
    await c.announce(port=7001, left=0)
    await c.announce(info_hash=IH2, port=7001)
    hashes = [IH, IH2] + [bytes([i]) * 20 for i in range(62)]
    files = (await c.scrape(*hashes))[b"files"]
    assert len(files) == 64
    assert files[IH] == {b"complete": 1, b"downloaded": 0, b"incomplete": 0}
    assert files[IH2] == {b"complete": 0, b"downloaded": 0, b"incomplete": 1}
    assert files[bytes(20)] == {b"complete": 0, b"downloaded": 0, b"incomplete": 0}
    reply = await c.get("/scrape?" + "&".join(f"info_hash=%{i:02x}" + "a" * 19 for i in range(65)))
    assert bdecode(reply.body) == {b"failure reason": b"too many info_hash (max 64)"}


async def test_full_scrape_only_when_enabled(node: NodeFactory, http: Http) -> None:
    off = Client(await tracker(node), http)
    await off.announce(port=7001)
    assert await off.failure("/scrape") == "full scrape is disabled: name an info_hash"
    on_node = await tracker(node, full_scrape=True)
    on = Client(on_node, http)
    await on.announce(port=7001)
    await on.announce(info_hash=IH2, port=7002, left=0)
    await on_node.announce("not-a-bittorrent-key", "127.0.0.1:9")  # a v1 key: left out
    files = bdecode((await on.get("/scrape")).body)[b"files"]
    assert files == {
        IH: {b"complete": 0, b"downloaded": 0, b"incomplete": 1},
        IH2: {b"complete": 1, b"downloaded": 0, b"incomplete": 0},
    }


async def test_a_full_scrape_is_reused_for_a_while(node: NodeFactory) -> None:
    """However often clients ask, the store is walked once per FULL_SCRAPE_CACHE_S."""
    n = await node()
    now = [100.0]
    t = HttpTracker(n.tracker, n.config, n.metrics, full_scrape=True, clock_s=lambda: now[0])

    def full_scrape() -> dict[bytes, Any]:
        reply = t.handle(Request(b"GET", b"/scrape", b"", {}, b"", "127.0.0.1", 1))
        assert isinstance(reply, Response) and reply.status == 200
        files: dict[bytes, Any] = bdecode(reply.body)[b"files"]
        return files

    tracker_announce(n, IH.hex(), key(7001), pid(1), numwant=0)
    assert set(full_scrape()) == {IH}
    tracker_announce(n, IH2.hex(), key(7002), pid(2), seeder=True, numwant=0)
    now[0] += FULL_SCRAPE_CACHE_S - 0.1
    assert set(full_scrape()) == {IH}  # the reply made 9.9 s ago
    now[0] += 0.1
    assert full_scrape() == {
        IH: {b"complete": 0, b"downloaded": 0, b"incomplete": 1},
        IH2: {b"complete": 1, b"downloaded": 0, b"incomplete": 0},
    }
    # a scrape that names its hashes is never cached
    reply = t.handle(Request(b"GET", b"/scrape", b"info_hash=" + quote_from_bytes(IH2).encode(),
                             {}, b"", "127.0.0.1", 1))
    assert isinstance(reply, Response) and set(bdecode(reply.body)[b"files"]) == {IH2}


# -- bad requests -----------------------------------------------------------------------


BAD_ANNOUNCES = [
    ("/announce", "missing info_hash"),
    ("/announce?peer_id=" + "a" * 20 + "&port=1", "missing info_hash"),
    ("/announce?info_hash=abc&peer_id=" + "a" * 20 + "&port=1", "info_hash must be 20 bytes"),
    ("/announce?" + query(info_hash=IH[:19]), "info_hash must be 20 bytes"),
    ("/announce?" + query() + "&info_hash=" + "b" * 20, "multiple info_hash"),
    ("/announce?" + query(peer_id=None), "missing peer_id"),
    ("/announce?" + query(peer_id="short"), "peer_id must be 20 bytes"),
    ("/announce?" + query(port=None), "missing port"),
    ("/announce?" + query(port=0), "invalid port"),
    ("/announce?" + query(port=65536), "invalid port"),
    ("/announce?" + query(port="-1"), "invalid port"),
    ("/announce?" + query(left="x"), "invalid left"),
    ("/announce?" + query(uploaded="-5"), "invalid uploaded"),
    ("/announce?" + query(numwant="lots"), "invalid numwant"),
    ("/announce?" + query(event="paused!"), "invalid event"),
    ("/announce?info_hash=%zz" + "a" * 18, "info_hash has an invalid percent-escape"),
    ("/announce?garbage&&&==;;%00", "missing info_hash"),
    ("/scrape?info_hash=short", "info_hash must be 20 bytes"),
]


@pytest.mark.parametrize(("target", "reason"), BAD_ANNOUNCES)
async def test_bad_request_gets_a_failure_and_changes_nothing(
    node: NodeFactory, http: Http, target: str, reason: str
) -> None:
    n = await tracker(node)
    c = Client(n, http)
    await c.announce(port=7001)
    before = n.store.snapshot()
    assert await c.failure(target) == reason
    assert n.store.snapshot() == before
    assert peers_of(await c.announce(port=7002)) == [key(7001)]  # still served
    text = n.metrics.render().decode()
    label = f'reason="{reason}",surface="tracker_http"'
    assert f"chisme_rejected_messages_total{{{label}}} 1.0" in text
    kind = "scrapes" if target.startswith("/scrape") else "announces"
    assert f'chisme_tracker_{kind}_total{{outcome="bad_request",protocol="http"}} 1.0' in text


async def test_malformed_http_gets_a_400(node: NodeFactory, exchange: Any) -> None:
    n = await tracker(node)
    reply = await exchange(n.addresses["tracker_http"], b"\x00\x01 not http\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


# -- metrics ----------------------------------------------------------------------------


async def test_metrics_count_announces_and_show_swarm_gauges(
    node: NodeFactory, http: Http
) -> None:
    n = await tracker(node)
    c = Client(n, http)
    await c.announce(port=7001, left=0)
    await c.announce(port=7002)
    await c.announce(info_hash=IH2, port=7003)
    await c.scrape(IH)
    text = n.metrics.render().decode()
    assert 'chisme_tracker_announces_total{outcome="ok",protocol="http"} 3.0' in text
    assert 'chisme_tracker_scrapes_total{outcome="ok",protocol="http"} 1.0' in text
    assert "chisme_tracker_torrents 2.0" in text
    assert "chisme_tracker_seeders 1.0" in text
    assert "chisme_tracker_leechers 2.0" in text


# -- client address ---------------------------------------------------------------------


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this machine")


@needs_ipv6
async def test_ipv6_clients_get_peers6(node: NodeFactory, http: Http) -> None:
    n = await node(tracker_http="[::1]:0")
    c = Client(n, http)
    v6 = socket.inet_pton(socket.AF_INET6, "::1")
    await c.announce(port=7001)
    reply = await c.announce(port=7002)
    assert reply[b"peers"] == b""
    assert reply[b"peers6"] == v6 + (7001).to_bytes(2, "big")
    assert n.store.get(IH.hex(), v6 + (7002).to_bytes(2, "big")) is not None
    listed = await c.announce(port=7003, compact=0)
    assert {p[b"ip"] for p in listed[b"peers"]} == {b"::1"}


async def test_real_ip_header_behind_a_proxy(node: NodeFactory, http: Http) -> None:
    n = await tracker(node, real_ip_header="X-Forwarded-For")
    c = Client(n, http)
    reply = await c.get(
        "/announce?" + query(port=7001), headers={"X-Forwarded-For": "6.6.6.6, 10.1.2.3"}
    )
    assert b"failure reason" not in bdecode(reply.body)
    assert n.store.get(IH.hex(), key(7001, socket.inet_aton("10.1.2.3"))) is not None
    assert await c.failure("/announce?" + query(port=7002)) == "cannot tell the client's address"
    reply = await c.get("/announce?" + query(port=7003), headers={"X-Forwarded-For": "nonsense"})
    assert bdecode(reply.body) == {b"failure reason": b"cannot tell the client's address"}
    assert n.store.num_records == 1


async def test_claimed_ip_is_ignored(node: NodeFactory, http: Http) -> None:
    n = await tracker(node)
    await Client(n, http).announce(port=7001, ip="10.9.9.9", ipv4="10.9.9.9")
    assert list(n.store.snapshot()) == [(IH.hex(), key(7001))]


# -- allow and deny lists ---------------------------------------------------------------


async def test_allow_and_deny_lists_reload_when_files_change(
    node: NodeFactory, http: Http, tmp_path: Path
) -> None:
    allow = tmp_path / "allow.txt"
    deny = tmp_path / "deny.txt"
    allow.write_text(f"# ours\n{IH.hex()}\n")
    deny.write_text("")
    n = await tracker(node, allow_list=str(allow), deny_list=str(deny))
    c = Client(n, http)
    await c.announce(port=7001)
    denied = "/announce?" + query(info_hash=IH2, port=7001)
    assert await c.failure(denied) == "info_hash not allowed on this tracker"
    assert n.store.num_keys == 1
    assert n.access_files.reload() is False  # nothing changed

    allow.write_text(f"{IH.hex()}\n{IH2.hex()}\n")
    os.utime(allow, ns=(1, 1))  # a distinct mtime, whatever the file system's resolution
    assert n.access_files.reload() is True
    await c.announce(info_hash=IH2, port=7001)

    deny.write_text(IH.hex().upper() + "\n")
    os.utime(deny, ns=(2, 2))
    assert n.access_files.reload() is True
    assert await c.failure("/announce?" + query(port=7002)) == (
        "info_hash not allowed on this tracker"
    )
    assert IH not in (await c.scrape(IH, IH2))[b"files"]  # denied hashes are not scraped
    text = n.metrics.render().decode()
    assert 'chisme_tracker_announces_total{outcome="denied",protocol="http"} 2.0' in text


async def test_a_bad_list_file_keeps_the_lists_in_force(
    node: NodeFactory, http: Http, tmp_path: Path
) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text(IH.hex() + "\n")
    n = await tracker(node, allow_list=str(allow))
    allow.write_text("not a hash\n")
    os.utime(allow, ns=(1, 1))
    assert n.access_files.reload() is False
    c = Client(n, http)
    await c.announce(port=7001)
    assert await c.failure("/announce?" + query(info_hash=IH2)) == (
        "info_hash not allowed on this tracker"
    )
    allow.unlink()
    assert n.access_files.reload() is False
    await c.announce(port=7002)
    text = n.metrics.render().decode()
    assert 'chisme_tracker_access_reloads_total{outcome="failed"} 2.0' in text


async def test_a_bad_list_at_start_is_a_config_error(
    node: NodeFactory, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no-such-file"):
        await tracker(node, allow_list=str(tmp_path / "no-such-file"))
    bad = tmp_path / "bad.txt"
    bad.write_text("zz\n")
    with pytest.raises(ConfigError, match="line 1 is not a 40-hex info hash"):
        await tracker(node, deny_list=str(bad))


async def test_sighup_reloads_the_lists(
    node: NodeFactory, http: Http, tmp_path: Path, wait_until: WaitUntil
) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text(IH.hex() + "\n")
    n = await tracker(node, allow_list=str(allow))
    if signal.getsignal(signal.SIGHUP) in (signal.SIG_DFL, signal.SIG_IGN, None):
        pytest.skip("no SIGHUP handler could be installed here")
    allow.write_text(IH2.hex() + "\n")  # the mtime may not even have changed: SIGHUP forces
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_until(lambda: n.access.permits(IH2), what="the SIGHUP reload")
    assert not n.access.permits(IH)
    await Client(n, http).announce(info_hash=IH2)


# -- a two-node cluster -----------------------------------------------------------------


async def cluster(node: NodeFactory) -> tuple[Node, Node]:
    """Nodes A and B, each the other's peer; gossip only when a test runs a round."""
    a = await tracker(node)
    b = await tracker(node, peers=(a.node_address,))
    a.role.peers.append(b.node_address)
    return a, b


async def test_first_announce_at_b_sees_a_peer_that_announced_at_a(
    node: NodeFactory, http: Http
) -> None:
    a, b = await cluster(node)
    at_a, at_b = Client(a, http), Client(b, http)
    await at_a.announce(port=7001, left=0)
    reply = await at_b.announce(port=7002)  # B holds nothing yet: the overlay completes it
    assert peers_of(reply) == [key(7001)]
    assert reply[b"incomplete"] >= 1
    assert 'outcome="awaited",protocol="http"} 1.0' in b.metrics.render().decode()
    assert peers_of(await at_a.announce(port=7001, left=0, numwant=5)) in ([], [key(7002)])


async def test_stopped_at_a_is_not_served_by_b(node: NodeFactory, http: Http) -> None:
    a, b = await cluster(node)
    at_a, at_b = Client(a, http), Client(b, http)
    await at_a.announce(port=7001)
    await at_a.announce(port=7003)
    await at_a.announce(port=7001, event="stopped")
    assert peers_of(await at_a.announce(port=7002)) == [key(7003)]
    # B holds nothing and asks A: A's live peers, not the one that stopped
    assert set(peers_of(await at_b.announce(port=7004))) == {key(7002), key(7003)}
    await push_round(a)
    await push_round(b)
    for _ in range(5):
        assert key(7001) not in peers_of(await at_b.announce(port=7005))
        assert key(7001) not in peers_of(await at_a.announce(port=7005))


async def test_stopped_at_a_removes_what_b_already_learned(node: NodeFactory, http: Http) -> None:
    a, b = await cluster(node)
    at_a, at_b = Client(a, http), Client(b, http)
    await at_a.announce(port=7001)
    assert peers_of(await at_b.announce(port=7002)) == [key(7001)]
    await at_a.announce(port=7001, event="stopped")
    await push_round(a)
    await push_round(b)
    assert key(7001) not in peers_of(await at_b.announce(port=7002))
