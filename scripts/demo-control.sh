#!/usr/bin/env bash
# A tour of weir's control plane, with no root and no DPDK:
#   weir-dp replays the bundled mix capture in a loop as a live port,
#   weir-cp directs it over a unix seqpacket socket,
#   weirctl shows stats, resizes a ring and moves slices, and each change is seen taking
#   effect in the dataplane's own counters.
# Everything lives in a temporary directory and stops when the script ends.
#
# usage: scripts/demo-control.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin weir-dp --bin weir-cp --bin weirctl
bin=target/release
run=$(mktemp -d /tmp/weir-demo.XXXXXX)
chmod 700 "$run"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT

cat > "$run/dp.toml" <<TOML
[dataplane]
workers = 2
control_socket = "$run/dp.sock"

[port]
kind = "pcap"
path = "$PWD/pcap-fixtures/mix.pcap"
loop = true
pps = 50000
TOML

cat > "$run/cp.toml" <<TOML
[dataplane]
workers = 2

[control]
socket = "$run/cp.sock"
state_file = "$run/state.json"
prometheus = "127.0.0.1:0"
poll_ms = 250
dataplanes = [{ name = "dp0", socket = "$run/dp.sock" }]
TOML

"$bin/weir-dp" run --config "$run/dp.toml" 2>"$run/dp.log" & pids+=($!)
"$bin/weir-cp" --config "$run/cp.toml" 2>"$run/cp.log" & pids+=($!)
export WEIR_CP_SOCKET="$run/cp.sock"
ctl() { echo; echo "\$ weirctl $*"; "$bin/weirctl" "$@"; }

# Wait until the dataplane runs weir-cp's policy.
for _ in $(seq 100); do
  if "$bin/weirctl" --json status 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin); l = s["dataplanes"][0]
sys.exit(0 if l["connected"] and l["applied_version"] == s["version"] else 1)'; then break; fi
  sleep 0.1
done

ctl status
sleep 1
ctl stats

ctl rings show
ctl rings set suspect --size 64 --weight 4
sleep 1
echo; echo "# the dataplane's suspect rings now:"
"$bin/weirctl" --json stats | python3 -c '
import json, sys
s = json.load(sys.stdin)["dataplanes"][0]["stats"]
sizes = sorted({r["size"] for r in s["rings"] if r["class"] == "suspect"})
print("suspect ring sizes:", sizes); assert sizes == [64], sizes'

snap() { "$bin/weirctl" --json stats | python3 -c '
import json, sys
s = json.load(sys.stdin)["dataplanes"][0]["stats"]
print(" ".join(str(w["assumed_good"]) for w in s["workers"]))'; }
ctl slices show
last=$("$bin/weirctl" --json slices show | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][-1]["last"])')
ctl slices move "0..$last" 1
sleep 1
read -r a0 a1 <<<"$(snap)"; sleep 1.5; read -r b0 b1 <<<"$(snap)"
echo; echo "# new flows (assumed-good) per worker over 1.5 s after the move: worker0 +$((b0 - a0)), worker1 +$((b1 - a1))"
[ "$b0" -eq "$a0" ] && [ "$b1" -gt "$a1" ] || { echo "slice move did not take effect" >&2; exit 1; }
ctl slices show
echo; echo "demo: OK"
