"""The HTTP JSON API of a running node, over real loopback HTTP: every endpoint, and the
bad-input table (README.md "Bad input"): 4xx with a JSON ``{"error": …}`` body, then a good
request still works and the store is unchanged; rejections are counted by reason.
"""

from __future__ import annotations

import json
import re

import pytest

from chisme import Client, Node
from chisme.net import tcp
from chisme.wire import v1
from conftest import push_round

IH = "3f2a" * 10
P1 = "10.0.0.5:6881"
P2 = "[2001:db8::2]:6881"


def body_json(reply) -> object:
    assert reply.headers["content-type"] == "application/json", reply
    return json.loads(reply.body)


@pytest.fixture
async def api_node(node) -> Node:
    n: Node = await node()
    await n.announce(IH, P1, "good")
    return n


def api(n: Node) -> tuple[str, int]:
    return n.addresses["api"]


async def test_healthz(api_node: Node, http) -> None:
    r = await http(api(api_node), "GET", "/healthz")
    assert r.status == 200
    assert body_json(r) == {"status": "ok"}


async def test_local_providers_are_the_bytes_of_a_v1_lookup_reply(api_node: Node, http) -> None:
    await api_node.announce(IH, P2, "second")
    r = await http(api(api_node), "GET", f"/v1/providers/{IH}?local=1")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    wire = await tcp.request(
        api_node.node_address, v1.encode_message(v1.Lookup(IH, 0)), 5, 1 << 20
    )
    assert r.body == wire + b"\n"  # the reply value, plus Go's trailing newline
    got = json.loads(r.body)
    assert [p["addr"] for p in got] == [P2, P1]  # freshest first
    assert got[0]["peer_id"] == "second"
    limited = await http(api(api_node), "GET", f"/v1/providers/{IH}?local=1&limit=1")
    assert [p["addr"] for p in json.loads(limited.body)] == [P2]


async def test_unknown_key_is_an_empty_array(api_node: Node, http) -> None:
    for target in (f"/v1/providers/{'ab' * 20}", f"/v1/providers/{'ab' * 20}?local=1"):
        r = await http(api(api_node), "GET", target)
        assert (r.status, r.body) == (200, b"[]\n")


async def test_overlay_providers_ask_the_peers(node, http) -> None:
    a: Node = await node()
    b: Node = await node()
    a.role.peers[:] = [b.node_address]
    await Client(b.node_address).announce(IH, P2)
    local = await http(api(a), "GET", f"/v1/providers/{IH}?local=1")
    assert local.body == b"[]\n"
    overlay = await http(api(a), "GET", f"/v1/providers/{IH}")
    assert [p["addr"] for p in body_json(overlay)] == [P2]  # type: ignore[union-attr]
    assert "chisme_lookup_seconds_count 1.0" in a.metrics.render().decode()


async def test_announce_and_remove(node, http, wait_until) -> None:
    a: Node = await node()
    b: Node = await node()
    a.role.peers[:] = [b.node_address]
    r = await http(api(a), "POST", "/v1/announce",
                   json.dumps({"info_hash": IH, "addr": P2, "peer_id": "-TR3000-x"}).encode())
    assert r.status == 200
    reply = body_json(r)
    assert reply["ok"] is True  # type: ignore[index]
    (p,) = a.local_lookup(IH)
    assert (p.addr, p.peer_id, p.last_seen_ns) == (P2, "-TR3000-x", reply["last_seen_ns"])  # type: ignore[index]
    await wait_until(lambda: len(b.local_lookup(IH)) == 1, what="the announce push to b")

    r = await http(api(a), "POST", "/v1/remove", json.dumps({"info_hash": IH, "addr": P2}).encode())
    assert r.status == 200
    removed = body_json(r)
    assert removed["ok"] is True  # type: ignore[index]
    assert removed["removed_at_ns"] > p.last_seen_ns  # type: ignore[index]
    assert a.local_lookup(IH) == []
    assert a.store.num_tombstones == 1
    r = await http(api(a), "GET", f"/v1/providers/{IH}?local=1")
    assert r.body == b"[]\n"


async def test_hex_info_hashes_are_one_key_in_either_case(node, http) -> None:
    a: Node = await node()
    upper = IH.upper()
    r = await http(api(a), "POST", "/v1/announce",
                   json.dumps({"info_hash": upper, "addr": P1}).encode())
    assert r.status == 200, r
    assert [ih for ih, _ in a.store.snapshot()] == [IH]  # stored under the lower-case key
    for key in (IH, upper, IH[:9] + upper[9:]):
        for local in ("?local=1", ""):
            r = await http(api(a), "GET", f"/v1/providers/{key}{local}")
            assert [p["addr"] for p in body_json(r)] == [P1], (key, local)  # type: ignore[union-attr]
    r = await http(api(a), "POST", "/v1/remove",
                   json.dumps({"info_hash": IH[:3] + upper[3:], "addr": P1}).encode())
    assert r.status == 200 and a.local_lookup(IH) == []
    # any other key is byte for byte
    r = await http(api(a), "POST", "/v1/announce",
                   json.dumps({"info_hash": "Movie-2026", "addr": P1}).encode())
    assert r.status == 200
    assert (await http(api(a), "GET", "/v1/providers/movie-2026?local=1")).body == b"[]\n"
    assert len(body_json(await http(api(a), "GET", "/v1/providers/Movie-2026?local=1"))) == 1  # type: ignore[arg-type]


