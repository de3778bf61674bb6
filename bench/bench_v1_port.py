"""v1 announce bursts from a compiled client against ``chisme node`` and a minimal C server.

The client (``bench/v1_load.c``) behaves like the seed's: one TCP connection per message (dial,
write one ``announce`` line, close), ``--concurrency`` connections in flight, as fast as the
kernel lets it. Unlike a Python client it is faster than the node, so it shows what the seed's
clients see: an accept queue that overflows while the node works through a burst, and dropped
connections that wait for the client's 1 s SYN retransmit.

The reference (``bench/v1_ref_server.c``) accepts, reads to a newline or EOF and closes,
single-threaded: the floor that no node, the seed's included, can beat on one core.

Both are built with gcc into a temporary directory. The same bursts go to each server in turn
(alternating, ``--rounds`` times, at each ``--concurrency``), and each line reports:

- ``per_cpu_s``: messages per second of server CPU (user + system time of the server process,
  all threads: see :func:`cpu_seconds`), from before the burst until the server has taken in
  all of it (chisme's record count, read on its JSON API, or the reference's message count);
- ``wall``: messages per second from the client's start until the server had them all;
- ``p50``/``p99``/``max``: the client's latency, dial start to close;
- ``overflows``: the kernel's TcpExtListenOverflows delta (SYNs dropped on a full accept queue;
  a machine-wide counter: other loopback servers count in it too).

The summary gives the median and the range over the rounds, and chisme/reference per round.
Usage: ``.venv/bin/python bench/bench_v1_port.py [--rounds 5] [--messages 10000]
[--concurrency 32 4] [--protocol v2] [--sources 1] [--baseline OTHER_TREE/src]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, all threads, user + system.

    The kernel's own sum (``se.sum_exec_runtime`` of each thread in /proc/<pid>/task/*/sched,
    ms with ns digits) where it shows it: utime+stime of /proc/<pid>/stat is the same time
    in 10 ms ticks, too coarse for a reference server that spends ~0.1 s on a burst.
    """
    total = 0.0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/sched", encoding="ascii") as f:
                for text in f:
                    if text.startswith("se.sum_exec_runtime"):
                        total += float(text.rsplit(":", 1)[1]) / 1e3
                        break
                else:
                    raise OSError("no se.sum_exec_runtime")
        return total
    except OSError:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def listen_overflows() -> int:
    """TcpExt ListenOverflows, from /proc/net/netstat (a header line, then a values line)."""
    with open("/proc/net/netstat", encoding="ascii") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table["ListenOverflows"])
    raise SystemExit("no TcpExt ListenOverflows in /proc/net/netstat")


def build(tmp: Path) -> tuple[Path, Path]:
    out = []
    for name in ("v1_load", "v1_ref_server"):
        exe = tmp / name
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(HERE / f"{name}.c")],
                       check=True, timeout=120)
        out.append(exe)
    return out[0], out[1]


def http_get_json(addr: tuple[str, int], path: str) -> object:
    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


