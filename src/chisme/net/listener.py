"""Opening a TCP listener, the one way every chisme server does it."""

from __future__ import annotations

import asyncio
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Final

from chisme.errors import ConfigError
from chisme.net.errors import bind_errors

MAX_BACKLOG: Final = 65535
"""The deepest accept queue to ask for; the kernel caps it (Linux: ``net.core.somaxconn``, 4096
by default since 5.4). Clients of the original design open one connection per message, so a
burst of them lands in the accept queue at once; when it is full the kernel drops the SYN and
the client waits a whole second for its retransmit."""


async def listen_tcp(
    factory: Callable[[], asyncio.Protocol], host: str, port: int, *, backlog: int
) -> tuple[asyncio.Server, tuple[str, int]]:
    """Listen on ``host:port``; a port in use or an address not on this host is a ConfigError.

    Returns the server and the bound address (port 0 becomes the port the OS picked).
    """
    loop = asyncio.get_running_loop()
    with bind_errors("tcp", host, port):
        server = await loop.create_server(factory, host, port, reuse_address=True, backlog=backlog)
    sockname = server.sockets[0].getsockname()
    return server, (sockname[0], sockname[1])


async def listen_sockets(host: str, port: int, *, backlog: int) -> list[socket.socket]:
    """Listening non-blocking sockets on ``host:port``, bound as ``loop.create_server`` binds
    them: every address ``host`` resolves to (``""``: all interfaces), ``SO_REUSEADDR``, IPv6
    sockets v6-only. For a server that accepts by itself (:mod:`chisme.net.tcp`).

    Raises:
        ConfigError: a port in use, an address not on this host, a name that does not resolve.
    """
    socks: list[socket.socket] = []
    with bind_errors("tcp", host, port):
        try:  # a numeric host (the usual case) needs no resolver thread
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST)
        except socket.gaierror:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        with bind_errors("tcp", host, port):
            raise
    if not socks:
        raise ConfigError(f"cannot listen on tcp {host}:{port}: no address")
    return socks


class TcpListener(ABC):
    """A server that owns one TCP listener: subclasses say which protocol serves a connection."""

    backlog = 1024
    _server: asyncio.Server | None = None

    @abstractmethod
    def connection(self) -> asyncio.Protocol:
        """The protocol object for one new connection."""

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; a port in use or an address not on this host is a ConfigError."""
        self._server, bound = await listen_tcp(self.connection, host, port, backlog=self.backlog)
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
