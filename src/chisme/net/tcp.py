"""Node-to-node I/O over TCP: the v1 server (one JSON message per connection) and client.

The protocol logic lives in :mod:`chisme.wire.v1` (sans-I/O); this module only moves bytes,
enforces deadlines and the connection cap; socket errors become PeerErrors through
:mod:`chisme.net.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol, cast

from chisme.errors import ChismeError, PeerUnreachable, WireError
from chisme.net.errors import peer_errors, translate_peer_error
from chisme.net.listener import TcpListener
from chisme.wire.framing import JsonValueScanner
from chisme.wire.v1 import ANSWERED_HTTP, Message, V1Reader, encode_error, is_http

log = logging.getLogger("chisme.net")

Upgrade = Callable[[asyncio.Transport, bytes], asyncio.Protocol]
"""Takes over a connection whose first bytes are not v1 (the v2 protocol hooks in here)."""


class V1Service(Protocol):
    """What the node port needs from the node: apply one message, maybe answer it."""

    def handle_v1(self, msg: Message, peer: str, size: int = 0) -> bytes | None:
        """``size``: the bytes the message arrived in."""
        ...

    def reject(self, surface: str, reason: str) -> None: ...


def split_host_port(addr: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port) for a socket call."""
    host, _, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_peer(peername: object) -> str:
    """The ``host:port`` text of a socket peer name."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "?"


class NodePortServer(TcpListener):
    """Serves v1 on a TCP port; hands connections that start with a v2 magic to ``upgrade``."""

    def __init__(
        self,
        service: V1Service,
        *,
        max_bytes: int,
        read_timeout_s: float,
        max_connections: int,
        v2_magic: bytes = b"",
        upgrade: Upgrade | None = None,
    ) -> None:
        self.service = service
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections
        self.v2_magic = v2_magic
        self.upgrade = upgrade
        self.active = 0

    def connection(self) -> asyncio.Protocol:
        return _V1Connection(self)


class _V1Connection(asyncio.Protocol):
    """One inbound connection: read one JSON value (WIRE.md: no newline, no EOF needed)."""

    def __init__(self, server: NodePortServer) -> None:
        self.server = server
        self.reader = V1Reader(server.max_bytes)
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.peer = "?"
        self.done = False
        self.counted = False
        self.first = True
        self.received = 0  # bytes of the message so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.peer = format_peer(transport.get_extra_info("peername"))
        if self.server.active >= self.server.max_connections:
            self._fail("too many connections")
            return
        self.server.active += 1
        self.counted = True
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.read_timeout_s, self._on_timeout)

    def data_received(self, data: bytes) -> None:
        if self.done or self.transport is None:
            return
        if self.first:
            self.first = False
            magic = self.server.v2_magic
            if magic and self.server.upgrade is not None and data[:1] == magic[:1]:
                self._hand_over(data)
                return
        self.received += len(data)
        try:
            msg = self.reader.feed(data)
        except WireError as e:
            self._fail(e.reason)
            return
        if msg is not None:
            self._answer(msg)

    def eof_received(self) -> bool | None:
        if not self.done:
            try:
                msg = self.reader.feed_eof()
            except WireError as e:
                self._fail(e.reason)
                return None
            if msg is not None:
                self._answer(msg)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            self.server.active -= 1
            self.counted = False

    def _hand_over(self, data: bytes) -> None:
        assert self.transport is not None and self.server.upgrade is not None
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:  # the v2 side keeps its own connection accounting
            self.server.active -= 1
            self.counted = False
        proto = self.server.upgrade(self.transport, data)
        self.transport.set_protocol(proto)

    def _answer(self, msg: Message) -> None:
        assert self.transport is not None
        self.done = True
        try:
            reply = self.server.service.handle_v1(msg, self.peer, self.received)
        except ChismeError as e:
            reason = getattr(e, "reason", str(e))
            self.server.service.reject("node", reason)
            reply = encode_error(reason)
        except Exception:
            log.exception("bug: handling a v1 message from %s", self.peer)
            reply = encode_error("internal error")
        if reply:
            self.transport.write(reply)
        self._close()

    def _fail(self, reason: str) -> None:
        assert self.transport is not None
        self.done = True
        self.server.service.reject("node", reason)
        log.debug("rejecting a message from %s: %s", self.peer, reason)
        if not self.transport.is_closing():
            self.transport.write(encode_error(reason))
            self._close()

    def _close(self) -> None:
        """Close once the reply is written, within ``read_timeout_s``: a client that does not
        read a reply larger than the socket buffers would otherwise hold its slot forever."""
        assert self.transport is not None
        self.transport.close()
        if self.timer is not None:
            self.timer.cancel()
        transport = self.transport
        self.timer = asyncio.get_running_loop().call_later(
            self.server.read_timeout_s, transport.abort
        )

    def _on_timeout(self) -> None:
        if not self.done:
            self._fail(f"read timeout: no complete message within {self.server.read_timeout_s:g} s")


async def send_message(addr: str, data: bytes, timeout_s: float) -> None:
    """Fire-and-forget one message (v1 announce/gossip): dial, write, close, under one deadline.

    The close is graceful (FIN after the data) and waited for inside the deadline; when the
    deadline passes or the task is cancelled, the connection is aborted instead: a graceful
    close waits for the peer to read what is buffered, and a peer that never reads would
    otherwise hold this call (and a send slot) forever.
    """
    host, port = split_host_port(addr)
    writer: asyncio.StreamWriter | None = None
    try:
        with peer_errors(addr, timeout_s):
            async with asyncio.timeout(timeout_s):
                _, writer = await asyncio.open_connection(host, port)
                writer.write(data)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
    finally:
        if writer is not None:
            writer.transport.abort()  # a no-op once closed


async def send_confirmed(addr: str, data: bytes, timeout_s: float, max_bytes: int) -> bytes:
    """Send one message, half-close, and read until the peer closes, under one deadline; return
    what it wrote: nothing from a node that took the message (it closes once it is applied), its
    ``{"error": …}`` line if it refused it, or whatever else answered (an HTTP server).

    For a caller that must know the message arrived (``chisme announce``); nodes send each other
    :func:`send_message`. A peer that wrote something and then stalls or resets is not an error
    here: what it wrote is the answer.
    """
    host, port = split_host_port(addr)
    received = bytearray()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            writer.write_eof()
            await writer.drain()
            while len(received) < max_bytes and (chunk := await reader.read(65536)):
                received += chunk
    except (TimeoutError, OSError) as e:  # an answer, then a stall or a reset: still an answer
        if not received:
            ours = translate_peer_error(addr, e, timeout_s)
            assert ours is not None
            raise ours from None
    finally:
        if writer is not None:
            writer.transport.abort()
    return bytes(received[:max_bytes])


async def request(addr: str, data: bytes, timeout_s: float, max_bytes: int) -> bytes:
    """Send one message and read one JSON value back (v1 lookup), all under one deadline.

    An answer that is HTTP (the address is a JSON API or tracker port) raises
    ``WireError(ANSWERED_HTTP)`` rather than a JSON reason that would not say so.
    """
    host, port = split_host_port(addr)
    scanner = JsonValueScanner(max_bytes, allow_null=True)  # Go answers null for nil
    head = b""  # the first bytes, to tell an HTTP answer from other bad JSON
    writer: asyncio.StreamWriter | None = None
    try:
        with peer_errors(addr, timeout_s):
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(data)
                await writer.drain()
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise PeerUnreachable(f"{addr}: closed the connection before answering")
                    if len(head) < 16:
                        head += chunk[:16]
                    try:
                        value = scanner.feed(chunk)
                    except WireError as e:
                        # the scanner fails at the first byte; an "H" alone may be "HTTP/" still
                        while b"HTTP/".startswith(head.lstrip()[:5]) and len(head.lstrip()) < 5:
                            more = await reader.read(16)
                            if not more:
                                break
                            head += more
                        if is_http(head):
                            raise WireError(ANSWERED_HTTP) from e
                        raise
                    if value is not None:
                        writer.close()
                        with contextlib.suppress(OSError):
                            await writer.wait_closed()
                        return value
    finally:
        if writer is not None:
            writer.transport.abort()  # a no-op once closed; never wait on a stuck peer