class Server(ABC):
    """A server under test: its process, node port, and how many messages it has taken in."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int

    @abstractmethod
    def taken(self) -> int:
        """Messages taken in so far."""

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Reference(Server):
    def __init__(self, exe: Path) -> None:
        self.name = "reference"
        self.count = 0
        self.proc = subprocess.Popen([str(exe), "-p", "0"], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening 127\.0\.0\.1:(\d+)", line)
        if m is None:
            raise SystemExit(f"the reference server did not start: {line!r}")
        self.port = int(m.group(1))
        threading.Thread(target=self._read_counts, daemon=True).start()

    def _read_counts(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(b"count "):
                self.count = int(line.split()[1])

    def taken(self) -> int:
        return self.count


class Chisme(Server):
    def __init__(self, protocol: str, name: str = "chisme", src: str | None = None) -> None:
        self.name = name
        cmd = [sys.executable, "-m", "chisme.cli", "node", "--listen", "127.0.0.1:0",
               "--api", "127.0.0.1:0", "--tracker-http", "", "--tracker-udp", "",
               "--ttl", "3600", "--gossip-interval", "3600", "--protocol", protocol]
        env = dict(os.environ)
        if src is not None:  # another source tree's chisme (its src/ first on the path)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=env)
        assert self.proc.stderr is not None
        node = api = None
        deadline = time.time() + 30
        while (node is None or api is None) and time.time() < deadline:
            line = self.proc.stderr.readline().decode()
            if not line:
                raise SystemExit("the node exited before it listened")
            if m := re.search(r"listening on \S+:(\d+) \(v1 JSON\)", line):
                node = int(m.group(1))
            if m := re.search(r"JSON API on http://(\S+):(\d+)/", line):
                api = (m.group(1), int(m.group(2)))
        if node is None or api is None:
            raise SystemExit("the node did not log its addresses")
        self.port, self.api = node, api
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain the log

    def taken(self) -> int:
        status = http_get_json(self.api, "/v1/status")
        assert isinstance(status, dict)
        return int(status["records"])


@dataclass
class Burst:
    server: str
    concurrency: int
    sent: int
    failures: int
    cpu_s: float
    wall_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    overflows: int

    @property
    def per_cpu_s(self) -> float:
        return self.sent / self.cpu_s if self.cpu_s else float("inf")

    @property
    def wall_rate(self) -> float:
        return self.sent / self.wall_s


def wait_taken(srv: Server, want: int, timeout_s: float) -> None:
    """Until the server has taken in ``want`` messages. Each look at chisme's count is an HTTP
    request it serves (CPU counted against it), so the looks are spaced by the time the rest
    should take at 60,000 messages/s, 2-50 ms apart: a handful per burst."""
    end = time.monotonic() + timeout_s
    while (left := want - srv.taken()) > 0:
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {srv.name} to take in {want} messages")
        time.sleep(min(0.05, max(0.002, left / 60_000)))


def burst(load: Path, srv: Server, args: argparse.Namespace, conc: int, offset: int) -> Burst:
    before = srv.taken()
    over0 = listen_overflows()
    cpu0 = cpu_seconds(srv.proc.pid)
    t0 = time.monotonic()
    run = subprocess.run(
        [str(load), "-p", str(srv.port), "-n", str(args.messages), "-c", str(conc),
         "-t", str(args.seconds), "-k", str(args.keys), "-o", str(offset),
         "-s", str(args.sources)],
        capture_output=True, check=True, timeout=args.seconds + 30,
    )
    out = dict(kv.split("=", 1) for kv in run.stdout.decode().split())
    sent = int(out["sent"])
    wait_taken(srv, before + sent, 60)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(srv.proc.pid) - cpu0
    return Burst(srv.name, conc, sent, int(out["failures"]), cpu, wall, float(out["p50_ms"]),
                 float(out["p99_ms"]), float(out["max_ms"]), listen_overflows() - over0)


def line(b: Burst) -> str:
    return (f"{b.server:9} c={b.concurrency:<3} sent={b.sent} fail={b.failures} "
            f"cpu_s={b.cpu_s:.3f} per_cpu_s={b.per_cpu_s:.0f} wall={b.wall_rate:.0f}/s "
            f"p50={b.p50_ms:.2f}ms p99={b.p99_ms:.2f}ms max={b.max_ms:.0f}ms "
            f"overflows={b.overflows}")


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def summary(results: list[Burst], conc: int, names: list[str]) -> None:
    rows = {name: [b for b in results if b.server == name and b.concurrency == conc]
            for name in names}
    print(f"\n## {conc} concurrent: median [min-max] over {len(rows['chisme'])} rounds")
    print(f"{'server':9} {'per CPU-s':>22} {'wall /s':>22} {'p50 ms':>18} {'p99 ms':>22} "
          f"{'overflows':>16} fail")
    for name, rs in rows.items():
        print(f"{name:9} {spread([b.per_cpu_s for b in rs], '.0f'):>22} "
              f"{spread([b.wall_rate for b in rs], '.0f'):>22} "
              f"{spread([b.p50_ms for b in rs], '.2f'):>18} "
              f"{spread([b.p99_ms for b in rs], '.1f'):>22} "
              f"{spread([float(b.overflows) for b in rs], '.0f'):>16} "
              f"{sum(b.failures for b in rs)}")
    for name in names:
        if name == "reference":
            continue
        pairs = list(zip(rows[name], rows["reference"], strict=True))
        per_cpu = [c.per_cpu_s / r.per_cpu_s for c, r in pairs]
        wall = [c.wall_rate / r.wall_rate for c, r in pairs]
        print(f"{name}/reference per CPU-s: {spread(per_cpu, '.2f')}; "
              f"wall: {spread(wall, '.2f')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=10_000, help="messages per burst")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[32, 4])
    ap.add_argument("--seconds", type=float, default=30.0, help="time bound per burst")
    ap.add_argument("--keys", type=int, default=1_000, help="distinct info hashes")
    ap.add_argument("--sources", type=int, default=1,
                    help="loopback source addresses the client spreads over (1..250): each "
                    "close holds a client port 60 s in TIME_WAIT, and after a few bursts the "
                    "kernel's search for a free one stalls connects by ~65 ms, against any "
                    "server; 16 keeps the client from measuring itself")
    ap.add_argument("--protocol", choices=["v1", "v2"], default="v2", help="chisme's mode")
    ap.add_argument("--baseline", metavar="SRC",
                    help="also run a node from another tree's src/ directory (e.g. an export "
                    "of the commit before a change), in turn with the others, as 'baseline'")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 100 or not 1 <= args.messages <= 1_000_000:
        ap.error("--rounds must be in 1..100 and --messages in 1..1000000")
    if not 1 <= args.sources <= 250:
        ap.error("--sources must be in 1..250")

    with tempfile.TemporaryDirectory(prefix="chisme-v1-port-") as tmp:
        load, ref_exe = build(Path(tmp))
        servers: list[Server] = []
        try:
            servers.append(Chisme(args.protocol))
            if args.baseline:
                servers.append(Chisme(args.protocol, "baseline", args.baseline))
            servers.append(Reference(ref_exe))
            pids = ", ".join(f"{s.name} pid {s.proc.pid}" for s in servers)
            print(f"# {pids}; chisme --protocol {args.protocol} (uvloop); {args.messages} "
                  f"messages per burst, one TCP connection each, from {args.sources} source "
                  f"address(es); cpus={os.cpu_count()}", flush=True)
            results: list[Burst] = []
            offset = 0
            for r in range(args.rounds):
                for conc in args.concurrency:
                    order = servers if r % 2 == 0 else servers[::-1]  # alternate
                    for srv in order:
                        b = burst(load, srv, args, conc, offset)
                        offset += args.messages  # every burst announces new addresses
                        results.append(b)
                        print(f"round {r + 1}: {line(b)}", flush=True)
            for conc in args.concurrency:
                summary(results, conc, [s.name for s in servers])
        finally:
            for srv in servers:
                srv.stop()


if __name__ == "__main__":
    main()
