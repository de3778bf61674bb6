"""v2 node-to-node I/O: UDP datagrams and persistent, framed TCP streams (docs/v2.md).

The engine (:mod:`chisme.core.replication.engine`, driven by :mod:`chisme.cluster.v2`) decides
what to send; this shell only moves it:
unreliable messages go out as one datagram from the node port; reliable ones go on one
persistent TCP stream per peer (dialed on first use, or the peer's own inbound stream),
after a handshake that refuses another cluster. Every queue is bounded; every dial has a
deadline; nothing a peer sends can raise out of a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

from chisme.errors import ChismeError, PeerError, WireError
from chisme.net.errors import bind_errors, peer_errors
from chisme.net.tcp import format_peer, split_host_port
from chisme.wire import v2

log = logging.getLogger("chisme.v2")

Deliver = Callable[[str, object], None]
Spawn = Callable[[Coroutine[Any, Any, None]], object]

_MAX_PENDING = 512  # frames waiting for a dial to finish, per peer
_MAX_BUFFERED = 4 << 20  # bytes queued on one stream before we drop (a stalled peer)


def udp_port_free(host: str, port: int) -> bool:
    """Whether UDP ``host:port`` can be bound now (a v2 node port is TCP and UDP on one
    number: after the OS chose a free TCP port for port 0, its UDP twin may be taken)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        with socket.socket(infos[0][0], socket.SOCK_DGRAM) as s:
            s.bind(infos[0][4])
    except OSError:
        return False
    return True


