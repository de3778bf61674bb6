"""UDP tracker codec: BEP 15 packets, golden bytes written out from the BEP's tables."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chisme.errors import TrackerRequestError
from chisme.tracker.types import MAX_NUMWANT, AnnounceRequest, Event
from chisme.tracker.udp import (
    ANNOUNCE,
    CONNECT,
    ERROR,
    MAX_UDP_SCRAPE,
    PROTOCOL_ID,
    SCRAPE,
    UdpAnnounce,
    UdpBadRequest,
    UdpConnect,
    UdpDrop,
    UdpScrape,
    encode_announce_reply,
    encode_connect_reply,
    encode_error,
    encode_scrape_reply,
    parse_udp_request,
)

TID = 0xDEADBEEF
CID = 0x0123456789ABCDEF
INFO_HASH = bytes(range(0xA0, 0xB4))
PEER_ID = b"-LT2110-123456789012"


def h(text: str) -> bytes:
    """Bytes from hex with spaces, so packets read like BEP 15's tables."""
    return bytes.fromhex(text.replace(" ", ""))


CONNECT_REQUEST = h("00000417 27101980  00000000  deadbeef")

ANNOUNCE_REQUEST = (
    h("01234567 89abcdef")  # 0: connection_id
    + h("00000001")  # 8: action = announce
    + h("deadbeef")  # 12: transaction_id
    + INFO_HASH  # 16: info_hash
    + PEER_ID  # 36: peer_id
    + h("00000000 00000800")  # 56: downloaded = 2048
    + h("00000000 00001000")  # 64: left = 4096
    + h("00000000 00000400")  # 72: uploaded = 1024
    + h("00000002")  # 80: event = started
    + h("0a000001")  # 84: IP address = 10.0.0.1 (must be ignored)
    + h("0a1b2c3d")  # 88: key
    + h("ffffffff")  # 92: num_want = -1 (default)
    + h("1ae1")  # 96: port = 6881
)

SCRAPE_HASHES = [bytes([i]) * 20 for i in range(1, 4)]
SCRAPE_REQUEST = h("01234567 89abcdef  00000002  deadbeef") + b"".join(SCRAPE_HASHES)

GOLDEN_REQUESTS = [CONNECT_REQUEST, ANNOUNCE_REQUEST, SCRAPE_REQUEST]


def announce_packet(**fields: int) -> bytes:
    """ANNOUNCE_REQUEST with some integer fields replaced (struct layout from BEP 15)."""
    values = {
        "downloaded": 2048,
        "left": 4096,
        "uploaded": 1024,
        "event": 2,
        "ip": 0x0A000001,
        "key": 0x0A1B2C3D,
        "num_want": -1,
        "port": 6881,
        "action": ANNOUNCE,
    } | fields
    return struct.pack(
        ">QII20s20sqqqIIIiH",
        CID,
        values["action"],
        TID,
        INFO_HASH,
        PEER_ID,
        values["downloaded"],
        values["left"],
        values["uploaded"],
        values["event"],
        values["ip"],
        values["key"],
        values["num_want"],
        values["port"],
    )


def bad_reason(data: bytes) -> str:
    with pytest.raises(UdpBadRequest) as caught:
        parse_udp_request(data)
    assert caught.value.transaction_id == TID
    return caught.value.reason


# --- requests -------------------------------------------------------------------------------


def test_connect_request() -> None:
    assert len(CONNECT_REQUEST) == 16
    assert parse_udp_request(CONNECT_REQUEST) == UdpConnect(TID)
    assert parse_udp_request(CONNECT_REQUEST + b"future") == UdpConnect(TID)


def test_announce_request() -> None:
    assert len(ANNOUNCE_REQUEST) == 98
    assert announce_packet() == ANNOUNCE_REQUEST
    assert parse_udp_request(ANNOUNCE_REQUEST) == UdpAnnounce(
        CID,
        TID,
        AnnounceRequest(
            info_hash=INFO_HASH,
            peer_id=PEER_ID,
            port=6881,
            uploaded=1024,
            downloaded=2048,
            left=4096,
            event=Event.STARTED,
            numwant=None,
            compact=True,
            no_peer_id=True,
            key=0x0A1B2C3D,
            trackerid=None,
        ),
    )


def test_announce_ip_field_is_never_used() -> None:
    first = parse_udp_request(announce_packet(ip=0))
    assert parse_udp_request(announce_packet(ip=0x01020304)) == first
    assert parse_udp_request(announce_packet(ip=0xFFFFFFFF)) == first


def test_announce_bep41_options_are_ignored() -> None:
    url_data = b"\x02\x0c/ann?pass=xy"  # URLData option
    packet = ANNOUNCE_REQUEST + b"\x01" + url_data + b"\x00"  # NOP, URLData, EndOfOptions
    assert parse_udp_request(packet) == parse_udp_request(ANNOUNCE_REQUEST)


