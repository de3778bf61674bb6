"""v1 node-port throughput over loopback, one TCP connection per message (as the seed does).

Starts ``chisme node`` (the real CLI, uvloop) in a subprocess, then drives it with a bounded
load generator (``--ops`` messages or ``--seconds``, whichever comes first, ``--concurrency``
connections in flight, spread over ``--procs`` client processes):

- ``v1.announce``: each op dials, writes one ``announce`` message and half-closes, then waits
  for the node to close (it does once the message is applied): the bytes of the seed's
  fire-and-forget, with backpressure. ``--fire-and-forget`` closes at once instead, exactly as
  the seed's client. Either way the rate counts announces the node has *applied* (its record
  count, read on the JSON API), not just sent.
- ``v1.lookup``: keys preloaded with ``--providers`` providers each (by ``gossip``); each op
  dials, writes a ``lookup``, reads the whole reply (one JSON array), closes.

Prints one line per operation::

    v1.announce ops=… seconds=… ops_per_s=… p50_ms=… p99_ms=… server_cpu_s=… ops_per_server_cpu_s=…

``server_cpu_s`` is user+system CPU of the node process during the phase (/proc/<pid>/stat),
so ``ops_per_server_cpu_s`` is the node's cost per message whatever the client's speed.
Usage: ``.venv/bin/python bench/bench_v1.py [--ops 20000] [--concurrency 48] [--procs 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
T0_TEXT = "2026-01-01T00:00:00Z"


def _loop_run(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop  # noqa: PLC0415

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def info_hash(k: int) -> str:
    return f"{k:040x}"


def provider_addr(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:{6881 + (i >> 24)}"


def announce_msg(i: int, keys: int) -> bytes:
    # the bytes a seed node sends (no peer_id, a Go time); the node clamps/keeps the stamp
    return (
        b'{"type":"announce","info_hash":"%s","providers":[{"addr":"%s","last_seen":"%s"}]}\n'
        % (info_hash(i % keys).encode(), provider_addr(i).encode(), NOW_TEXT.encode())
    )


LOOKUP_KEY_BASE = 10_000_000  # looked-up keys are info_hash(LOOKUP_KEY_BASE + k)


def lookup_msg(k: int) -> bytes:
    return b'{"type":"lookup","info_hash":"%s"}\n' % info_hash(k).encode()


NOW_TEXT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Slice:
    kind: str  # "announce" | "lookup"
    addr: tuple[str, int]
    start: int
    stop: int
    concurrency: int
    deadline: float  # time.time()
    keys: int
    providers: int
    fire_and_forget: bool = False


@dataclass
class SliceResult:
    latencies_ns: list[int]
    errors: int
    bad_replies: int
    started: float
    ended: float
    client_cpu_s: float


async def _drive(s: Slice) -> SliceResult:
    host, port = s.addr
    lat: list[int] = []
    errors = bad = 0
    next_i = s.start

    async def one(i: int) -> None:
        nonlocal errors, bad
        t = time.perf_counter_ns()
        try:
            reader, writer = await asyncio.open_connection(host, port)
            if s.kind == "announce":
                writer.write(announce_msg(i, s.keys))
                await writer.drain()
                if s.fire_and_forget:  # exactly the seed's sendWireMsg: write, close
                    writer.close()
                    await writer.wait_closed()
                else:  # the node closes once it applied the message: wait for that
                    writer.write_eof()
                    await reader.read()
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
            else:
                writer.write(lookup_msg(LOOKUP_KEY_BASE + i % s.keys))
                await writer.drain()
                reply = await reader.read()  # the node closes after its reply
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                wrong = i % 97 == 0 and len(json.loads(reply)) != s.providers  # sampled
                if wrong or not reply.endswith(b"]\n"):
                    bad += 1
        except (OSError, ValueError):
            errors += 1
            return
        lat.append(time.perf_counter_ns() - t)

    async def worker() -> None:
        nonlocal next_i
        while next_i < s.stop and time.time() < s.deadline:
            i = next_i
            next_i += 1
            await one(i)

    started = time.time()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(s.concurrency)))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return SliceResult(lat, errors, bad, started, time.time(), cpu)


def run_slice(s: Slice) -> SliceResult:
    result: SliceResult = _loop_run(_drive(s))
    return result


def http_get_json(addr: tuple[str, int], path: str) -> object:
    import socket  # noqa: PLC0415

    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def send_all(addr: tuple[str, int], messages: list[bytes]) -> None:
    import socket  # noqa: PLC0415

    for m in messages:
        with socket.create_connection(addr, timeout=10) as sock:
            sock.sendall(m)


def wait_records(api: tuple[str, int], want: int, timeout_s: float) -> float:
    """Poll the node's record count until it reaches ``want``; return when it did."""
    end = time.time() + timeout_s
    while time.time() < end:
        status = http_get_json(api, "/v1/status")
        assert isinstance(status, dict)
        if status["records"] >= want:
            return time.time()
        time.sleep(0.01)
    raise SystemExit(f"the node did not apply {want} records within {timeout_s} s")


