"""Shared fixtures for tests that run real nodes on loopback: a node factory, a manual clock,
a predicate waiter, raw v1 and HTTP exchanges.

Nodes bind port 0 (the OS picks free ports); tests never sleep to synchronise: they wait on a
predicate under a deadline (``wait_until``), or read a socket until EOF under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import pytest

from chisme import Config, Node
from chisme.clock import Clock, ManualClock
from chisme.net.memory import (
    MemoryNetwork,
    MemoryTransport,
    NetworkClock,
    NodeCodec,
    VirtualTimeLoop,
)
from chisme.net.tcp import split_host_port
from chisme.tracker.types import AnnounceRequest, Event, TrackerAnswer

DEADLINE_S = 10.0
"""How long a test waits for something that should happen at once (loopback, no load)."""


def local_config(**overrides: Any) -> Config:
    """The ``local`` profile on free loopback ports, BitTorrent front ends off.

    The seed design's v1 gossip (static peers, ``gossip_round``) unless a test asks for
    ``protocol="v2"``: most tests here are about v1 behaviour and drive rounds by hand.
    """
    base: dict[str, Any] = {
        "protocol": "v1",
        "listen": "127.0.0.1:0",
        "api": "127.0.0.1:0",
        "tracker_http": "",
        "tracker_udp": "",
    }
    return Config.profile("local", **{**base, **overrides})


class NodeFactory(Protocol):
    async def __call__(self, *, clock: Clock | None = None, **overrides: Any) -> Node:
        ...


@pytest.fixture
async def node() -> AsyncIterator[NodeFactory]:
    """``await node(**config_overrides)`` starts a Node (stopped at the end of the test).

    Gossip tickers are slowed to an hour unless the test sets ``gossip_interval_s``, so tests
    drive rounds themselves (``await push_round(node)``, ``node.store.sweep(...)``).
    """
    async with contextlib.AsyncExitStack() as stack:

        async def make(*, clock: Clock | None = None, **overrides: Any) -> Node:
            overrides.setdefault("gossip_interval_s", 3600.0)
            overrides.setdefault("sweep_interval_s", 3600.0)
            cfg = local_config(**overrides)
            n = Node(cfg) if clock is None else Node(cfg, clock=clock)
            return await stack.enter_async_context(n)

        yield make


def tracker_announce(
    node: Node,
    info_hash: str,
    addr: bytes,
    peer_id: bytes = b"-qB4650-abcdefghijkl",
    *,
    seeder: bool = False,
    event: Event = Event.NONE,
    numwant: int | None = 50,
) -> TrackerAnswer | Awaitable[TrackerAnswer]:
    """A BitTorrent announce as the HTTP and UDP front ends hand it to the tracker service:
    ``addr`` is the client's compact key (its source IP and the announced port)."""
    a = AnnounceRequest(
        bytes.fromhex(info_hash), peer_id.ljust(20, b"-")[:20], int.from_bytes(addr[-2:]),
        0, 0, 0 if seeder else 1, event, numwant, True, True, None, None,
    )
    return node.tracker.announce(a, addr, "http")


async def push_round(node: Node) -> int:
    """One v1 full push of ``node`` (protocol v1), waited for until every message is sent."""
    push = node.role.push  # type: ignore[attr-defined]
    sent: int = push.round()
    await node.transport.flush()  # type: ignore[attr-defined]
    return sent


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock starting at the real now (so Go-style timestamps look like today's)."""
    return ManualClock()


@pytest.fixture
def config() -> Callable[..., Config]:
    """``config(**overrides)``: the ``local`` profile on port 0, tracker front ends off."""
    return local_config


WaitUntil = Callable[..., Awaitable[None]]


async def _wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout_s: float = DEADLINE_S,
    what: str = "",
) -> None:
    """Poll ``predicate`` (sync or async) until it holds; fail after ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                value = predicate()
                if not isinstance(value, bool):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout_s:g} s waiting for {what or predicate!r}")


@pytest.fixture
def wait_until() -> WaitUntil:
    return _wait_until


async def _exchange(
    addr: str | tuple[str, int],
    data: bytes,
    *,
    half_close: bool = True,
    timeout_s: float = DEADLINE_S,
) -> bytes:
    """Connect, write ``data`` (then EOF if ``half_close``), read everything until EOF."""
    host, port = split_host_port(addr) if isinstance(addr, str) else addr
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if data:
                writer.write(data)
                await writer.drain()
            if half_close:
                writer.write_eof()
            return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


Exchange = Callable[..., Awaitable[bytes]]


@pytest.fixture
def exchange() -> Exchange:
    """``await exchange(addr, data, half_close=True)``: raw bytes in, raw reply until EOF."""
    return _exchange


class HttpReply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"HttpReply({self.status}, {self.headers!r}, {self.body[:200]!r})"


async def read_http_reply(reader: asyncio.StreamReader) -> HttpReply:
    """Read one HTTP/1.1 response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return HttpReply(status, headers, body)


