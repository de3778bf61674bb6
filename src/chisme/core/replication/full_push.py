"""The seed design's replication (v1): every live record of every key, to every peer, each round.

O(keys x providers x peers) bytes per round whatever changed: what v2 (the rest of this
package) replaces between chisme members, and what a v2 node still sends to its v1 peers
(nodes of the original design).
"""

from __future__ import annotations

from collections.abc import Sequence

from chisme.core.records import Record
from chisme.core.store import Store


def plan_full_push(
    store: Store, peers: Sequence[str], now_ns: int
) -> list[tuple[str, list[Record], list[Record]]]:
    """One v1 gossip round: every live key's providers, for every peer.

    Returns ``(info_hash, live records, tombstones)``; the shell sends each to each of
    ``peers`` as a v1 ``gossip`` message (tombstones in chisme's ``removed`` extension).
    """
    if not peers:
        return []
    out: list[tuple[str, list[Record], list[Record]]] = []
    for info_hash in store.keys():
        records = store.live_records(info_hash, now_ns)
        tombs = store.tombstones(info_hash, now_ns)
        if records or tombs:
            out.append((info_hash, records, tombs))
    return out


__all__: Sequence[str] = ("plan_full_push",)
