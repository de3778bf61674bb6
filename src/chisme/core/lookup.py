"""Overlay lookups: pick which peers to ask, and merge their answers with ours.

The seed design (docs/DESIGN.md §1): local providers plus at most 3 peers, merged by address
keeping the freshest, sorted by freshness, cut to the limit.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from chisme.core.keys import AddrKey
from chisme.core.records import Record, order_key


def pick_fanout(peers: Sequence[str], k: int, rng: random.Random, exclude: str = "") -> list[str]:
    """Up to ``k`` distinct peers chosen at random, never ``exclude`` (ourselves)."""
    candidates = [p for p in dict.fromkeys(peers) if p != exclude]
    if len(candidates) <= k:
        return candidates
    return rng.sample(candidates, k)


def merge_answers(
    answers: Iterable[Iterable[Record]],
    now_ns: int,
    ttl_ns: int,
    max_clock_skew_ns: int,
    limit: int = 0,
) -> list[Record]:
    """Merge lookup answers by address, keeping the greatest record; live ones only.

    A stamp further in the future than the allowed skew counts as now (docs/WIRE.md), so a
    hostile peer cannot sort its providers first; tombstones and expired records drop out.
    """
    best: dict[AddrKey, Record] = {}
    cutoff = now_ns - ttl_ns
    horizon = now_ns + max_clock_skew_ns
    for records in answers:
        for rec in records:
            if rec.last_seen_ns > horizon or rec.last_seen_ns == 0:
                rec = rec._replace(last_seen_ns=now_ns)  # noqa: PLW2901
            old = best.get(rec.addr)
            if old is None or order_key(rec) > order_key(old):
                best[rec.addr] = rec
    live = [r for r in best.values() if not r.tombstone and r.last_seen_ns >= cutoff]
    live.sort(key=order_key, reverse=True)
    return live[:limit] if limit > 0 else live
