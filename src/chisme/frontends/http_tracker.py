"""The HTTP BitTorrent tracker front end: GET /announce and /scrape on the httptools shell.

BEP 3 (announce), BEP 23 (compact ``peers``), BEP 7 (``peers6``), BEP 48 (scrape). The codecs
in :mod:`chisme.tracker.http` parse and encode; this module maps a request onto the node's
tracker service and counts every outcome. Bad requests get HTTP 200 with a bencoded
``failure reason`` (clients display it; research/trackers.md §8.7), unknown paths a 404.

Mapping (issue 3): the provider key is the compact (IP, port) of the socket's peer address
(or of ``Config.real_ip_header`` behind a reverse proxy) with the announced port; the store key
is the 40-character lowercase hex of the info hash. ``ip=``/``ipv4=``/``ipv6=`` are never
trusted (BEP 7). Peers come back as compact IPv4 ``peers`` and IPv6 ``peers6``, or as BEP 3's
list of dicts with ``compact=0``.

This module also holds what both tracker front ends share: the service protocol the node
implements, the client-address cache and the peer-list split.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final, Protocol

from chisme.config import Config
from chisme.core.keys import AddrKey, unmap_ipv4
from chisme.core.store import Counts
from chisme.errors import TrackerRequestError
from chisme.frontends.http_server import Request, Response
from chisme.metrics import Metrics
from chisme.tracker.access import AccessList
from chisme.tracker.http import (
    encode_announce_reply,
    encode_failure,
    encode_scrape_reply,
    parse_announce_query,
    parse_scrape_query,
)
from chisme.tracker.types import DEFAULT_NUMWANT, AnnounceRequest, Event, TrackerAnswer

log = logging.getLogger("chisme.tracker")

BENCODE: Final = b"text/plain"
"""Content type of tracker replies (opentracker's and chihaya's; clients do not look at it)."""

NOT_ALLOWED: Final = "info_hash not allowed on this tracker"
FULL_SCRAPE_CACHE_S: Final = 10.0
"""A full scrape's reply is reused this long: it walks every torrent held, so however often
clients ask, the store is walked at most once per period (a reloaded allow/deny list also
shows in it within the period)."""
MAX_OVERLAY_INFLIGHT: Final = 256
"""Announces of one front end waiting on the overlay at once; more are answered locally."""

_EXPLICIT_DEFAULT: Final = b"numwant=%d" % DEFAULT_NUMWANT
_MAX_CACHED_IPS: Final = 65_536


class TrackerService(Protocol):
    """What the tracker front ends need from the node."""

    def tracker_announce(
        self,
        info_hash: str,
        addr: AddrKey,
        peer_id: bytes,
        *,
        seeder: bool,
        stopped: bool,
        completed: bool,
        numwant: int,
        family_only: bool = False,
    ) -> TrackerAnswer | Awaitable[TrackerAnswer]: ...

    def tracker_peers(
        self,
        info_hash: str,
        addr: AddrKey,
        *,
        seeder: bool,
        numwant: int,
        family_only: bool = False,
    ) -> TrackerAnswer: ...

    def tracker_scrape(self, info_hashes: Sequence[str]) -> list[Counts]: ...

    def reject(self, surface: str, reason: str) -> None: ...


class ClientAddresses(dict[str, "bytes | None"]):
    """Client IP text -> packed address (4 or 16 bytes; IPv4-mapped IPv6 as IPv4, so one peer
    has one key; None if invalid): ``addresses[ip]``. A dict that fills itself, so a hit is one
    C-level lookup: ``inet_pton`` per request is measurable at tens of thousands of announces
    per second, and clients repeat. Bounded: cleared when full."""

    def __missing__(self, ip: str) -> bytes | None:
        if len(self) >= _MAX_CACHED_IPS:
            self.clear()
        self[ip] = packed = pack_ip(ip)
        return packed


def pack_ip(ip: str) -> bytes | None:
    """``inet_pton`` of an IPv4 or IPv6 text (a zone ``%eth0`` dropped); None if invalid."""
    try:
        if ":" in ip:
            packed = socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
            return unmap_ipv4(packed)
        return socket.inet_pton(socket.AF_INET, ip)
    except (OSError, ValueError):
        return None


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
            out.append((b"", socket.inet_ntop(socket.AF_INET, p[:4]), int.from_bytes(p[4:])))
        else:
            out.append((b"", socket.inet_ntop(socket.AF_INET6, p[:16]), int.from_bytes(p[16:])))
    return out


class HttpTracker:
    """The request handler of the HTTP tracker; serve it with ``HttpServer(tracker.handle)``."""

    def __init__(
        self,
        service: TrackerService,
        config: Config,
        access: AccessList,
        metrics: Metrics,
        torrents: Callable[[], Iterable[str]] | None = None,
        *,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """``torrents`` lists every info hash held; passing it enables full scrape."""
        self.service = service
        self.access = access
        self.torrents = torrents
        self.clock_s = clock_s
        self._full_scrape: tuple[float, bytes] | None = None  # (made at, reply)
        self.interval = config.announce_interval
        self.min_interval = config.min_announce_interval
        self.numwant_default = config.numwant_default
        self.numwant_max = config.numwant_max
        self.real_ip_header = config.real_ip_header.lower().encode("latin-1")
        self.addresses = ClientAddresses()
        self.overlay_inflight = 0
        a, s = metrics.announces, metrics.scrapes
        self._announce_ok = a.labels("http", "ok")
        self._announce_bad = a.labels("http", "bad_request")
        self._announce_denied = a.labels("http", "denied")
        self._scrape_ok = s.labels("http", "ok")
        self._scrape_bad = s.labels("http", "bad_request")
        self._overlay_awaited = metrics.tracker_overlay.labels("http", "awaited")
        self._overlay_over_cap = metrics.tracker_overlay.labels("http", "over_cap")

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
        self.service.reject("tracker_http", reason)
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
        if not self.access.permits(a.info_hash):
            self._announce_denied.inc()
            return self._failure(NOT_ALLOWED)
        numwant = a.numwant
        if (
            numwant == DEFAULT_NUMWANT
            and self.numwant_default != DEFAULT_NUMWANT
            and _EXPLICIT_DEFAULT not in req.query
        ):
            numwant = self.numwant_default  # the codec reads "no preference" as 50
        numwant = min(numwant, self.numwant_max)
        self._announce_ok.inc()
        info_hash = a.info_hash.hex()
        addr = ip + a.port.to_bytes(2, "big")
        answer: TrackerAnswer | Awaitable[TrackerAnswer]
        if self.overlay_inflight >= MAX_OVERLAY_INFLIGHT:
            answer = self._local(info_hash, addr, a, numwant)
        else:
            answer = apply_announce(self.service, info_hash, addr, a, numwant)
        if not isinstance(answer, tuple):  # an overlay completion to wait for
            self.overlay_inflight += 1
            self._overlay_awaited.inc()
            return self._finish(answer, a.compact)
        return self._reply(answer, a.compact)

    def _local(
        self, info_hash: str, addr: AddrKey, a: AnnounceRequest, numwant: int
    ) -> TrackerAnswer:
        """Over the in-flight cap: apply the announce, answer from the local store only."""
        self._overlay_over_cap.inc()
        return answer_locally(self.service, info_hash, addr, a, numwant)

    async def _finish(self, pending: Awaitable[TrackerAnswer], compact: bool) -> Response:
        try:
            answer = await pending
        finally:
            self.overlay_inflight -= 1
        return self._reply(answer, compact)

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
            if self.torrents is None:
                self._scrape_bad.inc()
                return self._failure("full scrape is disabled: name an info_hash")
            now = self.clock_s()
            cached = self._full_scrape
            if cached is not None and now - cached[0] < FULL_SCRAPE_CACHE_S:
                self._scrape_ok.inc()
                return Response(200, cached[1], BENCODE)
            hashes = [bytes.fromhex(ih) for ih in self.torrents() if _is_hex40(ih)]
        access = self.access
        if not access.open:
            hashes = [h for h in hashes if access.permits(h)]
        counts = self.service.tracker_scrape([h.hex() for h in hashes])
        self._scrape_ok.inc()
        files = {
            h: (c.seeders, c.downloaded, c.leechers)
            for h, c in zip(hashes, counts, strict=True)
        }
        body = encode_scrape_reply(files)
        if full:
            self._full_scrape = (now, body)
        return Response(200, body, BENCODE)


def _is_hex40(key: str) -> bool:
    """A store key that is a BitTorrent info hash (v1 peers may use other keys)."""
    if len(key) != 40:
        return False
    try:
        bytes.fromhex(key)
    except ValueError:
        return False
    return key.islower() or key.isdigit()


def apply_announce(
    service: TrackerService,
    info_hash: str,
    addr: AddrKey,
    a: AnnounceRequest,
    numwant: int,
    *,
    family_only: bool = False,
) -> TrackerAnswer | Awaitable[TrackerAnswer]:
    """Hand one parsed announce (HTTP or UDP) to the node. ``family_only``: the reply carries
    the client's address family only (UDP); HTTP replies carry both (``peers``, ``peers6``)."""
    event = a.event
    return service.tracker_announce(
        info_hash,
        addr,
        a.peer_id,
        seeder=a.left == 0,
        stopped=event is Event.STOPPED,
        completed=event is Event.COMPLETED,
        numwant=numwant,
        family_only=family_only,
    )


def answer_locally(
    service: TrackerService,
    info_hash: str,
    addr: AddrKey,
    a: AnnounceRequest,
    numwant: int,
    *,
    family_only: bool = False,
) -> TrackerAnswer:
    """Apply an announce with no overlay completion and answer from the local store."""
    seeder = a.left == 0
    stopped = a.event is Event.STOPPED
    # nothing wanted (numwant 0), so the node never starts an overlay lookup
    answer = apply_announce(service, info_hash, addr, a, 0)
    if not isinstance(answer, tuple):  # not with numwant=0, but never leave one unawaited
        close_awaitable(answer)
    return service.tracker_peers(
        info_hash,
        addr,
        seeder=seeder,
        numwant=0 if stopped else numwant,
        family_only=family_only,
    )


def close_awaitable(value: Awaitable[object]) -> None:
    """Discard an overlay completion that will not be awaited (no "never awaited" warning)."""
    close = getattr(value, "close", None)
    if callable(close):
        close()
