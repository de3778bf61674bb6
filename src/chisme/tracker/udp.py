"""The UDP tracker codec (BEP 15): datagrams in, parsed requests out; replies as datagrams.

All integers are big-endian. Pure: connection ids are checked by the caller
(:mod:`chisme.tracker.connid`), which also picks the reply's peer family from the datagram's
source (6-byte entries over IPv4, 18-byte over IPv6).

Bad input raises one of two :class:`~chisme.errors.TrackerRequestError` subclasses:

- :class:`UdpDrop`: under 16 bytes there is no transaction id to answer with: drop silently
  (as chihaya does: "we explicitly return nothing in case this is a DoS attempt");
- :class:`UdpBadRequest`: anything else malformed; it carries the transaction id so the shell
  can send :func:`encode_error`. Answering is the shell's choice: it answers only senders whose
  connection id checks out (BEP 15: a request whose id does not match is ignored; aquatic
  answers nothing either), so we do not reflect.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain
from typing import Final, NamedTuple

from chisme.errors import TrackerRequestError
from chisme.tracker.types import MAX_NUMWANT, AnnounceRequest, Event

PROTOCOL_ID: Final = 0x41727101980
"""BEP 15's magic in the connection_id field of a connect request."""

CONNECT: Final = 0
ANNOUNCE: Final = 1
SCRAPE: Final = 2
ERROR: Final = 3

MAX_UDP_SCRAPE: Final = 74
"""BEP 15: "up to about 74 torrents can be scraped at once" (16 + 74 * 20 = 1,496 bytes)."""

MAX_PEERS_V6: Final = 66
"""IPv6 peers that fit a ~1,200-byte datagram (20 + 66 * 18 = 1,208), as opentracker caps them;
IPv4 replies fit :data:`~chisme.tracker.types.MAX_NUMWANT` = 200 (1,220 bytes)."""

ANNOUNCE_SIZE: Final = 98
"""An announce request without BEP 41 options, which may follow from byte 98 and are ignored."""

MIN_SIZE: Final = 16
"""The smallest request that carries a transaction id (a connect request)."""

# connection_id or protocol_id, action, transaction_id. Ids are treated as unsigned: they are
# opaque, echoed back bit for bit.
_HEADER: Final = struct.Struct(">QII")
# header, info_hash, peer_id, downloaded, left, uploaded, event, IP, key, num_want, port
_ANNOUNCE: Final = struct.Struct(">QII20s20sqqqIIIiH")
_CONNECT_REPLY: Final = struct.Struct(">IIQ")
_ANNOUNCE_REPLY: Final = struct.Struct(">IIiii")
_ERROR_HEAD: Final = struct.Struct(">II")

_EVENTS: Final = (Event.NONE, Event.COMPLETED, Event.STARTED, Event.STOPPED)


class UdpDrop(TrackerRequestError):
    """The datagram cannot be answered (no transaction id): drop it silently."""


class UdpBadRequest(TrackerRequestError):
    """The datagram is malformed; ``transaction_id`` lets the shell answer with an error."""

    def __init__(self, transaction_id: int, reason: str) -> None:
        super().__init__(reason)
        self.transaction_id = transaction_id


class UdpConnect(NamedTuple):
    """A connect request (action 0)."""

    transaction_id: int


class UdpAnnounce(NamedTuple):
    """An announce (action 1); ``connection_id`` is still to be checked by the caller."""

    connection_id: int
    transaction_id: int
    request: AnnounceRequest


class UdpScrape(NamedTuple):
    """A scrape (action 2) of 1..:data:`MAX_UDP_SCRAPE` hashes, in request order."""

    connection_id: int
    transaction_id: int
    info_hashes: list[bytes]


