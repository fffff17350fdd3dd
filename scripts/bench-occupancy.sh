#!/usr/bin/env bash
# weir's receive rate against flow-table occupancy, beside dpdk-testpmd rxonly, on the
# same net_pcap vdev and the same packets: for each point, `weir-bench gen --workload
# established` writes the handshakes of F flows (classified before the timed run, so the
# table holds F established flows) and DATA data frames on flows drawn at random from
# them (replayed forever by net_pcap's infinite_rx). The flow table has 2^22 slots at
# every point, so only its occupancy changes.
#
# usage: scripts/bench-occupancy.sh [OUT.csv]   (SECONDS_PER_RUN=5, FLOWS="1024 4096 …",
#        DATA=65536); then scripts/plot-occupancy.py OUT.csv OUT.png (python3-matplotlib)
# CSV columns: flows,established,weir_mpps,testpmd_rxonly_mpps,ratio,known_good_share
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SECONDS_PER_RUN:-5}
FLOWS=${FLOWS:-"1024 4096 16384 65536 262144 1048576"}
DATA=${DATA:-65536}
SLOTS=$((1 << 22))
OUT=${1:-bench/occupancy.csv}
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd is needed: scripts/setup-dpdk.sh" >&2; exit 1; }
cargo build --release -q -p weir-bench --features dpdk
B=${CARGO_TARGET_DIR:-target}/release/weir-bench
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
EAL="--no-huge -m 2048 --no-pci --no-telemetry -l 0,1 --log-level lib.eal:error"
MBUFS=$((DATA * 2))

testpmd_rxonly() {
  local log="$dir/testpmd.log"
  timeout -s INT "$S" dpdk-testpmd $EAL --file-prefix "tp$$" --no-shconf --vdev "$1" -- \
    --forward-mode=rxonly --stats-period 1 --no-mlockall --total-num-mbufs="$MBUFS" \
    --nb-cores=1 --rxq=1 --txq=1 >"$log" 2>&1 || true
  awk '/Rx-pps:/ { n++; if (n > 1) { s += $2; k++ } }
       END { if (k == 0) { print "0"; exit } printf "%.3f\n", s / k / 1e6 }' "$log"
}

echo "flows,established,weir_mpps,testpmd_rxonly_mpps,ratio,known_good_share" >"$OUT"
for f in $FLOWS; do
  "$B" gen --workload established --flows "$f" --packets "$DATA" \
    --out "$dir/data.pcap" --warm "$dir/warm.pcap"
  vdev="net_pcap_b0,rx_pcap=$dir/data.pcap,infinite_rx=1"
  rx=$(testpmd_rxonly "$vdev")
  line=$("$B" dpdk --vdev "$vdev" --seconds "$S" --eal "$EAL" --mbufs "$MBUFS" \
    --warm "$dir/warm.pcap" --flow-table "$SLOTS" | tail -1)
  echo "$line" >&2
  weir=$(sed -n 's/^weir-dpdk: \([0-9.]*\) Mpps.*/\1/p' <<<"$line")
  pkts=$(sed -n 's/.*(\([0-9]*\) packets in.*/\1/p' <<<"$line")
  kg=$(sed -n 's/.*known-good \([0-9]*\);.*/\1/p' <<<"$line")
  est=$(sed -n 's/.*; \([0-9]*\) flows established before.*/\1/p' <<<"$line")
  awk -v f="$f" -v e="$est" -v w="$weir" -v r="$rx" -v p="$pkts" -v k="$kg" 'BEGIN {
    printf "%d,%d,%.3f,%.3f,%.3f,%.4f\n", f, e, w, r, (r > 0 ? w / r : 0), (p > 0 ? k / p : 0) }' >>"$OUT"
  echo "flows $f: weir $weir Mpps, testpmd rxonly $rx Mpps" >&2
done
cat "$OUT"
