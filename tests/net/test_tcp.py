"""net.tcp against real loopback servers: the v1 client calls (``send_message``, ``request``)
and their errors, and the node-port server with a stub service (bugs, errors, the v2 hook).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from chisme.errors import InvalidInput, MessageTooLarge, PeerTimeout, PeerUnreachable, WireError
from chisme.net import tcp
from chisme.wire import v1

IH = "3f2a" * 10
LOOKUP = v1.encode_message(v1.Lookup(IH, 0))

ConnHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: ConnHandler) -> AsyncIterator[str]:
    """A throwaway TCP server on a free port; yields its ``host:port``."""
    writers: list[asyncio.StreamWriter] = []

    async def wrapped(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(r, w)

    srv = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    finally:
        for w in writers:
            w.transport.abort()
        srv.close()
        with contextlib.suppress(Exception):
            await srv.wait_closed()


@contextlib.contextmanager
def refused() -> Iterator[str]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        yield f"127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


@contextlib.contextmanager
def never_accepts() -> Iterator[str]:
    """Listens but never accepts: the kernel completes handshakes and buffers a little."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield f"127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def test_split_host_port_and_format_peer() -> None:
    assert tcp.split_host_port("127.0.0.1:7070") == ("127.0.0.1", 7070)
    assert tcp.split_host_port("[::1]:0") == ("::1", 0)
    assert tcp.split_host_port("example.org:80") == ("example.org", 80)
    assert tcp.format_peer(("127.0.0.1", 5)) == "127.0.0.1:5"
    assert tcp.format_peer(("::1", 5, 0, 0)) == "[::1]:5"
    assert tcp.format_peer(None) == "?"


# -- send_message ------------------------------------------------------------------------


