"""The node port's sockets, bound and wired: v1 JSON and v2 streams on TCP, v2 datagrams on
UDP, one port number (docs/v2.md §1), behind the transport seam the cluster role uses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from chisme.clock import Clock
from chisme.config import Config
from chisme.errors import ChismeError, ConfigError
from chisme.frontends.node_port import NodePortHandler
from chisme.metrics import Metrics
from chisme.net import tcp
from chisme.net.transport import Endpoint, SocketTransport
from chisme.net.v2 import V2Transport, udp_port_free
from chisme.node.observer import NodeObserver
from chisme.wire import v2
from chisme.wire.v1 import Message

Spawn = Callable[[Coroutine[Any, Any, None]], object]


class NodePort:
    """Binds the node port; ``attach`` hands it the cluster role and the v1 handler once they
    exist (a v2 member is named by the address the port got, so the port comes first).
    Until then a v1 message is refused with a reason and a datagram is dropped, as a lost
    one would be."""

    def __init__(self, config: Config, clock: Clock, metrics: Metrics, spawn: Spawn) -> None:
        self.config = config
        self.metrics = metrics
        self.observer = NodeObserver(metrics)
        self.transport = SocketTransport(
            clock=clock, spawn=spawn, count=self.observer.transport,
            peer_timeout_s=config.peer_timeout_s, max_message_bytes=config.max_message_bytes,
            max_concurrent_sends=config.max_concurrent_sends,
        )
        self.spawn = spawn
        self.v2: V2Transport | None = None
        self.role: Endpoint | None = None
        self.handler: NodePortHandler | None = None
        self.on_v1_peer: Callable[[str], None] = lambda addr: None
        on_v2 = config.protocol == "v2"
        self._server = tcp.NodePortServer(
            self,
            max_bytes=config.max_message_bytes,
            read_timeout_s=config.read_timeout_s,
            max_connections=config.max_connections,
            v2_magic=v2.PREFACE if on_v2 else b"",
            upgrade=self._upgrade if on_v2 else None,
        )
        self.bound: tuple[str, int] | None = None

    async def bind(self) -> tuple[str, int]:
        """Listen on ``listen``; in v2 the UDP socket on the same number as well."""
        cfg = self.config
        host, port = tcp.split_host_port(cfg.listen)
        self.bound = await self._server.start(host, port)
        # port 0 in v2: the OS chose a free TCP port, but its UDP twin may be taken
        for _ in range(20 if cfg.protocol == "v2" and port == 0 else 0):
            if udp_port_free(*self.bound):
                break
            await self._server.close()
            self.bound = await self._server.start(host, port)
        return self.bound

    async def start_v2(self, member_id: str, addr: str) -> None:
        """The v2 streams and datagrams of member ``member_id``, reachable at ``addr``."""
        cfg = self.config
        assert self.bound is not None
        self.v2 = V2Transport(
            cluster=cfg.cluster_name,
            member_id=member_id,
            addr=addr,
            max_frame_bytes=cfg.max_message_bytes,
            dial_timeout_s=cfg.peer_timeout_s,
            handshake_timeout_s=cfg.read_timeout_s,
            deliver=self._deliver,
            spawn=self.spawn,
            count=self.observer.transport,
            max_streams=cfg.max_connections,
            on_v1_peer=self._v1_peer,
        )
        await self.v2.start_udp(*self.bound)

    def attach(self, role: Endpoint, handler: NodePortHandler) -> None:
        self.role = role
        self.handler = handler
        self.transport.attach(role, self.v2)

    async def close(self) -> None:
        await self.transport.close()
        if self.v2 is not None:
            await self.v2.close()
        with contextlib.suppress(Exception):
            await self._server.close()

    # -- what the TCP server and the v2 transport call ------------------------------------

    def handle_v1(self, msg: Message, peer: str, size: int = 0) -> bytes | None:
        if self.handler is None:
            raise ChismeError("the node is starting: try again")
        return self.handler.handle_v1(msg, peer, size)

    def reject(self, surface: str, reason: str) -> None:
        self.metrics.reject(surface, reason)

    def _v1_peer(self, addr: str) -> None:
        self.on_v1_peer(addr)

    def _deliver(self, src: str, msg: object) -> None:
        if self.role is not None:
            self.role.deliver(src, msg)

    def _upgrade(self, transport: asyncio.Transport, data: bytes) -> asyncio.Protocol:
        if self.v2 is None:
            raise ConfigError("v2 is not running")
        return self.v2.upgrade(transport, data)
