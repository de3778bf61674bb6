"""Node-to-node I/O over TCP: the v1 server (one JSON message per connection) and client.

The protocol logic lives in :mod:`chisme.wire.v1` (sans-I/O); this module only moves bytes,
enforces deadlines and the connection cap; socket errors become PeerErrors through
:mod:`chisme.net.errors`.

The server accepts by itself, on plain non-blocking sockets, rather than through asyncio
transports. A node of the original design opens one connection per message and closes it at
once, so the node port lives on connections that carry ~200 bytes each; a transport's setup
(its handle, buffers, protocol object, two timers) cost several times the message, and a
burst of them overflowed the kernel's accept queue: dropped SYNs, and clients that wait a
whole second to retransmit. Now:

- connections are taken off the kernel's queue as they arrive, ahead of serving them (a few
  µs each, against ~30 to serve one), into a queue of the server's own; the listen backlog is
  as deep as the kernel allows (:data:`~chisme.net.listener.MAX_BACKLOG`);
- a connection whose message is already in its socket buffer (the usual case) is read,
  applied and closed at once, with no registration at all;
- one still waiting for bytes is watched with ``add_reader`` under a read deadline; all
  deadlines are ``read_timeout_s`` long, so one ordered table and one timer serve every
  connection (:class:`Deadlines`);
- only a connection that starts with the v2 preface gets a transport
  (``connect_accepted_socket``), for its long life.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Final, Generic, Protocol, TypeVar, cast

from chisme.errors import ChismeError, PeerUnreachable, WireError
from chisme.net.errors import peer_errors, translate_peer_error
from chisme.net.listener import MAX_BACKLOG, listen_sockets
from chisme.wire.framing import JsonValueScanner
from chisme.wire.v1 import ANSWERED_HTTP, Message, V1Reader, encode_error, is_http

log = logging.getLogger("chisme.net")

Upgrade = Callable[[asyncio.Transport, bytes], asyncio.Protocol]
"""Takes over a connection whose first bytes are not v1 (the v2 protocol hooks in here)."""

ACCEPT_AHEAD: Final = 16384
"""Accepted connections waiting to be served, at most (fewer when the process may open few
descriptors: half of RLIMIT_NOFILE). Beyond it, the kernel's accept queue holds them. With
the kernel's queue (4096 by default), a 10,000-message burst fits even when the node gets a
third of a core while the burst lasts."""
DRAIN_SLICE: Final = 256
"""Connections served per event-loop callback at most, so that a burst cannot hold the loop
for long."""
TAKE_EVERY: Final = 16
"""Serving this many connections (~0.5 ms), the server accepts again what has arrived."""

RECV_BYTES: Final = 65536
DEADLINE_SLACK_S: Final = 0.05
"""How late a deadline may fire: deadlines that fall due within this of each other are
handled by one timer callback, so the timer fires at most ~20 times a second, not once per
connection."""

ACCEPT_RETRY_S: Final = 1.0
"""Pause after the process ran out of descriptors (or buffers): the kernel keeps the pending
connections queued meanwhile, as asyncio's own servers do."""

_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)
_ACCEPT_PAUSES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _descriptor_limit() -> int:
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


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


