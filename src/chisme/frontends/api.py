"""The HTTP JSON API: providers, announce, remove, status, stats, health and /metrics.

    GET  /v1/providers/{info_hash}?limit=N      overlay lookup (local + up to 3 peers)
    GET  /v1/providers/{info_hash}?local=1      this node's store only
    POST /v1/announce  {"info_hash", "addr", "peer_id"?, "seeder"?}
    POST /v1/remove    {"info_hash", "addr"}
    GET  /v1/status    node, peers, store sizes
    GET  /v1/stats     tracker view: torrents, seeders, leechers, per-torrent top list
    GET  /healthz      {"status": "ok"}
    GET  /metrics      Prometheus text

Errors are 4xx with ``{"error": "<reason>"}``. The JSON arrays of providers are the
same bytes as a v1 lookup reply (docs/WIRE.md). An info hash is canonical from here on
(:func:`~chisme.core.keys.parse_info_hash`: 40- or 64-digit hex in lower case).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import msgspec

from chisme.core.keys import parse_info_hash
from chisme.errors import ChismeError, InvalidInput
from chisme.metrics import CONTENT_TYPE, Metrics
from chisme.net.http_server import Request, Response
from chisme.service.providers import ProviderService
from chisme.service.tracker import TrackerService
from chisme.wire import v1

JSON = b"application/json"
_T = TypeVar("_T")
_MAX_LIMIT = 10_000


class AnnounceBody(msgspec.Struct, forbid_unknown_fields=False):
    info_hash: str
    addr: str
    peer_id: str = ""
    seeder: bool = False


class RemoveBody(msgspec.Struct):
    info_hash: str
    addr: str


def error(status: int, reason: str) -> Response:
    """The API's error answer (also what the HTTP layer sends for 400/408/413/431/503)."""
    return Response(status, msgspec.json.encode({"error": reason}) + b"\n", JSON)


def not_allowed(method: str) -> Response:
    # RFC 9110 §15.5.6: a 405 must say which methods are allowed
    resp = error(405, f"use {method}")
    resp.headers.append((b"Allow", method.encode()))
    return resp


class _UnsupportedMediaType(InvalidInput):
    status = 415


def ok_json(value: Any, status: int = 200) -> Response:
    return Response(status, msgspec.json.encode(value) + b"\n", JSON)


class ApiServer:
    """Routes requests to the services. Sync routes answer at once; lookups are awaited."""

    error_response = staticmethod(error)  # the HTTP layer's own errors are JSON too

    def __init__(
        self,
        providers: ProviderService,
        tracker: TrackerService,
        status: Callable[[], dict[str, Any]],
        metrics: Metrics,
    ) -> None:
        self.providers = providers
        self.tracker = tracker
        self.status = status
        self.metrics = metrics

    def handle(self, req: Request) -> Response | Awaitable[Response]:
        try:
            return self._route(req)
        except ChismeError as e:
            return self._error(e)

    def _error(self, e: ChismeError) -> Response:
        reason = getattr(e, "reason", str(e))
        self.metrics.reject("api", reason)
        return error(getattr(e, "status", 400), reason)

    def _route(self, req: Request) -> Response | Awaitable[Response]:
        path = req.path
        if path.startswith(b"/v1/providers/"):
            if req.method != b"GET":
                return not_allowed("GET")
            info_hash = unquote(path[len(b"/v1/providers/") :].decode("latin-1"))
            return self._providers(info_hash, req.query)
        if path == b"/v1/announce":
            if req.method != b"POST":
                return not_allowed("POST")
            a = _decode(req, AnnounceBody)
            rec = self.providers.announce(a.info_hash, a.addr, a.peer_id, seeder=a.seeder)
            return ok_json({"ok": True, "last_seen_ns": rec.last_seen_ns})
        if path == b"/v1/remove":
            if req.method != b"POST":
                return not_allowed("POST")
            r = _decode(req, RemoveBody)
            rec = self.providers.remove(r.info_hash, r.addr)
            return ok_json({"ok": True, "removed_at_ns": rec.last_seen_ns})
        if req.method != b"GET":
            return not_allowed("GET")
        if path == b"/healthz":
            return ok_json({"status": "ok"})
        if path == b"/metrics":
            return Response(200, self.metrics.render(), CONTENT_TYPE.encode())
        if path == b"/v1/status":
            return ok_json(self.status())
        if path == b"/v1/stats":
            return ok_json(self.tracker.stats())
        return error(404, "no such endpoint")

    def _providers(self, info_hash: str, query: bytes) -> Response | Awaitable[Response]:
        params = parse_qs(query.decode("latin-1"), keep_blank_values=True)
        limit = _int_param(params, "limit", 0)
        if not 0 <= limit <= _MAX_LIMIT:
            raise InvalidInput(f"limit must be in 0-{_MAX_LIMIT}")
        local = params.get("local", ["0"])[-1] in ("1", "true", "yes")
        info_hash = parse_info_hash(info_hash)
        if local:
            providers = self.providers.local_lookup(info_hash, limit)
            return Response(200, v1.encode_providers(providers), JSON)
        return self._overlay_lookup(info_hash, limit)

    async def _overlay_lookup(self, info_hash: str, limit: int) -> Response:
        try:
            providers = await self.providers.lookup(info_hash, limit)
        except ChismeError as e:
            return self._error(e)
        return Response(200, v1.encode_providers(providers), JSON)


def _decode(req: Request, kind: type[_T]) -> _T:
    ctype = req.headers.get(b"content-type", b"application/json").split(b";")[0].strip()
    if ctype != JSON:
        raise _UnsupportedMediaType("content-type must be application/json")
    try:
        return msgspec.json.decode(req.body, type=kind)
    except msgspec.ValidationError as e:
        raise InvalidInput(f"invalid body: {e}") from None
    except msgspec.DecodeError:
        raise InvalidInput("body is not valid JSON") from None


def _int_param(params: dict[str, list[str]], name: str, default: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise InvalidInput(f"{name} must be an integer") from None
