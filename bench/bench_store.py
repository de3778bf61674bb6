"""Store benchmark: ops/s of the hot operations, and bytes per record at 10^6 records.

Plain script (not part of ``make test``); prints one line per figure::

    .venv/bin/python bench/bench_store.py            # everything, about a minute
    .venv/bin/python bench/bench_store.py --quick    # smaller sizes, a few seconds

Memory is measured in a fresh child process per shape: once under tracemalloc (the bytes the
store's allocations hold), once without it (RSS delta, a cross-check that also sees allocator
overhead and fragmentation). Addresses are 6-byte IPv4 keys made per announce, as a codec
makes them; peer ids are 20 random bytes (BitTorrent's).
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

from chisme.core.records import FLAG_SEEDER, Record
from chisme.core.store import Store

S = 1_000_000_000
TTL = 90 * S
NOW = 1_764_000_000 * S
GOAL_BYTES_PER_RECORD = 150
_ALNUM = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TO_ALNUM = bytes(_ALNUM[b % len(_ALNUM)] for b in range(256))


def peer_id(rng: random.Random) -> bytes:
    """A 20-byte BitTorrent peer id as clients make them: Azureus-style prefix, 12 random
    printable bytes (libtorrent, Transmission and qBittorrent all draw from such sets)."""
    return b"-qB4650-" + rng.randbytes(12).translate(_TO_ALNUM)
SHAPES = {"100k_keys_x_10": (100_000, 10), "10k_keys_x_100": (10_000, 100)}


def emit(name: str, **fields: object) -> None:
    print(name, " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def timed(n: int, run: Callable[[], None]) -> float:
    """Operations per second of ``run``, which performs ``n`` operations."""
    gc.collect()
    t0 = time.perf_counter()
    run()
    return n / (time.perf_counter() - t0)


def new_store() -> Store:
    return Store(TTL, max_per_key=1_000, max_records=10**8)


# -- throughput ----------------------------------------------------------------------------


def bench_ops(quick: bool) -> None:
    rng = random.Random(1)
    n_keys, per = (1_000, 20) if quick else (10_000, 20)
    keys = [rng.randbytes(20).hex() for _ in range(n_keys)]
    addrs = [[rng.randbytes(4) + (6881 + j).to_bytes(2, "big") for j in range(per)]
             for _ in range(n_keys)]
    pid = peer_id(rng)
    n = n_keys * per
    store = new_store()

    def announce(now: int) -> Callable[[], None]:
        def run() -> None:
            for key, key_addrs in zip(keys, addrs, strict=True):
                for j, addr in enumerate(key_addrs):
                    store.announce(key, addr, now, peer_id=pid, seeder=j % 3 == 0)
        return run

    emit("store.announce.new", ops_per_s=f"{timed(n, announce(NOW)):.0f}", records=n)
    emit("store.announce.refresh", ops_per_s=f"{timed(n, announce(NOW + S)):.0f}", records=n)

    # a full store (max_records reached): every new provider evicts one, stalest of a sample
    full = Store(TTL, max_per_key=1_000, max_records=n // 2)
    full_n = n // 2
    announce_full = [(keys[i % n_keys], rng.randbytes(4) + b"\x1a\xe1") for i in range(n)]

    def fill(batch: list[tuple[str, bytes]], now: int) -> Callable[[], None]:
        def run() -> None:
            for key, addr in batch:
                full.announce(key, addr, now, peer_id=pid)
        return run

    fill(announce_full[:full_n], NOW)()
    r = timed(full_n, fill(announce_full[full_n:], NOW + S))
    emit("store.announce.at_max_records", ops_per_s=f"{r:.0f}", records=full.num_records)

    # gossip from a peer: one batch of 50 records per key
    batch_n = 50
    n_batches = n_keys
    peer_addrs = [[rng.randbytes(4) + b"\x1a\xe1" for _ in range(batch_n)] for _ in keys]

    def batches(seen: int) -> list[list[Record]]:
        return [[Record(a, seen, pid, FLAG_SEEDER if i % 3 == 0 else 0, 7)
                 for i, a in enumerate(key_addrs)] for key_addrs in peer_addrs]

    peer = new_store()

    def merge(bs: list[list[Record]], now: int) -> Callable[[], None]:
        def run() -> None:
            for key, batch in zip(keys, bs, strict=True):
                peer.merge(key, batch, now)
        return run

    for label, seen in (("new", NOW), ("refresh", NOW + S), ("stale", NOW + S)):
        bs = batches(seen)
        r = timed(n_batches, merge(bs, NOW + S))
        emit(f"store.merge.{label}", ops_per_s=f"{r:.0f}", records_per_s=f"{r * batch_n:.0f}",
             batch=batch_n, batches=n_batches)

    # reads, on keys with 100 providers (a popular torrent), 20% seeders
    big = new_store()
    read_keys = keys[: n_keys // 5]
    held: list[tuple[str, bytes, bool]] = []
    for key in read_keys:
        for j in range(100):
            addr = rng.randbytes(4) + b"\x1a\xe1"
            big.announce(key, addr, NOW - rng.randrange(60) * S, peer_id=pid, seeder=j % 5 == 0)
            held.append((key, addr, j % 5 == 0))
    reads = 20_000 if quick else 100_000
    picks = [rng.choice(read_keys) for _ in range(reads)]
    refreshes = [rng.choice(held) for _ in range(reads)]
    sample_rng = random.Random(2)

    def announce_sample() -> None:  # the tracker's announce: a refresh, then 50 peers
        for key, addr, seeder in refreshes:
            big.announce_sample(key, addr, NOW, peer_id=pid, seeder=seeder, want=50,
                                rng=sample_rng)

    def lookup() -> None:
        for key in picks:
            big.lookup(key, NOW, 50)

    def sample() -> None:
        for key in picks:
            big.sample_peers(key, NOW, 50, sample_rng)

    def sample_seeder() -> None:
        for key in picks:
            big.sample_peers(key, NOW, 50, sample_rng, leechers_first=True)

    emit("store.lookup.limit50", ops_per_s=f"{timed(reads, lookup):.0f}", providers=100)
    emit("store.sample_peers.want50", ops_per_s=f"{timed(reads, sample):.0f}", providers=100)
    emit("store.sample_peers.want50_leechers_first",
         ops_per_s=f"{timed(reads, sample_seeder):.0f}", providers=100)
    emit("store.announce_sample.refresh_want50",
         ops_per_s=f"{timed(reads, announce_sample):.0f}", providers=100)

    later = NOW + TTL + 61 * S  # every record of `big` expired
    sweep_n = big.num_records

    def sweep() -> None:
        big.sweep_all(later)

    emit("store.sweep_all.expired", records_per_s=f"{timed(sweep_n, sweep):.0f}",
         records=sweep_n)


# -- memory --------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(n_keys: int, per: int, rng: random.Random) -> Store:
    store = new_store()
    port = [(6881 + j).to_bytes(2, "big") for j in range(per)]
    for _ in range(n_keys):
        key = rng.randbytes(20).hex()
        for j in range(per):
            store.announce(key, rng.randbytes(4) + port[j], NOW, peer_id=peer_id(rng),
                           seeder=j % 3 == 0)
    return store


def measure_child(shape: str, mode: str) -> None:
    """Runs in a child: build one shape, print bytes per record (one line, parsed by parent)."""
    n_keys, per = SHAPES[shape]
    rng = random.Random(3)
    gc.collect()
    if mode == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        store = build(n_keys, per, rng)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        top = tracemalloc.take_snapshot().statistics("lineno")[:6]
        tracemalloc.stop()
    else:
        before = rss_bytes()
        store = build(n_keys, per, rng)
        gc.collect()
        used = rss_bytes() - before
        top = []
    print(f"{store.num_records} {used}")
    for stat in top:
        frame = stat.traceback[0]
        where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
        code = linecache.getline(frame.filename, frame.lineno).strip()
        print(f"#   {stat.size / store.num_records:5.1f} B/record  {where}  {code}")


def bench_memory(quick: bool) -> None:
    for shape in SHAPES:
        figures: dict[str, float] = {}
        for mode in ("tracemalloc", "rss"):
            args = [sys.executable, __file__, "--child", shape, mode, *(["--quick"] * quick)]
            out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
            first, *rest = out.splitlines()
            records, used = map(int, first.split())
            figures[mode] = used / records
            if mode == "tracemalloc":
                breakdown = rest
        bpr = figures["tracemalloc"]
        emit(f"store.memory.{shape}", bytes_per_record=f"{bpr:.1f}",
             goal=GOAL_BYTES_PER_RECORD, ratio_to_goal=f"{bpr / GOAL_BYTES_PER_RECORD:.2f}",
             rss_bytes_per_record=f"{figures['rss']:.1f}", records=records)
        for line in breakdown:
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--child", nargs=2, metavar=("SHAPE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["ops", "memory"], help="run one half")
    args = parser.parse_args()
    if args.child:
        if args.quick:
            for name, (k, p) in SHAPES.items():
                SHAPES[name] = (k // 10, p)
        measure_child(*args.child)
        return
    if args.only != "memory":
        bench_ops(args.quick)
    if args.only != "ops":
        bench_memory(args.quick)


if __name__ == "__main__":
    main()
