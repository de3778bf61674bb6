"""HTTP tracker codec: BEP 3 / 23 / 7 / 48 queries and replies."""

from __future__ import annotations

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]  # 0.3.12: no __all__
from hypothesis import given
from hypothesis import strategies as st

from chisme.errors import InvalidInput, TrackerRequestError
from chisme.tracker.http import (
    MAX_NUMWANT,
    MAX_SCRAPE_HASHES,
    encode_announce_reply,
    encode_failure,
    encode_scrape_reply,
    parse_announce_query,
    parse_scrape_query,
)
from chisme.tracker.types import LEFT_UNKNOWN, AnnounceRequest, Event, ScrapeRequest

INFO_HASH = bytes.fromhex("0123456789abcdef00ff2b2f3d26253f202d7e41")  # has + / = & % ? space
PEER_ID = b"-LT2110-\x00\xffa b+c/d%e="  # 20 bytes, some reserved

# libtorrent's escape_string leaves alphanumerics and -_!.~*() alone and writes %XX (upper case)
_LT_UNRESERVED = frozenset(
    b"-_!.~*()ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)


def lt_escape(value: bytes) -> bytes:
    """Percent-encode as libtorrent does (src/escape_string.cpp)."""
    return b"".join(bytes((c,)) if c in _LT_UNRESERVED else b"%%%02X" % c for c in value)


def libtorrent_query(**overrides: bytes) -> bytes:
    """The announce query libtorrent 2.x builds (http_tracker_connection.cpp), in its order."""
    params: dict[str, bytes] = {
        "info_hash": lt_escape(INFO_HASH),
        "peer_id": lt_escape(PEER_ID),
        "port": b"6881",
        "uploaded": b"1024",
        "downloaded": b"2048",
        "left": b"4096",
        "corrupt": b"0",
        "key": b"0A1B2C3D",
        "event": b"started",
        "numwant": b"200",
        "compact": b"1",
        "no_peer_id": b"1",
        "supportcrypto": b"1",
        "redundant": b"0",
    }
    params.update(overrides)
    return b"&".join(name.encode() + b"=" + value for name, value in params.items())


def without(query: bytes, name: bytes) -> bytes:
    return b"&".join(p for p in query.split(b"&") if not p.startswith(name + b"="))


# --- announce queries ---------------------------------------------------------------------


def test_libtorrent_query() -> None:
    request = parse_announce_query(libtorrent_query())
    assert request == AnnounceRequest(
        info_hash=INFO_HASH,
        peer_id=PEER_ID,
        port=6881,
        uploaded=1024,
        downloaded=2048,
        left=4096,
        event=Event.STARTED,
        numwant=200,
        compact=True,
        no_peer_id=True,
        key=0x0A1B2C3D,
        trackerid=None,
    )
    assert not request.seeder


def test_lower_case_escapes_and_unescaped_bytes() -> None:
    lower = b"".join(b"%%%02x" % c for c in PEER_ID)
    query = libtorrent_query(info_hash=b"%61bcdefghijklmnopqrst", peer_id=lower)
    request = parse_announce_query(query)
    assert request.info_hash == b"abcdefghijklmnopqrst"
    assert request.peer_id == PEER_ID


def test_plus_is_a_literal_plus() -> None:
    # Raw '+' means byte 0x2B (opentracker, aquatic), not a space as in HTML forms.
    request = parse_announce_query(libtorrent_query(info_hash=b"+" * 20))
    assert request.info_hash == b"+" * 20


def test_seeder_and_defaults() -> None:
    query = b"info_hash=" + lt_escape(INFO_HASH) + b"&peer_id=" + lt_escape(PEER_ID) + b"&port=1"
    request = parse_announce_query(query)
    assert request.uploaded == 0 and request.downloaded == 0
    assert request.left == LEFT_UNKNOWN and not request.seeder  # missing left: a leecher
    assert request.event is Event.NONE
    assert request.numwant is None  # no preference: the tracker's default applies
    assert request.compact is True  # BEP 23: compact by default
    assert request.no_peer_id is False
    assert request.key is None and request.trackerid is None
    assert parse_announce_query(query + b"&left=0").seeder
    assert parse_announce_query(query + b"&left=").left == LEFT_UNKNOWN  # empty = absent


@pytest.mark.parametrize(
    ("value", "event"),
    [
        (b"started", Event.STARTED),
        (b"completed", Event.COMPLETED),
        (b"stopped", Event.STOPPED),
        (b"", Event.NONE),
        (b"paused", Event.NONE),
        (b"empty", Event.NONE),
    ],
)
def test_events(value: bytes, event: Event) -> None:
    assert parse_announce_query(libtorrent_query(event=value)).event is event


@pytest.mark.parametrize(
    ("value", "numwant"),
    [
        (b"0", 0),
        (b"1", 1),
        (b"50", 50),
        (b"200", 200),
        (b"201", MAX_NUMWANT),
        (b"1000", MAX_NUMWANT),
        (b"9" * 40, MAX_NUMWANT),
        (b"-1", None),
        (b"-" + b"9" * 40, None),
        (b"", None),
    ],
)
def test_numwant(value: bytes, numwant: int | None) -> None:
    assert parse_announce_query(libtorrent_query(numwant=value)).numwant == numwant


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (b"0A1B2C3D", 0x0A1B2C3D),
        (b"ffffffff", 0xFFFFFFFF),
        (b"00000000", 0),
        (b"12345", 0x12345),  # digits read as hex too: the key is a token, not a number
        (b"", None),
        (b"123456789", None),  # longer than a u32
        (b"0x123", None),
        (b"-1", None),
        (b"YqMv0Tmp", None),  # Vuze-style alphanumeric keys: not a u32, ignored
        (b"%41", None),
    ],
)
def test_key(value: bytes, key: int | None) -> None:
    assert parse_announce_query(libtorrent_query(key=value)).key == key


