"""Opening a TCP listener, the one way every chisme server does it."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable

from chisme.net.errors import bind_errors


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
