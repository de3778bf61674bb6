"""wire.v1: the seed's JSON messages, byte for byte (docs/WIRE.md), validated, and never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chisme.core.keys import parse_addr
from chisme.core.records import MAX_PEER_ID_BYTES, Provider, Record
from chisme.errors import MessageTooLarge, WireError
from chisme.wire.framing import NOT_AN_OBJECT, NOT_JSON, TRUNCATED
from chisme.wire.rfc3339 import GO_ZERO_NS, MAX_NS, MIN_NS, parse_rfc3339
from chisme.wire.v1 import (
    NOT_AN_ARRAY,
    UNKNOWN_TYPE,
    Announce,
    Gossip,
    Lookup,
    Members,
    Message,
    ReplyReader,
    V1Reader,
    decode_message,
    decode_providers,
    encode_error,
    encode_message,
    encode_providers,
    is_http,
)

H = "3f2a" * 10  # a valid info hash (docs/WIRE.md abbreviates it as "3f2a…")
ADDR = parse_addr("10.0.0.5:6881")
T_NANO = 1_795_628_171_123_456_789  # 2026-11-25T17:36:11.123456789Z
T_HALF = 1_795_628_171_500_000_000  # 2026-11-25T17:36:11.5Z
GO_ZERO = "0001-01-01T00:00:00Z"

# The three example lines of docs/WIRE.md, verbatim (so info_hash is "3f2a…", as printed there).
WIRE_GOSSIP = (
    '{"type":"gossip","info_hash":"3f2a…","providers":[{"addr":"10.0.0.5:6881",'
    '"last_seen":"2026-11-25T17:36:11.123456789Z"}]}'
)
WIRE_ANNOUNCE = (
    '{"type":"announce","info_hash":"3f2a…","providers":[{"addr":"10.0.0.5:6881",'
    '"peer_id":"-qB4650-abc","last_seen":"2026-11-25T17:36:11.5Z"}]}'
)
WIRE_LOOKUP = '{"type":"lookup","info_hash":"3f2a…","limit":50}'

WIRE_EXAMPLES: list[tuple[str, Message]] = [
    (WIRE_GOSSIP, Gossip("3f2a…", [Record(ADDR, T_NANO)])),
    (WIRE_ANNOUNCE, Announce("3f2a…", [Record(ADDR, T_HALF, b"-qB4650-abc")])),
    (WIRE_LOOKUP, Lookup("3f2a…", 50)),
]


def with_hash(message: Message, info_hash: str) -> Message:
    if isinstance(message, Lookup):
        return Lookup(info_hash, message.limit)
    return type(message)(info_hash, message.records)


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def outcome(chunks: list[bytes], max_bytes: int = 1 << 20) -> object:
    """What a V1Reader makes of these chunks then EOF: a message or (error type, reason)."""
    reader = V1Reader(max_bytes)
    try:
        for chunk in chunks:
            message = reader.feed(chunk)
            if message is not None:
                return message
        return reader.feed_eof()
    except WireError as exc:
        return (type(exc), exc.reason)


def whole(data: bytes, max_bytes: int = 1 << 20) -> object:
    try:
        return decode_message(data, max_bytes)
    except WireError as exc:
        return (type(exc), exc.reason)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def reason_of(data: bytes, max_bytes: int = 1 << 20) -> str:
    with pytest.raises(WireError) as info:
        decode_message(data, max_bytes)
    return info.value.reason


# --- golden bytes (docs/WIRE.md) ------------------------------------------------------------------


def test_example_times_are_what_they_say() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    seconds = int((datetime(2026, 11, 25, 17, 36, 11, tzinfo=UTC) - epoch).total_seconds())
    assert seconds * 10**9 + 123_456_789 == T_NANO
    assert seconds * 10**9 + 500_000_000 == T_HALF


@pytest.mark.parametrize(("line", "message"), WIRE_EXAMPLES)
def test_encode_wire_md_examples_byte_for_byte(line: str, message: Message) -> None:
    assert encode_message(message) == line.encode() + b"\n"


@pytest.mark.parametrize(("line", "message"), WIRE_EXAMPLES)
def test_decode_wire_md_examples(line: str, message: Message) -> None:
    data = line.replace("3f2a…", H).encode()
    expected = with_hash(message, H)
    assert decode_message(data) == expected
    assert decode_message(data + b"\n") == expected
    assert outcome(bytewise(data)) == expected
    assert encode_message(expected) == data + b"\n"


def test_the_abbreviated_hash_of_wire_md_is_not_a_valid_key() -> None:
    assert reason_of(WIRE_LOOKUP.encode()).startswith("info_hash must be")


def test_omitempty() -> None:
    assert encode_message(Gossip(H, [])) == b'{"type":"gossip","info_hash":"%s"}\n' % H.encode()
    assert encode_message(Announce(H, [])) == b'{"type":"announce","info_hash":"%s"}\n' % H.encode()
    assert encode_message(Lookup(H, 0)) == b'{"type":"lookup","info_hash":"%s"}\n' % H.encode()
    # Go's omitempty only drops 0: a negative limit is written
    assert encode_message(Lookup(H, -1)).endswith(b'"limit":-1}\n')
    # peer_id is omitempty, last_seen is not (Go's omitempty never omits a struct)
    line = encode_message(Gossip(H, [Record(ADDR, 0)]))
    assert line.endswith(
        b'"providers":[{"addr":"10.0.0.5:6881","last_seen":"%s"}]}\n' % b"0001-01-01T00:00:00Z"
    )


def test_unknown_time_is_go_zero_time_both_ways() -> None:
    assert GO_ZERO.encode() in encode_message(Gossip(H, [Record(ADDR, 0)]))
    for last_seen in (GO_ZERO, "0001-01-01T01:00:00+01:00", None):
        provider: dict[str, Any] = {"addr": "10.0.0.5:6881", "last_seen": last_seen}
        msg = decode_message(dumps({"type": "gossip", "info_hash": H, "providers": [provider]}))
        assert msg == Gossip(H, [Record(ADDR, 0)])
    missing = dumps({"type": "gossip", "info_hash": H, "providers": [{"addr": "10.0.0.5:6881"}]})
    assert decode_message(missing) == Gossip(H, [Record(ADDR, 0)])


def test_offsets_are_read_as_the_same_instant_and_written_in_utc() -> None:
    data = dumps(
        {
            "type": "gossip",
            "info_hash": H,
            "providers": [{"addr": "10.0.0.5:6881", "last_seen": "2026-11-25T19:36:11.5+02:00"}],
        }
    )
    msg = decode_message(data)
    assert msg == Gossip(H, [Record(ADDR, T_HALF)])
    assert b'"last_seen":"2026-11-25T17:36:11.5Z"' in encode_message(msg)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (T_NANO, "2026-11-25T17:36:11.123456789Z"),
        (T_HALF, "2026-11-25T17:36:11.5Z"),
        (T_NANO - 123_456_789, "2026-11-25T17:36:11Z"),
        (T_NANO - 123_456_789 + 120_000, "2026-11-25T17:36:11.00012Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (GO_ZERO_NS, GO_ZERO),
        (MAX_NS + 10**18, "9999-12-31T23:59:59.999999999Z"),  # what Go can marshal
        (MIN_NS - 1, "0000-01-01T00:00:00Z"),
    ],
)
def test_last_seen_is_written_as_go_marshals_it(ns: int, text: str) -> None:
    assert encode_providers([Provider("a:1", ns)]) == (
        b'[{"addr":"a:1","last_seen":"%s"}]\n' % text.encode()
    )


def test_go_string_escaping() -> None:
    peer_id = '<a href="x">&\u2028\u2029\x7f\\/é😀\b\f\n\r\t\x00\x1f\x0b'
    expected = (
        b'"\\u003ca href=\\"x\\"\\u003e\\u0026\\u2028\\u2029\x7f\\\\/'
        + "é😀".encode()
        + b'\\b\\f\\n\\r\\t\\u0000\\u001f\\u000b"'
    )
    assert encode_providers([Provider("a:1", 0, peer_id)]) == (
        b'[{"addr":"a:1","peer_id":' + expected + b',"last_seen":"0001-01-01T00:00:00Z"}]\n'
    )
    assert encode_error("a<b & c>d") == b'{"error":"a\\u003cb \\u0026 c\\u003ed"}\n'


def go_quote(text: str) -> bytes:
    """Reference: Go's encoding/json appendString with escapeHTML (Go 1.22+), for valid text."""
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
    short["\t"] = "\\t"
    out = []
    for ch in text:
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20 or ch in "<>&\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return ('"' + "".join(out) + '"').encode()


