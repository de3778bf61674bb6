"""The command line, as a user runs it: ``chisme node`` in a subprocess (logs where it listens,
exits cleanly on SIGTERM/SIGINT), ``chisme announce`` and ``chisme lookup`` against it, TOML
config with flags winning, and errors: one line on stderr, a non-zero exit, no traceback
unless ``--debug``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IH = "3f2a" * 10
CHISME = [sys.executable, "-m", "chisme.cli"]
OFF = ["--tracker-http", "", "--tracker-udp", ""]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass
class Result:
    code: int
    out: str
    err: str


async def run(*args: str, timeout_s: float = 30) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *CHISME, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass
class NodeProc:
    proc: asyncio.subprocess.Process
    node: str = ""
    api: str = ""
    log: list[str] = field(default_factory=list)

    async def read_until(self, pattern: str, timeout_s: float = 30) -> re.Match[str]:
        assert self.proc.stderr is not None
        rx = re.compile(pattern)
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.proc.stderr.readline()).decode()
                if not line:
                    pytest.fail(f"node exited before logging {pattern!r}: {self.log}")
                self.log.append(line)
                if m := rx.search(line):
                    return m

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Signal the node and return its exit code and the rest of its log."""
        assert self.proc.stderr is not None
        self.proc.send_signal(sig)
        async with asyncio.timeout(30):
            rest = (await self.proc.stderr.read()).decode()
            code = await self.proc.wait()
        self.log.append(rest)
        return code, rest


@contextlib.asynccontextmanager
async def chisme_node(*args: str, api: bool = True) -> AsyncIterator[NodeProc]:
    extra = ["--api", "127.0.0.1:0"] if api and "--api" not in args else []
    listen = [] if "--listen" in args or "--config" in args else ["--listen", "127.0.0.1:0"]
    proc = await asyncio.create_subprocess_exec(
        *CHISME, "node", *listen, *extra, *OFF, *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=ENV,
    )
    n = NodeProc(proc)
    try:
        n.node = (await n.read_until(r"listening on (\S+) \(v1 JSON\)")).group(1)
        if api:
            n.api = (await n.read_until(r"JSON API on http://(\S+)/")).group(1)
        yield n
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@contextlib.contextmanager
def refused_port() -> Iterator[str]:
    """An address that refuses connections: bound, never listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


async def lookup_until(node: str, info_hash: str, lines: int) -> Result:
    """``chisme lookup`` until it lists ``lines`` providers: an announce is fire-and-forget,
    so the node may read it after the next connection's lookup."""
    async with asyncio.timeout(30):
        while True:
            r = await run("lookup", "--node", node, info_hash)
            assert r.code == 0, r
            if len(r.out.splitlines()) == lines and not r.out.startswith("no providers"):
                return r


def assert_one_line_error(r: Result, code: int, pattern: str) -> None:
    assert r.code == code, r
    assert "Traceback" not in r.err, r.err
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("chisme: error: "), r.err
    assert re.search(pattern, lines[0]), r.err


async def test_node_logs_where_it_listens_serves_and_exits_cleanly_on_sigterm() -> None:
    async with chisme_node() as n:
        host, port = n.node.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        r = await run("announce", "--node", n.node, "--peer-id=-qB-1", IH, "10.0.0.5:6881")
        assert r.code == 0, r
        r = await lookup_until(n.node, IH, lines=1)
        addr, stamp, peer_id = r.out.strip().split("\t")
        assert (addr, peer_id) == ("10.0.0.5:6881", "-qB-1")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", stamp)
        code, rest = await n.stop(signal.SIGTERM)
    assert code == 0
    assert "shutting down" in rest
    assert "Traceback" not in "".join(n.log)


async def test_sigint_also_exits_cleanly() -> None:
    async with chisme_node(api=False) as n:
        code, rest = await n.stop(signal.SIGINT)
    assert code == 0 and "Traceback" not in rest


