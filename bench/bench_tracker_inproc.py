"""The tracker front ends' own cost: µs of Python per UDP announce and per HTTP keep-alive
announce, with no sockets and no load generator.

Plain script (not part of ``make test``)::

    .venv/bin/python bench/bench_tracker_inproc.py

A node with the HTTP and UDP front ends is filled as ``bench_tracker.sh`` fills one (1,000
info hashes x 100 peers), then 20,000 pre-built announces (pool hashes, random ports, 25 %
seeders, 10 % ``event=started``, numwant 50; binary fields percent-escaped as libtorrent does)
are cycled: the first pass inserts them, the timed passes refresh them, as the load generators'
cycled requests do. UDP datagrams go to ``UdpTracker.datagram_received`` (replies are queued
and dropped in bursts of 32, as uvloop delivers them); HTTP requests are fed as bytes to one
keep-alive connection of the httptools shell. The best of 7 passes is printed.

``bench_tracker.sh`` measures whole requests against opentracker; this isolates the part that
is chisme's Python (the rest, kernel and event loop, is ~5.5 µs per UDP announce here whatever
the server). Run it pinned (``taskset -c 1``) to compare two versions of the code.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_from_bytes

import uvloop

import chisme
from chisme.frontends.http_tracker import HttpTracker
from chisme.frontends.udp_tracker import UdpTracker
from chisme.net.http_server import HttpServer, _HttpConnection

ANNOUNCE = struct.Struct(">QII20s20sqqqIIIiH")  # BEP 15
PREFIXES = (b"-qB4650-", b"-TR4050-", b"-DE2110-", b"-lt0D80-")
PASSES = 7
N = 100_000


class _Sink:
    """A transport that takes every write and does nothing."""

    def write(self, data: bytes) -> None:
        pass

    def sendto(self, data: bytes, addr: Any) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def best_us(run: Callable[[int], None]) -> float:
    best = float("inf")
    for _ in range(PASSES):
        t = time.perf_counter()
        run(N)
        best = min(best, time.perf_counter() - t)
    return best / N * 1e6


def bench_udp(node: chisme.Node, cfg: chisme.Config, pool: list[bytes]) -> float:
    udp = UdpTracker(node.tracker, cfg, node.spawn, node.metrics)
    udp.connection_made(_Sink())  # type: ignore[arg-type]
    addr = ("127.0.0.1", 40000)
    cid = udp.ids.issue(bytes([127, 0, 0, 1]), int(time.time()))
    rng = random.Random(1)

    def packet(info_hash: bytes, port: int, seeder: bool, event: int) -> bytes:
        pid = rng.choice(PREFIXES) + rng.randbytes(12)
        return ANNOUNCE.pack(cid, 1, rng.getrandbits(32), info_hash, pid, 0,
                             0 if seeder else 5, 0, event, 0, 0, 50, port)

    feed = udp.datagram_received
    for info_hash in pool:
        for j in range(100):
            feed(packet(info_hash, 20000 + j, j % 4 == 0, 2), addr)
    packets = [packet(rng.choice(pool), rng.randrange(1025, 65536), rng.random() < 0.25,
                      2 if rng.random() < 0.1 else 0) for _ in range(20_000)]
    for p in packets:
        feed(p, addr)
    udp._outbox.clear()

    def run(n: int) -> None:
        outbox = udp._outbox
        for i in range(n):
            feed(packets[i % 20_000], addr)
            if i % 32 == 31:
                outbox.clear()

    return best_us(run)


def bench_http(node: chisme.Node, cfg: chisme.Config, pool: list[bytes]) -> float:
    tracker = HttpTracker(node.tracker, cfg, node.metrics)
    conn = _HttpConnection(HttpServer(tracker.handle, node.spawn))
    conn.connection_made(_Sink())  # type: ignore[arg-type]
    rng = random.Random(2)

    def request(info_hash: bytes, port: int, seeder: bool, started: bool) -> bytes:
        pid = rng.choice(PREFIXES) + rng.randbytes(12)
        q = (f"info_hash={quote_from_bytes(info_hash, safe='-._~')}"
             f"&peer_id={quote_from_bytes(pid, safe='-._~')}&port={port}"
             f"&uploaded={rng.randrange(10**8)}&downloaded={rng.randrange(10**8)}"
             f"&left={0 if seeder else rng.randrange(1, 2 * 10**9)}&corrupt=0&key=abcdEFGH"
             + ("&event=started" if started else "")
             + "&numwant=50&compact=1&no_peer_id=1&supportcrypto=1")
        return (f"GET /announce?{q} HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n"
                "User-Agent: qBittorrent/4.6.5\r\nAccept-Encoding: gzip\r\n\r\n").encode()

    feed = conn.data_received
    for info_hash in pool:  # a second swarm set: HTTP peers beside the UDP ones
        for j in range(100):
            feed(request(info_hash, 30000 + j, j % 4 == 0, True))
    requests = [request(rng.choice(pool), rng.randrange(1025, 65536), rng.random() < 0.25,
                        rng.random() < 0.1) for _ in range(20_000)]
    for r in requests:
        feed(r)

    def run(n: int) -> None:
        for i in range(n):
            feed(requests[i % 20_000])

    return best_us(run)


async def main() -> None:
    cfg = chisme.Config.profile("lan", listen="127.0.0.1:0", api="", tracker_http="",
                                tracker_udp="", ttl_s=3600)
    pool = [hashlib.sha1(b"%d" % i).digest() for i in range(1000)]
    async with chisme.Node(cfg) as node:
        udp = bench_udp(node, cfg, pool)
        http = bench_http(node, cfg, pool)
        print(f"tracker.udp.announce us_per_request={udp:.2f} requests_per_s={1e6 / udp:.0f}")
        print(f"tracker.http.keepalive_announce us_per_request={http:.2f} "
              f"requests_per_s={1e6 / http:.0f}")
        print(f"# store: {node.store.num_keys} torrents, {node.store.num_records} peers")


if __name__ == "__main__":
    uvloop.run(main())