@settings(max_examples=300)
@given(st.text(max_size=30))
def test_strings_are_escaped_exactly_as_go_does(text: str) -> None:
    encoded = encode_providers([Provider("a:1", 0, text)])
    field = b'"peer_id":' + go_quote(text) + b"," if text else b""
    assert encoded == b'[{"addr":"a:1",' + field + b'"last_seen":"0001-01-01T00:00:00Z"}]\n'
    assert json.loads(encoded) == [
        {"addr": "a:1", "last_seen": GO_ZERO} | ({"peer_id": text} if text else {})
    ]


def test_record_fields_are_written_as_text() -> None:
    records = [
        Record(parse_addr("[2001:DB8::1]:6881"), T_HALF, b"-TR3000-abc"),
        Record(parse_addr("Tracker.Example.org:80"), T_HALF),
        Record(parse_addr("[::ffff:10.0.0.5]:6881"), T_HALF),
        Record(ADDR, T_HALF, b"\xff\xfe-raw", flags=1, origin=7),  # not UTF-8: Latin-1 text
    ]
    obj = json.loads(encode_message(Announce(H, records)))
    assert [p["addr"] for p in obj["providers"]] == [
        "[2001:db8::1]:6881",
        "tracker.example.org:80",
        "10.0.0.5:6881",
        "10.0.0.5:6881",
    ]
    assert obj["providers"][0]["peer_id"] == "-TR3000-abc"
    assert obj["providers"][3]["peer_id"] == "ÿþ-raw"
    # the seeder flag is chisme's extension; origin and version stay off the v1 wire
    assert list(obj["providers"][3]) == ["addr", "peer_id", "last_seen", "seeder"]
    assert list(obj["providers"][1]) == ["addr", "last_seen"]