class V2Transport:
    """UDP endpoint + stream registry for one node."""

    def __init__(
        self,
        *,
        cluster: str,
        member_id: str,
        addr: str,
        max_frame_bytes: int,
        dial_timeout_s: float,
        handshake_timeout_s: float,
        deliver: Deliver,
        spawn: Spawn,
        count: Callable[[str, str, int], None] | None = None,
        max_streams: int = 1024,
        on_v1_peer: Callable[[str], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.tag = v2.cluster_tag(cluster)
        self.hello = v2.Hello(v2.VERSION, cluster, member_id, addr)
        self.addr = addr
        self.max_frame_bytes = max_frame_bytes
        self.dial_timeout_s = dial_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.deliver = deliver
        self.spawn = spawn
        self.count = count or (lambda direction, kind, n: None)
        # a peer we dialed answered our hello as a node of the original design would: with a
        # v1 error line, or by closing without a byte (its JSON decoder failed on the preface)
        self.on_v1_peer = on_v1_peer or (lambda addr: None)
        self.max_streams = max_streams  # inbound streams at once (the node port's own cap
        # stops counting a connection once it is handed over to v2)
        self._udp: asyncio.DatagramTransport | None = None
        self._streams: dict[str, _Stream] = {}  # peer addr -> the stream we send it on
        self._open: set[_Stream] = set()  # every stream, registered or not (closed on close)
        self.inbound = 0
        self._dialing: dict[str, deque[bytes]] = {}
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------

    async def start_udp(self, host: str, port: int) -> None:
        """Bind the UDP side of the node port; a port taken is a ConfigError, as for TCP."""
        loop = asyncio.get_running_loop()
        with bind_errors("udp", host, port):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(host, port), reuse_port=False
            )
        self._udp = transport

    async def close(self) -> None:
        """Close the UDP socket and every stream: registered, duplicate or mid-handshake
        (closing only the registered ones left the others open after the node stopped)."""
        self._closed = True
        if self._udp is not None:
            self._udp.close()
        for stream in list(self._open):
            stream.close()
        self._open.clear()
        self._streams.clear()
        self._dialing.clear()

    # -- sending ------------------------------------------------------------------------

    def send(self, to: str, msg: object, reliable: bool) -> None:
        if self._closed:
            return
        try:
            if reliable:
                self._send_frame(to, v2.encode_frame(msg))
            else:
                data = v2.encode_datagram(self.tag, msg)
                if self._udp is not None:
                    host, port = split_host_port(to)
                    self._udp.sendto(data, (host, port))
                    self.count("out", "datagram", len(data))
        except ChismeError as e:
            log.debug("not sent to %s: %s", to, e)
            self.count("drop", "too_large", 1)

    def _send_frame(self, to: str, frame: bytes) -> None:
        stream = self._streams.get(to)
        if stream is not None and stream.open:
            if stream.buffered() > _MAX_BUFFERED:
                self.count("drop", "stalled", 1)
                return
            stream.write(frame)
            self.count("out", "frame", len(frame))
            return
        pending = self._dialing.get(to)
        if pending is None:
            pending = self._dialing[to] = deque(maxlen=_MAX_PENDING)
            self.spawn(self._dial(to))
        pending.append(frame)

    async def _dial(self, to: str) -> None:
        try:
            host, port = split_host_port(to)
            loop = asyncio.get_running_loop()
            with peer_errors(to, self.dial_timeout_s):
                async with asyncio.timeout(self.dial_timeout_s):
                    _, proto = await loop.create_connection(
                        lambda: _Stream(self, outbound=True, dialed=to), host, port
                    )
            stream = proto
            if self._closed:  # closed while we dialed
                stream.close()
                return
            self._streams[to] = stream
            stream.peer_addr = to
            pending = self._dialing.pop(to, deque())
            for frame in pending:
                stream.write(frame)
                self.count("out", "frame", len(frame))
        except PeerError as e:
            self._dialing.pop(to, None)
            self.count("drop", "unreachable", 1)
            log.debug("dial %s failed: %s", to, e)
        except asyncio.CancelledError:
            self._dialing.pop(to, None)
            raise

    # -- receiving -----------------------------------------------------------------------

    def upgrade(self, transport: asyncio.Transport, data: bytes) -> asyncio.Protocol:
        """Take over an inbound connection of the node port whose first bytes are v2."""
        stream = _Stream(self, outbound=False)
        if self._closed or self.inbound >= self.max_streams:
            self.count("drop", "too_many_streams", 1)
            with contextlib.suppress(ChismeError):
                transport.write(v2.encode_frame(v2.Error("too many v2 streams")))
            transport.close()
            return stream  # never opened: it ignores whatever still arrives
        self.inbound += 1
        stream.counted = True
        stream.connection_made(transport)
        stream.data_received(data)
        return stream

    def on_hello(self, stream: _Stream, hello: v2.Hello) -> None:
        if hello.version != v2.VERSION:
            raise WireError(f"unsupported protocol version {hello.version}")
        if hello.cluster != self.cluster:
            raise WireError("wrong cluster")
        stream.peer_addr = hello.addr
        if not stream.outbound:
            old = self._streams.get(hello.addr)
            if old is None or not old.open:
                self._streams[hello.addr] = stream

    def forget(self, stream: _Stream) -> None:
        self._open.discard(stream)
        if stream.counted:
            stream.counted = False
            self.inbound -= 1
        if stream.peer_addr and self._streams.get(stream.peer_addr) is stream:
            del self._streams[stream.peer_addr]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: V2Transport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        owner = self.owner
        owner.count("in", "datagram", len(data))
        try:
            msg = v2.decode_datagram(owner.tag, data)
        except WireError as e:
            owner.count("drop", "bad_datagram", 1)
            log.debug("bad datagram from %s: %s", addr, e.reason)
            return
        try:
            owner.deliver(format_peer(addr), msg)
        except Exception:
            log.exception("bug: handling a datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _Stream(asyncio.Protocol):
    """One persistent v2 stream (either direction)."""

    def __init__(self, owner: V2Transport, *, outbound: bool, dialed: str = "") -> None:
        self.owner = owner
        self.outbound = outbound
        self.dialed = dialed  # the address we dialed (outbound streams)
        self.reader = v2.FrameReader(owner.max_frame_bytes, expect_preface=not outbound)
        self.transport: asyncio.Transport | None = None
        self.peer_addr = ""
        self.greeted = False
        self.open = False
        self.counted = False  # holds one of the owner's inbound slots
        self.first = True  # no byte received yet
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.open = True
        self.owner._open.add(self)
        if self.outbound:
            self.transport.write(v2.PREFACE + v2.encode_frame(self.owner.hello))
        else:
            self.transport.write(v2.encode_frame(self.owner.hello))
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.owner.handshake_timeout_s, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            return
        owner = self.owner
        owner.count("in", "frame", len(data))
        try:
            first, self.first = self.first, False
            if first and self.outbound and data[:1] in (b"{", b"["):
                # its 4 first bytes would read as a length over the cap: it speaks v1 only
                log.info("%s answered the v2 hello in v1 JSON", self.dialed)
                owner.on_v1_peer(self.dialed)
                self.close()
                return
            for msg in self.reader.feed(data):
                if not self.greeted:
                    if not isinstance(msg, v2.Hello):
                        raise WireError("expected a hello frame first")
                    owner.on_hello(self, msg)
                    self.greeted = True
                    if self.timer is not None:
                        self.timer.cancel()
                    continue
                if isinstance(msg, v2.Error):
                    log.info("peer %s refused us: %s", self.peer_addr, msg.reason)
                    self.close()
                    return
                owner.deliver(self.peer_addr, msg)
        except WireError as e:
            owner.count("drop", "bad_frame", 1)
            log.info("closing v2 stream from %s: %s", self.peer_addr or "?", e.reason)
            self._refuse(e.reason)
        except Exception:
            log.exception("bug: handling a v2 frame from %s", self.peer_addr)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        was_open, self.open = self.open, False
        if self.timer is not None:
            self.timer.cancel()
        self.owner.forget(self)
        if was_open and self.outbound and self.first and exc is None:
            # closed by the peer before a single byte: how a node of the original design
            # answers bytes that are not JSON (docs/WIRE.md: "the original design gives no
            # reply")
            log.info("%s closed the v2 hello unanswered", self.dialed)
            self.owner.on_v1_peer(self.dialed)

    def write(self, frame: bytes) -> None:
        if self.transport is not None and self.open:
            self.transport.write(frame)

    def buffered(self) -> int:
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def close(self) -> None:
        self.open = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(ChismeError):
                self.transport.write(v2.encode_frame(v2.Error(reason[:200])))
        self.close()

    def _handshake_timeout(self) -> None:
        if not self.greeted:
            self._refuse("handshake timeout")