async def test_announce_then_lookup_plain_and_json() -> None:
    async with chisme_node(api=False) as n:
        r = await run("announce", "--node", n.node, IH, "[2001:db8::1]:6881")
        assert r.code == 0 and r.err == "", r
        assert r.out.strip() == f"announced [2001:db8::1]:6881 for {IH} to {n.node}"
        r = await run("announce", "--node", n.node, IH, "10.0.0.6:6881")
        assert r.code == 0, r

        plain = await lookup_until(n.node, IH, lines=2)
        assert [line.split("\t")[0] for line in plain.out.splitlines()] == [
            "10.0.0.6:6881", "[2001:db8::1]:6881"]  # freshest first

        js = await run("lookup", "--node", n.node, "--json", "--limit", "1", IH)
        assert js.code == 0, js
        assert js.out.endswith("]\n") and js.out.count("\n") == 1  # the v1 reply as it came
        (p,) = json.loads(js.out)
        assert list(p) == ["addr", "last_seen"] and p["addr"] == "10.0.0.6:6881"

        none = await run("lookup", "--node", n.node, "nobody")
        assert (none.code, none.out) == (0, "no providers for nobody\n")
        empty_json = await run("lookup", "--node", n.node, "--json", "nobody")
        assert (empty_json.code, empty_json.out) == (0, "[]\n")
        await n.stop()


