"""The HTTP BitTorrent tracker front end: GET /announce and /scrape on the httptools shell.

BEP 3 (announce), BEP 23 (compact ``peers``), BEP 7 (``peers6``), BEP 48 (scrape). The codecs
in :mod:`chisme.tracker.http` parse and encode; this module maps a request onto the node's
tracker service and counts every outcome. Bad requests get HTTP 200 with a bencoded
``failure reason`` (clients display it, as opentracker and chihaya answer), unknown paths a 404.

Mapping: the provider key is the compact (IP, port) of the socket's peer address
(or of ``Config.real_ip_header`` behind a reverse proxy) with the announced port; the store key
is the 40-character lowercase hex of the info hash. ``ip=``/``ipv4=``/``ipv6=`` are never
trusted (BEP 7). Peers come back as compact IPv4 ``peers`` and IPv6 ``peers6``, or as BEP 3's
list of dicts with ``compact=0``.

The tracker's policy (numwant, events, overlay completion) is the tracker service's
(:mod:`chisme.service.tracker`); this module only maps HTTP onto it.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from chisme.config import Config
from chisme.core.keys import AddrKey
from chisme.errors import TrackerRequestError
from chisme.metrics import Metrics
from chisme.net.addresses import ClientAddresses
from chisme.net.http_server import Request, Response
from chisme.service.tracker import NOT_ALLOWED, TrackerService
from chisme.tracker.http import (
    encode_announce_reply,
    encode_failure,
    encode_scrape_reply,
    parse_announce_query,
    parse_scrape_query,
)
from chisme.tracker.types import TrackerAnswer

log = logging.getLogger("chisme.tracker")

BENCODE: Final = b"text/plain"
"""Content type of tracker replies (opentracker's and chihaya's; clients do not look at it)."""

FULL_SCRAPE_CACHE_S: Final = 10.0
"""A full scrape's reply is reused this long: it walks every torrent held, so however often
clients ask, the store is walked at most once per period (a reloaded allow/deny list also
shows in it within the period)."""


def split_peers(peers: list[AddrKey]) -> tuple[bytes, bytes]:
    """Compact IPv4 (6-byte) and IPv6 (18-byte) entries; DNS-named keys are left out."""
    try:
        joined = b"".join(peers)  # type: ignore[arg-type]  # str keys raise TypeError
    except TypeError:
        pass
    else:
        if len(joined) == 6 * len(peers):  # the usual case: every peer is IPv4
            return joined, b""
    v4 = [p for p in peers if isinstance(p, bytes) and len(p) == 6]
    v6 = [p for p in peers if isinstance(p, bytes) and len(p) == 18]
    return b"".join(v4), b"".join(v6)


def peer_dicts(peers: list[AddrKey]) -> list[tuple[bytes, str, int]]:
    """BEP 3's non-compact list entries (peer id unknown, so left out): IPv4, IPv6, names."""
    out: list[tuple[bytes, str, int]] = []
    for p in peers:
        if isinstance(p, str):
            host, _, port = p.rpartition(":")
            out.append((b"", host, int(port)))
        elif len(p) == 6:
            out.append((b"", str(ipaddress.IPv4Address(p[:4])), int.from_bytes(p[4:])))
        else:
            out.append((b"", str(ipaddress.IPv6Address(p[:16])), int.from_bytes(p[16:])))
    return out