def parse_udp_request(data: bytes) -> UdpConnect | UdpAnnounce | UdpScrape:
    """Parse one datagram; raise :class:`UdpDrop` or :class:`UdpBadRequest` if it is bad.

    Announce: ``num_want`` -1, 0 or any negative is None (no preference: the tracker's
    default applies), larger values are capped at :data:`MAX_NUMWANT`; ``event`` must be 0-3;
    ``port`` 0 fails; negative byte counters fail (as over HTTP); the IP field is read past and
    never used (BEP 7; aquatic keys peers the same way: only the source address counts);
    ``compact`` and ``no_peer_id`` are True, there is no ``trackerid``. Extra bytes (BEP 41
    options, future extensions) are ignored.
    """
    size = len(data)
    if size >= ANNOUNCE_SIZE:  # most datagrams are announces: one unpack for them
        (
            connection_id,
            action,
            transaction_id,
            info_hash,
            peer_id,
            downloaded,
            left,
            uploaded,
            event,
            _ip,
            key,
            numwant,
            port,
        ) = _ANNOUNCE.unpack_from(data)
    elif size < MIN_SIZE:
        raise UdpDrop("datagram shorter than 16 bytes")
    else:
        connection_id, action, transaction_id = _HEADER.unpack_from(data)

    if action == ANNOUNCE:
        if size < ANNOUNCE_SIZE:
            raise UdpBadRequest(transaction_id, "announce shorter than 98 bytes")
        if event > 3 or not port or (downloaded | left | uploaded) < 0:  # rare: say which
            raise UdpBadRequest(
                transaction_id,
                "invalid event" if event > 3
                else "invalid port" if not port
                else "invalid downloaded" if downloaded < 0
                else "invalid left" if left < 0
                else "invalid uploaded",
            )
        if numwant <= 0:
            numwant = None
        elif numwant > MAX_NUMWANT:
            numwant = MAX_NUMWANT
        # _make (tuple.__new__) skips the generated __new__'s Python frame: 0.07 µs less
        return UdpAnnounce._make(
            (
                connection_id,
                transaction_id,
                AnnounceRequest._make(
                    (
                        info_hash,
                        peer_id,
                        port,
                        uploaded,
                        downloaded,
                        left,
                        _EVENTS[event],
                        numwant,
                        True,
                        True,
                        key,
                        None,
                    )
                ),
            )
        )

    if action == CONNECT:
        if connection_id != PROTOCOL_ID:
            raise UdpBadRequest(transaction_id, "connect without the protocol id")
        return UdpConnect(transaction_id)

    if action == SCRAPE:
        body = size - MIN_SIZE
        if body == 0:
            raise UdpBadRequest(transaction_id, "scrape without info_hash")
        if body % 20:
            raise UdpBadRequest(transaction_id, "scrape with a partial info_hash")
        if body > 20 * MAX_UDP_SCRAPE:
            raise UdpBadRequest(transaction_id, f"too many info_hash (max {MAX_UDP_SCRAPE})")
        return UdpScrape(
            connection_id,
            transaction_id,
            [data[i : i + 20] for i in range(MIN_SIZE, size, 20)],
        )

    raise UdpBadRequest(transaction_id, "unknown action")


def encode_connect_reply(transaction_id: int, connection_id: int) -> bytes:
    """BEP 15 connect response: action 0, transaction_id, connection_id (16 bytes)."""
    return _CONNECT_REPLY.pack(CONNECT, transaction_id, connection_id)


def encode_announce_reply(
    transaction_id: int, interval: int, leechers: int, seeders: int, peers: bytes
) -> bytes:
    """BEP 15 announce response: 20 bytes then ``peers``, concatenated 6-byte (IPv4) or 18-byte
    (IPv6) entries matching the family the request came over."""
    return _ANNOUNCE_REPLY.pack(ANNOUNCE, transaction_id, interval, leechers, seeders) + peers


def encode_scrape_reply(transaction_id: int, stats: Sequence[tuple[int, int, int]]) -> bytes:
    """BEP 15 scrape response, one (seeders, completed, leechers) per requested hash, in order.

    The same order as HTTP's (complete, downloaded, incomplete), but not the announce reply's,
    which puts leechers before seeders.
    """
    return struct.pack(f">II{3 * len(stats)}i", SCRAPE, transaction_id, *chain.from_iterable(stats))


def encode_error(transaction_id: int, message: str) -> bytes:
    """BEP 15 error response: action 3, transaction_id, then the message to the packet's end."""
    return _ERROR_HEAD.pack(ERROR, transaction_id) + message.encode()