async def test_the_entry_point_script_works() -> None:
    script = Path(sys.executable).parent / "chisme"
    if not script.exists():
        pytest.skip("no chisme script next to the interpreter")
    proc = await asyncio.create_subprocess_exec(
        str(script), "lookup", "--node", "127.0.0.1:x", IH,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert_one_line_error(Result(proc.returncode or 0, out.decode(), err.decode()), 1, "--node")


async def test_config_file_with_flags_winning(tmp_path: Path, http) -> None:
    cfg = tmp_path / "chisme.toml"
    cfg.write_text(
        'profile = "local"\n'
        'listen = "127.0.0.1:0"\n'
        'api = ""\n'  # the flag below switches it back on
        'tracker_http = ""\n'
        'tracker_udp = ""\n'
        'node_id = "from-file"\n'
        'cluster_name = "file-cluster"\n'
        "ttl_s = 33.0\n"
        'peers = ["127.0.0.1:9"]\n'
    )
    async with chisme_node("--config", str(cfg), "--api", "127.0.0.1:0",
                           "--node-id", "from-flag") as n:
        assert any("node from-flag." in line for line in n.log)  # its v2 member id
        host, port = n.api.rsplit(":", 1)
        r = await http((host, int(port)), "GET", "/v1/status")
        status = json.loads(r.body)
        assert status["node_id"] == "from-flag"  # flag wins
        assert status["cluster"] == "file-cluster"  # file value kept
        assert status["peers"] == ["127.0.0.1:9"]
        code, _ = await n.stop()
        assert code == 0


def _ids(cases: list[tuple[list[str], int, str]]) -> list[str]:
    return [" ".join(a).replace(IH, "IH")[:50] or "(no args)" for a, _, _ in cases]


CLI_ERRORS: list[tuple[list[str], int, str]] = [
        (["announce", "--node", "127.0.0.1:7070", IH, "10.0.0.5"], 1, r"ADDR: addr must be"),
        (["announce", "--node", "127.0.0.1:7070", IH, "2001:db8::1:80"], 1, r"brackets"),
        (["announce", "--node", "nohost", IH, "10.0.0.5:1"], 1, r"--node: addr must be"),
        (["announce", "--node", "127.0.0.1:7070", "a b", "10.0.0.5:1"], 1, r"INFO_HASH: "),
        (["announce", "--node", "127.0.0.1:7070", "--peer-id", "p" * 200, IH, "10.0.0.5:1"], 1,
         r"--peer-id"),
        (["lookup", "--node", "127.0.0.1:0x", IH], 1, r"--node: port"),
        (["lookup", "--node", "127.0.0.1:7070", "--limit", "-1", IH], 1, r"--limit"),
        (["lookup", "--node", "127.0.0.1:7070", "--limit", "many", IH], 2, r"--limit"),
        (["node", "--bogus"], 2, r"unrecognized arguments: --bogus"),
        (["node", "--ttl", "soon"], 2, r"--ttl"),
        (["node", "--ttl", "nan"], 2, r"ttl_s must be a finite number"),
        (["node", "--ttl", "-5", "--listen", "127.0.0.1:0"], 2, r"ttl_s must be positive"),
        (["node", "--peer", "localhost"], 2, r"peers: addr must be host:port"),
        (["node", "--listen", "127.0.0.1:99999"], 2, r"listen: port must be"),
        (["node", "--config", "/nonexistent/chisme.toml"], 2, r"cannot read config"),
        (["frobnicate"], 2, r"invalid choice"),
        ([], 2, r"required: command"),
]


@pytest.mark.parametrize(("args", "code", "pattern"), CLI_ERRORS, ids=_ids(CLI_ERRORS))
async def test_errors_are_one_line_with_a_non_zero_exit(
    args: list[str], code: int, pattern: str
) -> None:
    assert_one_line_error(await run(*args), code, pattern)


@pytest.mark.parametrize(
    ("toml", "pattern"),
    [
        ("ttl_s = \n", r"is not valid TOML"),
        ('ttl_s = "soon"\n', r"ttl_s"),
        ("no_such_key = 1\n", r"no_such_key"),
        ("gossip_interval_s = 0\n", r"gossip_interval_s must be positive"),
        ('profile = "moon"\n', r"unknown profile 'moon'"),
        ('peers = ["nohost"]\n', r"peers: addr must be host:port"),
    ],
)
async def test_bad_config_files(tmp_path: Path, toml: str, pattern: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    assert_one_line_error(await run("node", "--config", str(cfg)), 2, pattern)


async def test_unreachable_and_silent_nodes() -> None:
    with refused_port() as addr:
        r = await run("announce", "--node", addr, IH, "10.0.0.5:6881", "--timeout", "5")
        assert_one_line_error(r, 1, re.escape(addr))
        r = await run("lookup", "--node", addr, IH)
        assert_one_line_error(r, 1, re.escape(addr))
    # a socket that listens but never accepts nor answers: the kernel completes the handshake
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        r = await run("lookup", "--node", addr, "--timeout", "0.3", IH)
        assert_one_line_error(r, 1, r"no answer within 0.3 s")


async def test_a_node_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        addr = f"127.0.0.1:{busy.getsockname()[1]}"
        r = await run("node", "--listen", addr, "--api", "", *OFF)
        assert_one_line_error(r, 2,
                              rf"cannot listen on tcp {re.escape(addr)}: Address already in use")
        r = await run("node", "--listen", "127.0.0.1:0", "--api", addr, *OFF)
        assert r.code == 2 and "Traceback" not in r.err, r
        assert r.err.splitlines()[-1].startswith("chisme: error: cannot listen on"), r


async def test_lookup_shows_a_peer_error_reply_as_one_line() -> None:
    async def answer_error(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b'{"error":"unknown message type"}\n')
        await w.drain()
        w.close()

    srv = await asyncio.start_server(answer_error, "127.0.0.1", 0)
    try:
        port = srv.sockets[0].getsockname()[1]
        r = await run("lookup", "--node", f"127.0.0.1:{port}", IH)
        assert_one_line_error(r, 1, r"peer said: unknown message type")
    finally:
        srv.close()


async def test_debug_shows_the_traceback() -> None:
    with refused_port() as addr:
        r = await run("--debug", "lookup", "--node", addr, IH)
    assert r.code != 0
    assert "Traceback (most recent call last)" in r.err
    assert "PeerUnreachable" in r.err
    r = await run("--debug", "node", "--bogus")
    assert r.code != 0 and "Traceback" in r.err and "ConfigError" in r.err