class HttpTracker:
    """The request handler of the HTTP tracker; serve it with ``HttpServer(tracker.handle)``."""

    def __init__(
        self,
        service: TrackerService,
        config: Config,
        metrics: Metrics,
        *,
        full_scrape: bool = False,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.access = service.access
        self.metrics = metrics
        self.full_scrape = full_scrape
        self.clock_s = clock_s
        self._full_scrape: tuple[float, bytes] | None = None  # (made at, reply)
        self.interval = config.announce_interval
        self.min_interval = config.min_announce_interval
        self.real_ip_header = config.real_ip_header.lower().encode("latin-1")
        self.addresses = ClientAddresses()
        a, s = metrics.announces, metrics.scrapes
        self._announce_ok = a.labels("http", "ok")
        self._announce_bad = a.labels("http", "bad_request")
        self._announce_denied = a.labels("http", "denied")
        self._scrape_ok = s.labels("http", "ok")
        self._scrape_bad = s.labels("http", "bad_request")

    def handle(self, req: Request) -> Response | Awaitable[Response]:
        """Route one request; never raises (the shell logs a bug as a 500 otherwise)."""
        path = req.path
        last = path.rpartition(b"/")[2]
        # BEP 48: the scrape URL replaces "announce" in the last path segment by "scrape",
        # so /announce.php and /x/announce work as well as /announce.
        if last.startswith(b"announce"):
            if req.method != b"GET":
                return Response(405, b"use GET\n")
            return self._announce(req)
        if last.startswith(b"scrape"):
            if req.method != b"GET":
                return Response(405, b"use GET\n")
            return self._scrape(req)
        return Response(404, b"not a tracker endpoint: use /announce or /scrape\n")

    # -- announce ---------------------------------------------------------------------

    def _failure(self, reason: str) -> Response:
        self.metrics.reject("tracker_http", reason)
        return Response(200, encode_failure(reason), BENCODE)

    def _client_ip(self, req: Request) -> bytes | None:
        if not self.real_ip_header:
            return self.addresses[req.client_ip]
        value = req.headers.get(self.real_ip_header)
        if value is None:
            return None
        # X-Forwarded-For: client, proxy1, ...: the last entry is the one our proxy added
        # (the earlier ones are whatever the client claimed).
        text = value.rpartition(b",")[2].strip().decode("latin-1")
        return self.addresses[text.strip("[]")]

    def _announce(self, req: Request) -> Response | Awaitable[Response]:
        try:
            a = parse_announce_query(req.query)
        except TrackerRequestError as e:
            self._announce_bad.inc()
            return self._failure(e.reason)
        ip = self._client_ip(req)
        if ip is None:
            self._announce_bad.inc()
            return self._failure("cannot tell the client's address")
        access = self.access
        if not access.open and not access.permits(a.info_hash):
            self._announce_denied.inc()
            return self._failure(NOT_ALLOWED)
        self._announce_ok.inc()
        answer = self.service.announce(a, ip + a.port.to_bytes(2, "big"), "http")
        if not isinstance(answer, tuple):  # an overlay completion to wait for
            return self._finish(answer, a.compact)
        return self._reply(answer, a.compact)

    async def _finish(self, pending: Awaitable[TrackerAnswer], compact: bool) -> Response:
        return self._reply(await pending, compact)

    def _reply(self, answer: TrackerAnswer, compact: bool) -> Response:
        seeders, leechers, peers = answer
        if compact:
            peers4, peers6 = split_peers(peers)
            body = encode_announce_reply(
                interval=self.interval,
                min_interval=self.min_interval,
                complete=seeders,
                incomplete=leechers,
                peers4=peers4,
                peers6=peers6,
            )
        else:
            body = encode_announce_reply(
                interval=self.interval,
                min_interval=self.min_interval,
                complete=seeders,
                incomplete=leechers,
                peers4=b"",
                peers6=b"",
                compact=False,
                peer_list=peer_dicts(peers),
                no_peer_id=True,
            )
        return Response(200, body, BENCODE)

    # -- scrape -----------------------------------------------------------------------

    def _scrape(self, req: Request) -> Response:
        try:
            hashes = parse_scrape_query(req.query).info_hashes
        except TrackerRequestError as e:
            self._scrape_bad.inc()
            return self._failure(e.reason)
        full, now = not hashes, 0.0
        if full:
            if not self.full_scrape:
                self._scrape_bad.inc()
                return self._failure("full scrape is disabled: name an info_hash")
            now = self.clock_s()
            cached = self._full_scrape
            if cached is not None and now - cached[0] < FULL_SCRAPE_CACHE_S:
                self._scrape_ok.inc()
                return Response(200, cached[1], BENCODE)
            hashes = self.service.torrents()
        permits = self.service.permits
        hashes = [h for h in hashes if permits(h)]
        counts = self.service.scrape(hashes)
        self._scrape_ok.inc()
        files = {
            h: (c.seeders, c.downloaded, c.leechers)
            for h, c in zip(hashes, counts, strict=True)
        }
        body = encode_scrape_reply(files)
        if full:
            self._full_scrape = (now, body)
        return Response(200, body, BENCODE)