def test_advisory_flags_never_fail() -> None:
    assert parse_announce_query(libtorrent_query(compact=b"0")).compact is False
    assert parse_announce_query(libtorrent_query(compact=b"yes")).compact is True
    assert parse_announce_query(without(libtorrent_query(), b"compact")).compact is True
    assert parse_announce_query(libtorrent_query(no_peer_id=b"0")).no_peer_id is False
    assert parse_announce_query(without(libtorrent_query(), b"no_peer_id")).no_peer_id is False


def test_trackerid() -> None:
    assert parse_announce_query(libtorrent_query(trackerid=b"n%01de")).trackerid == b"n\x01de"
    assert parse_announce_query(libtorrent_query(trackerid=b"%zz")).trackerid is None
    assert parse_announce_query(libtorrent_query(trackerid=b"x" * 65)).trackerid is None
    assert parse_announce_query(libtorrent_query(trackerid=b"x" * 64)).trackerid == b"x" * 64


def test_claimed_addresses_are_ignored() -> None:
    base = parse_announce_query(libtorrent_query())
    spoofed = libtorrent_query(ip=b"10.0.0.1", ipv4=b"10.0.0.2", ipv6=b"%3A%3A1")
    assert parse_announce_query(spoofed) == base
    assert not hasattr(base, "ip")


def test_repeats_and_noise() -> None:
    base = parse_announce_query(libtorrent_query())
    assert parse_announce_query(libtorrent_query() + b"&port=7000").port == 7000
    assert parse_announce_query(b"&&" + libtorrent_query() + b"&&flag&x=y=z&") == base


