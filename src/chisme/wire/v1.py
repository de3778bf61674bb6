"""The seed wire protocol "v1" (docs/WIRE.md): node-to-node JSON messages in and out, no I/O.

The seed (a Go program) declares, and this module reproduces byte for byte::

    type ProviderMeta struct {
        Addr     string    `json:"addr"`
        PeerID   string    `json:"peer_id,omitempty"`
        LastSeen time.Time `json:"last_seen"`
    }
    type wireMsg struct {
        Type      string         `json:"type"`
        InfoHash  string         `json:"info_hash"`
        Providers []ProviderMeta `json:"providers,omitempty"`
        Limit     int            `json:"limit,omitempty"`
    }

Rules:
- Decoding accepts what Go's ``encoding/json`` accepts for these structs: unknown fields are
  ignored, the last of duplicate keys wins, ``null`` is the zero value (``providers: null`` is no
  providers, ``last_seen: null`` is the zero time), invalid UTF-8 in a string becomes U+FFFD.
  Then everything is validated (info hash, every address, peer id length, times) before a
  message is returned: a half-bad gossip never half-merges.
- Any bad input raises :class:`~chisme.errors.WireError` with a short, stable reason (it is the
  ``{"error": …}`` reply and a metric label); never another exception type (h11's fuzz invariant).
- A ``last_seen`` that is missing or Go's zero time decodes to ``last_seen_ns == 0``: "unknown,
  the receiver stamps it with its now" (docs/WIRE.md "Where chisme deliberately differs"). A record
  with ``last_seen_ns == 0`` encodes as Go's zero time.
- Encoding writes what Go's ``json.Encoder`` writes: fields in declaration order, ``omitempty``,
  ``<`` ``>`` ``&`` U+2028 U+2029 escaped as ``\\u003c`` …, and a trailing ``\\n``.

Known differences from Go, all on input no Go encoder produces: keys match case-sensitively (Go
also matches ``"TYPE"``); a ``\\u`` escape of a lone UTF-16 surrogate is rejected (Go reads
U+FFFD); a ``lookup`` must carry valid providers if it carries any (Go ignores them once parsed).
One more, on input Go does produce: an ``info_hash`` of 40 or 64 hex digits decodes in lower
case (:func:`~chisme.core.keys.parse_info_hash`: the hex of a binary hash has no case, and
BitTorrent users paste either), so an upper-case announce and a lower-case lookup meet; Go keys
it byte for byte. Every other key stays byte for byte, as in Go.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeAlias, TypeVar, assert_never

import msgspec

from chisme.core.keys import format_addr, parse_addr, parse_info_hash
from chisme.core.records import (
    FLAG_SEEDER,
    FLAG_TOMBSTONE,
    MAX_PEER_ID_BYTES,
    Provider,
    Record,
    peer_id_text,
)
from chisme.errors import InvalidInput, WireError
from chisme.wire.framing import (
    MIN_MAX_BYTES,
    NOT_AN_OBJECT,
    NOT_JSON,
    TRUNCATED,
    JsonValueScanner,
    frames_as_one_value,
)
from chisme.wire.rfc3339 import GO_ZERO_NS, MAX_NS, MIN_NS, format_rfc3339, parse_rfc3339

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Announce",
    "Gossip",
    "Lookup",
    "Members",
    "Message",
    "ReplyReader",
    "V1Reader",
    "decode_message",
    "decode_providers",
    "encode_error",
    "encode_message",
    "encode_providers",
]

DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20
"""Default size cap of one v1 message or reply, leading whitespace included."""

UNKNOWN_TYPE: Final = "unknown message type"
NOT_AN_ARRAY: Final = "reply is not a JSON array"
ANSWERED_HTTP: Final = "the answer is HTTP, not v1 JSON"
"""The reason when an HTTP server (a JSON API or tracker port) answered instead of a node."""
_MAX_PEER_REASON_CHARS: Final = 200

# ---------------------------------------------------------------------------------------------
# Domain messages: what a decoded v1 message means to chisme.


@dataclass(frozen=True, slots=True)
class Announce:
    """A node announces providers it holds first-hand (the seed merges them like gossip)."""

    info_hash: str
    records: list[Record]


@dataclass(frozen=True, slots=True)
class Gossip:
    """A node pushes its live provider list for one info hash (every 8 s in the seed).

    Two chisme extensions ride along, as fields Go's decoder ignores: ``downloaded``, the
    per-node BitTorrent ``completed`` counters of the key (merged by max on receipt), and
    ``removed``, tombstones (providers that left, stamped when they left), so that gossip
    between chisme nodes cannot resurrect a provider that sent ``event=stopped``.
    """

    info_hash: str
    records: list[Record]
    downloaded: dict[str, int] = field(default_factory=dict)
    removed: list[Record] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lookup:
    """A node asks for the providers of one info hash; ``limit == 0`` means no limit."""

    info_hash: str
    limit: int


@dataclass(frozen=True, slots=True)
class Members:
    """chisme's extension: ask a node for its cluster members (``chisme members``).

    Not part of the seed design: a node of the original design ignores the type; a chisme
    node answers a JSON array of ``{"id", "addr", "state", "incarnation"}``.
    """


Message: TypeAlias = Announce | Gossip | Lookup | Members

# ---------------------------------------------------------------------------------------------
# Wire schema: Go's structs. Every decoded field admits null, as Go's decoder does.


class _ProviderMeta(msgspec.Struct, frozen=True):
    addr: str | None = None
    peer_id: str | None = None
    last_seen: str | None = None
    seeder: bool | None = None  # chisme extension: the provider has the whole content


class _WireMsg(msgspec.Struct, frozen=True):
    type: str | None = None
    info_hash: str | None = None
    providers: list[_ProviderMeta | None] | None = None
    limit: int | None = None
    downloaded: dict[str, int] | None = None  # chisme extension, see Gossip
    removed: list[_ProviderMeta | None] | None = None  # chisme extension, see Gossip


class _ErrorReply(msgspec.Struct, frozen=True):
    error: str | None = None


_Reply: TypeAlias = list[_ProviderMeta | None] | _ErrorReply | None

_MESSAGE_DECODER: Final[msgspec.json.Decoder[_WireMsg]] = msgspec.json.Decoder(_WireMsg)
_REPLY_DECODER: Final[msgspec.json.Decoder[_Reply]] = msgspec.json.Decoder(_Reply)


class _OutProvider(msgspec.Struct, kw_only=True, omit_defaults=True):
    addr: str
    peer_id: str = ""  # `json:"peer_id,omitempty"`
    last_seen: str
    seeder: bool = False  # chisme extension, omitted when false; Go ignores unknown fields


class _OutMsg(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    info_hash: str
    providers: list[_OutProvider] = msgspec.field(default_factory=list)  # omitempty
    limit: int = 0  # omitempty
    downloaded: dict[str, int] | None = None  # chisme extension; Go ignores unknown fields
    removed: list[_OutProvider] | None = None  # chisme extension: tombstones


class _OutError(msgspec.Struct):
    error: str


_ENCODER: Final = msgspec.json.Encoder()

# Go's json.Encoder escapes <, >, & (SetEscapeHTML defaults to true) and always U+2028, U+2029;
# msgspec writes them raw. In JSON text they can only occur inside strings, and UTF-8 is
# self-synchronising, so replacing the bytes is exact. msgspec already escapes control characters
# as Go 1.22+ does (\b \f \n \r \t, else \u00xx in lower-case hex).
_GO_ESCAPES: Final = (
    (b"&", b"\\u0026"),
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)

_GO_ZERO_TIME: Final = format_rfc3339(GO_ZERO_NS)


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Decode error handler: one U+FFFD per invalid byte, as Go's decoder does."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\ufffd", exc.start + 1


_GO_REPLACE: Final = "chisme.wire.v1.go_replace"
codecs.register_error(_GO_REPLACE, _go_replace)

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_MSGSPEC_PATH_RE: Final = re.compile(r" - at `\$(.*)`$")
_EXPECTED: Final = {
    "type": "a string",
    "info_hash": "a string",
    "addr": "a string",
    "peer_id": "a string",
    "last_seen": "a string",
    "error": "a string",
    "providers": "an array",
    "limit": "an integer",
}

# ---------------------------------------------------------------------------------------------
# Decoding.

_T = TypeVar("_T")


def _decode_json(decoder: msgspec.json.Decoder[_T], value: bytes, root_reason: str) -> _T:
    """The one place msgspec's errors become WireErrors."""
    try:
        try:
            return decoder.decode(value)
        except (UnicodeDecodeError, msgspec.DecodeError):
            # Invalid UTF-8 raises UnicodeDecodeError before msgspec 0.23 and DecodeError
            # from 0.23 on. Go's encoding/json replaces each invalid byte with U+FFFD: when
            # the bytes are not UTF-8, do that and decode again; otherwise the error stands.
            if _is_utf8(value):
                raise
            return decoder.decode(value.decode("utf-8", _GO_REPLACE))
    except msgspec.ValidationError as exc:
        raise WireError(_type_reason(str(exc), root_reason)) from exc
    except msgspec.DecodeError as exc:
        raise WireError(NOT_JSON) from exc


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _type_reason(msgspec_text: str, root_reason: str) -> str:
    """``"providers[3].addr: expected a string"`` from msgspec's ``… - at `$.providers[3].addr```
    (without msgspec's wording, so the reason stays stable across msgspec versions)."""
    m = _MSGSPEC_PATH_RE.search(msgspec_text)
    if m is None or not m.group(1):
        return root_reason
    path = m.group(1)
    # A reply is a bare array: name its elements like a message's, providers[i].
    path = "providers" + path if path.startswith("[") else path.lstrip(".")
    leaf = path.rsplit(".", 1)[-1]
    expected = "an object" if leaf.endswith("]") else _EXPECTED.get(leaf, "another type")
    return f"{path}: expected {expected}"


