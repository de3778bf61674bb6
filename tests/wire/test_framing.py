"""wire.framing: find one JSON object/array in a byte stream (no newline, no EOF needed), capped."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chisme.errors import MessageTooLarge, WireError
from chisme.wire.framing import (
    MAX_DEPTH,
    NOT_AN_OBJECT,
    NOT_JSON,
    TRUNCATED,
    JsonValueScanner,
    find_json_end,
)

BIG = 1 << 20


def outcome(chunks: list[bytes], max_bytes: int = BIG, *, eof: bool = True) -> object:
    """What a scanner makes of these chunks: the value, None (need more), or the error."""
    scanner = JsonValueScanner(max_bytes)
    try:
        for chunk in chunks:
            value = scanner.feed(chunk)
            if value is not None:
                return (value, scanner.end)
        return scanner.feed_eof() if eof else None
    except WireError as exc:
        return (type(exc), exc.reason)


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize(
    ("buf", "end"),
    [
        (b"{}", 2),
        (b"[]", 2),
        (b'{"a":1}', 7),
        (b'{"a":1}\n', 7),
        (b' \t\r\n{"a":1}', 11),
        (b'{"a":1}{"b":2}', 7),
        (b'{"a":1} trailing garbage', 7),
        (b'[{"a":[1,{"b":[]}]},2]', 22),
        (b'{"a":"}]{["}', 12),
        (b'{"a":"\\"}"}', 11),  # escaped quote inside a string
        (b'{"a":"\\\\"}', 10),  # escaped backslash, then the closing quote
        (b'{"a":"\\\\\\""}', 12),
        (b'{"a":"\\u007d"}', 14),
        (b'{"\\"":"x"}', 10),
        ('{"a":"\u00e9}\u2028"}'.encode(), 14),
    ],
)
def test_find_json_end(buf: bytes, end: int) -> None:
    assert find_json_end(buf, BIG) == end
    assert find_json_end(bytearray(buf), BIG) == end


@pytest.mark.parametrize(
    "buf",
    [b"", b"   \n", b"{", b'{"a":', b'{"a":"}', b'{"a":"\\', b'{"a":"\\"}', b"[[[]]"],
)
def test_incomplete_needs_more(buf: bytes) -> None:
    assert find_json_end(buf, BIG) is None


@pytest.mark.parametrize(
    "buf",
    [b"x", b'"str"', b"1", b"null", b"true", b"\xef\xbb\xbf{}", b"\x00{}", b"\x0b{}", b"}"],
)
def test_value_must_be_an_object_or_array(buf: bytes) -> None:
    with pytest.raises(WireError) as info:
        find_json_end(buf, BIG)
    assert info.value.reason == NOT_AN_OBJECT


@pytest.mark.parametrize("buf", [b"{]", b"[}", b'{"a":[1}', b'[{"a":1]}'])
def test_mismatched_brackets_fail_at_once(buf: bytes) -> None:
    with pytest.raises(WireError) as info:
        find_json_end(buf + b"never read", BIG)
    assert info.value.reason == NOT_JSON


def test_depth_is_capped() -> None:
    ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert find_json_end(ok, BIG) == len(ok)
    with pytest.raises(WireError) as info:
        find_json_end(b"[" * (MAX_DEPTH + 1), BIG)
    assert info.value.reason == f"message nests deeper than {MAX_DEPTH} levels"
    assert not isinstance(info.value, MessageTooLarge)
    # brackets inside strings are not nesting
    in_string = b'{"a":"' + b"[" * 1000 + b'"}'
    assert find_json_end(in_string, BIG) == len(in_string)


def test_size_cap() -> None:
    value = b'{"a":"' + b"x" * 100 + b'"}'
    n = len(value)
    assert find_json_end(value, n) == n  # exactly at the cap
    assert find_json_end(value + b"\n" * 1000, n) == n  # what follows does not count
    assert find_json_end(value[:-1], n) is None  # under the cap: need more
    with pytest.raises(MessageTooLarge) as info:
        find_json_end(value, n - 1)
    assert info.value.reason == f"message exceeds {n - 1} bytes"
    assert isinstance(info.value, WireError)
    with pytest.raises(MessageTooLarge):  # leading whitespace counts
        find_json_end(b" " + value, n)
    with pytest.raises(MessageTooLarge):  # whitespace alone cannot fill the cap for free
        find_json_end(b" " * n, n)
    with pytest.raises(MessageTooLarge):  # an unterminated value fails at the cap, not at EOF
        find_json_end(b"[" + b"1," * n, n)


def test_size_cap_when_fed_in_pieces() -> None:
    scanner = JsonValueScanner(10)
    assert scanner.feed(b'{"a":') is None
    assert scanner.feed(b'"123') is None  # 9 bytes
    with pytest.raises(MessageTooLarge):
        scanner.feed(b"4")  # 10 bytes and still open: it cannot end within 10


def test_scanner_returns_the_value_without_leading_whitespace() -> None:
    scanner = JsonValueScanner(BIG)
    assert scanner.feed(b'  \n{"type":') is None
    assert not scanner.done
    assert scanner.end is None
    assert scanner.feed(b'"lookup"}\nrest') == b'{"type":"lookup"}'
    assert scanner.done
    assert scanner.end == 20
    assert scanner.unused == b"\nrest"
    assert scanner.feed_eof() == b'{"type":"lookup"}'


def test_scanner_does_not_need_newline_or_eof() -> None:
    scanner = JsonValueScanner(BIG)
    assert scanner.feed(b"[1,") is None
    assert scanner.feed(b"2]") == b"[1,2]"


def test_scanner_eof_before_the_value_is_complete() -> None:
    for data in (b"", b"  ", b'{"a"'):
        scanner = JsonValueScanner(BIG)
        scanner.feed(data)
        with pytest.raises(WireError) as info:
            scanner.feed_eof()
        assert info.value.reason == TRUNCATED


def test_scanner_stays_failed_and_refuses_reuse() -> None:
    scanner = JsonValueScanner(BIG)
    with pytest.raises(WireError) as first:
        scanner.feed(b"x")
    with pytest.raises(WireError) as again:
        scanner.feed(b"{}")
    assert again.value is first.value
    with pytest.raises(WireError):
        scanner.feed_eof()
    done = JsonValueScanner(BIG)
    assert done.feed(b"{}") == b"{}"
    with pytest.raises(RuntimeError):
        done.feed(b"{}")


def test_scanner_rejects_a_tiny_cap() -> None:
    with pytest.raises(ValueError):
        JsonValueScanner(3)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"null"], b"null"),
        ([b" \n", b"nu", b"ll"], b"null"),
        ([b"n", b"u", b"l", b"l", b"\n"], b"null"),
        ([b"[]"], b"[]"),
    ],
)
def test_allow_null(chunks: list[bytes], expected: bytes) -> None:
    scanner = JsonValueScanner(BIG, allow_null=True)
    for chunk in chunks:
        if (value := scanner.feed(chunk)) is not None:
            assert value == expected
            return
    pytest.fail("no value")


@pytest.mark.parametrize("data", [b"nul", b" n"])
def test_allow_null_truncated(data: bytes) -> None:
    scanner = JsonValueScanner(BIG, allow_null=True)
    assert scanner.feed(data) is None
    with pytest.raises(WireError) as info:
        scanner.feed_eof()
    assert info.value.reason == TRUNCATED


@pytest.mark.parametrize("data", [b"nulx", b"nx", b"true"])
def test_allow_null_only_null(data: bytes) -> None:
    with pytest.raises(WireError) as info:
        JsonValueScanner(BIG, allow_null=True).feed(data)
    assert info.value.reason == NOT_AN_OBJECT


def test_one_byte_at_a_time_on_a_large_message() -> None:
    """Feeding byte by byte keeps its place: this is O(total), not quadratic."""
    value = json.dumps({"a": ["x" * 100_000, {"b": '\\"}' * 10_000}], "c": [[]] * 5000}).encode()
    scanner = JsonValueScanner(BIG)
    results = [scanner.feed(value[i : i + 1]) for i in range(len(value))]
    assert results[-1] == value
    assert all(r is None for r in results[:-1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
containers = st.one_of(st.lists(json_values, max_size=4), st.dictionaries(st.text(), json_values))
whitespace = st.text(alphabet=" \t\r\n", max_size=4)


@settings(max_examples=200)
@given(containers, whitespace, st.binary(max_size=8), st.booleans(), st.data())
def test_finds_exactly_the_encoded_value(
    value: object, ws: str, trailing: bytes, ascii_only: bool, data: st.DataObject
) -> None:
    encoded = json.dumps(value, ensure_ascii=ascii_only).encode()
    stream = ws.encode() + encoded + trailing
    assert find_json_end(stream, BIG) == len(ws) + len(encoded)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert outcome(chunks) == (encoded, len(ws) + len(encoded))
    assert outcome(one_byte_at_a_time(stream)) == (encoded, len(ws) + len(encoded))


@settings(max_examples=300)
@given(
    st.binary(max_size=64) | st.text(alphabet='{}[]"\\ ax:,\n', max_size=64).map(str.encode),
    st.integers(min_value=4, max_value=80),
    st.data(),
)
def test_any_bytes_any_chunks_same_outcome(
    data_bytes: bytes, max_bytes: int, data: st.DataObject
) -> None:
    """Fuzz invariant: a value, need-more or a WireError, never anything else; and how the bytes
    are split never changes the outcome."""
    whole = outcome([data_bytes], max_bytes)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(data_bytes)), max_size=6)))
    chunks = [data_bytes[a:b] for a, b in zip([0, *cuts], [*cuts, len(data_bytes)], strict=True)]
    assert outcome(chunks, max_bytes) == whole
    assert outcome(one_byte_at_a_time(data_bytes), max_bytes) == whole
    truncated = (WireError, TRUNCATED)
    assert outcome([data_bytes], max_bytes, eof=False) == (None if whole == truncated else whole)