BAD_FIELDS = [
    (without(libtorrent_query(), b"info_hash"), "missing info_hash"),
    (libtorrent_query(info_hash=b"abc"), "info_hash must be 20 bytes"),
    (libtorrent_query(info_hash=lt_escape(INFO_HASH) + b"%00"), "info_hash must be 20 bytes"),
    (libtorrent_query(info_hash=b"%zz" + b"a" * 19), "info_hash has an invalid percent-escape"),
    (libtorrent_query(info_hash=b"a" * 19 + b"%"), "info_hash has an invalid percent-escape"),
    (libtorrent_query(info_hash=b"a" * 19 + b"%4"), "info_hash has an invalid percent-escape"),
    (libtorrent_query() + b"&info_hash=" + lt_escape(INFO_HASH), "multiple info_hash"),
    (without(libtorrent_query(), b"peer_id"), "missing peer_id"),
    (libtorrent_query(peer_id=b"-LT2110-"), "peer_id must be 20 bytes"),
    (libtorrent_query(peer_id=b"%G0" * 20), "peer_id has an invalid percent-escape"),
    (without(libtorrent_query(), b"port"), "missing port"),
    (libtorrent_query(port=b"0"), "invalid port"),
    (libtorrent_query(port=b"65536"), "invalid port"),
    (libtorrent_query(port=b"-1"), "invalid port"),
    (libtorrent_query(port=b"+80"), "invalid port"),
    (libtorrent_query(port=b"6_881"), "invalid port"),
    (libtorrent_query(port=b""), "invalid port"),
    (libtorrent_query(port=b"000006881"), "invalid port"),
    (libtorrent_query(port=b"\xd9\xa1"), "invalid port"),  # Arabic-Indic digit one
    (libtorrent_query(uploaded=b"-1"), "invalid uploaded"),
    (libtorrent_query(uploaded=b"1e3"), "invalid uploaded"),
    (libtorrent_query(downloaded=b" 1"), "invalid downloaded"),
    (libtorrent_query(left=b"-1"), "invalid left"),
    (libtorrent_query(left=b"9223372036854775808"), "invalid left"),  # 2**63
    (libtorrent_query(left=b"1" * 5000), "invalid left"),
    (libtorrent_query(event=b"start"), "invalid event"),
    (libtorrent_query(event=b"STARTED"), "invalid event"),
    (libtorrent_query(numwant=b"lots"), "invalid numwant"),
    (libtorrent_query(numwant=b"-"), "invalid numwant"),
    (libtorrent_query(numwant=b"1.5"), "invalid numwant"),
]


@pytest.mark.parametrize(("query", "reason"), BAD_FIELDS)
def test_failure_reasons(query: bytes, reason: str) -> None:
    with pytest.raises(TrackerRequestError) as caught:
        parse_announce_query(query)
    assert caught.value.reason == reason
    assert isinstance(caught.value, InvalidInput)
    reply = bdecode(encode_failure(caught.value.reason))
    assert reply == {b"failure reason": reason.encode()}


def test_good_request_still_parses_after_bad_ones() -> None:
    for query, _ in BAD_FIELDS:
        with pytest.raises(TrackerRequestError):
            parse_announce_query(query)
    assert parse_announce_query(libtorrent_query()).port == 6881


def test_max_counter_accepted() -> None:
    request = parse_announce_query(libtorrent_query(uploaded=b"9223372036854775807"))
    assert request.uploaded == 2**63 - 1


# --- replies --------------------------------------------------------------------------------

PEERS4 = bytes([10, 0, 0, 1, 0x1A, 0xE1, 192, 168, 1, 2, 0xC8, 0xD5])  # 10.0.0.1:6881, :51413
PEERS6 = bytes.fromhex("20010db8000000000000000000000001") + b"\x1a\xe1"  # [2001:db8::1]:6881


def test_announce_reply_golden_compact_v4() -> None:
    reply = encode_announce_reply(
        interval=1800, min_interval=900, complete=3, incomplete=7, peers4=PEERS4, peers6=b""
    )
    assert reply == (
        b"d8:completei3e10:incompletei7e8:intervali1800e12:min intervali900e"
        b"5:peers12:" + PEERS4 + b"e"
    )
    assert reply == bencode(
        {
            b"complete": 3,
            b"incomplete": 7,
            b"interval": 1800,
            b"min interval": 900,
            b"peers": PEERS4,
        }
    )


def test_announce_reply_with_everything() -> None:
    reply = encode_announce_reply(
        interval=1800,
        min_interval=900,
        complete=0,
        incomplete=1,
        peers4=b"",
        peers6=PEERS6,
        tracker_id=b"node-7",
        warning="clock skew ≥ 5 s",
    )
    expected = {
        b"complete": 0,
        b"incomplete": 1,
        b"interval": 1800,
        b"min interval": 900,
        b"peers": b"",
        b"peers6": PEERS6,
        b"tracker id": b"node-7",
        b"warning message": "clock skew ≥ 5 s".encode(),
    }
    assert reply == bencode(expected)  # byte for byte: keys sorted, lengths in bytes
    assert bdecode(reply) == expected


