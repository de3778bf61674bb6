"""The one place where socket errors become chisme errors, for every socket shell.

Like httpx's single error map: a shell wraps each socket call in one of two contexts, and
nothing else in chisme catches :class:`OSError`.

- :func:`bind_errors` (a listener): any OSError is a :class:`~chisme.errors.ConfigError`,
  ``cannot listen on tcp 127.0.0.1:6969: Address already in use`` (the node then names the
  flag that moves the listener);
- :func:`peer_errors` (talking to another node): a deadline that passed is a
  :class:`~chisme.errors.PeerTimeout`, any other OSError (refused, reset, unreachable, a name
  that does not resolve) a :class:`~chisme.errors.PeerUnreachable`.

:data:`PEER_ERRORS` is the map itself, first match wins; a test checks that every OSError
subclass the standard library defines lands on a chisme error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Final

from chisme.errors import ConfigError, PeerError, PeerTimeout, PeerUnreachable

PEER_ERRORS: Final[tuple[tuple[type[BaseException], type[PeerError]], ...]] = (
    (TimeoutError, PeerTimeout),  # asyncio.timeout and socket timeouts (an OSError subclass)
    (OSError, PeerUnreachable),  # refused, reset, unreachable, gaierror, ...
)


def describe(exc: OSError) -> str:
    """The system's short text for an OSError (``Address already in use``)."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def translate_peer_error(addr: str, exc: BaseException, timeout_s: float) -> PeerError | None:
    """The chisme error for ``exc`` raised while talking to ``addr``; None if not a socket
    error (it then propagates as it is)."""
    for kind, ours in PEER_ERRORS:
        if isinstance(exc, kind):
            if ours is PeerTimeout:
                return PeerTimeout(f"{addr}: no answer within {timeout_s:g} s")
            assert isinstance(exc, OSError)
            return ours(f"{addr}: {describe(exc)}")
    return None


@contextlib.contextmanager
def peer_errors(addr: str, timeout_s: float) -> Iterator[None]:
    """Socket errors while talking to ``addr`` (under a ``timeout_s`` deadline) become
    PeerErrors."""
    try:
        yield
    except (TimeoutError, OSError) as e:
        ours = translate_peer_error(addr, e, timeout_s)
        assert ours is not None
        raise ours from None


@contextlib.contextmanager
def bind_errors(what: str, host: str, port: int) -> Iterator[None]:
    """An OSError while binding ``what`` (``tcp``, ``udp``) on ``host:port`` is a
    ConfigError that names the address and the reason."""
    try:
        yield
    except OSError as e:
        raise ConfigError(f"cannot listen on {what} {host}:{port}: {describe(e)}") from e