def _records(items: list[_ProviderMeta | None] | None, field: str = "providers") -> list[Record]:
    if not items:
        return []
    return [_record(item or _ProviderMeta(), i, field) for i, item in enumerate(items)]


def _record(meta: _ProviderMeta, i: int, field: str = "providers") -> Record:
    # JSON null leaves Go's zero value, so None reads as "" (and fails as an empty addr).
    try:
        addr = parse_addr(meta.addr or "")
    except InvalidInput as exc:
        raise WireError(f"{field}[{i}].addr: {exc.reason}") from exc
    peer_id = (meta.peer_id or "").encode()
    if len(peer_id) > MAX_PEER_ID_BYTES:
        raise WireError(f"{field}[{i}].peer_id: longer than {MAX_PEER_ID_BYTES} bytes")
    last_seen_ns = 0
    if meta.last_seen is not None:
        try:
            last_seen_ns = parse_rfc3339(meta.last_seen)
        except WireError as exc:
            raise WireError(f"{field}[{i}].last_seen: {exc.reason}") from exc
        if last_seen_ns == GO_ZERO_NS:
            last_seen_ns = 0  # docs/WIRE.md: missing or zero means unknown; the receiver stamps it
    return Record(addr, last_seen_ns, peer_id, FLAG_SEEDER if meta.seeder else 0)


