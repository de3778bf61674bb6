"""An async client for the v1 node protocol: works against chisme and seed-design nodes."""

from __future__ import annotations

import time

from chisme.core.keys import parse_addr, parse_info_hash
from chisme.core.records import Provider, Record, parse_peer_id, to_provider
from chisme.net import tcp
from chisme.wire import v1


class Client:
    """Talks v1 to one node: ``announce`` (fire-and-forget) and ``lookup`` (request/reply).

        client = Client("127.0.0.1:7070")
        await client.announce("3f2a...", "10.0.0.5:6881")
        providers = await client.lookup("3f2a...", limit=50)
    """

    def __init__(self, node: str, *, timeout_s: float = 5.0, max_bytes: int = 1 << 24) -> None:
        parse_addr(node)
        self.node = node
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    async def announce(self, info_hash: str, addr: str, peer_id: str = "") -> None:
        """Tell the node that ``addr`` provides ``info_hash`` now."""
        rec = Record(parse_addr(addr), time.time_ns(), parse_peer_id(peer_id))
        msg = v1.Announce(parse_info_hash(info_hash), [rec])
        await tcp.send_message(self.node, v1.encode_message(msg), self.timeout_s)

    async def gossip(self, info_hash: str, records: list[Record]) -> None:
        """Push records as a v1 ``gossip`` message (what nodes send each other)."""
        msg = v1.Gossip(parse_info_hash(info_hash), records)
        await tcp.send_message(self.node, v1.encode_message(msg), self.timeout_s)

    async def lookup(self, info_hash: str, limit: int = 0) -> list[Provider]:
        """The node's live providers for ``info_hash`` (its local store), freshest first."""
        msg = v1.Lookup(parse_info_hash(info_hash), max(0, limit))
        raw = await tcp.request(self.node, v1.encode_message(msg), self.timeout_s, self.max_bytes)
        return [to_provider(r) for r in v1.decode_providers(raw, self.max_bytes)]