def test_encode_providers_golden() -> None:
    assert encode_providers([]) == b"[]\n"
    assert encode_providers(
        [Provider("10.0.0.5:6881", T_NANO, "-qB4650-abc", seeder=True), Provider("[::1]:1", 0)]
    ) == (
        b'[{"addr":"10.0.0.5:6881","peer_id":"-qB4650-abc",'
        b'"last_seen":"2026-11-25T17:36:11.123456789Z","seeder":true},'
        b'{"addr":"[::1]:1","last_seen":"0001-01-01T00:00:00Z"}]\n'
    )


def test_encode_error_golden() -> None:
    assert encode_error("unknown message type") == b'{"error":"unknown message type"}\n'
    assert encode_error('say "hi"\n') == b'{"error":"say \\"hi\\"\\n"}\n'


# --- decoding what Go would accept ----------------------------------------------------------------


def test_unknown_fields_are_ignored() -> None:
    data = dumps(
        {
            "version": 2,
            "type": "gossip",
            "extra": {"a": [1, {"b": None}], "c": "}]"},
            "info_hash": H,
            "providers": [
                {"seeding": True, "addr": "10.0.0.5:6881", "x": [[], {}], "peer_id": "p"},
            ],
            "limit": 3,
        }
    )
    assert decode_message(data) == Gossip(H, [Record(ADDR, 0, b"p")])


def test_null_is_the_zero_value_as_in_go() -> None:
    base: dict[str, object] = {"type": "gossip", "info_hash": H}
    empty: list[object] = []
    for providers in (None, empty):
        assert decode_message(dumps(base | {"providers": providers})) == Gossip(H, [])
    assert decode_message(dumps(base)) == Gossip(H, [])
    provider = {"addr": "10.0.0.5:6881", "peer_id": None, "last_seen": None}
    assert decode_message(dumps(base | {"providers": [provider]})) == Gossip(H, [Record(ADDR, 0)])
    lookup = {"type": "lookup", "info_hash": H, "limit": None}
    assert decode_message(dumps(lookup)) == Lookup(H, 0)


@pytest.mark.parametrize("kind", ["announce", "gossip", "lookup"])
@pytest.mark.parametrize("digest", ["3F2A" * 10, "3f2A" * 10, "AB" * 32])  # SHA-1, SHA-256 hex
def test_hex_info_hashes_decode_in_lower_case(kind: str, digest: str) -> None:
    msg = decode_message(dumps({"type": kind, "info_hash": digest}))
    assert not isinstance(msg, Members)
    assert msg.info_hash == digest.lower()


