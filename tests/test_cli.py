"""The command line, as a user runs it: ``chisme node`` in a subprocess (logs where it listens,
exits cleanly on SIGTERM/SIGINT), ``chisme announce`` and ``chisme lookup`` against it, TOML
config with flags winning, ``--version``, the usage and the defaults in ``--help`` (in-process,
via ``main()``), and errors: one line on stderr, the exit code of ``EXIT_CODES`` (2 for usage
and configuration), no traceback unless ``--debug``, which changes nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
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

from chisme import (
    ChismeError,
    Config,
    ConfigError,
    InvalidInput,
    MessageTooLarge,
    PeerTimeout,
    PeerUnreachable,
    WireError,
)
from chisme.cli import EXIT_CODES, exit_code, main
from chisme.config import LOG_LEVELS, PROFILES

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
    assert_one_line_error(Result(proc.returncode or 0, out.decode(), err.decode()), 2, "--node")


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


# Usage errors, every command: exit 2 before anything is sent or bound.
CLI_ERRORS: list[tuple[list[str], int, str]] = [
        (["announce", "--node", "127.0.0.1:7070", IH, "10.0.0.5"], 2, r"ADDR: addr must be"),
        (["announce", "--node", "127.0.0.1:7070", IH, "2001:db8::1:80"], 2, r"brackets"),
        (["announce", "--node", "nohost", IH, "10.0.0.5:1"], 2, r"--node: addr must be"),
        (["announce", "--node", "127.0.0.1:7070", "a b", "10.0.0.5:1"], 2, r"INFO_HASH: "),
        (["announce", "--node", "127.0.0.1:7070", "--peer-id", "p" * 200, IH, "10.0.0.5:1"], 2,
         r"--peer-id"),
        (["announce", IH], 2, r"required: ADDR"),
        (["announce", "--timeout", "soon", IH, "10.0.0.5:1"], 2, r"--timeout"),
        (["lookup", "--node", "127.0.0.1:0x", IH], 2, r"--node: port"),
        (["lookup", "--node", "127.0.0.1:7070", "--limit", "-1", IH], 2, r"--limit"),
        (["lookup", "--node", "127.0.0.1:7070", "--limit", "many", IH], 2, r"--limit"),
        (["lookup", "--node", "127.0.0.1:7070", "x" * 129], 2, r"INFO_HASH: info_hash must be"),
        (["lookup"], 2, r"required: INFO_HASH"),
        (["members", "--node", "127.0.0.1"], 2, r"--node: addr must be host:port"),
        (["members", "--bogus"], 2, r"unrecognized arguments: --bogus"),
        (["node", "--bogus"], 2, r"unrecognized arguments: --bogus"),
        (["node", "--ttl", "soon"], 2, r"--ttl"),
        (["node", "--ttl", "nan"], 2, r"ttl_s must be a finite number"),
        (["node", "--ttl", "-5", "--listen", "127.0.0.1:0"], 2, r"ttl_s must be positive"),
        (["node", "--peer", "localhost"], 2, r"peers: addr must be host:port"),
        (["node", "--v1-peer", "10.0.0.1:0"], 2, r"v1_peers: port must be"),
        (["node", "--listen", "127.0.0.1:99999"], 2, r"listen: port must be"),
        (["node", "--listen", ""], 2, r"listen \(the node port\) cannot be switched off"),
        (["node", "--config", "/nonexistent/chisme.toml"], 2, r"cannot read config"),
        (["node", "--profile", "moon"], 2, r"invalid choice: 'moon'"),
        (["node", "--log-level", "LOUD"], 2,
         r"--log-level: invalid choice: 'LOUD' \(choose from .*DEBUG.*INFO.*WARNING.*ERROR"),
        (["simulate", "--nodes", "1"], 2, r"--nodes must be at least 2"),
        (["simulate", "--loss", "2"], 2, r"--loss must be within 0..1"),
        (["frobnicate"], 2, r"invalid choice"),
]


@pytest.mark.parametrize(("args", "code", "pattern"), CLI_ERRORS, ids=_ids(CLI_ERRORS))
async def test_errors_are_one_line_with_a_non_zero_exit(
    args: list[str], code: int, pattern: str
) -> None:
    assert_one_line_error(await run(*args), code, pattern)
    # --debug adds the traceback and keeps the code
    r = await run("--debug", *args)
    assert r.code == code, r
    assert "Traceback (most recent call last)" in r.err, r.err
    last = r.err.splitlines()[-1]
    assert last.startswith("chisme: error: ") and re.search(pattern, last), r.err


@pytest.mark.parametrize(("args", "code", "pattern"), CLI_ERRORS, ids=_ids(CLI_ERRORS))
def test_main_in_process_returns_the_same_codes(
    args: list[str], code: int, pattern: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(pattern, err), err


def test_exit_codes_are_defined_in_one_table() -> None:
    assert [(kind.__name__, code) for kind, code in EXIT_CODES] == [
        ("ConfigError", 2), ("WireError", 1), ("InvalidInput", 2), ("ChismeError", 1),
        ("OSError", 1)]
    cases: list[tuple[Exception, int]] = [
        (ConfigError("x"), 2),
        (InvalidInput("x"), 2),  # a value given on the command line: usage
        (WireError("peer said: x"), 1),  # the node's answer, not the user's input
        (MessageTooLarge("x"), 1),
        (PeerTimeout("x"), 1),
        (PeerUnreachable("x"), 1),
        (ChismeError("x"), 1),
        (OSError("x"), 1),
    ]
    for error, code in cases:
        assert exit_code(error) == code, error


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version  # noqa: PLC0415

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"chisme {version('chisme')}\n"


async def test_version_as_a_command() -> None:
    r = await run("--version")
    assert (r.code, r.err) == (0, "") and re.fullmatch(r"chisme \d+\.\d+\S*\n", r.out), r


@pytest.mark.parametrize("args", [[], ["--debug"]])
def test_bare_chisme_lists_the_commands(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: chisme ")
    listed = dict(re.findall(r"^    (\w+)\s+(\S.*)$", err, re.M))
    assert listed == {
        "node": "run a node (and its JSON API and tracker front ends)",
        "announce": "announce a provider to a node (v1)",
        "lookup": "ask a node for the providers of a key (v1)",
        "members": "list a node's cluster members and their state",
        "simulate": "run N nodes in one process on a virtual clock",
    }


async def test_bare_chisme_as_a_command() -> None:
    r = await run()
    assert r.code == 2 and r.out == "" and "commands:" in r.err and "simulate" in r.err, r


def _help_text(command: str) -> str:
    """What ``chisme COMMAND --help`` prints, run in-process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    return out.getvalue()


