"""Keys and addresses: info hash rules, host:port parsing, compact keys and their text."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chisme.core.keys import (
    IPV4_KEY_SIZE,
    IPV6_KEY_SIZE,
    MAX_INFO_HASH_LEN,
    format_addr,
    ip_key_size,
    ip_port_key,
    is_ip_key,
    is_ipv4,
    is_ipv4_mapped,
    is_ipv6,
    parse_addr,
    parse_info_hash,
    parse_port,
    unmap_ipv4,
)
from chisme.errors import InvalidInput

# -- info hash ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["a", "3f2a" * 10, "x" * MAX_INFO_HASH_LEN, "!~", "ABC-def_123.+/", '"quoted"'],
)
def test_info_hash_accepts_printable_ascii(value: str) -> None:
    assert parse_info_hash(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (MAX_INFO_HASH_LEN + 1),
        "a b",
        " a",
        "a\t",
        "a\n",
        "a\x00",
        "a\x7f",
        "é",
        "a\u00a0b",
    ],
)
def test_info_hash_rejects_bad_text(value: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_info_hash(value)
    assert "info_hash" in e.value.reason


@pytest.mark.parametrize("value", [None, 1, b"abc", ["a"], 1.5])
def test_info_hash_rejects_wrong_type(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_info_hash(value)


def _canonical(value: str) -> str:
    """The plain rule the fast path is held to: 40- or 64-digit hex is lowered, else as is."""
    return value.lower() if re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", value) else value


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
               max_size=MAX_INFO_HASH_LEN))
def test_info_hash_accepts_every_printable_string(value: str) -> None:
    assert parse_info_hash(value) == _canonical(value)


@pytest.mark.parametrize("size", [20, 32])  # SHA-1 (BitTorrent v1), SHA-256 (v2)
@given(digest=st.binary(min_size=32, max_size=32), cases=st.lists(st.booleans(), min_size=64,
                                                                  max_size=64))
def test_hex_digests_are_lowered_whatever_their_case(
    size: int, digest: bytes, cases: list[bool]
) -> None:
    lower = digest[:size].hex()
    mixed = "".join(c.upper() if up else c for c, up in zip(lower, cases, strict=False))
    assert parse_info_hash(mixed) == parse_info_hash(lower.upper()) == lower
    assert parse_info_hash(lower) is lower  # already canonical: the same string, no copy


@pytest.mark.parametrize(
    "value",
    [
        "3F2A" * 9 + "3F2",  # 39 hex digits: not a digest
        "3F2A" * 10 + "3",  # 41
        "3F2A" * 15 + "3F2",  # 63
        "3F2A" * 16 + "3",  # 65
        "3F2A" * 9 + "3F2G",  # 40 characters, one not hex
        "Movie-2026.MKV",
        "ABCDEF",
    ],
)
def test_other_keys_keep_their_case(value: str) -> None:
    assert parse_info_hash(value) == value


@given(
    st.text(alphabet="0123456789abcdefABCDEFgG", min_size=38, max_size=66)
    | st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=40,
              max_size=40)
)
def test_info_hash_fast_path_equals_the_plain_rule(value: str) -> None:
    assert parse_info_hash(value) == _canonical(value)


@given(st.text(max_size=140))
def test_info_hash_parses_or_raises_invalid_input(value: str) -> None:
    ok = 1 <= len(value) <= MAX_INFO_HASH_LEN and all(0x21 <= ord(c) <= 0x7E for c in value)
    if ok:
        assert parse_info_hash(value) == _canonical(value)
    else:
        with pytest.raises(InvalidInput):
            parse_info_hash(value)


# -- ports -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "port"), [(1, 1), (65535, 65535), ("6881", 6881), ("080", 80)])
def test_port_accepts(value: object, port: int) -> None:
    assert parse_port(value) == port


@pytest.mark.parametrize(
    "value", [0, 65536, -1, "0", "65536", "08x", "", " 80", "+80", "8.0", "١٢", True, 80.0, None]
)
def test_port_rejects(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_port(value)


# -- addresses ---------------------------------------------------------------------------


def test_ipv4_key_is_bep23_compact() -> None:
    assert parse_addr("10.0.0.5:6881") == bytes([10, 0, 0, 5]) + (6881).to_bytes(2, "big")
    assert is_ipv4(parse_addr("1.2.3.4:1"))


def test_ipv6_key_is_bep7_compact() -> None:
    key = parse_addr("[2001:db8::1]:6881")
    assert key == ipaddress.IPv6Address("2001:db8::1").packed + b"\x1a\xe1"
    assert is_ipv6(key)
    assert parse_addr("[2001:DB8:0:0::1]:6881") == key  # one address, one key


def test_ipv4_mapped_ipv6_becomes_the_ipv4_key() -> None:
    assert parse_addr("[::ffff:10.0.0.5]:6881") == parse_addr("10.0.0.5:6881")
    assert parse_addr("[::ffff:a00:5]:6881") == parse_addr("10.0.0.5:6881")
    assert ip_port_key(ipaddress.IPv6Address("::ffff:1.2.3.4").packed, 80) == parse_addr(
        "1.2.3.4:80"
    )


def test_ipv4_compatible_and_other_ipv6_stay_ipv6() -> None:
    assert len(parse_addr("[::1.2.3.4]:80")) == 18  # deprecated compat form is not mapped
    assert len(parse_addr("[::1]:80")) == 18


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Example.COM:80", "example.com:80"),
        ("example.com.:80", "example.com:80"),
        ("localhost:6881", "localhost:6881"),
        ("a-b.c0:1", "a-b.c0:1"),
        ("tracker.example.org:080", "tracker.example.org:80"),
    ],
)
def test_dns_names_are_lowercased(text: str, key: str) -> None:
    assert parse_addr(text) == key


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:08x",
        "1.2.3.4:",
        "1.2.3.4",
        "example.com",
        ":80",
        "[::1]",
        "[::1]:",
        "[::1]:0",
        "::1:80",  # IPv6 without brackets
        "2001:db8::1:6881",
        "[2001:db8::1:6881",
        "[]:80",
        "[1.2.3.4]:80",
        "[fe80::1%eth0]:80",  # zone ids are link-local to one host: meaningless to others
        "[fe80::1%1]:80",
        "[fe80::1%]:80",
        "1.2.3.256:80",
        "01.2.3.4:80",
        "1.2.3:80",
        "1.2.3.4.:80",
        "-bad.com:80",
        "bad-.com:80",
        "a..b:80",
        "a b:80",
        " 1.2.3.4:80",
        "1.2.3.4 :80",
        "ex_ample.com:80",
        "exa\u0301mple.com:80",
        "\u212aelvin.example:80",  # KELVIN SIGN lowercases to ASCII 'k'
        "例え.jp:80",
        "a" * 64 + ".com:80",
        ".".join(["a" * 63] * 5) + ":80",
        "x" * 300,
        "",
        "garbage",
        "\x00:80",
    ],
)
def test_addr_rejects(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_addr(text)


@pytest.mark.parametrize("value", [None, 80, b"1.2.3.4:80", ("1.2.3.4", 80)])
def test_addr_rejects_wrong_type(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_addr(value)


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.5:6881",
        "0.0.0.0:1",
        "255.255.255.255:65535",
        "[2001:db8::1]:6881",
        "[::1]:80",
        "[::]:1",
        "[fe80::1:2:3:4]:443",
        "example.com:80",
        "localhost:1",
    ],
)
def test_format_addr_round_trips_canonical_forms(text: str) -> None:
    assert format_addr(parse_addr(text)) == text


@given(st.ip_addresses(), st.integers(1, 65535))
def test_format_addr_round_trips_any_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                        port: int) -> None:
    text = f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}"
    key = parse_addr(text)
    assert parse_addr(format_addr(key)) == key
    if ip.version == 4 or ip.ipv4_mapped is None:
        assert format_addr(key) == text
    else:
        assert format_addr(key) == f"{ip.ipv4_mapped}:{port}"


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.lists(_label, min_size=1, max_size=4), st.integers(1, 65535))
def test_format_addr_round_trips_dns_names(labels: list[str], port: int) -> None:
    name = ".".join(labels)
    text = f"{name}:{port}"
    if name.replace(".", "").isdigit():  # an IPv4 address, or a malformed one: never a name
        try:
            key = parse_addr(text)
        except InvalidInput:
            return
        assert is_ipv4(key) and format_addr(key) == text
        return
    assert format_addr(parse_addr(text)) == text
    assert parse_addr(text.upper()) == text


@given(st.text(max_size=80))
def test_addr_parses_or_raises_invalid_input(text: str) -> None:
    try:
        key = parse_addr(text)
    except InvalidInput:
        return
    assert parse_addr(format_addr(key)) == key
    assert format_addr(key).isascii()


# -- compact IP keys: the one home of the IPv4-mapped rule ----------------------------------


def test_ipv4_mapped_addresses_unmap_and_their_keys_are_not_canonical() -> None:
    mapped = ipaddress.IPv6Address("::ffff:1.2.3.4").packed
    assert is_ipv4_mapped(mapped) and unmap_ipv4(mapped) == bytes([1, 2, 3, 4])
    for other in ("::1", "::1.2.3.4", "2001:db8::ffff:1.2.3.4", "::fffe:1.2.3.4"):
        packed = ipaddress.IPv6Address(other).packed
        assert not is_ipv4_mapped(packed) and unmap_ipv4(packed) == packed
    assert unmap_ipv4(bytes([1, 2, 3, 4])) == bytes([1, 2, 3, 4])
    assert not is_ip_key(mapped + b"\x00\x50")  # the peer's key is the IPv4 one
    assert is_ip_key(ip_port_key(mapped, 80)) and len(ip_port_key(mapped, 80)) == IPV4_KEY_SIZE


@given(st.binary(max_size=20))
def test_is_ip_key_is_what_parse_addr_makes_of_an_ip(key: bytes) -> None:
    canonical = len(key) in (IPV4_KEY_SIZE, IPV6_KEY_SIZE) and key[-2:] != b"\x00\x00"
    if len(key) == IPV6_KEY_SIZE:
        canonical = canonical and not is_ipv4_mapped(key)
    assert is_ip_key(key) == canonical
    if canonical:
        assert parse_addr(format_addr(key)) == key
    assert not is_ip_key(key.hex())  # a name is not an IP key
    assert ip_key_size(4) == IPV4_KEY_SIZE and ip_key_size(6) == IPV6_KEY_SIZE
def _outcome(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except InvalidInput as e:
        return ("InvalidInput", e.reason)


_ADDR_TEXT = st.one_of(
    st.text(alphabet="0123456789.:", max_size=24),
    st.builds(
        lambda octets, port, sep: sep.join(octets) + ":" + port,
        st.lists(st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007",
                 "", "1a", "\u0661", "0x1", " 1"])), min_size=3, max_size=5),
        st.one_of(st.integers(0, 100_000).map(str), st.sampled_from(["", "080", "+1", "١"])),
        st.sampled_from([".", ".", ",", ":"]),
    ),
)


@given(_ADDR_TEXT)
def test_the_ipv4_fast_path_equals_the_full_parser(text: str) -> None:
    """parse_addr's dotted-quad fast path answers exactly as the ipaddress-based path."""
    from chisme.core.keys import _parse_addr  # noqa: PLC0415

    assert _outcome(parse_addr, text) == _outcome(_parse_addr, text)
