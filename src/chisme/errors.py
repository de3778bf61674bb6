"""The exception tree of chisme: every error chisme raises on purpose is a ChismeError.

    ChismeError
    ├── ConfigError              bad config file or flag (CLI exit 2)
    │   └── ListenError          a listener could not be opened (which one, and its flag)
    ├── InvalidInput             a value failed validation; ``.reason`` is short and stable
    │   ├── WireError            bytes from a peer are not one valid message
    │   │   └── MessageTooLarge  ... because they exceed the size cap
    │   └── TrackerRequestError  a BitTorrent client's request is invalid
    └── PeerError                talking to another node failed
        ├── PeerTimeout          it did not answer before the deadline
        └── PeerUnreachable      it could not be reached, or hung up
"""

from __future__ import annotations


class ChismeError(Exception):
    """Base of every error chisme raises on purpose."""


class ConfigError(ChismeError):
    """A configuration value or command-line flag is invalid."""


class ListenError(ConfigError):
    """A listener could not be opened: ``flag`` is the command-line flag that moves it."""

    def __init__(self, message: str, *, listener: str, flag: str) -> None:
        super().__init__(message)
        self.listener = listener
        self.flag = flag


class InvalidInput(ChismeError):
    """A value failed validation. ``reason`` is a short, stable, client-safe sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WireError(InvalidInput):
    """Bytes received from a peer are not one valid node-to-node message."""


class MessageTooLarge(WireError):
    """A message exceeds the configured size cap."""


class TrackerRequestError(InvalidInput):
    """A BitTorrent client's announce or scrape request is invalid."""


class PeerError(ChismeError):
    """Talking to another node failed."""


class PeerTimeout(PeerError):
    """A peer did not answer before the deadline."""


class PeerUnreachable(PeerError):
    """A peer could not be reached, or closed the connection early."""
