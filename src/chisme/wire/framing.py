"""Framing: find where the first JSON object or array in a byte stream ends, under a size cap.

docs/WIRE.md "Transport": a receiver reads one complete JSON value; it must not depend on the
newline (a client may end with EOF instead) and must not wait for EOF (a ``lookup`` client
keeps the connection open for the reply). So the end of the value is found by scanning:
outside strings, count brackets; inside strings, skip backslash escapes. The scanner does not
validate the JSON (the decoder does, once the value is complete); it only rejects what can never
become one object or array: a first byte that is not ``{`` or ``[``, a closing bracket of the
wrong kind, nesting deeper than ``max_depth``, and more than ``max_bytes`` without an end.

Strategy (sans-I/O, as h11's readers): :class:`JsonValueScanner` keeps its position between
feeds and jumps between interesting bytes with compiled regexes, so feeding a message one byte
at a time costs O(total bytes), and a long string costs one C-level search, not a Python loop.
Bytes after the value are not part of it (Go's ``json.Decoder`` leaves them unread too).
"""

from __future__ import annotations

import re
from typing import Final

from chisme.errors import MessageTooLarge, WireError

MAX_DEPTH: Final = 64
"""Deepest nesting accepted. v1 messages need 3 (object, providers array, provider object)."""

MIN_MAX_BYTES: Final = 4
"""The smallest size cap a scanner takes (``null`` is 4 bytes)."""

_NOT_WHITESPACE: Final = re.compile(rb"[^ \t\r\n]")  # RFC 8259 §2: the four whitespace bytes
_STRUCTURAL: Final = re.compile(rb'["\[\]{}]')
_STRING_SPECIAL: Final = re.compile(rb'["\\]')

_OPEN_TO_CLOSE: Final = {ord("{"): ord("}"), ord("["): ord("]")}
_QUOTE: Final = ord('"')
_NULL: Final = b"null"
_BACKSLASH: Final = ord("\\")

NOT_AN_OBJECT: Final = "message is not a JSON object"
NOT_JSON: Final = "message is not valid JSON"
TRUNCATED: Final = "connection closed before a complete message"


def frames_as_one_value(
    data: bytes | bytearray, max_bytes: int, *, max_depth: int = MAX_DEPTH
) -> bool:
    """Whether a JSON parser that reads ``data`` whole may stand in for the scanner.

    True when, should ``data`` parse as exactly one object or array with only whitespace
    around it, a :class:`JsonValueScanner` fed ``data`` first would return that value: it ends
    within ``max_bytes`` (all of ``data`` does) and cannot nest deeper than ``max_depth`` (it
    has no more opening brackets than that, counting those inside strings too). The scanner
    rejects nothing else that is one valid object or array.
    """
    return len(data) <= max_bytes and data.count(b"[") + data.count(b"{") <= max_depth