def _help_of(command: str) -> dict[str, str]:
    """Each flag of ``chisme COMMAND --help`` and its help text, joined into one line."""
    text = _help_text(command)
    flags: dict[str, str] = {}
    flag = ""
    for line in text.split("options:", 1)[1].splitlines():
        m = re.match(r"  (-[-\w]+)(?: [\w:.{},]+)?(?:  +(.*))?$", line)
        if m:
            flag = m.group(1)
            flags[flag] = m.group(2) or ""
        elif flag:
            flags[flag] += " " + line.strip()
    return flags


def _shown(value: object) -> str:
    if value == ():
        return "none"
    if value == "":
        return "''"
    return f"{value:g}" if isinstance(value, float) else str(value)


NODE_FLAGS = {
    "--listen": "listen", "--api": "api", "--tracker-http": "tracker_http",
    "--tracker-udp": "tracker_udp", "--peer": "peers", "--v1-peer": "v1_peers", "--ttl": "ttl_s",
    "--gossip-interval": "gossip_interval_s", "--protocol": "protocol", "--node-id": "node_id",
    "--cluster": "cluster_name", "--log-level": "log_level",
}


def test_node_help_shows_every_default_from_config() -> None:
    flags = _help_of("node")
    assert set(NODE_FLAGS) <= set(flags)
    defaults = Config()
    for flag, name in NODE_FLAGS.items():
        assert f"(default: {_shown(getattr(defaults, name))}" in flags[flag], (flag, flags[flag])
    for flag in ("--config", "--profile"):
        assert "(default: " in flags[flag], flag
    # a default a profile changes says so
    local, wan = (Config.profile(p).gossip_interval_s for p in ("local", "wan"))
    assert f"profile local: {local:g}, wan: {wan:g})" in flags["--gossip-interval"]
    assert set(PROFILES) == {"local", "lan", "wan"}
    assert f"--log-level {{{','.join(LOG_LEVELS)}}}" in _help_text("node")


def test_help_follows_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import chisme.cli  # noqa: PLC0415

    moved = Config(listen="127.0.0.1:7171", api="", ttl_s=42.0)
    monkeypatch.setattr(chisme.cli.Config, "profile", classmethod(lambda cls, name="lan": moved))
    flags = _help_of("node")
    assert "(default: 127.0.0.1:7171)" in flags["--listen"]
    assert "(default: '')" in flags["--api"]
    assert "(default: 42)" in flags["--ttl"]


