"""Origin numbers: which member accepted a record first-hand, as the number records carry.

docs/v2.md §2: the origin versions its records' changes (the store's counter,
:class:`chisme.core.store.Replication`), replicas keep its records alive while its lease
is renewed (the engine renews the leases of alive and suspect members), and only the
origin writes its records (the replicator retracts forgeries). A restarted node is a new
member id, so a new origin whose versions start again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def origin_id(member_id: str) -> int:
    """The 32-bit origin number of a member id (non-zero; the same on every node).

    32 bits keep the store's per-record origin at 4 bytes; two members of a 1,000-node
    cluster share a number with probability ~1e-4 (their records would share a lease).
    """
    h = int.from_bytes(hashlib.blake2b(member_id.encode(), digest_size=4).digest(), "big")
    return h or 1


__all__: Sequence[str] = ("origin_id",)
