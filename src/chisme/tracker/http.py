"""The HTTP tracker codec: announce and scrape queries in, bencoded replies out.

BEP 3 (announce), BEP 23 (compact ``peers``), BEP 7 (``peers6``), BEP 48 (scrape). Pure: the
front end hands over the raw query bytes after ``?`` and writes back what the encoders return.
Every bad request raises :class:`~chisme.errors.TrackerRequestError`, whose ``reason`` is meant
to be sent back as-is with :func:`encode_failure` (HTTP 200, as chihaya and bittorrent-tracker
do, so clients display it: BEP 3's ``failure reason`` is a human-readable string saying why the
query failed).

Percent-decoding (RFC 3986 ``%XX``) applies to the binary values ``info_hash``, ``peer_id`` and
``trackerid``. ``+`` stays a literal ``+``: BitTorrent clients escape a space as ``%20`` and
escape ``+`` itself (libtorrent, Transmission), while sloppy escapers send a raw ``+`` meaning
byte 0x2B; opentracker and aquatic decode it the same way. A malformed escape (``%zz``, a
trailing ``%``) fails the request, as in opentracker. Parameter names are matched as sent.

Replies are built with bytes formatting rather than :func:`fastbencode.bencode`: the announce
reply is a fixed dict of a few ints and strings, and the tests check every shape against
``fastbencode.bdecode`` and against ``bencode`` of the same dict, byte for byte.
"""

from __future__ import annotations

import binascii
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Final

from chisme.errors import TrackerRequestError
from chisme.tracker.types import (
    DEFAULT_NUMWANT,
    LEFT_UNKNOWN,
    MAX_NUMWANT,
    AnnounceRequest,
    Event,
    ScrapeRequest,
)

__all__ = [
    "DEFAULT_NUMWANT",
    "MAX_COUNTER",
    "MAX_NUMWANT",
    "MAX_SCRAPE_HASHES",
    "MAX_TRACKERID_BYTES",
    "encode_announce_reply",
    "encode_failure",
    "encode_scrape_reply",
    "parse_announce_query",
    "parse_scrape_query",
]

MAX_SCRAPE_HASHES: Final = 64
"""Info hashes per HTTP scrape. opentracker allows 64, aquatic 100, chihaya 50: 64 serves every
client we know (they scrape one torrent or a handful) and bounds the reply to ~3.5 KB."""

MAX_COUNTER: Final = 2**63 - 1
"""Largest ``uploaded``/``downloaded``/``left`` accepted: BEP 15 carries them as i64."""

MAX_TRACKERID_BYTES: Final = 64
"""Longer ``trackerid`` values are ignored: we hand out short ones, so a long one is not ours."""

_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"

# "%XX" -> byte, for the two characters after each '%': one dict lookup per escape.
_UNHEX: Final[dict[bytes, bytes]] = {
    bytes((hi, lo)): bytes((int(bytes((hi, lo)), 16),)) for hi in _HEX_DIGITS for lo in _HEX_DIGITS
}

_PCT, _EQ, _LF, _CR = b"%=\n\r"

_EVENTS: Final[dict[bytes, Event]] = {
    b"": Event.NONE,
    b"started": Event.STARTED,
    b"completed": Event.COMPLETED,
    b"stopped": Event.STOPPED,
    # BEP 21: a partial seed announces "paused"; it stays in the swarm like a regular announce.
    b"paused": Event.NONE,
    # BEP 3 says "empty, which is the same as not being present"; some clients send it literally.
    b"empty": Event.NONE,
}


