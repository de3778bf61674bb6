"""BEP 15 connection ids: stateless, keyed MACs that every node of a cluster can check.

BEP 15 asks that an id be unguessable ("a syn cookie like approach"), tied to the client, and
accepted "until two minutes after it has been sent". Storing issued ids would not survive a
client's connect landing on one node and its announce on another (anycast, DNS round robin,
failover), so an id is a MAC under a cluster-shared key instead, as chihaya (HMAC-SHA256) and
aquatic (BLAKE3) make theirs:

    id = (window mod 256) << 56 | first 7 bytes of BLAKE2b-64(key; window as i64 || client)

where ``window = now_s // window_s``. The top byte names the issuing window, so a check
computes one MAC, not one per accepted window. Accepted windows: the current one, the
``windows_accepted - 1`` before it, and the next one (another node's clock may run ahead; chihaya
allows 10 s of future skew). On one clock an id therefore lives between
``window_s * (windows_accepted - 1)`` and ``window_s * windows_accepted`` seconds: 120-180 s with
the defaults, meeting BEP 15's two minutes. uTorrent and rtorrent reuse ids for ~5 minutes
(chihaya#417, #422): raise ``windows_accepted`` to serve them. The MAC covers the whole window
number, so an id never comes back to life when the 8-bit window tag wraps around.

``client`` is the source IP packed (4 or 16 bytes), without the port: clients behind NAT or with
several sockets often announce from another source port than they connected from, and the id
still binds to the address, which is what stops spoofed-source floods.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from chisme.errors import ConfigError
from chisme.tracker.udp import PROTOCOL_ID

MIN_KEY_BYTES: Final = 16
MAX_KEY_BYTES: Final = 64
"""BLAKE2b's own key limit."""

_MAC_BITS: Final = 56
_MAC_MASK: Final = (1 << _MAC_BITS) - 1
_ID_LIMIT: Final = 1 << 64


class ConnectionIds:
    """Issue and check BEP 15 connection ids; two instances with one key accept each other's."""

    __slots__ = ("_mac", "_windows_accepted", "window_s")

    def __init__(self, key: bytes, window_s: int = 60, windows_accepted: int = 3) -> None:
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ConfigError(
                f"connection id key must be {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes, not {len(key)}"
            )
        if window_s < 1:
            raise ConfigError("connection id window must be at least 1 s")
        # 2 at least so an id issued at the end of a window lives one full window more; the
        # accepted windows plus the next one must have distinct 8-bit tags.
        if not 2 <= windows_accepted <= 255:
            raise ConfigError("connection id windows_accepted must be 2-255")
        self.window_s = window_s
        self._windows_accepted = windows_accepted
        # Keyed once; copy() per MAC costs about half of a fresh keyed BLAKE2b.
        self._mac = hashlib.blake2b(key=key, digest_size=8)

    @property
    def min_lifetime_s(self) -> int:
        """How long an id is accepted at least, on the issuer's clock."""
        return self.window_s * (self._windows_accepted - 1)

    @property
    def max_lifetime_s(self) -> int:
        """How long an id is accepted at most, on the issuer's clock."""
        return self.window_s * self._windows_accepted

    def _id(self, window: int, client: bytes) -> int:
        mac = self._mac.copy()
        mac.update(window.to_bytes(8, "big", signed=True))
        mac.update(client)
        cid = (window & 0xFF) << _MAC_BITS | int.from_bytes(mac.digest()) >> 8
        if cid in (0, PROTOCOL_ID):
            # A 2^-56 chance, but an id of 0 or the magic would confuse clients and logs.
            # Flipping a MAC bit keeps the id a function of (window, client) for check().
            cid ^= 1 << (_MAC_BITS - 1)
        return cid

    def issue(self, client: bytes, now_s: int) -> int:
        """The connection id for ``client`` (its packed IP) at ``now_s`` (unix seconds)."""
        return self._id(now_s // self.window_s, client)

    def check(self, client: bytes, connection_id: int, now_s: int) -> bool:
        """True if ``connection_id`` was issued to ``client`` in an accepted window."""
        if not 0 <= connection_id < _ID_LIMIT:
            return False
        tag = connection_id >> _MAC_BITS
        current = now_s // self.window_s
        # Candidates: the next window (clock skew between nodes), the current one and the
        # windows_accepted - 1 before it. Their tags are distinct, so at most one matches.
        delta = (current + 1 - tag) & 0xFF
        if delta > self._windows_accepted:
            return False
        expected = self._id(current + 1 - delta, client)
        return hmac.compare_digest(expected.to_bytes(8), connection_id.to_bytes(8))
