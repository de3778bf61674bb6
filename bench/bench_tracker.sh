#!/usr/bin/env bash
# bench_tracker.sh -- chisme's tracker front ends against opentracker, same generators, same run.
#
#   bench/bench_tracker.sh [PHASES]        PHASES: comma list of http,udp,mem (default: all)
#
# The load generators are not part of this repository: a folder with run_anchor.sh (the
# orchestrator: start a server, prefill, warm up, measured runs, memory fill, stop), wrk's
# announce.lua, udp_load.py (a BEP 15 client), procstat.py and pool.txt (the info hashes). Name it
# with SHARED_BENCH (default: ../shared/bench beside the repository); without it the script stops
# before running anything.
#
# Copies that folder (it may be read-only) to a scratch folder, installs opentracker and wrk with
# apt-get when missing, then runs run_anchor.sh twice on free loopback ports: opentracker, then a
# chisme node (`chisme node --api '' --tracker-http ... --tracker-udp ...` with uvloop, as the CLI
# runs it). Prints requests per server CPU-second for HTTP (one connection per announce), HTTP
# keep-alive and UDP, the ratio chisme/opentracker against its goal (at least 0.4x, 1.0x and 0.5x
# of opentracker's rate), and memory bytes per peer at 10^5 peers (goal: at most 150 B). Not part
# of `make test`: it takes several minutes.
#
# Environment: SHARED_BENCH (the generators' folder, above), RUNS, DURATION, WARMUP (passed to
# run_anchor.sh), KEEP=1 keeps the scratch folder, CHISME_TTL (default 3600 s: no peer expires
# during the run, as with opentracker's 45 min).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
PHASES=${1:-http,udp,mem}
CHISME_TTL=${CHISME_TTL:-3600}
[ -x "$ROOT/.venv/bin/chisme" ] || { echo "no $ROOT/.venv/bin/chisme: run make venv" >&2; exit 2; }
if [ ! -f "$SHARED/run_anchor.sh" ]; then
  echo "bench_tracker.sh: no load generators at $SHARED (run_anchor.sh is missing)." >&2
  echo "They are not part of the repository: set SHARED_BENCH to the folder that holds" >&2
  echo "run_anchor.sh, announce.lua, udp_load.py, procstat.py and pool.txt." >&2
  exit 2
fi

if ! command -v opentracker >/dev/null || ! command -v wrk >/dev/null; then
  echo "installing opentracker and wrk (apt-get)" >&2
  apt-get update -qq && apt-get install -y -qq opentracker wrk >/dev/null
fi

WORK=$(mktemp -d /tmp/bench_tracker.XXXXXX)
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"; }
trap cleanup EXIT
cp -r "$SHARED/." "$WORK/"
chmod -R u+w "$WORK"

free_port() {  # a port free for both TCP and UDP on 127.0.0.1
  "$ROOT/.venv/bin/python" - <<'EOF'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        t.close(); u.close()
    print(port); break
EOF
}

export RESULTS_DIR="$WORK/results"
run() {  # $1 label, $2 phase, rest: env assignments for run_anchor.sh
  local label=$1 phase=$2; shift 2
  local port; port=$(free_port)
  echo "== $label on 127.0.0.1:$port ($phase)" >&2
  (cd "$WORK" && env HTTP_PORT="$port" UDP_PORT="$port" "$@" ./run_anchor.sh "${SERVER:?}" "$phase") \
    | tee -a "$WORK/$label.out" >&2
}

CHISME_CMD="$ROOT/.venv/bin/chisme node --listen 127.0.0.1:0 --api '' --ttl $CHISME_TTL"
CHISME_CMD+=" --tracker-http {host}:{http_port} --tracker-udp {host}:{udp_port} --log-level WARNING"
# Phase by phase, opentracker then chisme: the two measurements of a figure are minutes apart,
# not a whole run, so a change in the machine's load skews a ratio less.
IFS=, read -ra PHASE_LIST <<< "$PHASES"
for phase in "${PHASE_LIST[@]}"; do
  SERVER=opentracker run opentracker "$phase"
  SERVER=cmd run chisme "$phase" SERVER_CMD="$CHISME_CMD" \
    SERVER_VERSION="chisme $(git -C "$ROOT" rev-parse --short HEAD)"
done

"$ROOT/.venv/bin/python" - "$WORK/opentracker.out" "$WORK/chisme.out" "$CHISME_CMD" <<'EOF'
import re
import sys

def figures(path):
    out = {}
    for line in open(path):
        m = re.match(r"MEDIAN (\S+) .*req_per_srv_cpu_s=(\d+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
        m = re.match(r"RUN mem .*bytes_per_peer=(\S+)", line)
        if m and m.group(1) != "n/a":
            out["mem"] = float(m.group(1))
    return out

ot, ch = figures(sys.argv[1]), figures(sys.argv[2])
rows = [
    ("HTTP, a connection per announce", "http-close", 0.4, "req/srv-CPU-s"),
    ("HTTP keep-alive", "http-keepalive", 1.0, "req/srv-CPU-s"),
    ("UDP", "udp", 0.5, "req/srv-CPU-s"),
]
print()
print(f"chisme: {sys.argv[3]}")
print(f"{'':34} {'opentracker':>12} {'chisme':>12} {'ratio':>7} {'goal':>7}")
for name, key, goal, unit in rows:
    if key not in ot or key not in ch:
        continue
    ratio = ch[key] / ot[key] if ot[key] else float("nan")
    verdict = "ok" if ratio >= goal else "MISSED"
    print(f"{name:34} {ot[key]:12,.0f} {ch[key]:12,.0f} {ratio:6.2f}x >={goal:.1f}x {verdict}")
if "mem" in ch:
    verdict = "ok" if ch["mem"] <= 150 else "MISSED"
    print(f"{'memory, bytes per peer at 10^5':34} {ot.get('mem', float('nan')):12,.0f} "
          f"{ch['mem']:12,.0f} {'':7} {'<=150 B':>7} {verdict}")
EOF
