"""The public API is pinned: ``chisme.__all__``, the exception tree, the library calls, and
the runnable examples (the package docstring and the README) actually run.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import textwrap
from pathlib import Path

import pytest

import chisme
from chisme import (
    ChismeError,
    Client,
    ConfigError,
    InvalidInput,
    MessageTooLarge,
    Node,
    PeerError,
    PeerTimeout,
    PeerUnreachable,
    TrackerRequestError,
    WireError,
)
from chisme.wire import v1

IH = "3f2a" * 10
README = Path(__file__).resolve().parents[1] / "README.md"


def test_all_is_pinned() -> None:
    assert sorted(chisme.__all__) == [
        "ChismeError",
        "Client",
        "Config",
        "ConfigError",
        "InvalidInput",
        "MessageTooLarge",
        "Node",
        "PeerError",
        "PeerTimeout",
        "PeerUnreachable",
        "Provider",
        "Record",
        "Store",
        "TrackerRequestError",
        "WireError",
        "__version__",
        "load_config",
    ]
    for name in chisme.__all__:
        assert getattr(chisme, name) is not None
    assert re.fullmatch(r"\d+\.\d+\.\d+", chisme.__version__)


def test_exception_tree() -> None:
    assert issubclass(ConfigError, ChismeError)
    assert issubclass(InvalidInput, ChismeError)
    assert issubclass(WireError, InvalidInput)
    assert issubclass(MessageTooLarge, WireError)
    assert issubclass(TrackerRequestError, InvalidInput)
    assert issubclass(PeerError, ChismeError)
    assert issubclass(PeerTimeout, PeerError) and issubclass(PeerUnreachable, PeerError)
    assert not issubclass(PeerError, InvalidInput)
    assert InvalidInput("bad thing").reason == "bad thing"


def test_library_signatures() -> None:
    def params(f: object) -> list[str]:
        return [str(p) for p in inspect.signature(f).parameters.values()]  # type: ignore[arg-type]

    assert params(Node.announce)[:4] == ["self", "info_hash: 'str'", "addr: 'str'",
                                         "peer_id: 'str' = ''"]
    assert params(Node.lookup) == ["self", "info_hash: 'str'", "limit: 'int' = 0"]
    assert params(Node.remove) == ["self", "info_hash: 'str'", "addr: 'str'"]
    assert params(Client.announce) == ["self", "info_hash: 'str'", "addr: 'str'",
                                       "peer_id: 'str' = ''"]
    assert params(Client.lookup) == ["self", "info_hash: 'str'", "limit: 'int' = 0"]
    for f in (Node.announce, Node.lookup, Node.remove, Client.announce, Client.lookup):
        assert inspect.iscoroutinefunction(f)
    assert hasattr(Node, "__aenter__") and hasattr(Node, "__aexit__")


def _example(text: str) -> str:
    """Make an example bind free ports: ``listen`` on port 0, the API off."""
    code = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:0", text)
    if "listen=" not in code:
        code = code.replace('Config.profile("local", ', 'Config.profile("local", '
                            'listen="127.0.0.1:0", ', 1)
    assert "listen=" in code, code
    return code


def _run_example(code: str) -> None:
    exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})


def test_the_package_docstring_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    doc = chisme.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    _run_example(_example(textwrap.dedent(block)))
    out = capsys.readouterr().out
    assert "Provider(addr='10.0.0.5:6881'" in out


def test_the_readme_library_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    if not README.exists():
        pytest.skip("no README")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    examples = [b for b in blocks if "chisme.Node" in b]
    assert examples, "the README shows how to embed a node"
    for block in examples:
        _run_example(_example(block))
    assert "10.0.0.5:6881" in capsys.readouterr().out


async def test_node_library_calls(node) -> None:
    n: Node = await node()
    rec = await n.announce(IH, "10.0.0.5:6881", peer_id="-qB4650-abc", seeder=True)
    assert rec.last_seen_ns > 0
    (p,) = await n.lookup(IH)
    assert (p.addr, p.peer_id, p.seeder) == ("10.0.0.5:6881", "-qB4650-abc", True)
    reply = v1.encode_providers(n.local_lookup(IH))
    assert reply.startswith(b'[{"addr":"10.0.0.5:6881","peer_id":"-qB4650-abc",')
    tomb = await n.remove(IH, "10.0.0.5:6881")
    assert tomb.tombstone and tomb.last_seen_ns > rec.last_seen_ns
    assert await n.lookup(IH) == [] and v1.encode_providers(n.local_lookup(IH)) == b"[]\n"
    # a later announce beats the tombstone: the provider is back
    await n.announce(IH, "10.0.0.5:6881")
    assert [q.addr for q in await n.lookup(IH)] == ["10.0.0.5:6881"]


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda n: n.announce("", "10.0.0.5:1"), "info_hash must be"),
        (lambda n: n.announce(IH, "10.0.0.5"), "addr must be host:port"),
        (lambda n: n.announce(IH, "10.0.0.5:1", "p" * 200), "peer_id must be at most"),
        (lambda n: n.lookup("a b"), "info_hash must be"),
        (lambda n: n.remove(IH, "::1:80"), "brackets"),
    ],
)
async def test_node_library_errors_are_invalid_input(node, call, reason: str) -> None:
    n: Node = await node()
    with pytest.raises(InvalidInput, match=reason):
        await call(n)
    assert n.store.snapshot() == {}


async def test_client_library_calls(node, wait_until) -> None:
    n: Node = await node()
    c = Client(n.node_address, timeout_s=5)
    await c.announce(IH, "10.0.0.5:6881", "abc")
    await wait_until(lambda: len(n.local_lookup(IH)) == 1)
    (p,) = await c.lookup(IH, limit=5)
    assert (p.addr, p.peer_id) == ("10.0.0.5:6881", "abc")
    with pytest.raises(InvalidInput):
        Client("nohost")
    with pytest.raises(InvalidInput):
        await c.lookup("")


async def test_a_node_stops_cleanly_and_cannot_spawn_after(config) -> None:
    n = Node(config())
    async with n:
        assert n.started.is_set()
        address = n.node_address
    with pytest.raises(RuntimeError):
        n.spawn(asyncio.sleep(0))
    # the port is free again: a new node binds it
    async with Node(config(listen=address)) as again:
        assert again.node_address == address