@pytest.mark.parametrize(
    ("num_want", "numwant"),
    [
        (-1, None),
        (0, None),
        (-(2**31), None),
        (1, 1),
        (74, 74),
        (MAX_NUMWANT, MAX_NUMWANT),
        (MAX_NUMWANT + 1, MAX_NUMWANT),
        (2**31 - 1, MAX_NUMWANT),
    ],
)
def test_announce_numwant(num_want: int, numwant: int | None) -> None:
    parsed = parse_udp_request(announce_packet(num_want=num_want))
    assert isinstance(parsed, UdpAnnounce)
    assert parsed.request.numwant == numwant


@pytest.mark.parametrize("event", list(Event))
def test_announce_events(event: Event) -> None:
    parsed = parse_udp_request(announce_packet(event=int(event)))
    assert isinstance(parsed, UdpAnnounce)
    assert parsed.request.event is event


def test_announce_seeder_and_extremes() -> None:
    parsed = parse_udp_request(
        announce_packet(left=0, uploaded=2**63 - 1, key=0xFFFFFFFF, port=65535)
    )
    assert isinstance(parsed, UdpAnnounce)
    assert parsed.request.seeder
    assert parsed.request.uploaded == 2**63 - 1
    assert parsed.request.key == 0xFFFFFFFF and parsed.request.port == 65535


def test_scrape_request() -> None:
    assert parse_udp_request(SCRAPE_REQUEST) == UdpScrape(CID, TID, SCRAPE_HASHES)


def test_scrape_many_hashes() -> None:
    items = [i.to_bytes(20, "big") for i in range(MAX_UDP_SCRAPE)]
    packet = SCRAPE_REQUEST[:16] + b"".join(items)
    assert len(packet) == 16 + 20 * 74
    assert parse_udp_request(packet) == UdpScrape(CID, TID, items)
    assert bad_reason(packet + b"\x00" * 20) == "too many info_hash (max 74)"


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (h("00000417 27101981  00000000  deadbeef"), "connect without the protocol id"),
        (h("01234567 89abcdef  00000000  deadbeef"), "connect without the protocol id"),
        (h("00000417 27101980  00000004  deadbeef") + bytes(98), "unknown action"),
        (h("00000417 27101980  ffffffff  deadbeef"), "unknown action"),
        (SCRAPE_REQUEST[:16], "scrape without info_hash"),
        (SCRAPE_REQUEST + b"\x00", "scrape with a partial info_hash"),
        (announce_packet(port=0), "invalid port"),
        (announce_packet(event=4), "invalid event"),
        (announce_packet(event=0xFFFFFFFF), "invalid event"),
        (announce_packet(left=-1), "invalid left"),
        (announce_packet(downloaded=-(2**63)), "invalid downloaded"),
        (announce_packet(uploaded=-5), "invalid uploaded"),
        (ANNOUNCE_REQUEST[:97], "announce shorter than 98 bytes"),
    ],
)
def test_bad_requests(packet: bytes, reason: str) -> None:
    assert bad_reason(packet) == reason
    assert parse_udp_request(ANNOUNCE_REQUEST).transaction_id == TID  # good still parses


