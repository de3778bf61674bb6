"""Overlay lookups: ask a few other nodes what they hold for a key, keep what arrives in time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from chisme.core.lookup import pick_fanout
from chisme.core.records import Record
from chisme.metrics import Metrics
from chisme.net.transport import Asker


class Overlay:
    """Asks up to ``fanout`` of the peers ``candidates()`` names, concurrently, under one
    deadline; a peer that fails or is late is left out (its answer is not waited for)."""

    def __init__(
        self,
        asker: Asker,
        candidates: Callable[[], list[str]],
        has_candidates: Callable[[], bool],
        *,
        fanout: int,
        rng: random.Random,
        self_addr: Callable[[], str],
        metrics: Metrics,
    ) -> None:
        self.asker = asker
        self.candidates = candidates
        self.has_candidates = has_candidates
        self.fanout = fanout
        self.rng = rng
        self.self_addr = self_addr
        self._asked = metrics.messages_out.labels("v1", "lookup")

    async def ask(self, info_hash: str, timeout_s: float) -> list[list[Record]]:
        targets = pick_fanout(self.candidates(), self.fanout, self.rng, self.self_addr())
        if not targets:
            return []
        self._asked.inc(len(targets))
        tasks = [
            asyncio.ensure_future(self.asker.ask(peer, info_hash, timeout_s)) for peer in targets
        ]
        try:
            done, _ = await asyncio.wait(tasks, timeout=timeout_s)
        finally:
            for t in tasks:
                t.cancel()
        return [
            t.result() for t in done if not t.cancelled() and t.exception() is None
        ]
