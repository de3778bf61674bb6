"""Run every benchmark in bench/, one after the other, each printing its own figures.

    .venv/bin/python bench/run_all.py [--quick] [--only store,v1,...] [--list]

``make bench`` runs this. ``--quick`` passes each benchmark its smoke-sized options (about
two minutes in all); without it the full set takes the better part of an hour on 2 cores
(the simulator scenarios dominate). Every benchmark sends only to loopback and bounds its
loops by count and time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable

# name -> (full command, quick command)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "store": ([PY, "bench_store.py"], [PY, "bench_store.py", "--quick"]),
    "tracker_inproc": ([PY, "bench_tracker_inproc.py"], [PY, "bench_tracker_inproc.py"]),
    "v1": ([PY, "bench_v1.py"], [PY, "bench_v1.py", "--ops", "2000", "--seconds", "5"]),
    "tracker": (["bash", "bench_tracker.sh"], ["bash", "bench_tracker.sh", "udp"]),
    "sim": (["bash", "bench_sim.sh"], ["bash", "bench_sim.sh", "--quick"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke-sized runs")
    ap.add_argument("--only", default="", help="comma list of: " + ", ".join(BENCHES))
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args()
    if args.list:
        for name, (full, _) in BENCHES.items():
            print(f"{name:16} {' '.join(full[1:])}")
        return 0
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed: list[str] = []
    for name in names:
        cmd = BENCHES[name][1 if args.quick else 0]
        print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        code = subprocess.call(cmd, cwd=HERE)
        print(f"== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