async def test_status(api_node: Node, http) -> None:
    r = await http(api(api_node), "GET", "/v1/status")
    assert r.status == 200
    status = body_json(r)
    assert isinstance(status, dict)
    assert status["address"] == api_node.node_address
    assert status["node_id"] == api_node.node_id
    assert (status["records"], status["keys"], status["tombstones"]) == (1, 1, 0)
    assert status["listeners"]["api"].endswith(f":{api(api_node)[1]}")


async def test_metrics(node, http, exchange, wait_until) -> None:
    a: Node = await node()
    b: Node = await node()
    a.role.peers[:] = [b.node_address]
    await a.announce(IH, P1)
    await push_round(a)
    await a.lookup(IH)
    await exchange(a.node_address, b"nonsense", half_close=False)
    await http(api(a), "GET", "/v1/providers/a%20b")
    r = await http(api(a), "GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    for line in (
        "chisme_records 1.0",
        "chisme_keys 1.0",
        'chisme_messages_out_total{protocol="v1",type="gossip"} 1.0',
        'chisme_messages_out_total{protocol="v1",type="lookup"} 1.0',
        'chisme_rejected_messages_total{reason="message is not a JSON object",surface="node"} 1.0',
        "chisme_lookup_seconds_count 1.0",
    ):
        assert line in text.splitlines(), line
    assert re.search(r'^chisme_messages_out_total\{protocol="v1",type="announce"\} [1-9]', text,
                     re.M)
    assert re.search(r'^chisme_gossip_bytes_total\{direction="out"\} [1-9]', text, re.M)
    gossip_in = re.compile(r'^chisme_gossip_bytes_total\{direction="in"\} [1-9]', re.M)
    await wait_until(lambda: bool(gossip_in.search(b.metrics.render().decode())), what="bytes in")
    assert 'chisme_lookup_seconds_bucket{le="+Inf"} 1.0' in text
    assert re.search(r'^chisme_rejected_messages_total\{reason="info_hash must be[^"]*",'
                     r'surface="api"\} 1.0', text, re.M)
    b_text = b.metrics.render().decode()
    assert 'chisme_messages_in_total{protocol="v1",type="gossip"} 1.0' in b_text
    assert 'chisme_messages_in_total{protocol="v1",type="lookup"} 1.0' in b_text
    assert re.search(r'^chisme_messages_in_total\{protocol="v1",type="announce"\} [1-9]', b_text,
                     re.M)


ANNOUNCE = "/v1/announce"
LONG = "x" * 70_000