@pytest.mark.parametrize("key", ["Movie-2026.MKV", "3F2A" * 9 + "3F2G", "3F2A" * 10 + "3"])
def test_other_info_hashes_decode_byte_for_byte(key: str) -> None:
    msg = decode_message(dumps({"type": "lookup", "info_hash": key}))
    assert msg == Lookup(key, 0)


def test_duplicate_keys_last_wins_as_in_go() -> None:
    data = b'{"type":"gossip","info_hash":"x","type":"lookup","info_hash":"%s"}' % H.encode()
    assert decode_message(data) == Lookup(H, 0)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(0, 0), (50, 50), (-1, 0), (-(2**63), 0), (2**63 - 1, 2**63 - 1), (-0, 0)],
)
def test_limit(limit: int, expected: int) -> None:
    assert decode_message(dumps({"type": "lookup", "info_hash": H, "limit": limit})) == Lookup(
        H, expected
    )


def test_announce_and_lookup_tolerate_each_others_fields() -> None:
    announce = {"type": "announce", "info_hash": H, "limit": 5, "providers": []}
    assert decode_message(dumps(announce)) == Announce(H, [])
    provider = {"addr": "10.0.0.5:6881", "last_seen": GO_ZERO}
    lookup = {"type": "lookup", "info_hash": H, "providers": [provider]}
    assert decode_message(dumps(lookup)) == Lookup(H, 0)


def test_invalid_utf8_becomes_replacement_characters_as_in_go() -> None:
    data = (
        b'{"type":"gossip","info_hash":"%s","junk":"\xc3","providers":'
        b'[{"addr":"10.0.0.5:6881","peer_id":"a\xffb\xe2\x80c"}]}'
    ) % H.encode()
    assert decode_message(data) == Gossip(H, [Record(ADDR, 0, "a\ufffdb\ufffd\ufffdc".encode())])


