"""wire.rfc3339: Go's time.Time JSON text <-> int ns, exact, accepting exactly what Go accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chisme.errors import WireError
from chisme.wire.rfc3339 import GO_ZERO_NS, MAX_NS, MIN_NS, format_rfc3339, parse_rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NS = 1_000_000_000
REASON = "last_seen is not an RFC 3339 time"


def utc_ns(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, ns: int = 0
) -> int:
    """Oracle: ns since the epoch of a UTC wall time, through datetime (years 1-9999)."""
    delta = datetime(year, month, day, hour, minute, second, tzinfo=UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + ns


def test_go_zero_time_constant() -> None:
    assert GO_ZERO_NS == -62_135_596_800 * NS
    assert utc_ns(1, 1, 1) == GO_ZERO_NS
    assert parse_rfc3339("0001-01-01T00:00:00Z") == GO_ZERO_NS
    assert format_rfc3339(GO_ZERO_NS) == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # docs/WIRE.md examples: 9 digits, and trailing zeros trimmed
        ("2026-11-25T17:36:11.123456789Z", utc_ns(2026, 11, 25, 17, 36, 11, ns=123_456_789)),
        ("2026-11-25T17:36:11.5Z", utc_ns(2026, 11, 25, 17, 36, 11, ns=500_000_000)),
        ("2026-11-25T17:36:11Z", utc_ns(2026, 11, 25, 17, 36, 11)),
        ("2026-11-25T17:36:11.000000001Z", utc_ns(2026, 11, 25, 17, 36, 11, ns=1)),
        ("2026-11-25T17:36:11.500Z", utc_ns(2026, 11, 25, 17, 36, 11, ns=500_000_000)),
        # offsets are converted to UTC (a Go node marshals its local time)
        ("2026-11-25T19:36:11.5+02:00", utc_ns(2026, 11, 25, 17, 36, 11, ns=500_000_000)),
        ("2026-11-25T12:06:11-05:30", utc_ns(2026, 11, 25, 17, 36, 11)),
        ("2026-01-01T01:00:00+02:00", utc_ns(2025, 12, 31, 23)),
        ("2026-09-24T12:00:00-00:00", utc_ns(2026, 9, 24, 12)),
        ("2026-09-24T12:00:00+00:00", utc_ns(2026, 9, 24, 12)),
        # Go's leniency (time.Parse(RFC3339); the strict checks are off, go.dev/issue/54580)
        ("2026-09-24T1:00:00Z", utc_ns(2026, 9, 24, 1)),
        ("2026-09-24T12:00:00,5Z", utc_ns(2026, 9, 24, 12, ns=500_000_000)),
        ("2026-09-24T12:00:00.123456789012Z", utc_ns(2026, 9, 24, 12, ns=123_456_789)),
        ("2026-12-31T23:59:59.9999999999Z", utc_ns(2026, 12, 31, 23, 59, 59, ns=999_999_999)),
        ("2026-09-24T12:00:00+24:00", utc_ns(2026, 9, 23, 12)),
        ("2026-09-24T12:00:00+23:60", utc_ns(2026, 9, 23, 12)),
        ("2026-09-24T12:00:00+24:59", utc_ns(2026, 9, 23, 11, 1)),
        ("2026-09-24T12:00:00+24:60", utc_ns(2026, 9, 23, 11)),
        ("2026-09-24T12:00:00.5+23:60", utc_ns(2026, 9, 23, 12, ns=500_000_000)),
        # calendar edges
        ("2024-02-29T00:00:00Z", utc_ns(2024, 2, 29)),
        ("2000-02-29T00:00:00Z", utc_ns(2000, 2, 29)),
        ("0099-01-01T00:00:00Z", utc_ns(99, 1, 1)),
        ("1969-12-31T23:59:59.999999999Z", -1),
        ("1970-01-01T00:00:00Z", 0),
        ("9999-12-31T23:59:59Z", utc_ns(9999, 12, 31, 23, 59, 59)),
        ("9999-12-31T23:59:59.999999999Z", MAX_NS),
        ("0000-01-01T00:00:00Z", MIN_NS),
        ("0000-02-29T00:00:00Z", MIN_NS + (31 + 28) * 86_400 * NS),  # year 0 is a leap year
        ("0000-12-31T23:00:00Z", GO_ZERO_NS - 3600 * NS),
    ],
)
def test_parse_accepts_what_go_accepts(text: str, expected: int) -> None:
    assert parse_rfc3339(text) == expected


def test_parse_can_leave_the_formattable_range_as_go_does() -> None:
    assert parse_rfc3339("0000-01-01T00:00:00+01:00") == MIN_NS - 3600 * NS
    assert parse_rfc3339("9999-12-31T23:59:59-01:00") == MAX_NS + 1 + 3599 * NS


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Z",
        "2026-09-24t12:00:00Z",  # Go: literals match case-sensitively
        "2026-09-24T12:00:00z",
        "2026-09-24T12:00:00.5z",
        "2016-12-31T23:59:60Z",  # no leap second
        "2026-09-24T24:00:00Z",
        "2026-09-24T12:60:00Z",
        "2026-09-24T12:00:00.Z",
        "2026-09-24T12:00:00.5 Z",
        "2026-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-13-10T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-1-10T00:00:00Z",  # only the hour may have one digit
        "2026-01-1T00:00:00Z",
        "2026-01-10T00:0:00Z",
        "2026-01-10T00:00:0Z",
        "2026-01-10T123:00:00Z",
        "2026-09-24T12:00:00+25:00",
        "2026-09-24T12:00:00+00:61",
        "2026-09-24T12:00:00+99:99",
        "2026-09-24T12:00:00+00:44:30",
        "2026-09-24T12:00:00+0200",
        "2026-09-24T12:00:00+02",
        "2026-09-24T12:00:00+2:00",
        "2026-09-24T12:00Z",
        "2026-09-24T12:00:00",  # no offset
        "2026-09-24",
        "20260924T120000Z",
        " 2026-09-24T12:00:00Z",
        "2026-09-24T12:00:00Z ",
        "2026-09-24T12:00:00Z\n",
        "2026-09-24 12:00:00Z",
        "2026-09-24T12:00:00\u00a0Z",
        "\u0662\u0660\u0662\u0666-09-24T12:00:00Z",  # Arabic-Indic digits
        "12026-09-24T12:00:00Z",
        "+2026-09-24T12:00:00Z",
        "-2026-09-24T12:00:00Z",
        "2026-09-24T12:00:00.5.5Z",
        "2026-09-24T12:00:00ZZ",
        "2026-09-24T12:00:00\ud800Z",
        "0001-01-01T00:00:00Z[UTC]",
    ],
)
def test_parse_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(WireError) as info:
        parse_rfc3339(text)
    assert info.value.reason == REASON


@pytest.mark.parametrize("value", [None, 5, b"2026-09-24T12:00:00Z", 1.5, ["x"]])
def test_parse_rejects_non_strings_with_wire_error(value: object) -> None:
    with pytest.raises(WireError):
        parse_rfc3339(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (1, "1970-01-01T00:00:00.000000001Z"),
        (utc_ns(2026, 11, 25, 17, 36, 11, ns=123_456_789), "2026-11-25T17:36:11.123456789Z"),
        (utc_ns(2026, 11, 25, 17, 36, 11, ns=500_000_000), "2026-11-25T17:36:11.5Z"),
        (utc_ns(2026, 11, 25, 17, 36, 11, ns=120_000_000), "2026-11-25T17:36:11.12Z"),
        (utc_ns(2026, 11, 25, 17, 36, 11, ns=100), "2026-11-25T17:36:11.0000001Z"),
        (utc_ns(2026, 11, 25, 17, 36, 11), "2026-11-25T17:36:11Z"),
        (utc_ns(2024, 2, 29, 23, 59, 59), "2024-02-29T23:59:59Z"),
        (GO_ZERO_NS, "0001-01-01T00:00:00Z"),
        (MIN_NS, "0000-01-01T00:00:00Z"),
        (MAX_NS, "9999-12-31T23:59:59.999999999Z"),
    ],
)
def test_format_like_go_marshal_json(ns: int, text: str) -> None:
    assert format_rfc3339(ns) == text
    assert parse_rfc3339(text) == ns


@pytest.mark.parametrize("ns", [MIN_NS - 1, MAX_NS + 1, -(10**30), 10**30])
def test_format_refuses_years_go_cannot_marshal(ns: int) -> None:
    with pytest.raises(ValueError, match="0000-9999"):
        format_rfc3339(ns)


@settings(max_examples=500)
@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
def test_round_trip_over_the_whole_range(ns: int) -> None:
    text = format_rfc3339(ns)
    assert parse_rfc3339(text) == ns
    assert not text.endswith("0Z") or "." not in text  # trailing zeros trimmed
    assert "." not in text or len(text.rsplit(".", 1)[1]) <= 10


@settings(max_examples=300)
@given(st.integers(min_value=utc_ns(1, 1, 1), max_value=MAX_NS))
def test_format_agrees_with_datetime(ns: int) -> None:
    seconds, nanos = divmod(ns, NS)
    # zfill: glibc's %Y does not zero-pad years below 1000
    expected = (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S").zfill(19)
    if nanos:
        expected += "." + f"{nanos:09d}".rstrip("0")
    assert format_rfc3339(ns) == expected + "Z"


@settings(max_examples=300)
@given(
    st.integers(min_value=utc_ns(2, 1, 1), max_value=utc_ns(9998, 12, 31)),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    st.sampled_from([".", ","]),
    st.integers(min_value=0, max_value=3),
)
def test_offsets_are_converted_to_the_same_instant(
    ns: int, offset_min: int, sep: str, extra_zeros: int
) -> None:
    """An instant written in any local offset (what a Go node in any zone marshals)."""
    seconds, nanos = divmod(ns, NS)
    tz = timezone(timedelta(minutes=offset_min))
    local = (EPOCH + timedelta(seconds=seconds)).astimezone(tz)
    text = local.strftime("%Y-%m-%dT%H:%M:%S").zfill(19)
    if nanos:
        text += sep + f"{nanos:09d}".rstrip("0") + "0" * extra_zeros
    sign = "-" if offset_min < 0 else "+"
    hours, minutes = divmod(abs(offset_min), 60)
    text += f"{sign}{hours:02d}:{minutes:02d}"
    assert parse_rfc3339(text) == ns


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_parse_never_raises_anything_but_wire_error_on_text(text: str) -> None:
    try:
        parse_rfc3339(text)
    except WireError as exc:
        assert exc.reason == REASON


@settings(max_examples=300)
@given(
    st.integers(min_value=MIN_NS, max_value=MAX_NS),
    st.integers(min_value=0, max_value=40),
    st.text(alphabet="0123456789+-:.,TZtz ", max_size=3),
)
def test_parse_never_raises_anything_but_wire_error_on_near_misses(
    ns: int, at: int, noise: str
) -> None:
    text = format_rfc3339(ns)
    mutated = text[:at] + noise + text[at + len(noise) // 2 :]
    try:
        parse_rfc3339(mutated)
    except WireError as exc:
        assert exc.reason == REASON


def _parsed(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except WireError as exc:
        return exc.reason


@settings(max_examples=500)
@given(
    st.integers(min_value=MIN_NS, max_value=MAX_NS),
    st.integers(min_value=0, max_value=40),
    st.text(alphabet="0123456789+-:.,TZtz \u0661", max_size=3),
)
def test_the_fast_path_equals_the_full_parser(ns: int, at: int, noise: str) -> None:
    """Go's own form takes a cached fast path; it answers exactly as the full parser, on
    Go's output and on near misses of it."""
    from chisme.wire.rfc3339 import _parse_rfc3339  # noqa: PLC0415

    text = format_rfc3339(ns)
    for candidate in (text, text[:at] + noise + text[at + len(noise) // 2 :]):
        assert _parsed(parse_rfc3339, candidate) == _parsed(_parse_rfc3339, candidate)
