"""The HTTP/1.1 server shell on real loopback sockets: keep-alive, pipelining order,
``Connection: close``, deadlines, limits, and handler failures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from chisme.net.http_server import HttpLimits, HttpServer, Request, Response

Respond = Callable[[Request], "Response | Awaitable[Response]"]


class Harness:
    """One HttpServer with a routing table the test fills in; counts what the server rejects."""

    def __init__(self) -> None:
        self.routes: dict[bytes, Respond] = {}
        self.errors: list[str] = []
        self.seen: list[bytes] = []
        self.addr: tuple[str, int] = ("", 0)

    def handle(self, req: Request) -> Response | Awaitable[Response]:
        self.seen.append(req.path)
        route = self.routes.get(req.path)
        if route is None:
            return Response(200, b"path=" + req.path + b" body=" + req.body)
        return route(req)


Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """``await start(HttpLimits(...), error_response=...)`` -> a running Harness."""
    async with contextlib.AsyncExitStack() as stack:
        tg = await stack.enter_async_context(asyncio.TaskGroup())

        async def make(limits: HttpLimits | None = None, **kw: object) -> Harness:
            h = Harness()
            server = HttpServer(h.handle, tg.create_task, limits or HttpLimits(),
                                on_error=h.errors.append,
                                **kw)  # type: ignore[arg-type]
            h.addr = await server.start("127.0.0.1", 0)
            stack.push_async_callback(server.close)
            return h

        yield make


@contextlib.asynccontextmanager
async def connect(addr: tuple[str, int]) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                                asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*addr)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


async def test_keep_alive_serves_several_requests_on_one_connection(start, read_reply) -> None:
    h = await start()
    async with connect(h.addr) as (reader, writer):
        for i in range(3):
            writer.write(get(f"/r{i}"))
            r = await asyncio.wait_for(read_reply(reader), 10)
            assert (r.status, r.body) == (200, f"path=/r{i} body=".encode())
            assert "connection" not in r.headers  # stays open
    assert h.seen == [b"/r0", b"/r1", b"/r2"]


async def test_pipelined_requests_are_answered_one_at_a_time_in_order(
    start, read_reply
) -> None:
    h = await start()
    release = asyncio.Event()

    async def slow(_req: Request) -> Response:
        await release.wait()
        return Response(200, b"slow")

    def fast(_req: Request) -> Response:
        return Response(200, b"fast")

    async def also_async(_req: Request) -> Response:
        return Response(200, b"async")

    h.routes = {b"/slow": slow, b"/fast": fast, b"/async": also_async}
    async with connect(h.addr) as (reader, writer):
        writer.write(get("/slow") + get("/fast") + get("/async") + get("/plain"))
        for _ in range(200):  # let the server run freely: the others wait for /slow
            await asyncio.sleep(0)
        assert h.seen == [b"/slow"]  # one handler in flight per connection: bounded work
        release.set()
        bodies = [(await asyncio.wait_for(read_reply(reader), 10)).body for _ in range(4)]
    assert bodies == [b"slow", b"fast", b"async", b"path=/plain body="]
    assert h.seen == [b"/slow", b"/fast", b"/async", b"/plain"]


async def test_connection_close_is_honoured(start, exchange) -> None:
    h = await start()
    raw = await exchange(h.addr, get("/x", "Connection: close\r\n"), half_close=False)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nConnection: close" in head
    assert body == b"path=/x body="  # and then EOF: exchange read until the server closed


async def test_http_1_0_closes_unless_keep_alive(start, exchange) -> None:
    h = await start()
    raw = await exchange(h.addr, b"GET /old HTTP/1.0\r\n\r\n", half_close=False)
    assert raw.startswith(b"HTTP/1.1 200 OK") and raw.endswith(b"path=/old body=")


async def test_a_request_after_connection_close_is_not_served(start, exchange) -> None:
    h = await start()
    raw = await exchange(h.addr, get("/a", "Connection: close\r\n") + get("/b"),
                         half_close=False)
    assert raw.count(b"HTTP/1.1 200") == 1
    assert h.seen == [b"/a"]


async def test_body_and_chunked_body(start, read_reply) -> None:
    h = await start()
    async with connect(h.addr) as (reader, writer):
        writer.write(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhel")
        writer.write(b"lo")
        assert (await asyncio.wait_for(read_reply(reader), 10)).body == b"path=/p body=hello"
        writer.write(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert (await asyncio.wait_for(read_reply(reader), 10)).body == b"path=/c body=abcde"


async def test_an_idle_connection_is_closed_quietly(start, exchange) -> None:
    h = await start(HttpLimits(header_timeout_s=0.1, keepalive_timeout_s=0.1))
    assert await exchange(h.addr, b"", half_close=False) == b""
    # after an answer, the keep-alive deadline closes it, again without a reply
    raw = await exchange(h.addr, get("/k"), half_close=False)
    assert raw.count(b"HTTP/1.1 ") == 1 and raw.endswith(b"path=/k body=")
    assert h.errors == []


async def test_a_request_that_stalls_gets_408(start, exchange) -> None:
    h = await start(HttpLimits(header_timeout_s=0.1))
    raw = await exchange(h.addr, b"GET /slowloris HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n",
                         half_close=False)
    assert raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"\r\nConnection: close\r\n" in raw
    assert h.errors == ["request not received in time"]
    raw = await exchange(h.addr, b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
                         half_close=False)
    assert raw.startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"POST /p HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 413, "request body too large"),
        (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         + b"4000\r\n" + b"a" * 0x4000 + b"\r\n" * 1, 413, "request body too large"),
        (get("/" + "a" * 200), 431, "request line too long"),
        (get("/", "X-Big: " + "b" * 200 + "\r\n"), 431, "request headers too large"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed HTTP request"),
    ],
    ids=["declared body", "chunked body", "request line", "headers", "garbage"],
)
async def test_limits_and_garbage(start, exchange, raw: bytes, status: int, reason: str) -> None:
    h = await start(HttpLimits(max_header_bytes=128, max_body_bytes=1024))
    reply = await exchange(h.addr, raw, half_close=False)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:100]
    assert reply.endswith(reason.encode() + b"\n")
    assert h.errors == [reason]
    assert h.seen == []
    ok = await exchange(h.addr, get("/ok", "Connection: close\r\n"), half_close=False)
    assert ok.endswith(b"path=/ok body=")


async def test_an_upgrade_request_is_answered_without_upgrading_then_closed(
    start, exchange
) -> None:
    h = await start()
    raw = await exchange(
        h.addr,
        get("/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n") + b"\x81\x05hello",
        half_close=False,
    )
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")  # RFC 9110 §7.8: Upgrade may be ignored
    assert raw.count(b"HTTP/1.1") == 1  # one answer, then close (exchange read up to EOF)
    assert h.seen == [b"/ws"] and h.errors == []


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/announce?a=1&b=%20", b"/announce", b"a=1&b=%20"),
        ("/announce", b"/announce", b""),
        ("/x?", b"/x", b""),
        ("/x?a=1#frag", b"/x", b"a=1"),  # a fragment is not part of the query
        ("http://tracker.example:6969/announce?a=1", b"/announce", b"a=1"),  # absolute-form
        ("http://tracker.example", b"/", b""),
    ],
)
async def test_request_targets_split_into_path_and_query(
    start, read_reply, target: str, path: bytes, query: bytes
) -> None:
    h = await start()
    h.routes[path] = lambda req: Response(200, b"%s|%s" % (req.path, req.query))
    async with connect(h.addr) as (reader, writer):
        writer.write(get(target))
        r = await asyncio.wait_for(read_reply(reader), 10)
    assert (r.status, r.body) == (200, path + b"|" + query)


async def test_nothing_after_an_error_is_served(start, exchange) -> None:
    """A bad request target is found after the parser accepted the request line; requests
    pipelined behind it must not reach the handler (they could have side effects)."""
    h = await start()
    reply = await exchange(h.addr, get("http://x:port/") + get("/second"), half_close=False)
    assert reply.startswith(b"HTTP/1.1 400 ") and reply.count(b"HTTP/1.1") == 1
    assert reply.endswith(b"invalid request target\n")
    assert h.seen == []


async def test_the_error_renderer_is_pluggable(start, exchange) -> None:
    def as_json(status: int, reason: str) -> Response:
        return Response(status, b'{"error":"%s"}' % reason.encode(), b"application/json")

    h = await start(error_response=as_json)
    reply = await exchange(h.addr, b"\x16\x03\x01garbage\r\n\r\n", half_close=False)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Type: application/json" in reply
    assert reply.endswith(b'{"error":"malformed HTTP request"}')


async def test_an_error_after_pipelined_requests_waits_its_turn(
    start, read_reply, wait_until
) -> None:
    h = await start()
    release = asyncio.Event()

    async def slow(_req: Request) -> Response:
        await release.wait()
        return Response(200, b"slow")

    h.routes = {b"/slow": slow}
    async with connect(h.addr) as (reader, writer):
        writer.write(get("/slow") + b"GARBAGE\r\n\r\n")
        await wait_until(lambda: bool(h.errors))  # the 400 is decided ...
        release.set()  # ... but the earlier answer goes out first
        first = await asyncio.wait_for(read_reply(reader), 10)
        second = await asyncio.wait_for(read_reply(reader), 10)
        assert (first.status, first.body) == (200, b"slow")
        assert second.status == 400 and second.headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 10) == b""


async def test_handler_bugs_are_500_and_the_server_keeps_serving(start, read_reply) -> None:
    h = await start()

    def broken(_req: Request) -> Response:
        raise RuntimeError("bug")

    async def broken_async(_req: Request) -> Response:
        raise RuntimeError("async bug")

    h.routes = {b"/broken": broken, b"/broken-async": broken_async}
    async with connect(h.addr) as (reader, writer):
        for path in ("/broken", "/broken-async", "/fine"):
            writer.write(get(path))
            r = await asyncio.wait_for(read_reply(reader), 10)
            assert r.status == (200 if path == "/fine" else 500), path


async def test_too_many_connections_get_503(start, exchange, read_reply, wait_until) -> None:
    h = await start(HttpLimits(max_connections=1))
    async with connect(h.addr) as (reader, writer):
        writer.write(get("/first"))
        assert (await asyncio.wait_for(read_reply(reader), 10)).status == 200  # it is counted
        reply = await exchange(h.addr, get("/second"), half_close=False)
        assert reply.startswith(b"HTTP/1.1 503 ")
        assert h.errors == ["too many connections"]
    # the slot frees when the first connection goes away

    async def served() -> bool:
        return (await exchange(h.addr, get("/third", "Connection: close\r\n"),
                               half_close=False)).startswith(b"HTTP/1.1 200")

    await wait_until(served, what="the connection slot to free")


async def test_a_client_that_does_not_read_gets_backpressure(start, read_reply) -> None:
    """Pipelined requests whose answers are not read: the server stops reading once its write
    buffer is full (no unbounded buffering), and resumes when the client reads."""
    h = await start()
    big = b"x" * 10_000
    h.routes = {b"/big": lambda _req: Response(200, big)}
    n = 3_000  # 30 MB of answers for ~90 kB of requests
    async with connect(h.addr) as (reader, writer):
        writer.transport.set_write_buffer_limits(high=1 << 26)
        writer.write(get("/big") * n)
        for _ in range(500):  # let the loop (server and client share it) run freely
            await asyncio.sleep(0)
        # the server stopped once the socket buffers (a few MB on loopback) were full,
        # instead of rendering all 30 MB into memory
        assert len(h.seen) < n // 3
        for _ in range(n):  # reading resumes the server, in order
            r = await asyncio.wait_for(read_reply(reader), 10)
            assert r.body == big
    assert len(h.seen) == n