def test_peer_id_limit_counts_utf8_bytes() -> None:
    def gossip(peer_id: str) -> bytes:
        provider = {"addr": "10.0.0.5:6881", "peer_id": peer_id}
        return dumps({"type": "gossip", "info_hash": H, "providers": [provider]})

    for ok in ("x" * MAX_PEER_ID_BYTES, "é" * (MAX_PEER_ID_BYTES // 2)):
        assert decode_message(gossip(ok)) == Gossip(H, [Record(ADDR, 0, ok.encode())])
    for bad in ("x" * (MAX_PEER_ID_BYTES + 1), "é" * (MAX_PEER_ID_BYTES // 2 + 1)):
        assert reason_of(gossip(bad)) == "providers[0].peer_id: longer than 128 bytes"


def test_bytes_after_the_message_are_ignored_as_go_does() -> None:
    data = WIRE_LOOKUP.replace("3f2a…", H).encode()
    assert decode_message(data + b"\n{garbage") == Lookup(H, 50)


# --- bad input ---------------------------------------------------------------------------------


def gossip_with(**provider: object) -> bytes:
    return dumps({"type": "gossip", "info_hash": H, "providers": [provider]})


def message_with(**fields: object) -> bytes:
    return dumps({"type": "lookup", "info_hash": H} | fields)


BAD_INPUT: list[tuple[bytes, str]] = [
    # not JSON, or not one object
    (b'{"type":}', NOT_JSON),
    (b'{"type":"lookup",}', NOT_JSON),
    (b'{"type":"lookup" "info_hash":"x"}', NOT_JSON),
    (b"{'type':'lookup'}", NOT_JSON),
    (b'{"type":"look\nup"}', NOT_JSON),  # raw control character in a string
    (b'{"type":"\\ud800"}', NOT_JSON),  # lone surrogate (Go would read U+FFFD)
    (b'{"type":"lookup","info_hash":"%s","limit":01}' % H.encode(), NOT_JSON),
    (b"{]", NOT_JSON),
    (b"", TRUNCATED),
    (b"   \n", TRUNCATED),
    (b'{"type":"lookup","info_hash":"%s"' % H.encode(), TRUNCATED),
    (b"[]", NOT_AN_OBJECT),
    (b'[{"type":"lookup"}]', NOT_AN_OBJECT),
    (b'"lookup"', NOT_AN_OBJECT),
    (b"null", NOT_AN_OBJECT),
    (b"42", NOT_AN_OBJECT),
    (b"\xef\xbb\xbf{}", NOT_AN_OBJECT),
    (b"GET / HTTP/1.1\r\n\r\n", NOT_AN_OBJECT),
    (b'{"x":' + b"[" * 64 + b"]" * 64 + b"}", "message nests deeper than 64 levels"),
    # wrong JSON types, every field
    (message_with(type=1), "type: expected a string"),
    (message_with(type=True), "type: expected a string"),
    (message_with(type=["lookup"]), "type: expected a string"),
    (message_with(type={"a": 1}), "type: expected a string"),
    (message_with(info_hash=7), "info_hash: expected a string"),
    (message_with(info_hash=[H]), "info_hash: expected a string"),
    (message_with(providers={}), "providers: expected an array"),
    (message_with(providers="x"), "providers: expected an array"),
    (message_with(providers=1), "providers: expected an array"),
    (message_with(providers=[1]), "providers[0]: expected an object"),
    (message_with(providers=["10.0.0.5:6881"]), "providers[0]: expected an object"),
    (message_with(providers=[[]]), "providers[0]: expected an object"),
    (message_with(limit="5"), "limit: expected an integer"),
    (message_with(limit=1.5), "limit: expected an integer"),
    (message_with(limit=50.0), "limit: expected an integer"),
    (message_with(limit=True), "limit: expected an integer"),
    (message_with(limit=[]), "limit: expected an integer"),
    (message_with(limit=2**63), "limit: expected an integer"),
    (message_with(limit=-(2**63) - 1), "limit: expected an integer"),
    (message_with(limit=10**30), "limit: expected an integer"),
    (gossip_with(addr=6881), "providers[0].addr: expected a string"),
    (gossip_with(addr="10.0.0.5:6881", peer_id=1), "providers[0].peer_id: expected a string"),
    (gossip_with(addr="10.0.0.5:6881", peer_id={}), "providers[0].peer_id: expected a string"),
    (gossip_with(addr="10.0.0.5:6881", last_seen=0), "providers[0].last_seen: expected a string"),
    (gossip_with(addr="10.0.0.5:6881", last_seen=[]), "providers[0].last_seen: expected a string"),
    # unknown type
    (message_with(type="ping"), UNKNOWN_TYPE),
    (message_with(type="Lookup"), UNKNOWN_TYPE),
    (message_with(type=""), UNKNOWN_TYPE),
    (message_with(type=None), UNKNOWN_TYPE),
    (dumps({"info_hash": H}), UNKNOWN_TYPE),
    (b"{}", UNKNOWN_TYPE),
    (b'{"error":"x"}', UNKNOWN_TYPE),
    # info hash
    *(
        (
            message_with(info_hash=value),
            "info_hash must be 1-128 printable ASCII characters without spaces",
        )
        for value in ("", None, "a b", "x" * 129, "é", "3f2a…", "a\tb")
    ),
    (
        dumps({"type": "lookup"}),
        "info_hash must be 1-128 printable ASCII characters without spaces",
    ),
    # addresses
    (gossip_with(addr=""), "providers[0].addr: addr must be host:port"),
    (gossip_with(addr=None), "providers[0].addr: addr must be host:port"),
    (gossip_with(peer_id="p"), "providers[0].addr: addr must be host:port"),
    (message_with(providers=[None]), "providers[0].addr: addr must be host:port"),
    (gossip_with(addr="10.0.0.5"), "providers[0].addr: addr must be host:port"),
    (gossip_with(addr=":6881"), "providers[0].addr: addr must be host:port"),
    (gossip_with(addr="10.0.0.5:0"), "providers[0].addr: port must be an integer in 1-65535"),
    (gossip_with(addr="10.0.0.5:65536"), "providers[0].addr: port must be an integer in 1-65535"),
    (gossip_with(addr="10.0.0.5:http"), "providers[0].addr: port must be an integer in 1-65535"),
    (gossip_with(addr="10.0.0.5:"), "providers[0].addr: port must be an integer in 1-65535"),
    (
        gossip_with(addr="2001:db8::1:6881"),
        "providers[0].addr: addr with an IPv6 host needs brackets: [host]:port",
    ),
    (
        gossip_with(addr="[2001:db8::1:6881"),
        "providers[0].addr: addr has an unclosed '[' around its IPv6 host",
    ),
    (gossip_with(addr="[2001:db8::zz]:6881"), "providers[0].addr: addr has an invalid IPv6 host"),
    (
        gossip_with(addr="bad_host!:6881"),
        "providers[0].addr: addr host must be an IPv4 address, [IPv6] or a DNS name",
    ),
    (
        dumps(
            {
                "type": "gossip",
                "info_hash": H,
                "providers": [{"addr": "10.0.0.5:6881"}, {"addr": "10.0.0.6"}],
            }
        ),
        "providers[1].addr: addr must be host:port",
    ),
    # times
    *(
        (
            gossip_with(addr="10.0.0.5:6881", last_seen=value),
            "providers[0].last_seen: last_seen is not an RFC 3339 time",
        )
        for value in ("", "yesterday", "2026-11-25 17:36:11Z", "2026-11-25T17:36:11", "1795628171")
    ),
]


@pytest.mark.parametrize(("data", "reason"), BAD_INPUT)
def test_bad_input_gets_a_stable_reason(data: bytes, reason: str) -> None:
    assert reason_of(data) == reason
    assert outcome(bytewise(data)) == (WireError, reason)


def test_oversized_message() -> None:
    data = dumps({"type": "lookup", "info_hash": H, "pad": "x" * 100})
    with pytest.raises(MessageTooLarge) as info:
        decode_message(data, max_bytes=64)
    assert info.value.reason == "message exceeds 64 bytes"
    assert decode_message(data, max_bytes=len(data)) == Lookup(H, 0)
    reader = V1Reader(64)
    assert reader.feed(data[:63]) is None
    with pytest.raises(MessageTooLarge):
        reader.feed(data[63:64])


# --- the sans-I/O readers -----------------------------------------------------------------------


def test_reader_returns_at_the_closing_brace_without_newline_or_eof() -> None:
    data = WIRE_LOOKUP.replace("3f2a…", H).encode()
    reader = V1Reader()
    for byte in bytewise(data[:-1]):
        assert reader.feed(byte) is None
    assert reader.feed(data[-1:]) == Lookup(H, 50)
    assert reader.feed_eof() == Lookup(H, 50)
    with pytest.raises(RuntimeError):
        reader.feed(b"\n")


def test_reader_eof_before_complete() -> None:
    reader = V1Reader()
    assert reader.feed(b'{"type":"lookup",') is None
    with pytest.raises(WireError) as info:
        reader.feed_eof()
    assert info.value.reason == TRUNCATED


def test_reader_stays_failed() -> None:
    reader = V1Reader()
    with pytest.raises(WireError) as first:
        reader.feed(b'{"type":"ping"}')
    with pytest.raises(WireError) as again:
        reader.feed(b"{}")
    assert again.value is first.value
    with pytest.raises(WireError) as at_eof:
        reader.feed_eof()
    assert at_eof.value is first.value


def test_reply_reader() -> None:
    reply = encode_providers([Provider("10.0.0.5:6881", T_NANO, "p"), Provider("[::1]:9", 0)])
    assert reply.endswith(b"]\n")
    reader = ReplyReader()
    for byte in bytewise(reply[:-2]):
        assert reader.feed(byte) is None
    expected = [Record(ADDR, T_NANO, b"p"), Record(parse_addr("[::1]:9"), 0)]
    assert reader.feed(b"]") == expected  # complete at "]", before the newline
    assert reader.feed_eof() == expected
    assert decode_providers(reply) == expected
    assert decode_providers(b"[]\n") == []
    assert decode_providers(b"null\n") == []  # a Go nil slice
    assert decode_providers(b" [ ] ") == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode_error("unknown message type"), "peer said: unknown message type"),
        (b'{"error":"' + b"x" * 500 + b'"}', "peer said: " + "x" * 200),
        (b'{"other":1}', NOT_AN_ARRAY),
        (b'{"error":null}', NOT_AN_ARRAY),
        (b'{"error":5}', "error: expected a string"),
        (b"[1]", "providers[0]: expected an object"),
        (b'[{"addr":5}]', "providers[0].addr: expected a string"),
        (b'[{"addr":"10.0.0.5:6881"},{"addr":""}]', "providers[1].addr: addr must be host:port"),
        (
            b'[{"addr":"a:1","last_seen":"now"}]',
            "providers[0].last_seen: last_seen is not an RFC 3339 time",
        ),
        (b"", TRUNCATED),
        (b"nul", TRUNCATED),
        (b"[", TRUNCATED),
        (b"true", NOT_AN_OBJECT),
        (b"[}", NOT_JSON),
    ],
)
def test_bad_replies(data: bytes, reason: str) -> None:
    with pytest.raises(WireError) as info:
        decode_providers(data)
    assert info.value.reason == reason


# --- properties ---------------------------------------------------------------------------------

ports = st.integers(min_value=1, max_value=65535)
addrs = st.one_of(
    st.builds("{}:{}".format, st.ip_addresses(v=4), ports),
    st.builds("[{}]:{}".format, st.ip_addresses(v=6), ports),
    st.builds(
        "{}:{}".format,
        st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9](\.[a-z][a-z0-9]{0,8}){0,3}", fullmatch=True),
        ports,
    ),
).map(parse_addr)
times = st.one_of(
    st.just(0),
    st.integers(min_value=MIN_NS, max_value=MAX_NS).filter(lambda ns: ns != GO_ZERO_NS),
)
peer_ids = st.text(max_size=40).map(str.encode).filter(lambda b: len(b) <= MAX_PEER_ID_BYTES)
records = st.tuples(addrs, times, peer_ids).map(lambda t: Record(*t))
info_hashes = st.from_regex(r"[\x21-\x7e]{1,128}", fullmatch=True)
messages = st.one_of(
    st.builds(Announce, info_hashes, st.lists(records, max_size=5)),
    st.builds(Gossip, info_hashes, st.lists(records, max_size=5)),
    st.builds(Lookup, info_hashes, st.integers(min_value=0, max_value=2**63 - 1)),
)