def _to_message(wire: _WireMsg) -> Message:
    kind = wire.type
    if kind == "members":
        return Members()
    if kind not in ("announce", "gossip", "lookup"):
        raise WireError(UNKNOWN_TYPE)
    try:
        info_hash = parse_info_hash(wire.info_hash or "")
    except InvalidInput as exc:
        raise WireError(exc.reason) from exc
    limit = wire.limit or 0
    if not _INT64_MIN <= limit <= _INT64_MAX:
        raise WireError("limit: expected an integer")  # Go's int is 64 bits
    # Go parses every provider (and its last_seen) whatever the type, so validate them all.
    records = _records(wire.providers)
    if kind == "lookup":
        return Lookup(info_hash, max(limit, 0))  # docs/WIRE.md: 0 or negative means no limit
    if kind == "announce":
        return Announce(info_hash, records)
    removed = [
        r._replace(flags=FLAG_TOMBSTONE, peer_id=b"") for r in _records(wire.removed, "removed")
    ]
    if any(r.last_seen_ns == 0 for r in removed):
        # a removal stamped "now" by the receiver would delete later announces too
        raise WireError("removed[].last_seen: required")
    return Gossip(info_hash, records, _downloaded(wire.downloaded), removed)


_MAX_COUNTERS: Final = 256


