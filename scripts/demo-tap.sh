#!/usr/bin/env bash
# weir at the edge of a service, on a Linux TAP device (needs root):
#   weir-dp creates the TAP `weirdemo0` and serves 2001:db8:5::/64 with its terminators
#   (smoltcp + HTTP/1.1, the `static` adapter); the host side gets a client address and a
#   route to the service prefix via weir's link-local address (not on-link, so the kernel
#   resolves one neighbour, weir, instead of every service address). Then:
#   curl to a conforming address (from `weirctl ssa pick`) is answered by weir;
#   curl to a non-conforming address gets no SYN-ACK (the classifier rejects the SYN).
# Everything stops when the script ends.
#
# usage: sudo scripts/demo-tap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo-tap.sh: needs root (TAP devices, routes)" >&2; exit 1; }
for t in curl ip; do command -v "$t" >/dev/null || { echo "demo-tap.sh: needs $t" >&2; exit 1; }; done
cargo build --release -q --bin weir-dp --bin weirctl
bin=${CARGO_TARGET_DIR:-target}/release
run=$(mktemp -d /tmp/weir-tap.XXXXXX)
chmod 700 "$run"
IF=weirdemo0
CLIENT=2001:db8:ff::1
pid=""
cleanup() {
  pid=${pid:-${WEIR_PID:-}}   # set by weir_tap_start even when its setup fails
  [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

. "$(dirname "$0")/lib-tap.sh"
weir_tap_start "$bin" "$run" "$IF" "$CLIENT"
pid=$WEIR_PID
good=$WEIR_GOOD
bad=2001:db8:5::dead
echo "client $CLIENT; conforming destination $good (weirctl ssa pick), non-conforming $bad"
echo
echo "\$ curl -6 http://[$good]/"
curl -6 -sS --max-time 5 "http://[$good]/"
echo
echo "\$ curl -6 --max-time 2 http://[$bad]/    # no SYN-ACK: the classifier rejects it"
if curl -6 -sS --max-time 2 "http://[$bad]/" 2>&1; then
  echo "demo-tap.sh: the non-conforming address was answered" >&2; exit 1
fi
kill -INT "$pid"; wait "$pid" || true; pid=""
echo
python3 - "$run/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
e = s["events"]
print(f"weir-dp counted: {s['packets']} frames; classes {s['classes']}")
print(f"  ssa-violation {s['reasons']['ssa-violation']}, NDP answered {e.get('host-answered', 0)}, "
      f"connections established {e.get('term-established', 0)}, HTTP requests {e.get('term-http-requests', 0)}")
PY
