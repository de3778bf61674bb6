"""The error map of every socket shell (net/errors.py): complete, and the only one."""

from __future__ import annotations

import builtins
import errno
import pathlib
import re
import socket
import ssl

import pytest

from chisme.errors import ChismeError, ConfigError, PeerTimeout, PeerUnreachable
from chisme.net.errors import bind_errors, describe, peer_errors, translate_peer_error

SRC = pathlib.Path(__file__).parents[2] / "src" / "chisme"


def _os_errors() -> list[type[OSError]]:
    """Every OSError subclass of the modules a socket shell touches."""
    found: set[type[OSError]] = set()
    for module in (builtins, socket, ssl):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, OSError):
                found.add(value)
    return sorted(found, key=lambda t: t.__qualname__)


@pytest.mark.parametrize("kind", _os_errors(), ids=lambda t: t.__qualname__)
def test_every_os_error_becomes_a_peer_error(kind: type[OSError]) -> None:
    try:
        exc = kind(errno.ECONNREFUSED, "Connection refused")
    except TypeError:
        exc = kind()
    ours = translate_peer_error("10.0.0.1:7070", exc, 2.0)
    assert isinstance(ours, PeerTimeout if issubclass(kind, TimeoutError) else PeerUnreachable)
    assert str(ours).startswith("10.0.0.1:7070: ")


def test_a_timeout_says_the_deadline() -> None:
    timeout = pytest.raises(PeerTimeout, match=r"^10\.0\.0\.1:7070: no answer within 1\.5 s$")
    with timeout, peer_errors("10.0.0.1:7070", 1.5):
        raise TimeoutError
    refused = pytest.raises(PeerUnreachable, match="Connection refused")
    with refused, peer_errors("10.0.0.1:7070", 1.5):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


def test_other_errors_pass_through() -> None:
    assert translate_peer_error("x:1", ValueError("no"), 1.0) is None
    with pytest.raises(ValueError), peer_errors("x:1", 1.0):
        raise ValueError("a bug is not a peer's fault")


def test_a_bind_error_is_a_config_error_naming_the_address() -> None:
    in_use = pytest.raises(ConfigError, match=r"^cannot listen on udp 127\.0\.0\.1:1: "
                                              r"Address already in use$")
    with in_use, bind_errors("udp", "127.0.0.1", 1):
        raise OSError(errno.EADDRINUSE, "ignored")
    assert describe(OSError()) == "OSError"
    assert issubclass(ConfigError, ChismeError)


def test_no_other_module_translates_socket_errors() -> None:
    """Every socket shell goes through the map: no chisme error raised from a caught OSError
    or TimeoutError anywhere else in the layers that hold sockets."""
    pattern = re.compile(r"except\s*\(?[^)\n]*\b(OSError|TimeoutError)\b[^\n]*:\n\s*raise")
    shells = ("net", "frontends", "service", "cluster", "node")
    offenders = [
        str(path.relative_to(SRC)) for shell in shells for path in (SRC / shell).rglob("*.py")
        if path.name != "errors.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
