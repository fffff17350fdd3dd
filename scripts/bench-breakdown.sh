#!/usr/bin/env bash
# Where the instructions per packet go, by source file and line: `weir-dp replay` under
# callgrind over N and 2N packets of one of bench/gen_bench.py's workloads (the ones
# scripts/bench-instructions.sh reports), then scripts/callgrind-per-packet.py on the
# two profiles. The breakdowns in bench/RESULTS.md come from here.
#
# usage: scripts/bench-breakdown.sh [mix|flood] [N] [LINES]   (defaults: mix 50000 40)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-mix}
N=${2:-50000}
LINES=${3:-40}
case "$W" in mix | flood) ;; *) echo "workload: mix or flood" >&2; exit 2 ;; esac
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
cargo build --release -q -p weir-dp --bin weir-dp
B=${CARGO_TARGET_DIR:-target}/release/weir-dp
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for n in "$N" $((2 * N)); do
  python3 bench/gen_bench.py "$W" "$dir/$n.pcap" "$n"
  valgrind --tool=callgrind --callgrind-out-file="$dir/$n.out" "$B" replay "$dir/$n.pcap" --json \
    >/dev/null 2>"$dir/$n.log"
done
echo "$W, N=$N ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
python3 scripts/callgrind-per-packet.py "$dir/$N.out" "$dir/$((2 * N)).out" "$N" "$LINES"