def _unescape(value: bytes, name: str) -> bytes:
    """Percent-decode ``value``; ``name`` words the error.

    The usual value (no ``=``, CR or LF) is decoded in C by quoted-printable's decoder with
    ``%`` read as ``=``: a fifth of the cost of the loop below on a 20-byte hash. There it
    turns ``=XX`` (two hex digits) into one byte, 3 bytes in and 1 out, and every other ``=``
    shrinks the output by at most 1 (a lone one is kept, a final one dropped, ``==`` gives
    ``=``; ``_`` is literal outside headers, and soft line breaks need the CR or LF excluded
    here). So the output is exactly 2 bytes per ``%`` shorter than the input if and only if
    every escape is valid: one length check replaces a scan. The tests compare both paths on
    random input.
    """
    # byte membership by int: bytes `in` bytes goes through the buffer protocol, 6x slower
    if _PCT not in value:
        return value
    if _EQ not in value and _LF not in value and _CR not in value:
        out = binascii.a2b_qp(value.replace(b"%", b"="))
        if len(out) == len(value) - 2 * value.count(b"%"):
            return out
        raise TrackerRequestError(f"{name} has an invalid percent-escape")
    return _unescape_slow(value, name)


def _unescape_slow(value: bytes, name: str) -> bytes:
    parts = value.split(b"%")
    unhex = _UNHEX
    try:
        # Clients escape most bytes of a hash, so most parts are just the two hex digits.
        return parts[0] + b"".join(
            [unhex[p] if len(p) == 2 else unhex[p[:2]] + p[2:] for p in parts[1:]]
        )
    except KeyError:
        raise TrackerRequestError(f"{name} has an invalid percent-escape") from None


def _counter(raw: bytes | None, name: str, missing: int) -> int:
    """A non-negative i64 byte counter; ``missing`` when absent or empty."""
    if not raw:
        return missing
    # isdigit() on bytes is ASCII-only and refuses the signs, spaces and '_' that int() takes;
    # the length check keeps int() away from huge digit strings.
    if not raw.isdigit() or len(raw) > 19:
        raise TrackerRequestError(f"invalid {name}")
    value = int(raw)
    if value > MAX_COUNTER:
        raise TrackerRequestError(f"invalid {name}")
    return value