def _downloaded(counters: dict[str, int] | None) -> dict[str, int]:
    if not counters:
        return {}
    if len(counters) > _MAX_COUNTERS:
        raise WireError(f"downloaded: at most {_MAX_COUNTERS} counters")
    for node, n in counters.items():
        if not 0 < len(node) <= 64 or not 0 <= n < 1 << 53:
            raise WireError("downloaded: node ids of 1-64 characters, counts >= 0")
    return dict(counters)


def _to_records(reply: _Reply) -> list[Record]:
    if isinstance(reply, _ErrorReply):
        if reply.error is None:
            raise WireError(NOT_AN_ARRAY)
        raise WireError(f"peer said: {reply.error[:_MAX_PEER_REASON_CHARS]}")
    return _records(reply)  # null: a Go nil slice, no providers


def is_http(data: bytes | bytearray) -> bool:
    """True if ``data`` starts as an HTTP response does (``HTTP/1.1 400 …``): the peer is an HTTP
    server, so its answer is no v1 reply at all."""
    return data.lstrip()[:5] == b"HTTP/"


_W = TypeVar("_W")


class _Reader(Generic[_W, _T]):
    """Sans-I/O: bytes in (:meth:`feed`, :meth:`feed_eof`), one decoded value out.

    Fast path: a first feed that holds a whole value (a seed's message arrives in one segment)
    is handed to msgspec as it is, without the scanner's bracket-by-bracket pass (~7 µs of
    an announce's ~10). :func:`~chisme.wire.framing.frames_as_one_value` says when msgspec
    accepting the bytes means the scanner would have framed exactly that value; whatever
    msgspec refuses (a part, a value and more, bad JSON, bad UTF-8) takes the plain path, which
    gives the reason. ``tests/wire/test_v1.py`` holds both paths equal.
    """

    __slots__ = (
        "_allow_null",
        "_convert",
        "_decoder",
        "_error",
        "_max_bytes",
        "_result",
        "_root_reason",
        "_scanner",
    )

    def __init__(
        self,
        max_bytes: int,
        *,
        allow_null: bool,
        decoder: msgspec.json.Decoder[_W],
        root_reason: str,
        convert: Callable[[_W], _T],
    ) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}")
        self._max_bytes = max_bytes
        self._allow_null = allow_null
        self._decoder = decoder
        self._root_reason = root_reason
        self._convert = convert
        self._scanner: JsonValueScanner | None = None  # made by the first feed that needs it
        self._result: _T | None = None
        self._error: WireError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> _T | None:
        """Take the next bytes from the peer; return the decoded value once complete, else
        ``None`` (need more). Never waits for EOF or a newline (docs/WIRE.md "Transport").

        Raises:
            WireError: the bytes are not one valid value (``MessageTooLarge`` over the cap).
                The reader stays failed: later calls raise the same error.
            RuntimeError: called again after it returned the value (a caller bug).
        """
        if self._error is not None:
            raise self._error
        if self._result is not None:
            raise RuntimeError("reader already returned its value")
        try:
            scanner = self._scanner
            if scanner is None:
                if isinstance(data, bytes | bytearray) and frames_as_one_value(
                    data, self._max_bytes
                ):
                    try:
                        wire = self._decoder.decode(data)
                    except (UnicodeDecodeError, msgspec.DecodeError):
                        pass  # the plain path below says what is wrong, or waits for more
                    else:
                        self._result = self._convert(wire)
                        return self._result
                scanner = self._scanner = JsonValueScanner(
                    self._max_bytes, allow_null=self._allow_null
                )
            value = scanner.feed(data)
            if value is None:
                return None
            self._result = self._convert(_decode_json(self._decoder, value, self._root_reason))
        except WireError as exc:
            self._error = exc
            raise
        return self._result

    def feed_eof(self) -> _T:
        """The peer closed its side: return the value if complete, else raise
        ``WireError("connection closed before a complete message")``."""
        if self._result is not None:
            return self._result
        if self._error is None:
            self._error = WireError(TRUNCATED)
        raise self._error


class V1Reader(_Reader[_WireMsg, Message]):
    """Reads the one message of an incoming v1 connection (server side)."""

    __slots__ = ()

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(
            max_bytes,
            allow_null=False,
            decoder=_MESSAGE_DECODER,
            root_reason=NOT_AN_OBJECT,
            convert=_to_message,
        )


