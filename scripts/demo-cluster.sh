#!/usr/bin/env bash
# A cluster of three weir hosts in network namespaces (needs root; scripts/cluster-lab.sh
# builds the lab): a router with BIRD (ECMP over the hosts, BFD) and etcd, three hosts each
# running weir-dp on a TAP, weir-cp with [cluster] and BIRD, and a client namespace with
# 256 client addresses from different /64s. The demo
#   1. shows `weirctl cluster status` and the router's routes (the covering /64 by ECMP,
#      each host's slices as the fewest CIDR blocks),
#   2. serves curl from a few clients (each to its SSA destination) and a short
#      `weir-bench load` over all 256 /64s, showing which host answered,
#   3. moves a slice run between hosts with `weirctl cluster move` and shows the new
#      routes, the handover and who answers now.
# Everything it starts is stopped by PID and every namespace removed when it ends, also
# on failure or Ctrl-C.
#
# usage: sudo scripts/demo-cluster.sh          (WEIR_BIN=target/debug to use a test build)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo-cluster.sh: needs root (namespaces, TAP devices)" >&2; exit 1; }
for t in bird birdc etcd ip curl python3; do
  command -v "$t" >/dev/null || { echo "demo-cluster.sh: needs $t (apt-get install bird2 etcd-server curl iproute2)" >&2; exit 1; }
done
# WEIR_BIN: a folder with weir-dp, weir-cp, weirctl and weir-bench already built (CI passes
# the test build's); otherwise they are built here, in release.
if [ -z "${WEIR_BIN:-}" ]; then
  cargo build --release -q --bin weir-dp --bin weir-cp --bin weirctl --bin weir-bench
  WEIR_BIN=${CARGO_TARGET_DIR:-target}/release
fi
WEIR_BIN=$(cd "$WEIR_BIN" && pwd)
export WEIR_BIN
lab=$(mktemp -d /tmp/weir-cluster.XXXXXX)
cleanup() {
  bash scripts/cluster-lab.sh down "$lab" || true
  rm -rf "$lab"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

LAB_DRAIN_S=${LAB_DRAIN_S:-15} bash scripts/cluster-lab.sh up "$lab"
T=$(cat "$lab/tag")
ctl() { local h=$1; shift; "$WEIR_BIN/weirctl" --socket "$lab/h$h/cp.sock" "$@"; }

say "weirctl cluster status (on h1)"
ctl 1 cluster status
coord=$(ctl 1 --json cluster status | python3 -c 'import json,sys; print(json.load(sys.stdin)["coordinator"][1:])')

say "the router's routes: the covering /64 by ECMP, each host's slices by longest match"
ip -n "${T}r" -6 route | grep -E '2001:db8:(5|77)' | sed 's/ proto bird metric 32 pref medium//'

say "curl from four clients, each to the destination its source must use (src-mix)"
for i in 1 2 3 4; do
  src=$(printf '2001:db8:c000:%x::1' "$i")
  dst=$("$WEIR_BIN/weirctl" ssa pick --apl "2:2001:db8:5::/64" --rule src-mix --src "$src")
  printf '%s -> [%s]: ' "$src" "$dst"
  ip netns exec "${T}c" curl -sS --max-time 5 --interface "$src" "http://[$dst]/"
done

say "weir-bench load: 512 keep-alive connections from 256 client /64s for 3 s"
ip netns exec "${T}c" "$WEIR_BIN/weir-bench" load --connections 512 --src-count 256 --duration 3 --think-ms 20

first=0; last=1023
from=$(ctl 1 --json cluster status | python3 -c 'import json,sys
v = json.load(sys.stdin)
print(next(r["host"] for r in v["runs"] if r["first"] <= 0 <= r["last"]))')
to=h$(( ${from#h} % 3 + 1 ))
say "move slices $first..$last from $from to $to (on the coordinator, h$coord)"
run "$WEIR_BIN/weirctl" --socket "$lab/h$coord/cp.sock" cluster move "$first..$last" "$to"
for _ in $(seq 50); do
  ctl 1 --json cluster status | python3 -c 'import json,sys
v = json.load(sys.stdin)
sys.exit(0 if v["handovers"] and all(h["announced"] for h in v["handovers"]) else 1)' && break
  sleep 0.1
done
ctl 1 cluster status | sed -n '/^assignment/,$p'
say "the router now sends slices $first..$last (2001:db8:5::/68) to $to"
ip -n "${T}r" -6 route | grep -E '2001:db8:5::/6[4-8]' -A3 | sed 's/ proto bird metric 32 pref medium//'
say "new connections to those slices are answered by $to"
ip netns exec "${T}c" "$WEIR_BIN/weir-bench" load --connections 16 --slices "$first..$last" --mode close --duration 1
say "done: stopping everything"
