"""chisme.net.listener: listening sockets bound as loop.create_server binds them, errors as
ConfigError."""

from __future__ import annotations

import socket

import pytest

from chisme.errors import ConfigError
from chisme.net.listener import MAX_BACKLOG, listen_sockets


@pytest.mark.parametrize(("host", "family"), [("127.0.0.1", socket.AF_INET),
                                              ("::1", socket.AF_INET6)])
async def test_a_numeric_host_gets_one_nonblocking_listening_socket(host: str,
                                                                    family: int) -> None:
    socks = await listen_sockets(host, 0, backlog=MAX_BACKLOG)
    try:
        assert len(socks) == 1
        (sock,) = socks
        assert sock.family == family and sock.getblocking() is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        if family == socket.AF_INET6:
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass  # the kernel completes the handshake: it listens
    finally:
        for s in socks:
            s.close()


async def test_a_name_is_resolved_to_every_address() -> None:
    socks = await listen_sockets("localhost", 0, backlog=16)
    try:
        assert socks and {s.getsockname()[0] for s in socks} <= {"127.0.0.1", "::1"}
    finally:
        for s in socks:
            s.close()


async def test_a_port_in_use_is_a_config_error() -> None:
    (busy,) = await listen_sockets("127.0.0.1", 0, backlog=16)
    try:
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on tcp 127.0.0.1:{port}: "
                                              "Address already in use"):
            await listen_sockets("127.0.0.1", port, backlog=16)
    finally:
        busy.close()