def parse_announce_query(query: bytes) -> AnnounceRequest:
    """Validate an announce query (the bytes after ``?``) into an :class:`AnnounceRequest`.

    Required: ``info_hash`` and ``peer_id`` (20 bytes each after percent-decoding) and ``port``
    (1..65535). Defaults: ``uploaded``/``downloaded`` 0; ``left`` :data:`LEFT_UNKNOWN` (a
    leecher); ``numwant`` None (no preference: the tracker's default applies), also for
    negative values, capped at :data:`MAX_NUMWANT`; ``compact`` on (BEP 23 suggests compact
    by default). An empty value counts as absent. ``event`` is ``started``, ``completed``,
    ``stopped``, empty, ``paused`` (BEP 21) or ``empty``; anything else fails. A second
    ``info_hash`` fails (which one would we answer?); other repeated parameters: the last one wins.

    Advisory parameters never fail a request: ``compact`` is off only for ``0``, ``no_peer_id``
    on for anything but ``0``; ``key`` becomes an int when it is 1-8 hex digits (libtorrent and
    uTorrent send ``%08X``, the same u32 they send over UDP, so both protocols agree on it;
    all-decimal keys read as hex too: the key is an identity token, not a number), else None;
    ``trackerid`` is dropped when longer than :data:`MAX_TRACKERID_BYTES` or badly escaped.
    ``ip``, ``ipv4`` and ``ipv6`` are ignored (BEP 7: never trust a claimed address).
    """
    params: dict[bytes, bytes] = {}
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"info_hash" and name in params:
            raise TrackerRequestError("multiple info_hash")
        params[name] = value
    get = params.get

    raw = get(b"info_hash")
    if raw is None:
        raise TrackerRequestError("missing info_hash")
    info_hash = _unescape(raw, "info_hash")
    if len(info_hash) != 20:
        raise TrackerRequestError("info_hash must be 20 bytes")

    raw = get(b"peer_id")
    if raw is None:
        raise TrackerRequestError("missing peer_id")
    peer_id = _unescape(raw, "peer_id")
    if len(peer_id) != 20:
        raise TrackerRequestError("peer_id must be 20 bytes")

    raw = get(b"port")
    if raw is None:
        raise TrackerRequestError("missing port")
    if not raw.isdigit() or len(raw) > 5:
        raise TrackerRequestError("invalid port")
    port = int(raw)
    if not 0 < port < 65536:
        raise TrackerRequestError("invalid port")

    uploaded = _counter(get(b"uploaded"), "uploaded", 0)
    downloaded = _counter(get(b"downloaded"), "downloaded", 0)
    left = _counter(get(b"left"), "left", LEFT_UNKNOWN)

    raw = get(b"event")
    if raw is None:
        event = Event.NONE
    else:
        found = _EVENTS.get(raw)
        if found is None:
            raise TrackerRequestError("invalid event")
        event = found

    raw = get(b"numwant")
    numwant: int | None
    if not raw:
        numwant = None
    elif raw.isdigit():
        numwant = MAX_NUMWANT if len(raw) > 3 else min(int(raw), MAX_NUMWANT)
    elif raw[:1] == b"-" and raw[1:].isdigit():
        numwant = None
    else:
        raise TrackerRequestError("invalid numwant")

    raw = get(b"key")
    # strip() of every hex digit leaves b"" only when all characters are hex digits.
    key = int(raw, 16) if raw and len(raw) <= 8 and not raw.strip(_HEX_DIGITS) else None

    raw = get(b"trackerid")
    trackerid: bytes | None = None
    if raw:
        try:
            trackerid = _unescape(raw, "trackerid")
        except TrackerRequestError:
            trackerid = None
        if trackerid is not None and len(trackerid) > MAX_TRACKERID_BYTES:
            trackerid = None

    raw = get(b"no_peer_id")
    return AnnounceRequest._make(  # tuple.__new__: no Python frame for the generated __new__
        (
            info_hash,
            peer_id,
            port,
            uploaded,
            downloaded,
            left,
            event,
            numwant,
            get(b"compact") != b"0",
            bool(raw) and raw != b"0",
            key,
            trackerid,
        )
    )


def parse_scrape_query(query: bytes) -> ScrapeRequest:
    """Validate a scrape query (BEP 48: repeated ``info_hash``) into a :class:`ScrapeRequest`.

    No ``info_hash`` at all is a full-scrape request: returned as an empty list for the caller
    to allow or refuse. More than :data:`MAX_SCRAPE_HASHES` fails before any decoding work.
    Duplicates are dropped (after counting toward the cap); other parameters are ignored.
    """
    hashes: list[bytes] = []
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name != b"info_hash":
            continue
        if len(hashes) == MAX_SCRAPE_HASHES:
            raise TrackerRequestError(f"too many info_hash (max {MAX_SCRAPE_HASHES})")
        info_hash = _unescape(value, "info_hash")
        if len(info_hash) != 20:
            raise TrackerRequestError("info_hash must be 20 bytes")
        hashes.append(info_hash)
    return ScrapeRequest(list(dict.fromkeys(hashes)))


def _bstr(value: bytes) -> bytes:
    """A bencoded byte string."""
    return b"%d:%s" % (len(value), value)


def _peer_dicts(peers: Sequence[tuple[bytes, str, int]], no_peer_id: bool) -> bytes:
    """BEP 3's non-compact peer list items: ``{"ip", "peer id", "port"}`` in key order."""
    out: list[bytes] = []
    for peer_id, ip, port in peers:
        ip_b = ip.encode("ascii")
        if no_peer_id or not peer_id:
            out.append(b"d2:ip%d:%s4:porti%dee" % (len(ip_b), ip_b, port))
        else:
            out.append(
                b"d2:ip%d:%s7:peer id%d:%s4:porti%dee"
                % (len(ip_b), ip_b, len(peer_id), peer_id, port)
            )
    return b"".join(out)