# (case id, method, target, body, extra headers, status, reason pattern or None if the
#  server's HTTP layer answers before routing)
BAD_REQUESTS: list[tuple[str, str, str, bytes | None, dict[str, str], int, str]] = [
    ("announce: bad JSON", "POST", ANNOUNCE, b'{"info_hash":', {}, 400, "not valid JSON"),
    ("announce: not an object", "POST", ANNOUNCE, b"[1]", {}, 400, "invalid body"),
    ("announce: info_hash a number", "POST", ANNOUNCE, b'{"info_hash":1,"addr":"1.2.3.4:5"}',
     {}, 400, r"invalid body.*info_hash"),
    ("announce: addr a list", "POST", ANNOUNCE,
     json.dumps({"info_hash": IH, "addr": ["1.2.3.4:5"]}).encode(), {}, 400, r"addr"),
    ("announce: peer_id a number", "POST", ANNOUNCE,
     json.dumps({"info_hash": IH, "addr": P2, "peer_id": 7}).encode(), {}, 400, r"peer_id"),
    ("announce: seeder a string", "POST", ANNOUNCE,
     json.dumps({"info_hash": IH, "addr": P2, "seeder": "yes"}).encode(), {}, 400, r"seeder"),
    ("announce: missing addr", "POST", ANNOUNCE, json.dumps({"info_hash": IH}).encode(), {},
     400, r"addr"),
    ("announce: missing everything", "POST", ANNOUNCE, b"{}", {}, 400, r"info_hash"),
    ("announce: empty body", "POST", ANNOUNCE, b"", {}, 400, "not valid JSON"),
    ("announce: empty info_hash", "POST", ANNOUNCE,
     json.dumps({"info_hash": "", "addr": P2}).encode(), {}, 400, "info_hash must be"),
    ("announce: empty addr", "POST", ANNOUNCE, json.dumps({"info_hash": IH, "addr": ""}).encode(),
     {}, 400, "addr must be host:port"),
    ("announce: bad port", "POST", ANNOUNCE,
     json.dumps({"info_hash": IH, "addr": "1.2.3.4:99999"}).encode(), {}, 400, "port must be"),
    ("announce: IPv6 without brackets", "POST", ANNOUNCE,
     json.dumps({"info_hash": IH, "addr": "2001:db8::1:80"}).encode(), {}, 400, "brackets"),
    ("announce: peer_id too long", "POST", ANNOUNCE,
     json.dumps({"info_hash": IH, "addr": P2, "peer_id": "p" * 200}).encode(), {}, 400,
     "peer_id"),
    ("announce: form content type", "POST", ANNOUNCE, b"info_hash=x",
     {"Content-Type": "application/x-www-form-urlencoded"}, 415, "content-type"),
    ("remove: missing addr", "POST", "/v1/remove", json.dumps({"info_hash": IH}).encode(), {},
     400, "addr"),
    ("remove: bad addr", "POST", "/v1/remove",
     json.dumps({"info_hash": IH, "addr": "nope"}).encode(), {}, 400, "addr must be"),
    ("providers: bad info_hash", "GET", "/v1/providers/a%20b", None, {}, 400, "info_hash must"),
    ("providers: empty info_hash", "GET", "/v1/providers/", None, {}, 400, "info_hash must"),
    ("providers: limit not a number", "GET", f"/v1/providers/{IH}?limit=ten", None, {}, 400,
     "limit must be an integer"),
    ("providers: negative limit", "GET", f"/v1/providers/{IH}?limit=-1", None, {}, 400,
     "limit must be in"),
    ("providers: huge limit", "GET", f"/v1/providers/{IH}?limit=1000000", None, {}, 400,
     "limit must be in"),
    ("providers: local, bad limit", "GET", f"/v1/providers/{IH}?local=1&limit=x", None, {}, 400,
     "limit"),
    ("unknown path", "GET", "/v2/nothing", None, {}, 404, "no such endpoint"),
    ("root", "GET", "/", None, {}, 404, "no such endpoint"),
    ("POST to providers", "POST", f"/v1/providers/{IH}", b"{}", {}, 405, "GET"),
    ("GET announce", "GET", ANNOUNCE, None, {}, 405, "POST"),
    ("DELETE healthz", "DELETE", "/healthz", None, {}, 405, "GET"),
    ("oversized body", "POST", ANNOUNCE, LONG.encode(), {}, 413, "too large"),
    ("oversized header", "GET", "/healthz", None, {"X-Big": "y" * 9000}, 431, "too large"),
    ("too many headers", "GET", "/healthz", None, {f"X-H{i}": "1" for i in range(80)}, 431,
     "too large"),
    ("oversized target", "GET", "/v1/providers/" + "a" * 9000, None, {}, 431, "too long"),
]


def _rejected_api(n: Node) -> float:
    return sum(
        s.value
        for m in n.metrics.rejected.collect()
        for s in m.samples
        if s.labels.get("surface") == "api" and s.name.endswith("_total")
    )


@pytest.mark.parametrize(
    ("method", "target", "body", "headers", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
async def test_bad_request_gets_4xx_with_a_json_error(
    api_node: Node, http, method: str, target: str, body: bytes | None,
    headers: dict[str, str], status: int, reason: str,
) -> None:
    before = api_node.store.snapshot()
    r = await http(api(api_node), method, target, body, headers=headers)
    assert r.status == status, r
    err = body_json(r)
    assert isinstance(err, dict) and list(err) == ["error"]
    assert re.search(reason, err["error"]), err
    if status == 405:
        assert r.headers["allow"] == reason
    if status in (400, 413, 415, 431):
        assert _rejected_api(api_node) == 1
    # good requests still work, the store is unchanged
    ok = await http(api(api_node), "GET", f"/v1/providers/{IH}?local=1")
    assert [p["addr"] for p in json.loads(ok.body)] == [P1]
    assert api_node.store.snapshot() == before


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"HELLO\r\n\r\n", id="garbage request line"),
        pytest.param(b"GET /healthz HTTP/9.9\r\n\r\n", id="bad version"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nbad header line\r\n\r\n", id="bad header"),
        pytest.param(b"POST /v1/announce HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                     id="bad content-length"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="TLS client hello"),
    ],
)
async def test_garbage_gets_400_and_close(api_node: Node, exchange, http, raw: bytes) -> None:
    before = api_node.store.snapshot()
    reply = await exchange(api(api_node), raw, half_close=False)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply
    assert b"\r\nConnection: close" in head
    assert b"application/json" in head
    assert "error" in json.loads(body)
    ok = await http(api(api_node), "GET", "/healthz")
    assert ok.status == 200
    assert api_node.store.snapshot() == before