@pytest.mark.parametrize("golden", GOLDEN_REQUESTS, ids=["connect", "announce", "scrape"])
def test_every_truncation(golden: bytes) -> None:
    for size in range(len(golden)):
        packet = golden[:size]
        if size < 16:
            with pytest.raises(UdpDrop):
                parse_udp_request(packet)
        elif golden is SCRAPE_REQUEST and size > 16 and size % 20 == 16:
            # cut on a hash boundary: a valid scrape of fewer hashes
            assert parse_udp_request(packet) == UdpScrape(CID, TID, SCRAPE_HASHES[: size // 20])
        else:
            bad_reason(packet)


@pytest.mark.parametrize("size", [0, 1, 8, 15])
def test_short_garbage_is_dropped(size: int) -> None:
    with pytest.raises(UdpDrop) as caught:
        parse_udp_request(b"\xff" * size)
    assert isinstance(caught.value, TrackerRequestError)
    assert caught.value.reason == "datagram shorter than 16 bytes"


def test_http_on_the_udp_port_is_an_unknown_action() -> None:
    packet = b"GET /announce?info_hash=x HTTP/1.1\r\n\r\n"
    with pytest.raises(UdpBadRequest) as caught:
        parse_udp_request(packet)
    assert caught.value.reason == "unknown action"
    assert caught.value.transaction_id == int.from_bytes(b"e?in")


# --- replies --------------------------------------------------------------------------------


def test_connect_reply_golden() -> None:
    assert encode_connect_reply(TID, CID) == h("00000000  deadbeef  01234567 89abcdef")


def test_announce_reply_golden_v4() -> None:
    peers = h("0a000001 1ae1") + h("c0a80102 c8d5")  # 10.0.0.1:6881, 192.168.1.2:51413
    reply = encode_announce_reply(TID, 1800, 5, 2, peers)
    assert reply == (
        h("00000001  deadbeef  00000708  00000005  00000002")  # action, tid, interval, L, S
        + h("0a000001 1ae1 c0a80102 c8d5")
    )
    assert len(reply) == 20 + 6 * 2


def test_announce_reply_golden_v6() -> None:
    peer = h("20010db8 00000000 00000000 00000001 1ae1")  # [2001:db8::1]:6881
    reply = encode_announce_reply(TID, 900, 0, 1, peer * 3)
    assert reply[:20] == h("00000001  deadbeef  00000384  00000000  00000001")
    assert reply[20:] == peer * 3
    assert len(reply) == 20 + 18 * 3


def test_announce_reply_without_peers() -> None:
    assert encode_announce_reply(1, 60, 0, 0, b"") == h(
        "00000001 00000001 0000003c 00000000 00000000"
    )


def test_scrape_reply_golden() -> None:
    reply = encode_scrape_reply(TID, [(5, 10, 2), (0, 0, 1)])
    assert reply == (
        h("00000002  deadbeef")
        + h("00000005  0000000a  00000002")  # seeders, completed, leechers
        + h("00000000  00000000  00000001")
    )
    stats = [(i, 2 * i, 3 * i) for i in range(MAX_UDP_SCRAPE)]
    many = encode_scrape_reply(TID, stats)
    assert len(many) == 8 + 12 * MAX_UDP_SCRAPE
    assert list(struct.iter_unpack(">iii", many[8:])) == stats
    assert encode_scrape_reply(TID, []) == h("00000002 deadbeef")


def test_error_golden() -> None:
    reply = encode_error(TID, "bad connection ID")
    assert reply == h("00000003  deadbeef") + b"bad connection ID"
    assert encode_error(0, "é") == h("00000003 00000000 c3a9")


def test_action_numbers() -> None:
    assert (CONNECT, ANNOUNCE, SCRAPE, ERROR) == (0, 1, 2, 3)
    assert PROTOCOL_ID == 0x41727101980


# --- properties ---------------------------------------------------------------------------


@given(
    connection_id=st.integers(min_value=0, max_value=2**64 - 1),
    transaction_id=st.integers(min_value=0, max_value=2**32 - 1),
    counters=st.tuples(*(st.integers(min_value=0, max_value=2**63 - 1) for _ in range(3))),
    event=st.sampled_from(list(Event)),
    key=st.integers(min_value=0, max_value=2**32 - 1),
    num_want=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    port=st.integers(min_value=1, max_value=65535),
    info_hash=st.binary(min_size=20, max_size=20),
    options=st.binary(max_size=40),
)
def test_announce_fields_round_trip(
    connection_id: int,
    transaction_id: int,
    counters: tuple[int, int, int],
    event: Event,
    key: int,
    num_want: int,
    port: int,
    info_hash: bytes,
    options: bytes,
) -> None:
    downloaded, left, uploaded = counters
    packet = struct.pack(
        ">QII20s20sqqqIIIiH",
        connection_id,
        ANNOUNCE,
        transaction_id,
        info_hash,
        PEER_ID,
        downloaded,
        left,
        uploaded,
        event,
        0,
        key,
        num_want,
        port,
    )
    parsed = parse_udp_request(packet + options)
    assert isinstance(parsed, UdpAnnounce)
    assert (parsed.connection_id, parsed.transaction_id) == (connection_id, transaction_id)
    request = parsed.request
    assert (request.info_hash, request.peer_id, request.port) == (info_hash, PEER_ID, port)
    assert (request.downloaded, request.left, request.uploaded) == counters
    assert (request.event, request.key) == (event, key)
    assert request.numwant == (None if num_want <= 0 else min(num_want, MAX_NUMWANT))


headers = st.builds(
    lambda cid, action, tid, tail: struct.pack(">QII", cid, action, tid) + tail,
    st.sampled_from([PROTOCOL_ID, CID]) | st.integers(min_value=0, max_value=2**64 - 1),
    st.sampled_from([0, 1, 2, 3, 4]) | st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.binary(max_size=1600),
)


@given(st.binary(max_size=2000) | headers)
def test_fuzz_parses_or_raises_tracker_error(data: bytes) -> None:
    try:
        parsed = parse_udp_request(data)
    except UdpDrop:
        assert len(data) < 16
        return
    except UdpBadRequest as error:
        assert len(data) >= 16
        assert error.transaction_id == int.from_bytes(data[12:16])
        return
    assert parsed.transaction_id == int.from_bytes(data[12:16])
    if isinstance(parsed, UdpScrape):
        assert 1 <= len(parsed.info_hashes) <= MAX_UDP_SCRAPE
        assert all(len(item) == 20 for item in parsed.info_hashes)
    elif isinstance(parsed, UdpAnnounce):
        assert 1 <= parsed.request.port <= 65535
        numwant = parsed.request.numwant
        assert numwant is None or 1 <= numwant <= MAX_NUMWANT