@pytest.mark.parametrize("command", ["announce", "lookup", "members", "simulate"])
def test_other_commands_show_their_defaults(command: str) -> None:
    for flag, text in _help_of(command).items():
        if flag not in ("-h", "--json", "--verify-codec", "--plot"):
            assert "(default: " in text, (command, flag, text)
    if command != "simulate":
        assert f"(default: {Config().listen};" in _help_of(command)["--node"]


BAD_FILES = [
    ("ttl_s = \n", r"config FILE is not valid TOML"),
    ('ttl_s = "soon"\n', r"FILE: ttl_s: expected float, got str$"),
    ("ttl = 30\n", r"FILE: unknown key 'ttl' \(did you mean 'ttl_s'\?\)$"),
    ("no_such_key = 1\n", r"FILE: unknown key 'no_such_key'$"),
    ("gossip_interval_s = 0\n", r"FILE: gossip_interval_s must be positive$"),
    ('profile = "moon"\n', r"FILE: unknown profile 'moon'"),
    ('peers = ["nohost"]\n', r"FILE: peers: addr must be host:port"),
    ('log_level = "LOUD"\n', r"FILE: log_level must be one of DEBUG, INFO, WARNING, ERROR"),
]


@pytest.mark.parametrize(("toml", "pattern"), BAD_FILES)
async def test_bad_config_files(tmp_path: Path, toml: str, pattern: str) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(toml)
    pattern = pattern.replace("FILE", re.escape(str(cfg)))
    assert_one_line_error(await run("node", "--config", str(cfg)), 2, pattern)