@settings(max_examples=200)
@given(messages)
def test_round_trip(message: Message) -> None:
    data = encode_message(message)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1  # one line: newlines inside strings are escaped
    assert decode_message(data) == message
    assert outcome(bytewise(data)) == message
    obj = json.loads(data)
    kind = {Announce: "announce", Gossip: "gossip", Lookup: "lookup"}[type(message)]
    assert list(obj)[:2] == ["type", "info_hash"]
    assert obj["type"] == kind
    for provider in obj.get("providers", []):
        assert list(provider) in (["addr", "last_seen"], ["addr", "peer_id", "last_seen"])


@settings(max_examples=100)
@given(st.lists(st.builds(Provider, st.text(max_size=20), times, st.text(max_size=20))))
def test_providers_round_trip_through_json(providers: list[Provider]) -> None:
    obj = json.loads(encode_providers(providers))
    assert [p["addr"] for p in obj] == [p.addr for p in providers]
    assert [p.get("peer_id", "") for p in obj] == [p.peer_id for p in providers]
    assert [0 if p["last_seen"] == GO_ZERO else parse_rfc3339(p["last_seen"]) for p in obj] == [
        p.last_seen_ns for p in providers
    ]


JSONISH = [b"{", b"}", b"[", b"]", b'"', b"\\", b",", b":", b"null", b"1", b"-", b"e", b"\\u"]


