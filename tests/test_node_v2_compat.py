"""A v2 node and the original design: v1_peers get the seed's v1 gossip and announces."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from chisme.core.keys import parse_addr
from chisme.wire import v1
from conftest import push_round

if TYPE_CHECKING:
    from conftest import NodeFactory, WaitUntil


class FakeGoNode:
    """A node of the original design, reduced to what it receives: one JSON message per
    connection."""

    def __init__(self) -> None:
        self.messages: list[v1.Message] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        self.messages.append(v1.decode_message(data))
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_v2_node_gossips_v1_to_its_v1_peers(node: NodeFactory, wait_until: WaitUntil) -> None:
    go = FakeGoNode()
    go_addr = await go.start()
    try:
        n = await node(protocol="v2", v1_peers=(go_addr,))
        await n.announce("abc", "10.0.0.5:6881", "-qB-1")
        await wait_until(lambda: any(isinstance(m, v1.Announce) for m in go.messages))
        sent = await push_round(n)
        assert sent == 1
        await wait_until(lambda: any(isinstance(m, v1.Gossip) for m in go.messages))
        gossip = next(m for m in go.messages if isinstance(m, v1.Gossip))
        assert gossip.info_hash == "abc"
        assert [r.addr for r in gossip.records] == [parse_addr("10.0.0.5:6881")]
    finally:
        await go.close()


async def test_v2_seeds_get_no_v1_gossip(node: NodeFactory) -> None:
    a = await node(protocol="v2")
    b = await node(protocol="v2", peers=(a.node_address,))
    await b.announce("abc", "10.0.0.5:6881")
    assert await push_round(b) == 0  # members replicate by v2, not by the seed's push
