"""RFC 3339 times exactly as Go's ``time.Time`` reads and writes them in JSON, as integer ns.

Why not ``datetime``: it holds microseconds, so two distinct Go timestamps (9 fractional digits)
could compare equal and "strictly newer" could flip (msgspec's ``datetime`` decoding rounds the
fraction to microseconds the same way). Here a time is an ``int`` of nanoseconds since the Unix
epoch, and the conversion is exact both ways.

What Go accepts (``Time.UnmarshalJSON`` is ``time.Parse(time.RFC3339, …)``; its strict RFC 3339
checks are disabled, go.dev/issue/54580), and so what :func:`parse_rfc3339` accepts::

    YYYY-MM-DD "T" H[H] ":" MM ":" SS [ ("." | ",") DIGIT+ ] ( "Z" | ("+" | "-") HH ":" MM )

- year 0000-9999 (exactly 4 digits), month 01-12, day valid for that month (year 0 is a leap
  year: proleptic Gregorian), hour 0-23 in 1 or 2 digits, minute and second 00-59 (no leap second);
- any number of fractional digits; digits past the 9th are truncated, not rounded;
- offset hours 00-24 and minutes 00-60 (Go: "some people do write offsets of 24 hours or
  60 minutes"); ``T`` and ``Z`` are upper case only; nothing before or after.

What Go writes (``Time.MarshalJSON``, layout ``RFC3339Nano``) for a UTC time, and so what
:func:`format_rfc3339` writes: ``2026-11-25T17:36:11.123456789Z``, the fraction with trailing
zeros trimmed and no dot at all when it is zero; years 0000-9999 only.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from chisme.errors import WireError

_NS_PER_S: Final = 1_000_000_000
_S_PER_DAY: Final = 86_400

_RFC3339_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{1,2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]+))?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)
_REASON: Final = "last_seen is not an RFC 3339 time"
_UTC_SECOND_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible
    Low-Level Date Algorithms"); exact for any year, including 0 and negative years."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The (year, month, day) of a day count since 1970-01-01 (inverse of the above)."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


GO_ZERO_NS: Final = _days_from_civil(1, 1, 1) * _S_PER_DAY * _NS_PER_S
"""Go's zero ``time.Time``, ``"0001-01-01T00:00:00Z"``, in ns since the Unix epoch."""

MIN_NS: Final = _days_from_civil(0, 1, 1) * _S_PER_DAY * _NS_PER_S
"""The earliest time :func:`format_rfc3339` writes: ``0000-01-01T00:00:00Z``."""

MAX_NS: Final = _days_from_civil(10_000, 1, 1) * _S_PER_DAY * _NS_PER_S - 1
"""The latest time :func:`format_rfc3339` writes: ``9999-12-31T23:59:59.999999999Z``
(Go's ``MarshalJSON`` refuses years outside 0000-9999)."""


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the Unix epoch of an RFC 3339 time, accepting exactly what Go accepts.

    A time with an offset is converted to UTC (``…T12:00:00+02:00`` is 10:00Z). The result can
    lie outside :data:`MIN_NS`..:data:`MAX_NS` (``0000-01-01T00:00:00+01:00``), as in Go.

    Raises:
        WireError: ``"last_seen is not an RFC 3339 time"``, for anything else (never another
        exception type, whatever ``text`` is).
    """
    # Fast path for what Go writes, "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (2.0 -> 0.6 µs; every
    # received provider has one): the whole-second part is looked up in a cache, the
    # fraction checked here. Anything else, or anything invalid, takes the full path below.
    # tests/wire/test_rfc3339.py holds the two equal.
    if isinstance(text, str) and len(text) >= 20 and text[-1] == "Z":
        seconds = _utc_seconds(text[:19])
        if seconds is not None:
            if len(text) == 20:
                return seconds * _NS_PER_S
            frac = text[20:-1]
            if text[19] in ".," and frac.isascii() and frac.isdigit():
                return seconds * _NS_PER_S + int(frac[:9].ljust(9, "0"))
    return _parse_rfc3339(text)


@functools.lru_cache(maxsize=4096)
def _utc_seconds(text: str) -> int | None:
    """Seconds since the epoch of a valid ``YYYY-MM-DDTHH:MM:SS`` (UTC), else ``None``.
    Cached: the providers of a message were mostly seen within the same few minutes."""
    if _UTC_SECOND_RE.fullmatch(text) is None:
        return None
    try:
        return _parse_rfc3339(text + "Z") // _NS_PER_S
    except WireError:
        return None


def _parse_rfc3339(text: str) -> int:
    """:func:`parse_rfc3339` without its fast path."""
    if not isinstance(text, str):
        raise WireError(_REASON)
    m = _RFC3339_RE.fullmatch(text)
    if m is None:
        raise WireError(_REASON)
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    frac, sign, off_h, off_m = m.group(7, 8, 9, 10)
    if not (
        1 <= month <= 12
        and 1 <= day <= _days_in_month(year, month)
        and hour <= 23
        and minute <= 59
        and second <= 59
    ):
        raise WireError(_REASON)
    offset_s = 0
    if sign is not None:
        hours, minutes = int(off_h), int(off_m)
        if hours > 24 or minutes > 60:  # Go's range test uses > on purpose (time/format.go)
            raise WireError(_REASON)
        offset_s = (hours * 60 + minutes) * 60 * (-1 if sign == "-" else 1)
    # Go truncates a fraction past 9 digits (parseNanoseconds), it does not round.
    nanos = int(frac[:9].ljust(9, "0")) if frac else 0
    seconds = (
        _days_from_civil(year, month, day) * _S_PER_DAY
        + hour * 3600
        + minute * 60
        + second
        - offset_s
    )
    return seconds * _NS_PER_S + nanos


def format_rfc3339(ns: int) -> str:
    """The RFC 3339 text Go's ``Time.MarshalJSON`` writes for this instant in UTC.

    Raises:
        ValueError: ``ns`` is outside :data:`MIN_NS`..:data:`MAX_NS` (a year Go cannot marshal);
        a caller bug, not bad peer input.
    """
    if not MIN_NS <= ns <= MAX_NS:
        raise ValueError(f"{ns} ns is outside the years 0000-9999 that RFC 3339 can write")
    seconds, nanos = divmod(ns, _NS_PER_S)
    if nanos:  # a non-zero digit ends the fraction, so rstrip stops inside it
        return f"{_whole_seconds(seconds)}.{nanos:09d}".rstrip("0") + "Z"
    return _whole_seconds(seconds) + "Z"


@functools.lru_cache(maxsize=4096)
def _whole_seconds(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a second since the epoch. Cached: the providers of a reply
    were mostly seen within the same few minutes, and the calendar arithmetic is three
    quarters of a format (1.5 -> ~0.5 µs)."""
    days, sod = divmod(seconds, _S_PER_DAY)
    year, month, day = _civil_from_days(days)
    hour, rest = divmod(sod, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
