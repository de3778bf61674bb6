"""net.tcp's node-port server on its own sockets: the deadline table, accepting ahead of
serving, partial replies, the v2 hand-over from either path, under asyncio and uvloop alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from chisme.core.records import Record
from chisme.net import tcp
from chisme.wire import v1

IH = "3f2a" * 10
LOOKUP = v1.encode_message(v1.Lookup(IH, 0))


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a server scenario on each loop: the CLI runs uvloop, the other tests asyncio."""

    def go(scenario: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            runner.run(asyncio.wait_for(scenario, 30))

    return go


# -- Deadlines (sans-I/O: the loop's time comes in as an argument) -------------------------


def test_deadlines_fall_due_in_the_order_they_started() -> None:
    d: tcp.Deadlines[str] = tcp.Deadlines(5.0)
    assert d.next_due() is None and d.expire(1e9) == []
    d.add("a", 100.0)
    d.add("b", 100.5)
    d.add("c", 102.0)
    assert len(d) == 3 and "b" in d
    assert d.next_due() == 105.0
    assert d.expire(104.9) == []
    assert d.expire(105.5) == ["a", "b"]
    assert d.next_due() == 107.0 and len(d) == 1
    assert d.expire(200.0) == ["c"]
    assert d.next_due() is None


def test_a_discarded_key_never_expires_and_adding_again_restarts_it() -> None:
    d: tcp.Deadlines[str] = tcp.Deadlines(1.0)
    d.add("a", 0.0)
    d.add("b", 0.1)
    d.discard("a")
    d.discard("never added")
    assert d.next_due() == 1.1
    d.add("b", 0.5)  # restarted: now the latest
    d.add("c", 0.6)
    assert d.expire(1.45) == []
    assert d.expire(1.55) == ["b"]
    assert d.expire(1.6) == ["c"]
    assert "a" not in d and len(d) == 0


def test_many_deadlines_expire_in_order() -> None:
    d: tcp.Deadlines[int] = tcp.Deadlines(2.0)
    for i in range(1000):
        d.add(i, i * 0.01)
    for i in range(0, 1000, 3):
        d.discard(i)
    assert d.expire(5.0) == [i for i in range(301) if i % 3]
    assert d.expire(1e9) == [i for i in range(301, 1000) if i % 3]


# -- the server ------------------------------------------------------------------------------


class Service:
    def __init__(self) -> None:
        self.seen: list[v1.Message] = []
        self.rejects: list[str] = []
        self.reply: bytes | None = None

    def handle_v1(self, msg: v1.Message, peer: str, size: int = 0) -> bytes | None:
        assert peer.startswith("127.0.0.1:") and size > 0
        self.seen.append(msg)
        return self.reply if isinstance(msg, v1.Lookup) else None

    def reject(self, surface: str, reason: str) -> None:
        self.rejects.append(reason)


@contextlib.asynccontextmanager
async def serving(svc: Service, **kw: object) -> AsyncIterator[tcp.NodePortServer]:
    server = tcp.NodePortServer(
        svc, max_bytes=kw.pop("max_bytes", 1 << 20), read_timeout_s=kw.pop("read_timeout_s", 5),
        max_connections=kw.pop("max_connections", 16), **kw,  # type: ignore[arg-type]
    )
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


def addr_of(server: tcp.NodePortServer) -> tuple[str, int]:
    host, port = server._listeners[0].getsockname()[:2]
    return host, port


def announce(i: int) -> bytes:
    rec = Record(bytes([10, 0, i >> 8 & 255, i & 255]) + (6881).to_bytes(2, "big"), 0, b"")
    return v1.encode_message(v1.Announce(IH, [rec]))


def addr_of_announce(msg: v1.Message) -> bytes | str:
    assert isinstance(msg, v1.Announce)
    return msg.records[0].addr


def burst(addr: tuple[str, int], n: int) -> None:
    """``n`` seed-style clients while the event loop is held: connect, write, close. The
    kernel completes the handshakes; every connection waits in the accept queue."""
    for i in range(n):
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(announce(i))


def test_a_burst_queued_in_the_kernel_is_served_in_full(run: Run, wait_until) -> None:
    """More connections than one drain slice, all waiting before the loop runs again."""

    async def scenario() -> None:
        svc = Service()
        n = tcp.DRAIN_SLICE * 2 + 7
        async with serving(svc) as server:
            burst(addr_of(server), n)
            await wait_until(lambda: len(svc.seen) == n, what=f"{n} announces")
            assert server.active == 0 and not server._queue
        assert svc.rejects == []
        assert sorted(map(addr_of_announce, svc.seen)) == sorted(
            addr_of_announce(v1.decode_message(announce(i))) for i in range(n)
        )

    run(scenario())


def test_accepting_ahead_stops_at_its_bound_and_the_kernel_keeps_the_rest(
    run: Run, wait_until
) -> None:
    async def scenario() -> None:
        svc = Service()
        async with serving(svc) as server:
            server._ahead = 5
            burst(addr_of(server), 40)
            await wait_until(lambda: len(svc.seen) == 40, what="40 announces")
            assert not server._queue

    run(scenario())


def test_a_message_that_arrives_after_the_accept_is_read_when_it_comes(
    run: Run, wait_until
) -> None:
    async def scenario() -> None:
        svc = Service()
        svc.reply = b"[]\n"
        async with serving(svc) as server:
            reader, writer = await asyncio.open_connection(*addr_of(server))
            try:
                await wait_until(lambda: server.active == 1, what="the connection to be held")
                writer.write(LOOKUP[:10])
                await writer.drain()
                writer.write(LOOKUP[10:])
                assert await reader.read() == b"[]\n"
                assert server.active == 0
            finally:
                writer.close()
        assert svc.seen == [v1.Lookup(IH, 0)]

    run(scenario())


def test_a_reply_larger_than_the_socket_buffers_arrives_whole(run: Run) -> None:
    async def scenario() -> None:
        svc = Service()
        svc.reply = b"[" + b'{"addr":"10.0.0.1:1"},' * 200_000 + b'{"addr":"10.0.0.1:1"}]\n'
        async with serving(svc) as server:
            reader, writer = await asyncio.open_connection(*addr_of(server))
            try:
                writer.write(LOOKUP)
                assert await reader.read() == svc.reply
                assert server.active == 0
            finally:
                writer.close()

    run(scenario())


def test_a_stalled_connection_times_out_and_frees_its_slot(run: Run, wait_until) -> None:
    async def scenario() -> None:
        svc = Service()
        async with serving(svc, read_timeout_s=0.2, max_connections=1) as server:
            reader, writer = await asyncio.open_connection(*addr_of(server))
            try:
                writer.write(b'{"type":')
                assert await reader.read() == v1.encode_error(
                    "read timeout: no complete message within 0.2 s"
                )
                assert server.active == 0 and server._timer is None
            finally:
                writer.close()
        assert svc.rejects == ["read timeout: no complete message within 0.2 s"]

    run(scenario())


class Echo(asyncio.Protocol):
    def __init__(self, transport: asyncio.Transport, first: bytes) -> None:
        self.transport = transport
        transport.write(b"v2:" + first)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool | None:
        self.transport.close()
        return None


@pytest.mark.parametrize("late", [False, True], ids=["first bytes at accept", "bytes later"])
def test_the_v2_preface_hands_the_connection_over(run: Run, late: bool, wait_until) -> None:
    async def scenario() -> None:
        svc = Service()
        async with serving(svc, v2_magic=b"\x00C2", upgrade=Echo) as server:
            reader, writer = await asyncio.open_connection(*addr_of(server))
            try:
                if late:
                    await wait_until(lambda: server.active == 1, what="the connection to be held")
                writer.write(b"\x00C2hello")
                await writer.drain()
                assert await reader.readexactly(11) == b"v2:\x00C2hello"
                assert server.active == 0  # the v2 side keeps its own accounting
                writer.write(b" more")
                assert await reader.readexactly(5) == b" more"
                writer.write_eof()
                assert await reader.read() == b""
            finally:
                writer.close()
        assert svc.seen == [] and svc.rejects == []

    run(scenario())


def test_closing_the_server_closes_what_it_holds(run: Run, wait_until) -> None:
    async def scenario() -> None:
        svc = Service()
        async with serving(svc) as server:
            reader, writer = await asyncio.open_connection(*addr_of(server))
            writer.write(b'{"type":')
            await writer.drain()
            await wait_until(lambda: server.active == 1, what="the connection to be held")
        try:
            # closed, no reply (a reset if the bytes were still unread in the socket)
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()

    run(scenario())


class _NoDescriptors:
    """A listener whose accept fails as when the process is out of descriptors."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.family, self.type, self.proto = real.family, real.type, real.proto

    def fileno(self) -> int:
        return self.real.fileno()

    def _accept(self) -> tuple[int, object]:
        raise OSError(errno.EMFILE, "Too many open files")


def test_out_of_descriptors_pauses_accepting_only_with_nothing_queued(run: Run) -> None:
    async def scenario() -> None:
        svc = Service()
        async with serving(svc) as server:
            starved = _NoDescriptors(server._listeners[0])
            server._queue.append((socket.socket(), ("127.0.0.1", 1)))
            server._take(starved)  # type: ignore[arg-type]
            assert server._resume == []  # the queued connection will give its descriptor back
            server._queue.popleft()[0].close()
            server._take(starved)  # type: ignore[arg-type]
            assert len(server._resume) == 1  # paused: accepting again in ACCEPT_RETRY_S

    run(scenario())