def check_fuzz_invariant(data: bytes, max_bytes: int = 1 << 20) -> None:
    """h11's invariant: a message, or a WireError, never anything else; and chunking does not
    change the outcome."""
    result = whole(data, max_bytes)
    assert isinstance(result, Announce | Gossip | Lookup | Members) or (
        isinstance(result, tuple) and issubclass(result[0], WireError)
    )
    assert outcome(bytewise(data), max_bytes) == result


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(min_value=4, max_value=300))
def test_fuzz_arbitrary_bytes(data: bytes, max_bytes: int) -> None:
    check_fuzz_invariant(data, max_bytes)


@settings(max_examples=300)
@given(messages, st.data())
def test_fuzz_mutated_messages(message: Message, data: st.DataObject) -> None:
    encoded = bytearray(encode_message(message))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(encoded)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        noise = data.draw(st.binary(min_size=1, max_size=4) | st.sampled_from(JSONISH))
        if op == "insert":
            encoded[at:at] = noise
        elif op == "delete":
            del encoded[at : at + len(noise)]
        elif op == "replace":
            encoded[at : at + len(noise)] = noise
        else:
            del encoded[at:]
    check_fuzz_invariant(bytes(encoded))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
TOP_KEYS = ["type", "info_hash", "providers", "limit", "extra", "Type"]
PROVIDER_KEYS = ["addr", "peer_id", "last_seen", "extra"]