def _unpack_compact(peers4: bytes, peers6: bytes) -> list[tuple[bytes, str, int]]:
    """Compact entries (6-byte IPv4, 18-byte IPv6: chisme.core.keys) as (b"", ip text, port)."""
    peers: list[tuple[bytes, str, int]] = [
        (b"", str(ipaddress.IPv4Address(peers4[i : i + 4])), int.from_bytes(peers4[i + 4 : i + 6]))
        for i in range(0, len(peers4) - 5, 6)
    ]
    peers.extend(
        (
            b"",
            str(ipaddress.IPv6Address(peers6[i : i + 16])),
            int.from_bytes(peers6[i + 16 : i + 18]),
        )
        for i in range(0, len(peers6) - 17, 18)
    )
    return peers


_COMPACT_REPLY: Final = (
    b"d8:completei%de10:incompletei%de8:intervali%de12:min intervali%de5:peers%d:%se"
)


def encode_announce_reply(
    *,
    interval: int,
    min_interval: int,
    complete: int,
    incomplete: int,
    peers4: bytes,
    peers6: bytes,
    compact: bool = True,
    peer_list: Sequence[tuple[bytes, str, int]] | None = None,
    no_peer_id: bool = False,
    tracker_id: bytes | None = None,
    warning: str | None = None,
) -> bytes:
    """The bencoded announce reply, keys in bencode (sorted) order.

    ``peers4``/``peers6`` are concatenated compact entries, 6 and 18 bytes each (BEP 23 / BEP 7;
    exactly chisme.core.keys' address keys). Compact: ``peers`` is ``peers4`` (always present,
    maybe empty) and ``peers6`` is added only when non-empty. Non-compact (BEP 3): ``peers`` is
    a list of ``{"ip", "peer id", "port"}`` dicts from ``peer_list`` = (peer_id, ip text, port),
    or, when ``peer_list`` is None, from the compact entries; ``peer id`` is left out when
    ``no_peer_id`` is set or the peer id is empty (unknown, e.g. learned by gossip).
    """
    if compact and not peers6 and tracker_id is None and warning is None:  # the usual reply
        return _COMPACT_REPLY % (
            complete, incomplete, interval, min_interval, len(peers4), peers4
        )
    tail = b""
    if compact:
        peers = _bstr(peers4)
        if peers6:
            tail = b"6:peers6" + _bstr(peers6)
    else:
        if peer_list is None:
            peer_list = _unpack_compact(peers4, peers6)
        peers = b"l" + _peer_dicts(peer_list, no_peer_id) + b"e"
    if tracker_id is not None:
        tail += b"10:tracker id" + _bstr(tracker_id)
    if warning is not None:
        tail += b"15:warning message" + _bstr(warning.encode())
    return b"d8:completei%de10:incompletei%de8:intervali%de12:min intervali%de5:peers%s%se" % (
        complete,
        incomplete,
        interval,
        min_interval,
        peers,
        tail,
    )


def encode_scrape_reply(files: Mapping[bytes, tuple[int, int, int]]) -> bytes:
    """BEP 48's reply: ``files`` maps info hash -> (complete, downloaded, incomplete).

    ``complete`` = seeders, ``incomplete`` = leechers, ``downloaded`` = completed downloads ever.
    """
    return (
        b"d5:filesd"
        + b"".join(
            [
                b"%d:%sd8:completei%de10:downloadedi%de10:incompletei%dee"
                % (len(info_hash), info_hash, complete, downloaded, incomplete)
                for info_hash, (complete, downloaded, incomplete) in sorted(files.items())
            ]
        )
        + b"ee"
    )


def encode_failure(reason: str) -> bytes:
    """BEP 3's failure reply: ``{"failure reason": reason}`` (no other key is needed)."""
    return b"d14:failure reason" + _bstr(reason.encode()) + b"e"