def start_node() -> tuple[subprocess.Popen[bytes], tuple[str, int], tuple[str, int]]:
    cmd = [sys.executable, "-m", "chisme.cli", "node", "--listen", "127.0.0.1:0",
           "--api", "127.0.0.1:0", "--tracker-http", "", "--tracker-udp", "",
           "--ttl", "3600", "--gossip-interval", "3600"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    node = api = None
    deadline = time.time() + 30
    while (node is None or api is None) and time.time() < deadline:
        line = proc.stderr.readline().decode()
        if not line:
            raise SystemExit("the node exited before it listened")
        if m := re.search(r"listening on (\S+):(\d+) \(v1 JSON\)", line):
            node = (m.group(1), int(m.group(2)))
        if m := re.search(r"JSON API on http://(\S+):(\d+)/", line):
            api = (m.group(1), int(m.group(2)))
    if node is None or api is None:
        raise SystemExit("the node did not log its addresses")
    stderr = proc.stderr
    threading.Thread(target=stderr.read, daemon=True).start()  # drain the log pipe
    return proc, node, api


def pct(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * p))] / 1e6


def phase(kind: str, args: argparse.Namespace, node: tuple[str, int], start: int,
          keys: int, providers: int, pool: ProcessPoolExecutor | None) -> list[SliceResult]:
    deadline = time.time() + args.seconds
    per = args.ops // args.procs
    slices = [
        Slice(kind, node, start + j * per, start + (j + 1) * per, args.concurrency // args.procs,
              deadline, keys, providers, args.fire_and_forget)
        for j in range(args.procs)
    ]
    if pool is None:
        return [run_slice(slices[0])]
    return list(pool.map(run_slice, slices))


def report(kind: str, results: list[SliceResult], seconds: float, ops: int, cpu_s: float) -> None:
    lat = sorted(x for r in results for x in r.latencies_ns)
    errors = sum(r.errors for r in results)
    bad = sum(r.bad_replies for r in results)
    client_cpu = sum(r.client_cpu_s for r in results)
    client_s = max(r.ended for r in results) - min(r.started for r in results)
    per_cpu = ops / cpu_s if cpu_s else float("nan")
    print(
        f"v1.{kind} ops={ops} seconds={seconds:.2f} ops_per_s={ops / seconds:.0f} "
        f"p50_ms={pct(lat, 0.50):.2f} p99_ms={pct(lat, 0.99):.2f} max_ms={pct(lat, 1):.1f} "
        f"server_cpu_s={cpu_s:.2f} ops_per_server_cpu_s={per_cpu:.0f} "
        f"client_seconds={client_s:.2f} client_cpu_s={client_cpu:.2f} "
        f"errors={errors} bad_replies={bad}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--ops", type=int, default=20_000, help="messages per operation")
    ap.add_argument("--seconds", type=float, default=30.0, help="time bound per operation")
    ap.add_argument("--concurrency", type=int, default=48, help="connections in flight")
    ap.add_argument("--procs", type=int, default=1, help="client processes")
    ap.add_argument("--announce-keys", type=int, default=1_000)
    ap.add_argument("--lookup-keys", type=int, default=200)
    ap.add_argument("--providers", type=int, default=50, help="providers per looked-up key")
    ap.add_argument("--fire-and-forget", action="store_true",
                    help="announce clients close without waiting for the node (as the seed's "
                    "sendWireMsg); no backpressure: a client faster than the node overflows "
                    "the accept queue and dropped SYNs cost 1 s retransmits")
    args = ap.parse_args()
    if not 1 <= args.procs <= args.concurrency:
        ap.error("--procs must be in 1..--concurrency")

    proc, node, api = start_node()
    pool = ProcessPoolExecutor(args.procs) if args.procs > 1 else None
    print(f"# node pid {proc.pid} on {node[0]}:{node[1]} (chisme CLI, uvloop); "
          f"client: {args.procs} process(es), concurrency {args.concurrency}, "
          f"one TCP connection per message; cpus={os.cpu_count()}", flush=True)
    try:
        # announces: the rate counts what the node applied
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        results = phase("announce", args, node, 0, args.announce_keys, 0, pool)
        sent = sum(len(r.latencies_ns) for r in results)
        done = wait_records(api, sent, 60)
        kind = "announce_fire_and_forget" if args.fire_and_forget else "announce"
        report(kind, results, done - t0, sent, cpu_seconds(proc.pid) - cpu0)

        # lookups: preload keys with N providers each (one gossip message per key)
        base = 1 << 24  # provider addresses distinct from the announce phase's
        msgs = []
        for k in range(args.lookup_keys):
            provs = ",".join(
                '{"addr":"%s","last_seen":"%s"}' % (provider_addr(base + k * args.providers + j),  # noqa: UP031
                                                    NOW_TEXT)
                for j in range(args.providers)
            )
            key = info_hash(LOOKUP_KEY_BASE + k)
            msgs.append(
                ('{"type":"gossip","info_hash":"%s","providers":[%s]}\n' % (key, provs)).encode()  # noqa: UP031
            )
        send_all(node, msgs)
        wait_records(api, sent + args.lookup_keys * args.providers, 60)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        results = phase("lookup", args, node, 0, args.lookup_keys, args.providers, pool)
        t1 = max(r.ended for r in results)
        done_ops = sum(len(r.latencies_ns) for r in results)
        report("lookup", results, t1 - t0, done_ops, cpu_seconds(proc.pid) - cpu0)
    finally:
        if pool is not None:
            pool.shutdown()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