class ReplyReader(_Reader[_Reply, list[Record]]):
    """Reads the reply to a ``lookup`` (client side): providers, or the peer's error.

    ``null`` reads as no providers: it is what Go's encoder writes for a nil slice.
    """

    __slots__ = ()

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(
            max_bytes,
            allow_null=True,
            decoder=_REPLY_DECODER,
            root_reason=NOT_AN_ARRAY,
            convert=_to_records,
        )


def decode_message(
    data: bytes | bytearray | memoryview, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Message:
    """Decode and validate the v1 message at the start of ``data`` (bytes after it are ignored,
    as Go's decoder leaves them unread). Same result as feeding ``data`` to a
    :class:`V1Reader` in any chunks, then EOF.

    Raises:
        WireError: anything wrong, with a short stable reason; never another exception type.
    """
    reader = V1Reader(max_bytes)
    message = reader.feed(data)
    return message if message is not None else reader.feed_eof()


def decode_providers(
    data: bytes | bytearray | memoryview, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> list[Record]:
    """Decode a ``lookup`` reply: a JSON array of providers.

    Raises:
        WireError: ``"peer said: <reason>"`` if the peer answered ``{"error": …}``; else as
        :func:`decode_message`.
    """
    reader = ReplyReader(max_bytes)
    records = reader.feed(data)
    return records if records is not None else reader.feed_eof()


# ---------------------------------------------------------------------------------------------
# Encoding.


def _go_json(obj: object) -> bytes:
    out = _ENCODER.encode(obj)
    for raw, escaped in _GO_ESCAPES:
        if raw in out:
            out = out.replace(raw, escaped)
    return out + b"\n"  # json.Encoder.Encode ends every value with a newline


def _go_time(ns: int) -> str:
    if ns == 0:
        return _GO_ZERO_TIME  # chisme's "unknown" is Go's zero time
    # Go's MarshalJSON refuses years outside 0000-9999, so a Go peer could read nothing else;
    # such a record is long expired (or would be clamped to the receiver's now) anyway.
    return format_rfc3339(min(max(ns, MIN_NS), MAX_NS))


def _out_provider(
    addr: str, peer_id: str, last_seen_ns: int, seeder: bool = False
) -> _OutProvider:
    return _OutProvider(addr=addr, peer_id=peer_id, last_seen=_go_time(last_seen_ns),
                        seeder=seeder)


def encode_message(msg: Message) -> bytes:
    """The exact bytes the seed's ``json.NewEncoder(conn).Encode(wireMsg{…})`` writes.

    A record's peer id is written as text: UTF-8 if it is, else Latin-1 (as
    :func:`chisme.core.records.peer_id_text`); a seeder carries chisme's ``"seeder":true``
    (omitted otherwise, so the seed's bytes are unchanged); v1 has no origin or version.
    """
    if isinstance(msg, Members):
        return b'{"type":"members"}\n'
    if isinstance(msg, Lookup):
        wire = _OutMsg(type="lookup", info_hash=msg.info_hash, limit=msg.limit)
    elif isinstance(msg, Announce | Gossip):
        wire = _OutMsg(
            type="announce" if isinstance(msg, Announce) else "gossip",
            info_hash=msg.info_hash,
            providers=[
                _out_provider(format_addr(r.addr), peer_id_text(r.peer_id), r.last_seen_ns,
                              bool(r.flags & FLAG_SEEDER))
                for r in msg.records
            ],
            downloaded=(msg.downloaded or None) if isinstance(msg, Gossip) else None,
            removed=[
                _out_provider(format_addr(r.addr), "", r.last_seen_ns) for r in msg.removed
            ]
            if isinstance(msg, Gossip) and msg.removed
            else None,
        )
    else:
        assert_never(msg)
    return _go_json(wire)


def encode_providers(providers: Sequence[Provider]) -> bytes:
    """A ``lookup`` reply: the JSON array of providers and ``\\n`` (``[]\\n`` when empty)."""
    return _go_json(
        [_out_provider(p.addr, p.peer_id, p.last_seen_ns, p.seeder) for p in providers]
    )


def encode_error(reason: str) -> bytes:
    """chisme's answer to bad input on the node port: ``{"error":"<reason>"}\\n`` (docs/WIRE.md)."""
    return _go_json(_OutError(reason))