K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """Deadlines that are all ``timeout_s`` long, by the loop's clock.

    Started in time order, they fall due in the same order, so an insertion-ordered table is
    also a priority queue: adding, discarding and expiring are O(1) each, with no heap and no
    timer handle per entry. The owner runs one timer for :meth:`next_due` (sans-I/O: every
    time comes in as an argument).
    """

    __slots__ = ("_due", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._due: OrderedDict[K, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def add(self, key: K, now: float) -> None:
        """Start ``key``'s deadline; ``now`` never goes back between calls (a monotonic
        clock). Adding a key again restarts it."""
        self._due.pop(key, None)
        self._due[key] = now + self.timeout_s

    def discard(self, key: K) -> None:
        self._due.pop(key, None)

    def next_due(self) -> float | None:
        """When the earliest deadline falls due, or ``None`` if there is none."""
        for due in self._due.values():
            return due
        return None

    def expire(self, now: float) -> list[K]:
        """Remove and return, oldest first, the keys whose deadline is ``now`` or earlier."""
        due = self._due
        out: list[K] = []
        while due:
            key, when = next(iter(due.items()))
            if when > now:
                break
            del due[key]
            out.append(key)
        return out


class _Conn:
    """A node-port connection still held: its message has not all arrived, or its reply has
    not all been sent."""

    __slots__ = ("fd", "first", "out", "peer", "reader", "received", "sock")

    def __init__(self, sock: socket.socket, peer: str, max_bytes: int) -> None:
        self.sock = sock
        self.fd = -1  # registered with the loop (add_reader/add_writer) when >= 0
        self.peer = peer
        self.reader = V1Reader(max_bytes)
        self.received = 0  # bytes of the message so far
        self.first = True  # no byte received yet
        self.out: memoryview | None = None  # the rest of the reply, while it is being sent


class NodePortServer:
    """Serves v1 on a TCP port; hands connections that start with a v2 magic to ``upgrade``."""

    backlog = MAX_BACKLOG

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
        self._first_magic = v2_magic[:1] if upgrade is not None else b""
        self._timeout_reason = f"read timeout: no complete message within {read_timeout_s:g} s"
        # connections waiting for their message; then for their reply to drain (a client that
        # does not read a reply larger than the socket buffers must not hold its slot forever)
        self._reading: Deadlines[_Conn] = Deadlines(read_timeout_s)
        self._writing: Deadlines[_Conn] = Deadlines(read_timeout_s)
        self._listeners: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._resume: list[asyncio.TimerHandle] = []
        self._queue: deque[tuple[socket.socket, object]] = deque()  # accepted, not yet served
        self._ahead = min(ACCEPT_AHEAD, max(64, _descriptor_limit() // 2))
        self._draining: asyncio.Handle | None = None
        self._handovers: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        """Connections held open (the v2 side keeps its own connection accounting)."""
        return len(self._reading) + len(self._writing)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; a port in use or an address not on this host is a ConfigError."""
        self._loop = loop = asyncio.get_running_loop()
        self._listeners = await listen_sockets(host, port, backlog=self.backlog)
        for lsock in self._listeners:
            loop.add_reader(lsock.fileno(), self._on_acceptable, lsock)
        sockname = self._listeners[0].getsockname()
        return sockname[0], sockname[1]

    async def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for lsock in self._listeners:
            loop.remove_reader(lsock.fileno())
            lsock.close()
        self._listeners = []
        for handle in self._resume:
            handle.cancel()
        self._resume.clear()
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
        while self._queue:
            self._queue.popleft()[0].close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for table in (self._reading, self._writing):
            for conn in table.expire(float("inf")):
                self._close(conn, loop)
        tasks = list(self._handovers)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- accepting ------------------------------------------------------------------------

    def _on_acceptable(self, lsock: socket.socket) -> None:
        self._take(lsock)
        if self._draining is None:
            self._drain()

    def _take(self, lsock: socket.socket) -> None:
        """Accept what the kernel has queued on ``lsock``, up to ``_ahead`` waiting in all.

        Accepting costs a few µs, serving ~30: taking connections off the kernel's queue as
        they come (as the seed's Go accept loop does, a goroutine each) keeps that queue from
        overflowing in a burst, which would drop SYNs and stall clients for a second.
        """
        queue = self._queue
        # socket.accept() is _accept() plus a socket object built from the listener's
        # family, type and proto properties, each an enum conversion (~2 µs a connection):
        # build it from the ints directly.
        family, kind, proto = int(lsock.family), int(lsock.type), lsock.proto
        accept = lsock._accept  # type: ignore[attr-defined]
        while len(queue) < self._ahead:
            try:
                fd, peername = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # out of descriptors or buffers: those of the queued connections come back
                # as they are served; with none queued, wait (as asyncio's servers do)
                if e.errno in _ACCEPT_PAUSES and not queue:
                    log.warning("node port: cannot accept (%s); retrying in %g s",
                                e.strerror, ACCEPT_RETRY_S)
                    self._pause(lsock)
                return
            queue.append((socket.socket(family, kind, proto, fd), peername))

    def _drain(self) -> None:
        """Serve queued connections, a slice at a time, accepting more every few."""
        self._draining = None
        queue = self._queue
        for n in range(DRAIN_SLICE):
            if not queue:
                return
            if n and n % TAKE_EVERY == 0:
                for lsock in self._listeners:
                    self._take(lsock)
            sock, peername = queue.popleft()
            self._serve(sock, peername)
        if queue and self._loop is not None:  # let the loop's other work in, then go on
            self._draining = self._loop.call_soon(self._drain)

    def _pause(self, lsock: socket.socket) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.remove_reader(lsock.fileno())

        def resume() -> None:
            if self._loop is loop and lsock in self._listeners:
                loop.add_reader(lsock.fileno(), self._on_acceptable, lsock)

        self._resume = [h for h in self._resume if not h.cancelled()]
        self._resume.append(loop.call_later(ACCEPT_RETRY_S, resume))

    def _serve(self, sock: socket.socket, peername: object) -> None:
        if not _DONTWAIT:
            sock.setblocking(False)
        conn = _Conn(sock, format_peer(peername), self.max_bytes)
        if self.active >= self.max_connections:
            self._fail(conn, "too many connections")
        elif not self._read(conn):
            self._wait(conn)

    def _wait(self, conn: _Conn) -> None:
        """The message has not all arrived: watch the socket, under the read deadline."""
        loop = self._loop
        assert loop is not None
        conn.fd = conn.sock.fileno()
        loop.add_reader(conn.fd, self._read, conn)
        self._reading.add(conn, loop.time())
        self._arm(loop)

    # -- reading --------------------------------------------------------------------------

    def _read(self, conn: _Conn) -> bool:
        """Take what has arrived. True once the connection is dealt with (answered, failed,
        dropped or handed over); False while its message is incomplete."""
        sock = conn.sock
        while True:
            try:
                data = sock.recv(RECV_BYTES, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:  # reset by the peer: nobody left to answer
                self._close(conn)
                return True
            if not data:  # EOF: the peer sent all it will
                try:
                    whole = conn.reader.feed_eof()
                except WireError as e:
                    self._fail(conn, e.reason)
                else:
                    self._answer(conn, whole)
                return True
            if conn.first:
                conn.first = False
                if self._first_magic and data[:1] == self._first_magic:
                    self._hand_over(conn, data)
                    return True
            conn.received += len(data)
            try:
                msg = conn.reader.feed(data)
            except WireError as e:
                self._fail(conn, e.reason)
                return True
            if msg is not None:
                self._answer(conn, msg)
                return True

    def _answer(self, conn: _Conn, msg: Message) -> None:
        try:
            reply = self.service.handle_v1(msg, conn.peer, conn.received)
        except ChismeError as e:
            reason = getattr(e, "reason", str(e))
            self.service.reject("node", reason)
            reply = encode_error(reason)
        except Exception:
            log.exception("bug: handling a v1 message from %s", conn.peer)
            reply = encode_error("internal error")
        self._reply(conn, reply)

    def _fail(self, conn: _Conn, reason: str) -> None:
        self.service.reject("node", reason)
        log.debug("rejecting a message from %s: %s", conn.peer, reason)
        self._reply(conn, encode_error(reason))

    # -- replying and closing -------------------------------------------------------------

    def _reply(self, conn: _Conn, reply: bytes | None) -> None:
        """Send the reply (if any), then close; what the socket buffer cannot take at once is
        sent as the client reads it, within ``read_timeout_s``."""
        loop = self._loop
        if loop is None:  # the server closed meanwhile
            self._close(conn)
            return
        if conn.fd >= 0:
            loop.remove_reader(conn.fd)
            self._reading.discard(conn)
        if reply:
            try:
                sent = conn.sock.send(reply, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # the peer is gone
                sent = len(reply)
            if sent < len(reply):
                conn.out = memoryview(reply)[sent:]
                conn.fd = conn.sock.fileno()
                loop.add_writer(conn.fd, self._on_writable, conn)
                self._writing.add(conn, loop.time())
                self._arm(loop)
                return
        self._close(conn, loop)

    def _on_writable(self, conn: _Conn) -> None:
        out = conn.out
        assert out is not None
        try:
            sent = conn.sock.send(out, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(out)
        if sent < len(out):
            conn.out = out[sent:]
            return
        self._close(conn)

    def _close(self, conn: _Conn, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Forget the connection and close its socket (graceful: FIN after what was sent)."""
        loop = loop or self._loop
        if conn.fd >= 0:
            if loop is not None:
                loop.remove_reader(conn.fd)
                loop.remove_writer(conn.fd)
            self._reading.discard(conn)
            self._writing.discard(conn)
            conn.fd = -1
        conn.out = None
        conn.sock.close()

    # -- deadlines ------------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            return
        due = [d for d in (self._reading.next_due(), self._writing.next_due()) if d is not None]
        if due:
            self._timer = loop.call_at(min(due) + DEADLINE_SLACK_S, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        for conn in self._reading.expire(now):
            self._fail(conn, self._timeout_reason)
        for conn in self._writing.expire(now):
            self._close(conn, loop)  # the client did not read its reply in time: cut it off
        self._arm(loop)

    # -- v2 -------------------------------------------------------------------------------

    def _hand_over(self, conn: _Conn, data: bytes) -> None:
        """The first bytes are the v2 preface: the connection becomes a v2 stream."""
        loop = self._loop
        assert loop is not None and self.upgrade is not None
        if conn.fd >= 0:
            loop.remove_reader(conn.fd)
            self._reading.discard(conn)
            conn.fd = -1
        task = loop.create_task(self._adopt(conn.sock, data, self.upgrade))
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def _adopt(self, sock: socket.socket, first: bytes, upgrade: Upgrade) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: _HandOver(upgrade, first), sock)
        except OSError as e:
            log.debug("v2 hand-over failed: %s", e)
            sock.close()
        except BaseException:
            sock.close()  # a no-op once a transport owns the socket
            raise


class _HandOver(asyncio.Protocol):
    """Gives a fresh transport, and the bytes already read from it, to the v2 side."""

    def __init__(self, upgrade: Upgrade, first: bytes) -> None:
        self.upgrade = upgrade
        self.first = first

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.set_protocol(self.upgrade(transport, self.first))


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
