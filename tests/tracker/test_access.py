"""Allow/deny lists of info hashes: the file format and the matching rules."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chisme.errors import InvalidInput
from chisme.tracker.access import AccessList, parse_hash_list

A = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
B = bytes.fromhex("fedcba9876543210fedcba9876543210fedcba98")
C = bytes(20)


def test_parse_skips_blanks_comments_and_trailing_text() -> None:
    text = (
        b"# opentracker-style whitelist\n"
        b"\n"
        b"0123456789abcdef0123456789abcdef01234567\n"
        b"  FEDCBA9876543210FEDCBA9876543210FEDCBA98   ubuntu.iso\r\n"
        b"0000000000000000000000000000000000000000 # all zeros\n"
        b"0123456789abcdef0123456789abcdef01234567\n"  # a duplicate is harmless
    )
    assert parse_hash_list(text) == {A, B, C}


def test_parse_empty() -> None:
    assert parse_hash_list(b"") == frozenset()
    assert parse_hash_list(b"# nothing yet\n\n") == frozenset()


@pytest.mark.parametrize(
    "line",
    [
        b"0123456789abcdef0123456789abcdef0123456",  # 39 digits
        b"0123456789abcdef0123456789abcdef012345678",  # 41 digits
        b"0123456789abcdef0123456789abcdef0123456g",  # not hex
        b"0123456789abcdef 0123456789abcdef01234567",  # split by a space
        b"\xff" * 40,
    ],
)
def test_parse_rejects_a_bad_line_naming_it(line: bytes) -> None:
    text = b"0123456789abcdef0123456789abcdef01234567\n\n" + line + b"\n"
    with pytest.raises(InvalidInput) as e:
        parse_hash_list(text, "allow.txt")
    assert e.value.reason == "allow.txt: line 3 is not a 40-hex info hash"


@given(st.binary(max_size=200))
def test_parse_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_hash_list(data)


@given(st.sets(st.binary(min_size=20, max_size=20), max_size=20))
def test_parse_round_trip(hashes: set[bytes]) -> None:
    text = b"\n".join(h.hex().encode() for h in hashes)
    assert parse_hash_list(text) == hashes


def test_open_list_permits_everything() -> None:
    access = AccessList()
    assert access.open
    assert access.permits(A) and access.permits(C)


def test_allow_list_permits_only_listed() -> None:
    access = AccessList(allow=frozenset({A}))
    assert not access.open
    assert access.permits(A)
    assert not access.permits(B)


def test_empty_allow_list_permits_nothing() -> None:
    access = AccessList(allow=frozenset())
    assert not access.permits(A)


def test_deny_wins_over_allow() -> None:
    access = AccessList(allow=frozenset({A, B}), deny=frozenset({B}))
    assert access.permits(A)
    assert not access.permits(B)
    assert not access.permits(C)
    access = AccessList(deny=frozenset({B}))
    assert access.permits(A) and access.permits(C) and not access.permits(B)


def test_replace_swaps_both_lists() -> None:
    access = AccessList(allow=frozenset({A}))
    access.replace(None, frozenset({A}))
    assert not access.permits(A) and access.permits(B)
    access.replace(None, frozenset())
    assert access.open and access.permits(A)
