"""Real processes: five ``chisme node --protocol v2 --profile local`` processes on loopback,
started from ONE seed address, learn each other, converge on announces made at different
nodes, mark a SIGKILLed member dead while they keep answering lookups, and take it back when it
restarts on its port (it rejoins and catches up).

Everything is checked the way an operator would, with the command line (``chisme members``,
``chisme announce``, ``chisme lookup``); polling loops between the CLI checks send the same v1
requests in-process (a CLI run costs a Python start). Every wait is a predicate under a
deadline; the durations are logged (``-o log_cli=true --log-cli-level=INFO``). Every process
started is killed in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from chisme import Client
from chisme.errors import ChismeError
from chisme.net import tcp
from chisme.wire import v1

log = logging.getLogger("tests.e2e.processes")

CHISME = [sys.executable, "-m", "chisme.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
N = 5
IH = "3f2a" * 10
IH2 = "c0ffee" * 6
IH3 = "feed" * 10
DEADLINE_S = 30.0  # a process start, a failure detection (suspicion 3-18 s on this profile)

pytestmark = pytest.mark.timeout(120)


def free_port_pair() -> int:
    """A port number free for both TCP and UDP on 127.0.0.1 (a v2 node binds both)."""
    for _ in range(50):
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port: int = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free TCP+UDP port pair")


@dataclass
class NodeProc:
    addr: str
    log_path: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "".join(self.log_path.read_text().splitlines(True)[-30:])
        return ""


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nodes: list[NodeProc] = []
        self.starts = 0

    async def start(self, addr: str, seed: str | None) -> NodeProc:
        self.starts += 1
        node = NodeProc(addr, self.tmp / f"node-{self.starts}.log")
        args = ["node", "--protocol", "v2", "--profile", "local", "--listen", addr,
                "--api", "", "--tracker-http", "", "--tracker-udp", ""]
        if seed:
            args += ["--peer", seed]
        with node.log_path.open("wb") as logf:
            node.proc = await asyncio.create_subprocess_exec(
                *CHISME, *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=logf, env=ENV,
            )
        return node

    async def stop_all(self) -> None:
        for node in self.nodes:
            node.kill()
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    await node.proc.wait()


@contextlib.asynccontextmanager
async def cluster(tmp: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp)
    try:
        yield c
    finally:
        await c.stop_all()


@dataclass
class Result:
    code: int
    out: str
    err: str


async def cli(*args: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *CHISME, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=ENV,
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


class Row(msgspec.Struct):
    id: str
    addr: str
    state: str
    incarnation: int


async def members(addr: str) -> list[Row] | None:
    """What ``chisme members`` asks (the v1 'members' request), in-process; None if down."""
    try:
        raw = await tcp.request(addr, v1.encode_message(v1.Members()), 2.0, 1 << 20)
    except ChismeError:
        return None
    if raw.startswith(b"{"):  # {"error": "the node is starting: try again"}
        return None
    return msgspec.json.decode(raw, type=list[Row])


async def members_cli(addr: str) -> list[Row]:
    r = await cli("members", "--json", "--node", addr)
    assert r.code == 0, r.err
    return msgspec.json.decode(r.out, type=list[Row])


async def lookup(addr: str, info_hash: str) -> set[str] | None:
    try:
        return {p.addr for p in await Client(addr, timeout_s=2.0).lookup(info_hash)}
    except ChismeError:
        return None


async def lookup_cli(addr: str, info_hash: str) -> set[str]:
    r = await cli("lookup", "--json", "--node", addr, info_hash)
    assert r.code == 0, r.err
    return {p["addr"] for p in json.loads(r.out) or []}


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str, nodes: list[NodeProc],
                   timeout_s: float = DEADLINE_S) -> float:
    """Poll ``predicate`` until it holds; log and return the time it took."""
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            while not await predicate():
                for n in nodes:
                    if n.proc is not None and n.proc.returncode not in (None, -signal.SIGKILL):
                        pytest.fail(f"{n.addr} exited ({n.proc.returncode}):\n{n.tail()}")
                await asyncio.sleep(0.05)
    except TimeoutError:
        logs = "\n".join(f"--- {n.addr}\n{n.tail()}" for n in nodes)
        pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}\n{logs}")
    took = time.monotonic() - t0
    log.info("%s: %.2f s", what, took)
    return took


def view(rows: list[Row] | None) -> dict[str, str]:
    """addr -> state, for the members at an address (several ids at one address: joined)."""
    out: dict[str, list[str]] = {}
    for r in rows or []:
        out.setdefault(r.addr, []).append(r.state)
    return {a: "+".join(sorted(s)) for a, s in out.items()}


async def test_five_processes_join_converge_detect_a_kill_and_take_it_back(
    tmp_path: Path,
) -> None:
    ports = set[int]()
    while len(ports) < N:
        ports.add(free_port_pair())
    addrs = [f"127.0.0.1:{p}" for p in sorted(ports)]
    seed = addrs[0]
    providers = {addrs[i]: f"10.0.{i}.1:6881" for i in range(N)}
    async with cluster(tmp_path) as c:
        t_start = time.monotonic()
        c.nodes = [await c.start(a, None if a == seed else seed) for a in addrs]
        everyone_alive = dict.fromkeys(addrs, "alive")

        async def all_alive() -> bool:
            views = await asyncio.gather(*(members(a) for a in addrs))
            return all(view(v) == everyone_alive for v in views)

        await wait_for(all_alive, f"{N} processes from one seed: all alive everywhere", c.nodes)
        log.info("(including process start-up: %.2f s)", time.monotonic() - t_start)
        for rows in await asyncio.gather(*(members_cli(a) for a in addrs)):
            assert view(rows) == everyone_alive
            assert len({r.id for r in rows}) == N

        # -- announces at different nodes (the CLI speaks v1 to a v2 node) --------------------
        results = await asyncio.gather(
            *(cli("announce", "--node", a, IH, providers[a]) for a in addrs),
            cli("announce", "--node", addrs[2], IH2, "[2001:db8::2]:51413"),
        )
        assert all(r.code == 0 for r in results), [r.err for r in results]
        want = set(providers.values())

        async def converged() -> bool:
            got = await asyncio.gather(*(lookup(a, IH) for a in addrs),
                                       *(lookup(a, IH2) for a in addrs))
            return got == [want] * N + [{"[2001:db8::2]:51413"}] * N

        await wait_for(converged, f"{N + 1} announces at {N} nodes: on every node", c.nodes)
        for a in addrs:  # what an operator sees
            assert await lookup_cli(a, IH) == want
        # one more, timed from the announce itself (a CLI run costs a Python start)
        await Client(addrs[1]).announce(IH3, "10.1.1.1:1")

        async def spread() -> bool:
            return await asyncio.gather(*(lookup(a, IH3) for a in addrs)) == [{"10.1.1.1:1"}] * N

        await wait_for(spread, "one announce: on every node", c.nodes)

        # -- SIGKILL one member: the others mark it dead and keep serving ----------------------
        victim = c.nodes[3]
        survivors = [a for a in addrs if a != victim.addr]
        old_rows = await members(victim.addr)
        assert old_rows is not None
        old_id = next(r.id for r in old_rows if r.addr == victim.addr)
        victim.kill()
        assert victim.proc is not None
        await victim.proc.wait()

        async def dead_everywhere() -> bool:
            views = await asyncio.gather(*(members(a) for a in survivors))
            return all(
                any(r.id == old_id and r.state == "dead" for r in rows or []) for rows in views
            )

        await wait_for(dead_everywhere, "a SIGKILLed member: dead on every survivor", c.nodes)
        for a in survivors:
            rows = await members_cli(a)
            states = {r.id: r.state for r in rows}
            assert states[old_id] == "dead"
            assert sorted(r.addr for r in rows if r.state == "alive") == survivors
            # lookups are still served, including the victim's own announce (its records
            # live until their TTL now that no live origin renews them)
            assert await lookup_cli(a, IH) == want

        # -- restart it on its port: it rejoins and catches up ---------------------------------
        t0 = time.monotonic()
        reborn = await c.start(victim.addr, seed)
        c.nodes[3] = reborn

        async def rejoined() -> bool:
            views = await asyncio.gather(*(members(a) for a in addrs))
            return all(view(v) == everyone_alive for v in views)

        async def caught_up() -> bool:
            return (await lookup(victim.addr, IH), await lookup(victim.addr, IH2)) == (
                want, {"[2001:db8::2]:51413"})

        await wait_for(caught_up, "the restarted process: caught up", c.nodes)
        log.info("(caught up %.2f s after its restart)", time.monotonic() - t0)
        await wait_for(rejoined, "the restarted process: alive everywhere", c.nodes)
        log.info("(alive everywhere %.2f s after its restart)", time.monotonic() - t0)
        for rows in await asyncio.gather(*(members_cli(a) for a in addrs)):
            assert old_id not in {r.id for r in rows}  # its address now names the new process
        assert await lookup_cli(victim.addr, IH) == want

        # -- a kill and an immediate restart (before anyone noticed): the new process joins at
        # the address while the old member is still alive there; the old one is found dead
        # (the new process ignores pings for it) and forgotten -------------------------------
        quick = c.nodes[2]
        quick_rows = await members(quick.addr)
        assert quick_rows is not None
        quick_old = next(r.id for r in quick_rows if r.addr == quick.addr)
        quick.kill()
        assert quick.proc is not None
        await quick.proc.wait()
        c.nodes[2] = await c.start(quick.addr, seed)

        async def replaced() -> bool:
            views = await asyncio.gather(*(members(a) for a in addrs))
            return all(
                view(v) == everyone_alive and quick_old not in {r.id for r in v or []}
                for v in views
            )

        await wait_for(replaced, "a quick restart: the old member replaced everywhere", c.nodes)
        assert await lookup_cli(quick.addr, IH) == want

        # and what it accepts now replicates again
        r = await cli("announce", "--node", victim.addr, IH2, "10.9.9.9:1")
        assert r.code == 0, r.err

        async def replicated() -> bool:
            got = await asyncio.gather(*(lookup(a, IH2) for a in addrs))
            return all(g is not None and "10.9.9.9:1" in g for g in got)

        await wait_for(replicated, "an announce at the restarted process: everywhere", c.nodes)
        for n in c.nodes:
            assert n.running, f"{n.addr} died:\n{n.tail()}"

        # -- SIGTERM: a graceful leave, seen as "left" (not dead) by the others ---------------
        leaver = c.nodes[1]
        leaver_rows = await members(leaver.addr)
        assert leaver_rows is not None and leaver.proc is not None
        leaver_id = next(r.id for r in leaver_rows if r.addr == leaver.addr)
        leaver.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE_S):
            assert await leaver.proc.wait() == 0, leaver.tail()
        stayers = [a for a in addrs if a != leaver.addr]

        async def left_everywhere() -> bool:
            views = await asyncio.gather(*(members(a) for a in stayers))
            return all(
                any(r.id == leaver_id and r.state == "left" for r in rows or [])
                for rows in views
            )

        # the leaver has exited (0, as asserted): watch the others only
        others = [n for n in c.nodes if n is not leaver]
        await wait_for(left_everywhere, "a SIGTERMed member: left everywhere", others)