@pytest.mark.parametrize(("toml", "pattern"), BAD_FILES)
def test_bad_config_files_in_process(
    tmp_path: Path, toml: str, pattern: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(toml)
    assert main(["node", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"chisme: error: .*\n", err), err
    assert re.search(pattern.replace("FILE", re.escape(str(cfg))), err.rstrip("\n")), err


def test_a_bad_flag_is_not_blamed_on_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text("gossip_interval_s = 2.0\n")
    assert main(["node", "--config", str(cfg), "--ttl", "0"]) == 2
    assert capsys.readouterr().err == "chisme: error: ttl_s must be positive\n"


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


@pytest.mark.parametrize(
    ("flag", "kind", "what"),
    [
        ("--listen", socket.SOCK_STREAM, "the node port"),
        ("--api", socket.SOCK_STREAM, "the JSON API"),
        ("--tracker-http", socket.SOCK_STREAM, "the HTTP tracker"),
        ("--tracker-udp", socket.SOCK_DGRAM, "the UDP tracker"),
    ],
)
async def test_a_listener_in_use_names_the_flag_that_moves_it(
    flag: str, kind: socket.SocketKind, what: str
) -> None:
    with socket.socket(socket.AF_INET, kind) as busy:
        busy.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            busy.listen()
        addr = f"127.0.0.1:{busy.getsockname()[1]}"
        flags = {"--listen": "127.0.0.1:0", "--api": "", "--tracker-http": "",
                 "--tracker-udp": "", flag: addr}
        args = [x for pair in flags.items() for x in pair]
        r = await run("node", "--log-level", "WARNING", *args)
    hint = f"; that is {what}: move it with {flag} HOST:PORT"
    if flag != "--listen":
        hint += f" or switch it off with {flag} ''"
    example = f"{flag} HOST:PORT" if flag == "--listen" else f"{flag} ''"
    hint += f' (make run ARGS="{example}" passes flags)'
    assert_one_line_error(r, 2, rf"^chisme: error: cannot listen on (tcp|udp) {re.escape(addr)}: "
                                rf".*{re.escape(hint)}$")


def _udp_port_with_a_free_tcp_twin() -> socket.socket:
    """A bound UDP socket whose port number is free for a TCP listener (as the node binds it,
    SO_REUSEADDR): on a busy machine many ephemeral UDP numbers are taken on the TCP side."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                continue
        return udp
    pytest.skip("no UDP port whose TCP twin is free")


async def test_the_udp_side_of_a_v2_node_port_in_use_names_listen() -> None:
    for _ in range(5):  # another process may take the TCP twin before the node binds it
        with _udp_port_with_a_free_tcp_twin() as busy:
            addr = f"127.0.0.1:{busy.getsockname()[1]}"
            r = await run("node", "--log-level", "WARNING", "--listen", addr, "--api", "", *OFF)
        if f"cannot listen on tcp {addr}" not in r.err:
            break
    assert_one_line_error(r, 2, rf"cannot listen on udp {re.escape(addr)}: .*; that is the node "
                                r"port: move it with --listen HOST:PORT \(make run")


async def test_node_flags_pointing_at_the_api_or_tracker_are_named() -> None:
    async with chisme_node("--tracker-http", "127.0.0.1:0", "--log-level", "INFO") as n:
        tracker = (await n.read_until(r"HTTP tracker on http://(\S+)/announce")).group(1)
        for port in (n.api, tracker):
            hint = (rf"^chisme: error: {re.escape(port)} answered HTTP: --node takes a node port "
                    rf"\(default {re.escape(Config().listen)}\), not the JSON API or tracker port$")
            for args in (["announce", IH, "10.0.0.5:1"], ["lookup", IH], ["members"]):
                r = await run(args[0], "--node", port, *args[1:])
                assert_one_line_error(r, 1, hint)
        # and the node port still works, its store untouched by the attempts
        r = await run("lookup", "--node", n.node, IH)
        assert (r.code, r.out) == (0, f"no providers for {IH}\n"), r
        await n.stop()


async def test_other_non_v1_answers_are_named() -> None:
    async def banner(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await w.drain()
        w.close()

    srv = await asyncio.start_server(banner, "127.0.0.1", 0)
    try:
        addr = f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        for args in (["announce", IH, "10.0.0.5:1"], ["lookup", IH], ["members"]):
            r = await run(args[0], "--node", addr, *args[1:])
            assert_one_line_error(r, 1, rf"^chisme: error: {re.escape(addr)} did not answer in "
                                        r"v1 \(message is not a JSON object\): --node takes a "
                                        r"node port")
    finally:
        srv.close()


async def test_an_announce_the_node_refuses_is_an_error() -> None:
    async def refuse(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()
        w.write(b'{"error":"info_hash must be 1-128 printable ASCII characters"}\n')
        await w.drain()
        w.close()

    srv = await asyncio.start_server(refuse, "127.0.0.1", 0)
    try:
        addr = f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        r = await run("announce", "--node", addr, IH, "10.0.0.5:1")
        assert_one_line_error(r, 1, r"^chisme: error: peer said: info_hash must be")
    finally:
        srv.close()


async def test_hex_info_hashes_are_found_in_either_case_other_keys_are_exact() -> None:
    upper, lower = IH.upper(), IH
    async with chisme_node(api=False) as n:
        r = await run("announce", "--node", n.node, upper, "10.0.0.5:6881")
        assert r.out == f"announced 10.0.0.5:6881 for {lower} to {n.node}\n", r
        for key in (lower, upper, lower[:7] + upper[7:]):
            r = await lookup_until(n.node, key, lines=1)
            assert r.out.startswith("10.0.0.5:6881\t"), r
        sha256 = "C0FFEE" * 10 + "C0FE"  # 64 hex digits: a BitTorrent v2 info hash
        assert (await run("announce", "--node", n.node, sha256, "10.0.0.6:1")).code == 0
        assert (await lookup_until(n.node, sha256.lower(), lines=1)).out.startswith("10.0.0.6:1")
        r = await run("announce", "--node", n.node, "Movie-2026", "10.0.0.7:1")
        assert r.out == f"announced 10.0.0.7:1 for Movie-2026 to {n.node}\n", r
        assert (await lookup_until(n.node, "Movie-2026", lines=1)).code == 0
        r = await run("lookup", "--node", n.node, "movie-2026")
        assert r.out == "no providers for movie-2026\n", r
        await n.stop()


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


async def test_debug_shows_the_traceback_and_keeps_the_exit_code() -> None:
    with refused_port() as addr:
        r = await run("--debug", "lookup", "--node", addr, IH)
    assert r.code == 1
    assert "Traceback (most recent call last)" in r.err
    assert "PeerUnreachable" in r.err
    assert r.err.splitlines()[-1].startswith(f"chisme: error: {addr}: ")
    r = await run("--debug", "node", "--bogus")
    assert r.code == 2 and "Traceback" in r.err and "ConfigError" in r.err
    r = await run("--debug", "announce", "--node", "127.0.0.1:7070", "a b", "10.0.0.5:1")
    assert r.code == 2 and "InvalidInput" in r.err