@settings(max_examples=300)
@given(messages, st.data())
def test_fuzz_wrong_json_types_anywhere(message: Message, data: st.DataObject) -> None:
    obj = json.loads(encode_message(message))
    if data.draw(st.booleans()) and obj.get("providers"):
        provider = data.draw(st.sampled_from(obj["providers"]))
        provider[data.draw(st.sampled_from(PROVIDER_KEYS))] = data.draw(json_values)
    else:
        obj[data.draw(st.sampled_from(TOP_KEYS))] = data.draw(json_values)
    check_fuzz_invariant(dumps(obj))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n", True),
        (b"\r\n  HTTP/1.0 200 OK", True),
        (bytearray(b"HTTP/"), True),
        (b"HTTP", False),  # not yet known
        (b"http/1.1 200", False),  # RFC 9112: the name is case-sensitive
        (b'{"error":"x"}', False),
        (b"", False),
    ],
)
def test_is_http(data: bytes, expected: bool) -> None:
    assert is_http(data) is expected
# --- the readers' fast path (a whole value in the first feed goes to msgspec unscanned) ----


def plain(reader: V1Reader | ReplyReader, data: bytes) -> object:
    """The reader's plain path: an empty first feed makes it scan from then on."""
    try:
        assert reader.feed(b"") is None
        value = reader.feed(data)
        return reader.feed_eof() if value is None else value
    except WireError as exc:
        return (type(exc), exc.reason)


def fast(reader: V1Reader | ReplyReader, data: bytes) -> object:
    try:
        value = reader.feed(data)
        return reader.feed_eof() if value is None else value
    except WireError as exc:
        return (type(exc), exc.reason)


def nested(depth: int) -> bytes:
    return b'{"type":"lookup","info_hash":"%s","x":%s%s}' % (
        H.encode(), b"[" * (depth - 1), b"]" * (depth - 1)
    )


EDGES = [
    encode_message(Lookup(H, 0)),
    b"  \r\n\t" + encode_message(Lookup(H, 3)) + b" \n\n",
    encode_message(Lookup(H, 0)) + b"garbage{{{",
    encode_message(Lookup(H, 0)) + encode_message(Lookup(H, 1)),
    nested(63), nested(64), nested(65), nested(66),
    b'{"type":"lookup","info_hash":"%s","x":"%s"}' % (H.encode(), b"[" * 70),  # in a string
    b'{"type":"lookup","info_hash":"\xff"}',
    b'{"type":"lookup","info_hash":"a\nb"}',
    b'{"type":"ping","info_hash":"x"}',
    b"[1,2]", b"null", b"{}", b"{", b"", b"   ",
]


@pytest.mark.parametrize("max_bytes", [4, 40, 50, 51, 52, 300, 1 << 20])
@pytest.mark.parametrize("data", EDGES)
def test_the_fast_path_equals_the_plain_path_at_the_edges(data: bytes, max_bytes: int) -> None:
    """Sizes around the cap (the lookups are 51 bytes), nesting around MAX_DEPTH, trailing
    bytes, whitespace, bad UTF-8, bad JSON: the same message or the same error either way."""
    assert fast(V1Reader(max_bytes), data) == plain(V1Reader(max_bytes), data)
    assert fast(ReplyReader(max_bytes), data) == plain(ReplyReader(max_bytes), data)


@pytest.mark.parametrize(
    "data", [b"null", b"[]", b" [] ", encode_providers([]), b'{"error":"busy"}', b'[{"addr":1}]',
             b'[{"addr":"10.0.0.5:6881","last_seen":"2026-11-25T17:36:11.5Z"}]\n']
)
def test_the_reply_fast_path_equals_the_plain_path(data: bytes) -> None:
    assert fast(ReplyReader(), data) == plain(ReplyReader(), data)


@settings(max_examples=300)
@given(messages, st.binary(max_size=8), st.integers(min_value=4, max_value=400))
def test_the_fast_path_equals_the_plain_path(message: Message, tail: bytes,
                                             max_bytes: int) -> None:
    data = encode_message(message) + tail
    assert fast(V1Reader(max_bytes), data) == plain(V1Reader(max_bytes), data)


def test_a_whole_message_in_one_feed_is_not_scanned() -> None:
    reader = V1Reader()
    assert reader.feed(encode_message(Lookup(H, 0))) == Lookup(H, 0)
    assert reader._scanner is None  # the fast path took it
