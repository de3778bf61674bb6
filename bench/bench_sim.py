"""v2's figures (docs/v2.md §7) from `chisme simulate --json`: runs the scenarios, one table.

    .venv/bin/python bench/bench_sim.py [--only a,b,c,d] [--jobs 2] [--quick] [--json FILE]

Each scenario is one `chisme simulate ... --json` process (the real CLI); up to --jobs run at
once (the simulator is single-threaded). The table gives every figure with its goal, whether
it is met, the simulator's own wall time, and the exact command. --quick shrinks every
scenario (a smoke test of the bench itself: its figures say nothing about the goals).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHISME = [str(ROOT / ".venv" / "bin" / "chisme"), "simulate"]

# Every store is swept every 10 s instead of every second (chisme.node's Node.sweep_round),
# 2,000 keys a time: that only delays freeing expired records (the 5-minute partition of (d)
# expires the other side's records either way), and sweeping every store every second was half
# of the simulator's own cost (Store.sweep re-checks every leased record on every pass).
SWEEP = "--sweep-interval-s 10"
# (a) N = 100, 10^5 records (10^4 keys x 10 providers), refresh 60 s, TTL 90 s
A = f"--nodes 100 --keys 10000 --providers-per-key 10 --refresh-s 60 --ttl-s 90 {SWEEP}"
# (b), (c) N = 1,000, 10^4 records
B = f"--nodes 1000 --keys 1000 --providers-per-key 10 {SWEEP}"


@dataclass(frozen=True)
class Run:
    name: str
    args: str
    quick: str  # the --quick variant


RUNS = [
    Run("a-v2", f"{A} --announce-rate 3 --duration-s 60",
        "--nodes 30 --keys 1000 --announce-rate 3 --duration-s 30"),
    # v1 moves O(records x peers) per round: 16 s (two 8 s rounds per node) measure its rate
    Run("a-v1", f"{A} --announce-rate 3 --protocol v1 --warmup-s 0 --duration-s 16 --settle-s 0",
        "--nodes 30 --keys 1000 --announce-rate 3 --protocol v1 --warmup-s 0 --duration-s 16 "
        "--settle-s 0"),
    Run("a-idle", f"{A} --announce-rate 0 --duration-s 60",
        "--nodes 30 --keys 1000 --announce-rate 0 --duration-s 30"),
    Run("b-reach", f"{B} --announce-rate 3 --duration-s 60",
        "--nodes 100 --keys 100 --announce-rate 3 --duration-s 30"),
    Run("b-kill", f"{B} --announce-rate 1 --kill 1 --duration-s 60",
        "--nodes 100 --keys 100 --kill 1 --duration-s 40"),
    Run("b-kill-loss", f"{B} --announce-rate 1 --kill 1 --loss 0.1 --duration-s 60",
        "--nodes 100 --keys 100 --kill 1 --loss 0.1 --duration-s 40"),
    Run("c-hour", f"--nodes 250 --keys 1000 --providers-per-key 10 {SWEEP} "
        "--announce-rate 1 --loss 0.1 --duration-s 3600",
        "--nodes 50 --keys 100 --loss 0.1 --duration-s 300"),
    Run("c-1000", f"{B} --announce-rate 1 --loss 0.1 --duration-s 600",
        "--nodes 100 --keys 100 --loss 0.1 --duration-s 120"),
    Run("d-partition", f"{A} --announce-rate 3 --partition-s 300 --partition-at-s 10 "
        "--duration-s 400",
        "--nodes 30 --keys 1000 --announce-rate 3 --partition-s 100 --partition-at-s 5 "
        "--duration-s 180"),
]


def _run(run: Run, quick: bool) -> dict[str, Any]:
    args = shlex.split(run.quick if quick else run.args)
    cmd = [*CHISME, *args, "--json"]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if out.returncode:
        raise SystemExit(f"{run.name} failed: {out.stderr.strip()}")
    summary: dict[str, Any] = json.loads(out.stdout)
    summary["_cmd"] = "chisme simulate " + " ".join(args) + " --json"
    summary["_wall"] = wall
    print(f"done {run.name}: {wall:.0f} s", file=sys.stderr, flush=True)
    return summary


def _fmt(v: object, unit: str = "") -> str:
    if v is None:
        return "never"
    if isinstance(v, float):
        return f"{v:,.2f}{unit}" if abs(v) < 100 else f"{v:,.0f}{unit}"
    return f"{v}{unit}"


def _table(res: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(scenario, figure, value, goal, met)."""
    rows: list[tuple[str, str, str, str, str]] = []

    def row(scn: str, fig: str, value: object, goal: str, ok: bool | None, unit: str = "") -> None:
        met = "-" if ok is None else ("yes" if ok else "NO")
        rows.append((scn, fig, _fmt(value, unit), goal, met))

    def le(v: object, limit: float) -> bool:
        return isinstance(v, int | float) and v <= limit

    def size(s: dict[str, Any]) -> str:
        return f"N={s['nodes']}, {s['records']:,} rec"

    if "a-v2" in res:
        s = res["a-v2"]
        row(f"(a) {size(s)}", "reach99 max", s["reach99_s"]["max"], "<= 2 s",
            le(s["reach99_s"]["max"], 2), " s")
        row("", "reach99 p50 / p99", f"{s['reach99_s']['p50']} / {s['reach99_s']['p99']} s", "",
            None)
        row("", "reach100 max", s["reach100_s"]["max"], "<= 10 s",
            le(s["reach100_s"]["max"], 10), " s")
        row("", "v2 bytes/node/s", s["bytes_per_node_per_s"], "", None, " B/s")
    if "a-v1" in res:
        row("", "v1 bytes/node/s", res["a-v1"]["bytes_per_node_per_s"], "", None, " B/s")
    if "a-v2" in res and "a-v1" in res:
        ratio = res["a-v2"]["bytes_per_node_per_s"] / res["a-v1"]["bytes_per_node_per_s"]
        row("", "v2 / v1 bytes", f"{100 * ratio:.3f} %", "<= 5 %", ratio <= 0.05)
    if "a-idle" in res:
        v = res["a-idle"]["idle_bytes_per_node_per_s"]
        row("", "idle bytes/node/s", v, "<= 2,000 B/s", le(v, 2000), " B/s")
    if "b-reach" in res:
        s = res["b-reach"]
        row(f"(b) {size(s)}", "reach99 max", s["reach99_s"]["max"], "<= 3 s",
            le(s["reach99_s"]["max"], 3), " s")
        row("", "reach100 max", s["reach100_s"]["max"], "", None, " s")
    if "b-kill" in res:
        d = res["b-kill"]["detect_dead_s"]
        row("", "--kill 1: detect max", d and d["max"], "<= 15 s", le(d and d["max"], 15), " s")
    if "b-kill-loss" in res:
        d = res["b-kill-loss"]["detect_dead_s"]
        row("", "... loss 10 %", d and d["max"], "<= 20 s", le(d and d["max"], 20), " s")
    for name in ("c-hour", "c-1000"):
        if name in res:
            s = res[name]
            label = f"(c) {size(s)}, {s['virtual_s']:.0f} s, loss {100 * s['loss']:.0f} %"
            row(label, "false deaths", s["false_deaths"], "0",
                s["false_deaths"] == 0)
            row("", "suspicions of live nodes", s["false_suspects"], "", None)
    if "d-partition" in res:
        s = res["d-partition"]
        row(f"(d) {size(s)}, partition {s['partition_s']:.0f} s", "heal", s["heal_s"],
            "<= 60 s", le(s["heal_s"], 60), " s")
        row("", "members / records", f"{s['heal_members_s']} / {s['heal_records_s']} s", "",
            None)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma list of scenario prefixes (a,b,c,d)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="also write every summary to this file")
    args = ap.parse_args()
    wanted = [w for w in args.only.split(",") if w]
    runs = [r for r in RUNS if not wanted or any(r.name.startswith(w) for w in wanted)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {r.name: pool.submit(_run, r, args.quick) for r in runs}
        res = {name: f.result() for name, f in futures.items()}
    rows = _table(res)
    widths = [max(len(r[k]) for r in [("scenario", "figure", "value", "goal", "met"), *rows])
              for k in range(5)]
    header = ("scenario", "figure", "value", "goal", "met")
    for r in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print()
    print("simulator wall time (s) and commands:")
    for name, s in res.items():
        print(f"  {name:12} {s['_wall']:7.0f}  (preload {s['preload_wall_s']:.0f}, "
              f"run {s['wall_s']:.0f})  {s['_cmd']}")
    print(f"total {time.monotonic() - started:.0f} s wall, --jobs {args.jobs}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
