#!/usr/bin/env bash
# Instructions per packet of the software pipeline (pcap reading + parse + classify +
# enqueue + dequeue, 1M-slot flow table), counted by callgrind as the difference between
# a run over N packets and one over 2N: start-up, table initialisation and the
# generator's work cancel out, so the figure repeats exactly on a noisy machine.
# Also prints wall-clock Mpps on one core (this one varies with the machine).
#
# usage: scripts/bench-instructions.sh [N]      (default N = 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
cargo build --release -q -p weir-bench
B=target/release/weir-bench
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$B" run "$1" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

for w in mix flood; do
  "$B" gen --workload "$w" --packets "$N" --out "$dir/$w-1.pcap"
  "$B" gen --workload "$w" --packets $((2 * N)) --out "$dir/$w-2.pcap"
  i1=$(instructions "$dir/$w-1.pcap")
  i2=$(instructions "$dir/$w-2.pcap")
  per=$(( (i2 - i1) / N ))
  "$B" gen --workload "$w" --packets $((10 * N)) --out "$dir/$w-big.pcap"
  wall=$("$B" run "$dir/$w-big.pcap" | tail -1)
  echo "$w: $per instructions/packet (callgrind, N=$N: $i1 vs 2N: $i2); wall: $wall"
done
