"""Allow and deny lists of info hashes for the tracker front ends: parsing and matching.

The file format is opentracker's (and chihaya's list middleware's): one info hash per line as
40 hexadecimal digits, either case. Blank lines and ``#`` comments are skipped, and so is
anything after the hash on its line (whitespace first), so ``<hash>  ubuntu.iso`` works.
A line that is not a hash fails the whole list (:class:`~chisme.errors.InvalidInput` naming
the line): a typo must not silently open or close a torrent.

Pure: the caller reads the files and decides when (on SIGHUP, when a file's mtime changes).
"""

from __future__ import annotations

import string
from typing import Final

from chisme.errors import InvalidInput

MAX_LIST_LINES: Final = 10_000_000
"""Lines per file: a bound, far above any real list (opentracker's largest are ~10^6)."""

_HEX: Final = frozenset(string.hexdigits.encode())


def parse_hash_list(data: bytes, source: str = "list") -> frozenset[bytes]:
    """The 20-byte info hashes listed in ``data``; ``source`` names it in errors."""
    hashes: set[bytes] = set()
    for number, raw in enumerate(data.splitlines(), 1):
        if number > MAX_LIST_LINES:
            raise InvalidInput(f"{source}: more than {MAX_LIST_LINES} lines")
        line = raw.split(b"#", 1)[0].strip()
        if not line:
            continue
        word = line.split(None, 1)[0]
        if len(word) != 40 or not _HEX.issuperset(word):
            raise InvalidInput(f"{source}: line {number} is not a 40-hex info hash")
        hashes.add(bytes.fromhex(word.decode("ascii")))
    return frozenset(hashes)


class AccessList:
    """Which info hashes the tracker serves: none denied and, if there is an allow list, listed.

    Mutable on purpose: the front ends share one instance and the node swaps the sets in
    (:meth:`replace`) when a file changes, so a reload reaches every front end at once.
    """

    __slots__ = ("allow", "deny", "open")

    def __init__(
        self, allow: frozenset[bytes] | None = None, deny: frozenset[bytes] = frozenset()
    ) -> None:
        self.allow = allow
        """None: every hash not denied is allowed; else only these (an empty set: none)."""
        self.deny = deny
        self.open = True
        """True when nothing is restricted: the hot path skips the lookups."""
        self.replace(allow, deny)

    def replace(self, allow: frozenset[bytes] | None, deny: frozenset[bytes]) -> None:
        """Install new lists (both at once, so no request sees half a reload)."""
        self.allow, self.deny = allow, deny
        self.open = allow is None and not deny

    def permits(self, info_hash: bytes) -> bool:
        """True if the tracker serves ``info_hash`` (20 raw bytes). Deny wins over allow."""
        if self.open:
            return True
        if info_hash in self.deny:
            return False
        return self.allow is None or info_hash in self.allow
