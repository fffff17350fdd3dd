#!/usr/bin/env bash
# Instructions per packet on the product's own path: `weir-dp replay FILE --json` (capture
# reading, parse, classify, enqueue, the workers' drain, the report) under callgrind, as the
# difference between a run over N packets and one over 2N of the same workload — start-up,
# table initialisation and the report cancel out, so the figure repeats exactly on a noisy
# machine. The workloads are bench/gen_bench.py's `mix` and `flood` (default config:
# src-mix), the ones the speed goals are stated on. Also prints wall-clock Mpps of a 10N
# replay (this one varies with the machine).
#
# usage: scripts/bench-instructions.sh [N]      (default N = 50000)
# Last two lines: `mix: <i> instructions/packet ...` and `flood: <i> instructions/packet ...`
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
cargo build --release -q -p weir-dp --bin weir-dp
B=${CARGO_TARGET_DIR:-target}/release/weir-dp
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$B" replay "$1" --json 2>&1 >/dev/null \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

for w in mix flood; do
  python3 bench/gen_bench.py "$w" "$dir/$w-1.pcap" "$N"
  python3 bench/gen_bench.py "$w" "$dir/$w-2.pcap" $((2 * N))
  i1=$(instructions "$dir/$w-1.pcap")
  i2=$(instructions "$dir/$w-2.pcap")
  per=$(( (i2 - i1) / N ))
  python3 bench/gen_bench.py "$w" "$dir/$w-big.pcap" $((10 * N))
  wall=$("$B" replay "$dir/$w-big.pcap" --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.2f Mpps, %.1f ns/packet over %d packets" % (r["mpps"], r["ns_per_packet"], r["packets"]))')
  echo "$w: $per instructions/packet (weir-dp replay under callgrind, N=$N: $i1 vs 2N: $i2); wall: $wall"
done