async def test_send_message_writes_the_bytes_then_closes() -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def record(r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        got.set_result(await r.read())  # everything up to EOF

    async with serve(record) as addr:
        await tcp.send_message(addr, b'{"type":"gossip","info_hash":"x"}\n', 5)
        assert await asyncio.wait_for(got, 10) == b'{"type":"gossip","info_hash":"x"}\n'


async def test_send_message_to_a_closed_port_is_unreachable() -> None:
    with refused() as addr, pytest.raises(PeerUnreachable, match=addr):
        await tcp.send_message(addr, b"{}", 5)


async def test_send_message_to_a_peer_that_never_reads_times_out() -> None:
    """A peer that accepts nothing and reads nothing cannot hold a send past its deadline,
    even when the message does not fit the socket buffers (close would wait to flush)."""
    with never_accepts() as addr, pytest.raises(PeerTimeout, match=r"no answer within 0\.2 s"):
        await tcp.send_message(addr, b"x" * (32 << 20), 0.2)


async def test_cancelling_a_blocked_send_does_not_hang() -> None:
    accepted = asyncio.Event()

    async def hold(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        accepted.set()  # and never read: the stream's buffer fills, reading pauses
        await asyncio.Event().wait()

    async with serve(hold) as addr:
        task = asyncio.ensure_future(tcp.send_message(addr, b"x" * (32 << 20), 60))
        await asyncio.wait_for(accepted.wait(), 10)
        task.cancel()  # e.g. the node shutting down mid-gossip
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


# -- send_confirmed ----------------------------------------------------------------------


ANNOUNCE = v1.encode_message(v1.Announce(IH, []))


async def test_send_confirmed_returns_nothing_from_a_node_that_took_the_message() -> None:
    got: list[bytes] = []

    async def apply_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.append(await r.read())  # the client half-closes after the message
        w.close()

    async with serve(apply_then_close) as addr:
        assert await tcp.send_confirmed(addr, ANNOUNCE, 5, 1024) == b""
    assert got == [ANNOUNCE]


@pytest.mark.parametrize("linger", [False, True], ids=["then closes", "then stalls"])
async def test_send_confirmed_returns_what_the_peer_wrote(linger: bool) -> None:
    async def refuse(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        w.write(b'{"error":"unknown message type"}\n')
        await w.drain()
        if linger:
            await asyncio.Event().wait()  # an HTTP keep-alive: what it wrote is the answer
        w.close()

    async with serve(refuse) as addr:
        answer = await tcp.send_confirmed(addr, ANNOUNCE, 0.5 if linger else 5, 1024)
    assert answer == b'{"error":"unknown message type"}\n'


async def test_send_confirmed_is_bounded() -> None:
    async def flood(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        w.write(b"x" * 100_000)
        await w.drain()
        await asyncio.Event().wait()

    async with serve(flood) as addr:
        assert await tcp.send_confirmed(addr, ANNOUNCE, 5, 1000) == b"x" * 1000


async def test_send_confirmed_failures() -> None:
    with refused() as addr, pytest.raises(PeerUnreachable, match=addr):
        await tcp.send_confirmed(addr, ANNOUNCE, 5, 1024)

    async def silent(r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # reads nothing, never closes

    async with serve(silent) as addr:
        with pytest.raises(PeerTimeout, match=rf"{addr}: no answer within 0\.2 s"):
            await tcp.send_confirmed(addr, ANNOUNCE, 0.2, 1024)


# -- request -----------------------------------------------------------------------------


async def test_request_returns_the_reply_without_waiting_for_eof() -> None:
    async def answer_and_linger(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert await r.readline() == LOOKUP
        w.write(b'[{"addr":"10.0.0.5:6881","last_seen":"2026-11-25T17:36:11Z"}]\n')
        await w.drain()
        await r.read()  # keep the connection open until the client closes it

    async with serve(answer_and_linger) as addr:
        reply = await tcp.request(addr, LOOKUP, 5, 1 << 20)
    assert reply == b'[{"addr":"10.0.0.5:6881","last_seen":"2026-11-25T17:36:11Z"}]'


async def test_request_reads_a_reply_that_trickles_in() -> None:
    async def one_byte_at_a_time(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        for b in b'  [{"addr":"a.example:1"}, {"addr":"[::1]:2"}]':
            w.write(bytes([b]))
            await w.drain()
        w.close()

    async with serve(one_byte_at_a_time) as addr:
        reply = await tcp.request(addr, LOOKUP, 5, 1 << 20)
    loopback_v6_port_2 = bytes(15) + b"\x01\x00\x02"
    assert [r.addr for r in v1.decode_providers(reply)] == ["a.example:1", loopback_v6_port_2]


async def test_request_to_a_silent_server_times_out() -> None:
    with never_accepts() as addr, pytest.raises(PeerTimeout, match=f"{addr}: no answer"):
        await tcp.request(addr, LOOKUP, 0.2, 1 << 20)

    async def silent(r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await r.read()

    async with serve(silent) as addr:
        with pytest.raises(PeerTimeout):
            await tcp.request(addr, LOOKUP, 0.2, 1 << 20)


async def test_request_to_a_closed_port_is_unreachable() -> None:
    with refused() as addr, pytest.raises(PeerUnreachable, match=addr):
        await tcp.request(addr, LOOKUP, 5, 1 << 20)


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (b"", PeerUnreachable, "closed the connection before answering"),
        (b'[{"addr":', PeerUnreachable, "closed the connection before answering"),
        (b"[" + b'{"addr":"10.0.0.1:1"},' * 200 + b"]", MessageTooLarge, "exceeds 1024 bytes"),
        (b"hello", WireError, "not a JSON object"),
    ],
    ids=["no reply", "half a reply", "oversized reply", "garbage"],
)
async def test_bad_replies(reply: bytes, error: type[Exception], match: str) -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        w.write(reply)
        await w.drain()
        w.close()

    async with serve(answer) as addr:
        with pytest.raises(error, match=match):
            await tcp.request(addr, LOOKUP, 5, 1024)


HTTP_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"


@pytest.mark.parametrize("chunk", [1, 3, len(HTTP_400)])
async def test_an_http_reply_says_so_whatever_its_chunking(chunk: int) -> None:
    async def http_server(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        for i in range(0, len(HTTP_400), chunk):
            w.write(HTTP_400[i : i + chunk])
            await w.drain()
        await r.read()  # keep-alive: it does not close

    async with serve(http_server) as addr:
        with pytest.raises(WireError) as e:
            await tcp.request(addr, LOOKUP, 5, 1024)
    assert e.value.reason == v1.ANSWERED_HTTP


async def test_a_reply_starting_with_h_that_is_not_http_keeps_its_reason() -> None:
    async def hello(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        w.write(b"H")
        await w.drain()
        w.write(b"ELLO\n")
        w.close()

    async with serve(hello) as addr:
        with pytest.raises(WireError, match="not a JSON object"):
            await tcp.request(addr, LOOKUP, 5, 1024)


async def test_a_go_null_reply_is_accepted() -> None:
    async def null(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        w.write(b"null\n")
        w.close()

    async with serve(null) as addr:
        assert await tcp.request(addr, LOOKUP, 5, 1024) == b"null"


# -- the node-port server ------------------------------------------------------------------


class StubService:
    """Answers lookups with ``[]``; can be made to fail."""

    def __init__(self) -> None:
        self.seen: list[v1.Message] = []
        self.rejects: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None

    def handle_v1(self, msg: v1.Message, peer: str, size: int = 0) -> bytes | None:
        assert peer.startswith("127.0.0.1:")
        self.seen.append(msg)
        if self.fail_with is not None:
            raise self.fail_with
        return v1.encode_providers([]) if isinstance(msg, v1.Lookup) else None

    def reject(self, surface: str, reason: str) -> None:
        self.rejects.append((surface, reason))


@contextlib.asynccontextmanager
async def node_port(service: StubService, **kw: object) -> AsyncIterator[tuple[str, int]]:
    server = tcp.NodePortServer(
        service, max_bytes=kw.pop("max_bytes", 4096), read_timeout_s=kw.pop("read_timeout_s", 5),
        max_connections=kw.pop("max_connections", 16), **kw,  # type: ignore[arg-type]
    )
    addr = await server.start("127.0.0.1", 0)
    try:
        yield addr
    finally:
        await server.close()


async def test_node_port_answers_a_lookup_and_counts_nothing(exchange) -> None:
    svc = StubService()
    async with node_port(svc) as addr:
        assert await exchange(addr, LOOKUP, half_close=False) == b"[]\n"
    assert svc.seen == [v1.Lookup(IH, 0)] and svc.rejects == []


async def test_a_service_error_is_an_error_line_and_a_bug_is_internal_error(exchange) -> None:
    svc = StubService()
    async with node_port(svc) as addr:
        svc.fail_with = InvalidInput("store is full")
        assert await exchange(addr, LOOKUP, half_close=False) == b'{"error":"store is full"}\n'
        assert svc.rejects == [("node", "store is full")]
        svc.fail_with = RuntimeError("bug")
        assert await exchange(addr, LOOKUP, half_close=False) == b'{"error":"internal error"}\n'
        svc.fail_with = None
        assert await exchange(addr, LOOKUP, half_close=False) == b"[]\n"  # still serving


async def test_the_v2_hook_takes_over_connections_that_start_with_its_magic(exchange) -> None:
    class Echo(asyncio.Protocol):
        def __init__(self, transport: asyncio.Transport, first: bytes) -> None:
            self.transport = transport
            transport.write(b"v2:" + first)

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

        def eof_received(self) -> bool | None:
            self.transport.close()
            return None

    svc = StubService()
    async with node_port(svc, v2_magic=b"\x00C2", upgrade=Echo) as addr:
        assert await exchange(addr, b"\x00C2hello") == b"v2:\x00C2hello"
        assert await exchange(addr, LOOKUP, half_close=False) == b"[]\n"  # v1 still served
    assert svc.rejects == []


async def test_a_bind_failure_is_a_config_error() -> None:
    from chisme.errors import ConfigError  # noqa: PLC0415

    with never_accepts() as busy:
        host, port = tcp.split_host_port(busy)
        server = tcp.NodePortServer(StubService(), max_bytes=4096, read_timeout_s=1,
                                    max_connections=1)
        with pytest.raises(ConfigError, match=f"cannot listen on tcp {host}:{port}: "):
            await server.start(host, port)


async def test_a_client_that_never_reads_its_reply_is_cut_off(exchange, wait_until) -> None:
    """The reply is bigger than the socket buffers and the client reads none of it: the node
    aborts the connection after read_timeout_s, freeing its connection slot."""
    svc = StubService()
    big = b"[" + b'{"addr":"10.0.0.1:1"},' * (1 << 20) + b'{"addr":"10.0.0.1:1"}]\n'
    svc.handle_v1 = lambda msg, peer, size=0: big if msg.info_hash == "big" else b"[]\n"  # type: ignore[method-assign]
    async with node_port(svc, max_connections=1, read_timeout_s=0.3) as addr:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            stuck.connect(addr)
            stuck.sendall(v1.encode_message(v1.Lookup("big", 0)))

            async def served() -> bool:
                return bool(await exchange(addr, LOOKUP, half_close=False) == b"[]\n")

            await wait_until(served, what="the stuck connection's slot to be freed")
        finally:
            stuck.close()