def test_announce_reply_non_compact_peer_list() -> None:
    peer_list = [(b"-qB4650-abcdefghijkl", "10.0.0.1", 6881), (b"", "2001:db8::1", 51413)]
    reply = encode_announce_reply(
        interval=60,
        min_interval=30,
        complete=1,
        incomplete=1,
        peers4=b"ignored",
        peers6=b"",
        compact=False,
        peer_list=peer_list,
    )
    decoded = bdecode(reply)
    assert decoded[b"peers"] == [
        {b"ip": b"10.0.0.1", b"peer id": b"-qB4650-abcdefghijkl", b"port": 6881},
        {b"ip": b"2001:db8::1", b"port": 51413},  # unknown peer id: left out
    ]
    assert b"peers6" not in decoded
    assert reply == bencode(decoded)

    hidden = encode_announce_reply(
        interval=60,
        min_interval=30,
        complete=1,
        incomplete=1,
        peers4=b"",
        peers6=b"",
        compact=False,
        peer_list=peer_list,
        no_peer_id=True,
    )
    assert all(b"peer id" not in peer for peer in bdecode(hidden)[b"peers"])


def test_announce_reply_non_compact_from_compact_entries() -> None:
    reply = encode_announce_reply(
        interval=60,
        min_interval=30,
        complete=2,
        incomplete=1,
        peers4=PEERS4,
        peers6=PEERS6,
        compact=False,
    )
    assert bdecode(reply)[b"peers"] == [
        {b"ip": b"10.0.0.1", b"port": 6881},
        {b"ip": b"192.168.1.2", b"port": 51413},
        {b"ip": b"2001:db8::1", b"port": 6881},
    ]
    empty = encode_announce_reply(
        interval=60,
        min_interval=30,
        complete=0,
        incomplete=0,
        peers4=b"",
        peers6=b"",
        compact=False,
    )
    assert bdecode(empty)[b"peers"] == []


@given(
    ints=st.tuples(*(st.integers(min_value=-(2**63), max_value=2**63) for _ in range(4))),
    n4=st.integers(min_value=0, max_value=200),
    n6=st.integers(min_value=0, max_value=66),
    tracker_id=st.none() | st.binary(max_size=30),
    warning=st.none() | st.text(max_size=30),
)
def test_announce_reply_matches_fastbencode(
    ints: tuple[int, int, int, int],
    n4: int,
    n6: int,
    tracker_id: bytes | None,
    warning: str | None,
) -> None:
    interval, min_interval, complete, incomplete = ints
    peers4, peers6 = b"\x01" * (6 * n4), b"\x02" * (18 * n6)
    reply = encode_announce_reply(
        interval=interval,
        min_interval=min_interval,
        complete=complete,
        incomplete=incomplete,
        peers4=peers4,
        peers6=peers6,
        tracker_id=tracker_id,
        warning=warning,
    )
    expected: dict[bytes, object] = {
        b"complete": complete,
        b"incomplete": incomplete,
        b"interval": interval,
        b"min interval": min_interval,
        b"peers": peers4,
    }
    if peers6:
        expected[b"peers6"] = peers6
    if tracker_id is not None:
        expected[b"tracker id"] = tracker_id
    if warning is not None:
        expected[b"warning message"] = warning.encode()
    assert reply == bencode(expected)
    assert bdecode(reply) == expected


def test_scrape_reply_golden() -> None:
    a, b = b"\xaa" * 20, b"\x11" * 20
    reply = encode_scrape_reply({a: (5, 10, 2), b: (0, 0, 1)})
    assert reply == (
        b"d5:filesd"
        b"20:" + b + b"d8:completei0e10:downloadedi0e10:incompletei1ee"
        b"20:" + a + b"d8:completei5e10:downloadedi10e10:incompletei2ee"
        b"ee"
    )
    decoded = bdecode(reply)
    assert decoded == {
        b"files": {
            a: {b"complete": 5, b"downloaded": 10, b"incomplete": 2},
            b: {b"complete": 0, b"downloaded": 0, b"incomplete": 1},
        }
    }
    assert reply == bencode(decoded)
    assert encode_scrape_reply({}) == b"d5:filesdee"


def test_failure_golden() -> None:
    assert encode_failure("missing info_hash") == b"d14:failure reason17:missing info_hashe"
    assert bdecode(encode_failure("é")) == {b"failure reason": "é".encode()}


# --- scrape queries -----------------------------------------------------------------------


def hashes(n: int) -> list[bytes]:
    return [i.to_bytes(2, "big") * 10 for i in range(n)]


def scrape_query(items: list[bytes]) -> bytes:
    return b"&".join(b"info_hash=" + lt_escape(h) for h in items)


