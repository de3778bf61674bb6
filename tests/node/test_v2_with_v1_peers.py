"""A v2 node and the original design: v1_peers get the seed's v1 gossip and announces."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from chisme.core.keys import parse_addr
from chisme.wire import v1
from chisme.wire.rfc3339 import format_rfc3339
from conftest import push_round

IH = "3f2a" * 10

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


class OriginalNode:
    """A node of the original design as docs/WIRE.md describes it, on a real socket: it reads
    one JSON value per connection; bytes that are not JSON end the connection with no reply
    (Go's decoder fails and ``handleConn`` returns); a ``lookup`` gets the providers array.
    It keeps the raw bytes of every message it decoded."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.refused = 0  # connections closed unanswered (not JSON)
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        try:
            while chunk := await reader.read(65536):
                buf += chunk
                try:
                    text = buf.decode()
                    json.JSONDecoder().raw_decode(text.lstrip())
                except UnicodeDecodeError:
                    self.refused += 1
                    return
                except json.JSONDecodeError as e:
                    if e.pos < len(text.lstrip()):  # a byte that cannot start or continue JSON
                        self.refused += 1
                        return
                    continue  # incomplete: read on
                self.raw.append(buf)
                if json.loads(buf)["type"] == "lookup":
                    writer.write(b"[]\n")
                return
        finally:
            writer.close()

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in map(json.loads, self.raw) if m["type"] == kind]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_a_seed_of_the_original_design_is_gossiped_to_in_v1(
    node: NodeFactory, wait_until: WaitUntil, caplog: pytest.LogCaptureFixture
) -> None:
    """``chisme node --peer <a node of the original design>``: the v2 hello gets no answer
    (the original closes on bytes that are not JSON), so the seed is a node of the original
    design: it gets the v1 announce push and full gossip, byte for byte as docs/WIRE.md
    writes them, the warning is logged once, and ``chisme members`` lists it."""
    original = OriginalNode()
    addr = await original.start()
    try:
        with caplog.at_level(logging.INFO, logger="chisme.cluster"):
            n = await node(protocol="v2", peers=(addr,), gossip_interval_s=0.2)
            await wait_until(lambda: {"id": "", "addr": addr, "state": "v1", "incarnation": 0}
                             in n.members(), what="the seed to be found speaking v1")
            await n.announce(IH, "10.0.0.5:6881", "-qB4650-abc")
            await wait_until(lambda: original.messages("announce") != [], what="the announce")
            await wait_until(lambda: original.messages("gossip") != [], what="a full push")
            await wait_until(lambda: original.refused >= 2, what="a second join attempt")
        assert original.refused >= 2  # the join is retried; the finding stays
        warnings = [r for r in caplog.records if "speaks v1 only" in r.getMessage()]
        assert len(warnings) == 1
        announce = next(r for r in original.raw if b'"announce"' in r)
        stamp = n.local_lookup(IH)[0].last_seen_ns
        assert announce == (
            b'{"type":"announce","info_hash":"' + IH.encode() + b'","providers":[{"addr":'
            b'"10.0.0.5:6881","peer_id":"-qB4650-abc","last_seen":"'
            + format_rfc3339(stamp).encode() + b'"}]}\n'
        )
        gossip = original.messages("gossip")[-1]
        assert gossip == {"type": "gossip", "info_hash": IH, "providers": [
            {"addr": "10.0.0.5:6881", "peer_id": "-qB4650-abc", "last_seen": format_rfc3339(stamp)}
        ]}
    finally:
        await original.close()
