#!/usr/bin/env bash
# bench_sim.sh -- v2's figures (v2 against v1, reach, failure detection, false deaths,
# partition heal) from `chisme simulate --json`, printed as one table with the goals
# (docs/v2.md §7).
#
#   bench/bench_sim.sh [--only a,b,c,d] [--jobs 2] [--quick] [--json FILE]
#
# (a) N=100, 10^5 records: reach 99/100 %, v2 and v1 bytes per node per second, idle cost;
# (b) N=1,000, 10^4 records: reach 99 %, time until a killed node is dead everywhere (0 and
#     10 % loss); (c) false deaths over 1 virtual hour at 10 % loss (N=250; N=1,000 for 10
#     virtual minutes); (d) heal after a 5-minute 2-way partition (N=100, 10^5 records).
# Not part of `make test`: the whole set takes about half an hour on 2 cores (--quick: ~1 min).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$ROOT/.venv/bin/chisme" ] || { echo "no $ROOT/.venv/bin/chisme: run make venv" >&2; exit 2; }
exec "$ROOT/.venv/bin/python" "$ROOT/bench/bench_sim.py" "$@"