class JsonValueScanner:
    """Incremental finder of the first complete top-level JSON object or array.

    Feed it bytes as they arrive; :meth:`feed` returns the value's bytes (without the leading
    whitespace) once its closing bracket has arrived, else ``None`` (need more). One scanner
    finds one value: feeding more after that, or after an error, is a caller bug.

    ``max_bytes`` counts from the first byte fed, leading whitespace included: the value must
    end within the first ``max_bytes`` bytes of the stream.
    """

    __slots__ = (
        "_allow_null",
        "_buf",
        "_end",
        "_error",
        "_escape",
        "_in_string",
        "_max_bytes",
        "_max_depth",
        "_pos",
        "_stack",
        "_start",
    )

    def __init__(
        self, max_bytes: int, *, max_depth: int = MAX_DEPTH, allow_null: bool = False
    ) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}")
        self._max_bytes = max_bytes
        self._max_depth = max_depth
        self._allow_null = allow_null
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = -1  # index of the opening bracket, -1 while skipping whitespace
        self._end = -1  # index just past the closing bracket, -1 until found
        self._stack = bytearray()  # the closing bracket each open level expects
        self._in_string = False
        self._escape = False  # the previous byte in a string was an unpaired backslash
        self._error: WireError | None = None

    @property
    def done(self) -> bool:
        """True once a complete value has been found."""
        return self._end >= 0

    @property
    def end(self) -> int | None:
        """Index in the stream just past the value, or ``None`` if it is not complete."""
        return self._end if self._end >= 0 else None

    @property
    def unused(self) -> bytes:
        """Bytes received after the value (v1 ignores them, as Go's decoder does)."""
        return bytes(self._buf[self._end :]) if self._end >= 0 else b""

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | None:
        """Take more bytes; return the complete value's bytes, or ``None`` if it needs more.

        Raises:
            WireError: the stream cannot hold a JSON object or array (reason is stable).
            MessageTooLarge: no complete value within ``max_bytes``.
            RuntimeError: the scanner already returned its value (a caller bug).
        """
        if self._error is not None:
            raise self._error
        if self._end >= 0:
            raise RuntimeError("JsonValueScanner.feed after the value was complete")
        self._buf += data
        try:
            return self._scan()
        except WireError as exc:
            self._error = exc
            raise

    def feed_eof(self) -> bytes:
        """The peer closed: return the value if it is complete, else raise.

        Raises:
            WireError: ``"connection closed before a complete message"`` (or an earlier error).
        """
        if self._error is not None:
            raise self._error
        if self._end < 0:
            self._error = WireError(TRUNCATED)
            raise self._error
        return bytes(self._buf[self._start : self._end])

    def _scan(self) -> bytes | None:
        buf = self._buf
        limit = min(len(buf), self._max_bytes)
        pos = self._pos
        if self._start < 0:
            m = _NOT_WHITESPACE.search(buf, pos, limit)
            if m is None:
                self._pos = limit
                self._check_size()
                return None
            pos = m.start()
            self._start = pos
            closer = _OPEN_TO_CLOSE.get(buf[pos])
            if closer is not None:
                self._stack.append(closer)
                pos += 1
            elif not (self._allow_null and buf[pos] == _NULL[0]):
                raise WireError(NOT_AN_OBJECT)
        stack = self._stack
        if not stack:  # the start of a top-level null (allow_null)
            got = bytes(buf[self._start : min(limit, self._start + len(_NULL))])
            if not _NULL.startswith(got):
                raise WireError(NOT_AN_OBJECT)
            if got == _NULL:
                self._pos = self._end = self._start + len(_NULL)
                return got
            self._pos = limit
            self._check_size()
            return None
        while pos < limit:
            if self._in_string:
                if self._escape:  # the escaped byte is never special (\" \\ \u00e9 ...)
                    self._escape = False
                    pos += 1
                    continue
                m = _STRING_SPECIAL.search(buf, pos, limit)
                if m is None:
                    pos = limit
                    break
                pos = m.start() + 1
                if buf[pos - 1] == _QUOTE:
                    self._in_string = False
                else:
                    self._escape = True
                continue
            m = _STRUCTURAL.search(buf, pos, limit)
            if m is None:
                pos = limit
                break
            pos = m.start() + 1
            byte = buf[pos - 1]
            if byte == _QUOTE:
                self._in_string = True
            elif (closer := _OPEN_TO_CLOSE.get(byte)) is not None:
                if len(stack) >= self._max_depth:
                    raise WireError(f"message nests deeper than {self._max_depth} levels")
                stack.append(closer)
            elif stack[-1] != byte:
                raise WireError(NOT_JSON)
            else:
                stack.pop()
                if not stack:
                    self._pos = self._end = pos
                    return bytes(buf[self._start : pos])
        self._pos = pos
        self._check_size()
        return None

    def _check_size(self) -> None:
        # docs/DESIGN.md: limits on message size. Nothing complete in the first max_bytes bytes: the
        # value would have to end past the cap, so stop buffering now.
        if len(self._buf) >= self._max_bytes:
            raise MessageTooLarge(f"message exceeds {self._max_bytes} bytes")


def find_json_end(buf: bytes | bytearray, max_bytes: int) -> int | None:
    """Index just past the first complete JSON object or array in ``buf``, or ``None`` if more
    bytes are needed. Raises like :meth:`JsonValueScanner.feed`. Rescans ``buf`` from the start
    on each call: for a stream, keep a :class:`JsonValueScanner` instead."""
    scanner = JsonValueScanner(max_bytes)
    scanner.feed(buf)
    return scanner.end