async def _http(
    addr: tuple[str, int],
    method: str,
    target: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = DEADLINE_S,
) -> HttpReply:
    """One HTTP/1.1 request on a fresh connection (``Connection: close``)."""
    hdrs = {"Host": "test", "Connection": "close", **(headers or {})}
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
        hdrs["Content-Length"] = str(len(body))
    raw = f"{method} {target} HTTP/1.1\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in hdrs.items()
    ) + b"\r\n" + (body or b"")
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(*addr)
        try:
            writer.write(raw)
            await writer.drain()
            return await read_http_reply(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


Http = Callable[..., Awaitable[HttpReply]]


@pytest.fixture
def read_reply() -> Callable[[asyncio.StreamReader], Awaitable[HttpReply]]:
    """Read one HTTP response (Content-Length framed) from a stream."""
    return read_http_reply


@pytest.fixture
def http() -> Http:
    """``await http(addr, "GET", "/healthz", body=None, headers=None)`` -> HttpReply."""
    return _http


# -- whole nodes on the in-memory network, on virtual time -------------------------------------


class MemoryCluster:
    """Nodes on one :class:`MemoryNetwork`, each a real :class:`Node` whose transport is the
    network (no node port is bound) and whose clock is the network's virtual time. A test
    body runs on :class:`VirtualTimeLoop`: every sleep and deadline is virtual, so waiting
    out a TTL or a failure detection costs milliseconds of real time."""

    def __init__(self, net: MemoryNetwork, stack: contextlib.AsyncExitStack) -> None:
        self.net = net
        self.clock = NetworkClock(net)
        self._stack = stack
        self._next = 0
        self.running: dict[str, Node] = {}

    def config(self, **overrides: Any) -> Config:
        base: dict[str, Any] = {
            "protocol": "v2", "listen": "127.0.0.1:0", "api": "", "tracker_http": "",
            "tracker_udp": "",
        }
        return Config.profile("local", **{**base, **overrides})

    async def start(self, *, addr: str = "", **overrides: Any) -> Node:
        """A node at ``addr`` (or the next free 10.0.0.N:7070), stopped at the end."""
        if not addr:
            self._next += 1
            addr = f"10.0.0.{self._next}:7070"
        node = Node(self.config(**overrides), clock=self.clock,
                    rng=random.Random(self._next), transport=MemoryTransport(self.net, addr))
        await node.__aenter__()
        self.running[addr] = node
        self._stack.push_async_callback(self._stop_if_running, node)
        return node

    async def cluster(self, n: int, **overrides: Any) -> list[Node]:
        """A seed and ``n - 1`` nodes that know only the seed's address."""
        seed = await self.start(**overrides)
        rest = [await self.start(peers=(seed.node_address,), **overrides) for _ in range(n - 1)]
        return [seed, *rest]

    async def stop(self, node: Node) -> None:
        """A clean stop: the node leaves the cluster."""
        self.running.pop(node.node_address, None)
        await node.__aexit__(None, None, None)

    async def kill(self, node: Node) -> None:
        """A crash: from now on the node sends and receives nothing (no goodbye)."""
        index = self.net.index_of(node.node_address)
        assert index is not None
        self.net.kill(index)
        await self.stop(node)

    async def _stop_if_running(self, node: Node) -> None:
        if self.running.get(node.node_address) is node:
            await self.stop(node)


OnMemory = Callable[[Callable[[MemoryCluster], Awaitable[None]]], None]


@pytest.fixture
def on_memory() -> OnMemory:
    """``on_memory(body)``: run ``async def body(cluster)`` on a fresh network's virtual time
    (the test function itself is a plain ``def``)."""

    def run(body: Callable[[MemoryCluster], Awaitable[None]], *, seed: int = 1,
            loss: float = 0.0) -> None:
        net = MemoryNetwork(NodeCodec(), rng=random.Random(seed), loss=loss, verify=True)

        async def main() -> None:
            async with contextlib.AsyncExitStack() as stack:
                await body(MemoryCluster(net, stack))

        loop = VirtualTimeLoop(net)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    return run