def test_scrape_64_hashes() -> None:
    items = hashes(MAX_SCRAPE_HASHES)
    assert parse_scrape_query(scrape_query(items)) == ScrapeRequest(items)


def test_scrape_65_hashes_fails() -> None:
    with pytest.raises(TrackerRequestError) as caught:
        parse_scrape_query(scrape_query(hashes(MAX_SCRAPE_HASHES + 1)))
    assert caught.value.reason == "too many info_hash (max 64)"
    assert bdecode(encode_failure(caught.value.reason)) == {
        b"failure reason": b"too many info_hash (max 64)"
    }


def test_scrape_full_dedup_and_noise() -> None:
    assert parse_scrape_query(b"") == ScrapeRequest([])
    assert parse_scrape_query(b"passkey=x") == ScrapeRequest([])
    a, b = hashes(2)
    query = scrape_query([a, b, a]) + b"&peer_id=x&info_hashx=y"
    assert parse_scrape_query(query).info_hashes == [a, b]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"info_hash=abc", "info_hash must be 20 bytes"),
        (b"info_hash=", "info_hash must be 20 bytes"),
        (b"info_hash=%x1" + b"a" * 19, "info_hash has an invalid percent-escape"),
    ],
)
def test_scrape_failure_reasons(query: bytes, reason: str) -> None:
    with pytest.raises(TrackerRequestError) as caught:
        parse_scrape_query(query)
    assert caught.value.reason == reason


# --- properties ---------------------------------------------------------------------------


@given(info_hash=st.binary(min_size=20, max_size=20), peer_id=st.binary(min_size=20, max_size=20))
def test_any_binary_round_trips(info_hash: bytes, peer_id: bytes) -> None:
    query = libtorrent_query(info_hash=lt_escape(info_hash), peer_id=lt_escape(peer_id))
    request = parse_announce_query(query)
    assert (request.info_hash, request.peer_id) == (info_hash, peer_id)


QUERY_NAMES = [
    b"info_hash",
    b"peer_id",
    b"port",
    b"uploaded",
    b"downloaded",
    b"left",
    b"event",
    b"numwant",
    b"compact",
    b"no_peer_id",
    b"key",
    b"trackerid",
    b"ip",
]
query_values = st.binary(max_size=70) | st.sampled_from(
    [b"", b"0", b"1", b"-1", b"65535", b"started", lt_escape(INFO_HASH), b"%", b"%4", b"+"]
)
structured_queries = st.lists(
    st.tuples(st.sampled_from(QUERY_NAMES) | st.binary(max_size=5), query_values), max_size=16
).map(lambda pairs: b"&".join(name + b"=" + value for name, value in pairs))


@given(st.binary(max_size=400) | structured_queries)
def test_fuzz_announce_parses_or_raises_tracker_error(query: bytes) -> None:
    try:
        request = parse_announce_query(query)
    except TrackerRequestError as error:
        assert error.reason
        return
    assert len(request.info_hash) == 20 and len(request.peer_id) == 20
    assert 1 <= request.port <= 65535
    assert 0 <= request.numwant <= MAX_NUMWANT
    assert min(request.uploaded, request.downloaded, request.left) >= 0


@given(st.binary(max_size=400) | structured_queries)
def test_fuzz_scrape_parses_or_raises_tracker_error(query: bytes) -> None:
    try:
        request = parse_scrape_query(query)
    except TrackerRequestError as error:
        assert error.reason
        return
    assert len(request.info_hashes) <= MAX_SCRAPE_HASHES
    assert all(len(h) == 20 for h in request.info_hashes)


# -- the two percent-decoders agree (the C fast path and the loop) -----------------------

_ESCAPE_ALPHABET = st.sampled_from(list(b"%=_ \t\r\n09afAFgz+&")) | st.integers(0, 255)


def _decode(fn: object, value: bytes) -> tuple[str, bytes | str]:
    try:
        return "ok", fn(value, "v")  # type: ignore[operator]
    except TrackerRequestError as e:
        return "error", e.reason


@given(st.lists(_ESCAPE_ALPHABET, max_size=40).map(bytes))
def test_fast_unescape_agrees_with_the_loop(value: bytes) -> None:
    from chisme.tracker.http import _unescape, _unescape_slow  # noqa: PLC0415

    if b"%" in value:
        assert _decode(_unescape, value) == _decode(_unescape_slow, value)
    else:
        assert _unescape(value, "v") == value
