#!/usr/bin/env bash
# weir beside dpdk-testpmd: the same vdev, the same packets, one polling lcore each, in
# one run. testpmd `rxonly` (rx + free) and `io` (rx + tx) are the references; weir's
# lcore does rx + parse + classify + enqueue (the mbuf itself) + drain + free.
#
#   vdevs: net_null (64-byte frames, no copy: the pure rx-path cost) and net_pcap with
#   infinite_rx=1 over weir-bench's SSA mix (16384 frames held in mbufs, replayed forever).
#
# usage: scripts/bench-vs-testpmd.sh      (SECONDS_PER_RUN=5 by default)
# The last line reads `weir/testpmd-rxonly: <ratio>` for the SSA mix on net_pcap.
#
# ROUNDS=N (default 1) runs testpmd rxonly and weir N times each, alternating, and reports
# the medians and the ratio of the medians (io once): on a shared VM one run of either
# can be 30% off (testpmd rxonly gave 16.2 and 28.5 Mpps on the mix in two runs in a row),
# and alternating puts both programs under the same spells of noise.
#
# Each round also runs weir with `--no-classify` (every mbuf queued known-good to the
# workers in turn: rx, enqueue, drain, free, no decisions) and prints it beside the
# others as `unclassified`, so that what classification itself costs is visible. It does
# not enter the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-1}
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd is needed: scripts/setup-dpdk.sh" >&2; exit 1; }
cargo build --release -q -p weir-bench --features dpdk
B=${CARGO_TARGET_DIR:-target}/release/weir-bench
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$B" gen --workload mix --packets 16384 --out "$dir/mix.pcap"
EAL="--no-huge -m 1024 --no-pci --no-telemetry -l 0,1 --log-level lib.eal:error"
mhz=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo | tr -d ' ')

# testpmd VDEV MODE -> mean Rx-pps over the run (the first period, start-up, left out)
testpmd_mpps() {
  local log="$dir/testpmd-$2.log"
  timeout -s INT "$S" dpdk-testpmd $EAL --file-prefix "tp$$" --no-shconf --vdev "$1" -- \
    --forward-mode="$2" --stats-period 1 --no-mlockall --total-num-mbufs=65536 \
    --nb-cores=1 --rxq=1 --txq=1 >"$log" 2>&1 || true
  awk '/Rx-pps:/ { n++; if (n > 1) { s += $2; k++ } }
       END { if (k == 0) { print "0"; exit } printf "%.3f\n", s / k / 1e6 }' "$log"
}

weir_mpps() {
  "$B" dpdk --vdev "$1" --seconds "$S" --eal "$EAL" --mbufs 65536 "${@:2}" | tee "$dir/weir.log" >&2
  sed -n 's/^weir-dpdk: \([0-9.]*\) Mpps.*/\1/p' "$dir/weir.log"
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "0"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
per_packet() { awk -v m="$1" -v mhz="$mhz" 'BEGIN { if (m > 0) printf "%.1f ns, %.0f cycles at %.0f MHz", 1000 / m, mhz / m, mhz; else print "n/a" }'; }

last=""
for case in "net_null:net_null_b0" "net_pcap-mix:net_pcap_b0,rx_pcap=$dir/mix.pcap,infinite_rx=1"; do
  name=${case%%:*}
  vdev=${case#*:}
  rxonlys="" weirs="" bares=""
  for _ in $(seq "$ROUNDS"); do
    rxonlys="$rxonlys $(testpmd_mpps "$vdev" rxonly)"
    weirs="$weirs $(weir_mpps "$vdev")"
    bares="$bares $(weir_mpps "$vdev" --no-classify)"
  done
  io=$(testpmd_mpps "$vdev" io)
  rxonly=$(echo "$rxonlys" | median)
  weir=$(echo "$weirs" | median)
  bare=$(echo "$bares" | median)
  r=$(ratio "$weir" "$rxonly")
  runs=""
  [ "$ROUNDS" -gt 1 ] && runs=" (medians of $ROUNDS alternating runs: rxonly$rxonlys; weir$weirs; unclassified$bares)"
  echo "$name: testpmd rxonly $rxonly Mpps ($(per_packet "$rxonly")), io $io Mpps; weir $weir Mpps ($(per_packet "$weir")); weir/rxonly $r, weir/io $(ratio "$weir" "$io"); weir unclassified $bare Mpps ($(per_packet "$bare")), unclassified/rxonly $(ratio "$bare" "$rxonly")$runs"
  last=$r
done
echo "weir/testpmd-rxonly: $last"
