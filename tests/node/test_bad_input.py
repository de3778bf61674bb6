"""The node port's answer to bad input (CONTRIBUTING.md "Rules the code keeps", docs/WIRE.md
"Where chisme deliberately differs"):
exactly one line ``{"error":"<reason>"}\\n``, then the node closes the connection; it keeps
serving, a good request still works, the store is unchanged, and the rejection is counted by
reason in the metrics.

Real loopback TCP; the client keeps its side open (a lookup client does), so each answer also
shows that the node does not wait for EOF.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from chisme import Client, Node
from chisme.wire import v1

IH = "3f2a" * 10
GOOD_ADDR = "10.0.0.5:6881"
MAX_BYTES = 4096
READ_TIMEOUT_S = 0.3
TRUNCATED = "connection closed before a complete message"
IH_RULE = "info_hash must be 1-128 printable ASCII characters without spaces"


def msg(body: str) -> bytes:
    return body.replace("IH", IH).encode() + b"\n"


def gossip_with(provider: str) -> bytes:
    return msg('{"type":"gossip","info_hash":"IH","providers":[' + provider + "]}")


# (case id, bytes sent, reason in the reply)
BAD_INPUT: list[tuple[str, bytes, str]] = [
    # not JSON / not an object
    ("malformed JSON", msg('{"type":"announce",}'), "message is not valid JSON"),
    ("raw newline in a string", b'{"type":"lookup","info_hash":"a\nb"}',
     "message is not valid JSON"),
    ("plain text", b"hello\n", "message is not a JSON object"),
    ("array", b"[1,2]\n", "message is not a JSON object"),
    ("string", b'"lookup"\n', "message is not a JSON object"),
    ("null", b"null\n", "message is not a JSON object"),
    ("deep nesting", b'{"a":' * 100, "message nests deeper than 64 levels"),
    # wrong types, every field
    ("type is a number", msg('{"type":1,"info_hash":"IH"}'), "type: expected a string"),
    ("info_hash is a number", msg('{"type":"lookup","info_hash":1}'),
     "info_hash: expected a string"),
    ("info_hash is an object", msg('{"type":"lookup","info_hash":{}}'),
     "info_hash: expected a string"),
    ("providers is a string", msg('{"type":"gossip","info_hash":"IH","providers":"x"}'),
     "providers: expected an array"),
    ("provider is a number", gossip_with("1"), "providers[0]: expected an object"),
    ("addr is a number", gossip_with('{"addr":1}'), "providers[0].addr: expected a string"),
    ("peer_id is a number", gossip_with('{"addr":"1.2.3.4:5","peer_id":5}'),
     "providers[0].peer_id: expected a string"),
    ("last_seen is a number", gossip_with('{"addr":"1.2.3.4:5","last_seen":5}'),
     "providers[0].last_seen: expected a string"),
    ("last_seen is not a time", gossip_with('{"addr":"1.2.3.4:5","last_seen":"yesterday"}'),
     "providers[0].last_seen: last_seen is not an RFC 3339 time"),
    ("limit is a string", msg('{"type":"lookup","info_hash":"IH","limit":"5"}'),
     "limit: expected an integer"),
    ("limit is a float", msg('{"type":"lookup","info_hash":"IH","limit":1.5}'),
     "limit: expected an integer"),
    ("limit beyond int64", msg('{"type":"lookup","info_hash":"IH","limit":99999999999999999999}'),
     "limit: expected an integer"),
    # unknown or missing type
    ("unknown type", msg('{"type":"ping","info_hash":"IH"}'), "unknown message type"),
    ("missing type", msg('{"info_hash":"IH"}'), "unknown message type"),
    # info hash
    ("empty info_hash", msg('{"type":"lookup","info_hash":""}'), IH_RULE),
    ("missing info_hash", msg('{"type":"lookup"}'), IH_RULE),
    ("info_hash with a space", msg('{"type":"lookup","info_hash":"a b"}'), IH_RULE),
    ("info_hash too long", msg('{"type":"lookup","info_hash":"' + "a" * 129 + '"}'), IH_RULE),
    ("info_hash not UTF-8", b'{"type":"lookup","info_hash":"\xff\xfe"}', IH_RULE),
    # addresses
    ("empty addr", gossip_with('{"addr":""}'), "providers[0].addr: addr must be host:port"),
    ("missing addr", gossip_with("{}"), "providers[0].addr: addr must be host:port"),
    ("addr without port", gossip_with('{"addr":"1.2.3.4"}'),
     "providers[0].addr: addr must be host:port"),
    ("port 0", gossip_with('{"addr":"1.2.3.4:0"}'),
     "providers[0].addr: port must be an integer in 1-65535"),
    ("port 65536", gossip_with('{"addr":"1.2.3.4:65536"}'),
     "providers[0].addr: port must be an integer in 1-65535"),
    ("port not a number", gossip_with('{"addr":"1.2.3.4:http"}'),
     "providers[0].addr: port must be an integer in 1-65535"),
    ("IPv6 without brackets", gossip_with('{"addr":"2001:db8::1:6881"}'),
     "providers[0].addr: addr with an IPv6 host needs brackets: [host]:port"),
    ("IPv6 unclosed bracket", gossip_with('{"addr":"[2001:db8::1:6881"}'),
     "providers[0].addr: addr has an unclosed '[' around its IPv6 host"),
    ("peer_id too long", gossip_with('{"addr":"1.2.3.4:5","peer_id":"' + "x" * 129 + '"}'),
     "providers[0].peer_id: longer than 128 bytes"),
    # a half-bad gossip never half-merges
    ("second provider bad", gossip_with('{"addr":"10.9.9.9:1"},{"addr":"bad"}'),
     "providers[1].addr: addr must be host:port"),
    ("announce, bad provider", msg('{"type":"announce","info_hash":"IH","providers":[{}]}'),
     "providers[0].addr: addr must be host:port"),
    # size cap (the whole oversized message fits one write, so the node reads all of it)
    ("over max_message_bytes",
     msg('{"type":"gossip","info_hash":"IH","providers":['
         + ",".join(['{"addr":"10.1.1.1:1"}'] * 250) + "]}"),
     f"message exceeds {MAX_BYTES} bytes"),
    ("endless string", b'{"type":"gossip","info_hash":"' + b"a" * (MAX_BYTES + 10),
     f"message exceeds {MAX_BYTES} bytes"),
    ("only whitespace", b" " * (MAX_BYTES + 1), f"message exceeds {MAX_BYTES} bytes"),
]


def rejected(node: Node, reason_label: str) -> float:
    return node.metrics.rejected.labels("node", reason_label)._value.get()  # type: ignore[no-any-return]


@pytest.fixture
async def target(node) -> Node:
    n: Node = await node(max_message_bytes=MAX_BYTES, read_timeout_s=READ_TIMEOUT_S)
    await n.announce(IH, GOOD_ADDR, "good")
    return n


async def assert_still_serving(n: Node, before: dict[object, object]) -> None:
    providers = await Client(n.node_address, timeout_s=5).lookup(IH)
    assert [(p.addr, p.peer_id) for p in providers] == [(GOOD_ADDR, "good")]
    assert n.store.snapshot() == before


@pytest.mark.parametrize(
    ("data", "reason"), [pytest.param(d, r, id=i) for i, d, r in BAD_INPUT]
)
async def test_bad_input_gets_one_error_line_then_close(
    target: Node, exchange, data: bytes, reason: str
) -> None:
    before = target.store.snapshot()
    reply = await exchange(target.node_address, data, half_close=False)
    assert reply == v1.encode_error(reason)
    assert reply.count(b"\n") == 1 and reply.endswith(b"\n")
    await assert_still_serving(target, before)
    label = reason.split(":", 1)[0].replace("[0]", "[]").replace("[1]", "[]")
    assert rejected(target, label[:60]) == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", TRUNCATED, id="nothing then EOF"),
        pytest.param(b'{"type":"lookup","info_hash":"', TRUNCATED, id="half a message then EOF"),
        pytest.param(msg('{"type":"ping","info_hash":"IH"}'), "unknown message type",
                     id="bad message then EOF"),
    ],
)
async def test_eof_before_a_whole_message(target: Node, exchange, data: bytes, reason: str) -> None:
    before = target.store.snapshot()
    assert await exchange(target.node_address, data, half_close=True) == v1.encode_error(reason)
    await assert_still_serving(target, before)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="connect and send nothing"),
        pytest.param(b'{"type":"lookup","info_hash":"', id="half a message"),
        pytest.param(b"   ", id="only whitespace"),
    ],
)
async def test_a_stalled_connection_is_answered_and_closed(
    target: Node, exchange, data: bytes
) -> None:
    """Half-open: the client sends nothing more and keeps its side open; the node's read
    deadline answers and closes (the exchange helper reads until the node closes)."""
    before = target.store.snapshot()
    reply = await exchange(target.node_address, data, half_close=False)
    reason = f"read timeout: no complete message within {READ_TIMEOUT_S:g} s"
    assert reply == v1.encode_error(reason)
    await assert_still_serving(target, before)
    assert rejected(target, "read timeout") == 1


async def test_stalled_connections_do_not_block_others(target: Node) -> None:
    before = target.store.snapshot()
    stalled = [await asyncio.open_connection(*target.addresses["node"]) for _ in range(5)]
    try:
        for _, w in stalled:
            w.write(b'{"type":"lookup",')
        await assert_still_serving(target, before)  # answered while five connections stall
    finally:
        for _, w in stalled:
            w.close()


async def test_too_many_connections(node, exchange, wait_until) -> None:
    n: Node = await node(max_connections=2, read_timeout_s=30)
    await n.announce(IH, GOOD_ADDR, "good")
    before = n.store.snapshot()
    lookup = msg('{"type":"lookup","info_hash":"IH"}')
    too_many = v1.encode_error("too many connections")
    held = [await asyncio.open_connection(*n.addresses["node"]) for _ in range(2)]
    try:
        for _, w in held:
            w.write(b'{"type":')  # two stalled connections take both slots
            await w.drain()

        async def third_is_refused() -> bool:
            # until the node has accepted both held connections, a third one is served
            return bool(await exchange(n.node_address, lookup, half_close=False) == too_many)

        await wait_until(third_is_refused, what="the connection cap")
        assert rejected(n, "too many connections") == 1
    finally:
        for _, w in held:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()

    async def served() -> bool:
        return bool(await exchange(n.node_address, lookup, half_close=False) != too_many)

    await wait_until(served, what="the held connections to be released")
    await assert_still_serving(n, before)


async def test_trailing_bytes_after_a_message_are_ignored(target: Node, exchange) -> None:
    """Go's decoder leaves what follows the value unread; so does chisme."""
    reply = await exchange(target.node_address,
                           msg('{"type":"lookup","info_hash":"IH"}') + b"garbage{{{",
                           half_close=False)
    assert v1.decode_providers(reply)[0].peer_id == b"good"


async def test_rejections_are_counted_by_reason_in_the_metrics_text(
    target: Node, exchange
) -> None:
    for _ in range(2):
        await exchange(target.node_address, b"hello\n", half_close=False)
    await exchange(target.node_address, gossip_with('{"addr":"1.2.3.4:5"},{"addr":""}'),
                   half_close=False)
    await exchange(target.node_address, gossip_with('{"addr":"1.2.3.4:5"},' * 7 + '{"addr":""}'),
                   half_close=False)
    text = target.metrics.render().decode()
    assert (
        'chisme_rejected_messages_total{reason="message is not a JSON object",surface="node"} 2.0'
        in text
    )
    # the provider's index is not part of the label: cardinality stays bounded
    assert 'chisme_rejected_messages_total{reason="providers[].addr",surface="node"} 2.0' in text
