"""BEP 15 connection ids: lifetime, binding to client and key, cluster-wide validity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chisme.errors import ConfigError
from chisme.tracker.connid import ConnectionIds
from chisme.tracker.udp import PROTOCOL_ID

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CLIENT = bytes([192, 0, 2, 7])  # 192.0.2.7, packed
CLIENT6 = bytes.fromhex("20010db8000000000000000000000007")
T0 = 1_764_000_000  # a window boundary for window_s=60 (divisible by 60)

clients = st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16)
times = st.integers(min_value=0, max_value=2**40)


def test_valid_for_at_least_two_minutes() -> None:
    ids = ConnectionIds(KEY)
    assert ids.min_lifetime_s == 120 and ids.max_lifetime_s == 180
    for issued_at in range(T0 - 1, T0 + 61):  # every second of a window and both edges
        cid = ids.issue(CLIENT, issued_at)
        for age in (0, 1, 59, 60, 61, 119, 120):
            assert ids.check(CLIENT, cid, issued_at + age), (issued_at, age)


def test_rejected_after_window_times_windows_accepted() -> None:
    ids = ConnectionIds(KEY)
    for issued_at in range(T0 - 1, T0 + 61):
        cid = ids.issue(CLIENT, issued_at)
        for age in (180, 181, 240, 3600, 256 * 60, 512 * 60):
            assert not ids.check(CLIENT, cid, issued_at + age), (issued_at, age)


def test_lifetime_is_a_whole_number_of_windows() -> None:
    ids = ConnectionIds(KEY)
    cid = ids.issue(CLIENT, T0)  # start of a window: the longest life
    assert ids.check(CLIENT, cid, T0 + 179)
    assert not ids.check(CLIENT, cid, T0 + 180)
    cid = ids.issue(CLIENT, T0 + 59)  # end of a window: the shortest life
    assert ids.check(CLIENT, cid, T0 + 179)
    assert not ids.check(CLIENT, cid, T0 + 180)


def test_not_valid_before_the_previous_window() -> None:
    ids = ConnectionIds(KEY)
    cid = ids.issue(CLIENT, T0)
    assert ids.check(CLIENT, cid, T0 - 60)  # a node whose clock is one window behind
    assert not ids.check(CLIENT, cid, T0 - 61)


def test_bound_to_client() -> None:
    ids = ConnectionIds(KEY)
    cid = ids.issue(CLIENT, T0)
    assert not ids.check(bytes([192, 0, 2, 8]), cid, T0)
    assert not ids.check(CLIENT6, cid, T0)
    cid6 = ids.issue(CLIENT6, T0)
    assert ids.check(CLIENT6, cid6, T0 + 30)
    assert cid6 != cid


def test_bound_to_key() -> None:
    cid = ConnectionIds(KEY).issue(CLIENT, T0)
    assert not ConnectionIds(OTHER_KEY).check(CLIENT, cid, T0)


def test_nodes_sharing_a_key_accept_each_others_ids() -> None:
    node_a, node_b = ConnectionIds(KEY), ConnectionIds(KEY)
    from_a = node_a.issue(CLIENT, T0 + 5)
    from_b = node_b.issue(CLIENT, T0 + 70)
    assert node_b.check(CLIENT, from_a, T0 + 100)
    assert node_a.check(CLIENT, from_b, T0 + 100)
    assert from_a != from_b  # different windows, different ids


def test_tampered_ids_are_rejected() -> None:
    ids = ConnectionIds(KEY)
    cid = ids.issue(CLIENT, T0)
    for bit in range(64):
        assert not ids.check(CLIENT, cid ^ (1 << bit), T0), bit
    for bad in (-1, 0, PROTOCOL_ID, 2**64, 2**64 + cid):
        assert not ids.check(CLIENT, bad, T0)


def test_never_zero_or_the_protocol_id() -> None:
    class ZeroMac:
        def copy(self) -> ZeroMac:
            return self

        def update(self, data: bytes) -> None:
            pass

        def digest(self) -> bytes:
            return bytes(8)

    ids = ConnectionIds(KEY)
    ids._mac = ZeroMac()  # type: ignore[assignment]  # force the 2^-56 case: a zero MAC
    cid = ids.issue(CLIENT, 0)  # window 0: tag 0, so the raw id would be 0
    assert cid not in (0, PROTOCOL_ID)
    assert ids.check(CLIENT, cid, 0)
    assert not ids.check(CLIENT, 0, 0)


@pytest.mark.parametrize(
    ("window_s", "windows_accepted"), [(60, 3), (30, 5), (10, 13), (120, 2), (60, 6)]
)
def test_other_windows(window_s: int, windows_accepted: int) -> None:
    ids = ConnectionIds(KEY, window_s=window_s, windows_accepted=windows_accepted)
    assert ids.min_lifetime_s == window_s * (windows_accepted - 1) >= 120
    for issued_at in range(T0, T0 + window_s + 1, max(1, window_s // 7)):
        cid = ids.issue(CLIENT, issued_at)
        assert ids.check(CLIENT, cid, issued_at + ids.min_lifetime_s)
        assert not ids.check(CLIENT, cid, issued_at + ids.max_lifetime_s)


@pytest.mark.parametrize(
    ("key", "window_s", "windows_accepted"),
    [
        (b"short", 60, 3),
        (bytes(15), 60, 3),
        (bytes(65), 60, 3),
        (KEY, 0, 3),
        (KEY, -60, 3),
        (KEY, 60, 1),
        (KEY, 60, 256),
    ],
)
def test_config_errors(key: bytes, window_s: int, windows_accepted: int) -> None:
    with pytest.raises(ConfigError):
        ConnectionIds(key, window_s=window_s, windows_accepted=windows_accepted)


@given(
    key=st.binary(min_size=16, max_size=64),
    client=clients,
    issued_at=times,
    age=st.integers(min_value=0, max_value=119),
)
def test_property_accepted_within_two_minutes(
    key: bytes, client: bytes, issued_at: int, age: int
) -> None:
    ids = ConnectionIds(key)
    cid = ids.issue(client, issued_at)
    assert 0 < cid < 2**64 and cid != PROTOCOL_ID
    assert ids.check(client, cid, issued_at + age)


@given(
    client=clients,
    issued_at=times,
    age=st.integers(min_value=180, max_value=10**9),
    other=clients,
)
def test_property_rejected_when_old_or_foreign(
    client: bytes, issued_at: int, age: int, other: bytes
) -> None:
    ids = ConnectionIds(KEY)
    cid = ids.issue(client, issued_at)
    assert not ids.check(client, cid, issued_at + age)
    if other != client:
        assert not ids.check(other, cid, issued_at)


@given(cid=st.integers(min_value=-(2**70), max_value=2**70), now=times)
def test_property_forged_ids_fail(cid: int, now: int) -> None:
    assert not ConnectionIds(KEY).check(CLIENT, cid, now)
