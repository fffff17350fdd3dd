#!/usr/bin/env bash
# weir in front of application servers over NATS, and a slowloris attacker blocked
# (needs root: TAP device, routes; and nats-server, curl, ip, python3):
#
#   curl ─TAP─► weir-dp (terminator, `nats` adapter) ─► nats-server ─► weir-app a1 | a2
#                     │ stats                                  (one queue group)
#                  weir-cp (policy loop: blocks prefixes that keep being slow)
#
# 1. curl to a conforming address is answered by a weir-app instance (`X-Weir-App`), a few
#    more show the two instances sharing the requests;
# 2. a slowloris attacker (python3, 100 connections from 2001:db8:bad::1, one header byte
#    per second) has its connections closed with 408 by `header_timeout_ms` (2 s); weir-cp
#    sees the prefix's count stay high and blocks 2001:db8:bad::/64; curl from the normal
#    client is still answered.
# Everything started here is stopped by PID when the script ends.
#
# usage: sudo scripts/demo-app.sh          (WEIR_BIN=target/debug to use a test build)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo-app.sh: needs root (TAP devices, routes)" >&2; exit 1; }
for t in nats-server curl ip python3; do
  command -v "$t" >/dev/null || { echo "demo-app.sh: needs $t" >&2; exit 1; }
done
# WEIR_BIN: a folder with weir-dp, weir-cp, weirctl and weir-app already built (CI passes
# the test build); else a release build.
if [ -z "${WEIR_BIN:-}" ]; then
  cargo build --release -q --bin weir-dp --bin weirctl --bin weir-cp --bin weir-app
  WEIR_BIN=${CARGO_TARGET_DIR:-target}/release
fi
bin=$(cd "$WEIR_BIN" && pwd)
run=$(mktemp -d /tmp/weir-app-demo.XXXXXX)
chmod 700 "$run"
IF=weirapp0
CLIENT=2001:db8:ff::1
ATTACKER=2001:db8:bad::1
cp_pid=""
attack_pid=""
. "$(dirname "$0")/lib-app.sh"
cleanup() {
  [ -n "$attack_pid" ] && { kill "$attack_pid" 2>/dev/null || true; wait "$attack_pid" 2>/dev/null || true; }
  [ -n "$cp_pid" ] && { kill -TERM "$cp_pid" 2>/dev/null || true; wait "$cp_pid" 2>/dev/null || true; }
  app_stop_all
  rm -rf "$run"
}
trap cleanup EXIT

app_nats_start "$run"
app_start "$bin" "$run" a1 --nats "$NATS_URL"
app_start "$bin" "$run" a2 --nats "$NATS_URL"
app_weir_start "$bin" "$run" "$IF" "$CLIENT" "
[terminator]
enabled = true
header_timeout_ms = 2000

[terminator.adapter]
kind = \"nats\"
url = \"$NATS_URL\"
subject = \"weir.http\"
timeout_ms = 2000
"
ip -6 addr add "$ATTACKER/64" dev "$IF" nodad
metrics=$(app_free_port)
cat > "$run/cp.toml" <<TOML
[service]
apl = "$WEIR_APL"

[dataplane]
workers = 1

[control]
socket = "$run/cp.sock"
poll_ms = 500
prometheus = "127.0.0.1:$metrics"
dataplanes = [{ name = "dp0", socket = "$run/dp.sock" }]

[policy]
enabled = true
block_after_s = 3
block_ttl_s = 60
slow_threshold = 20
slow_window_s = 6
TOML
"$bin/weir-cp" --config "$run/cp.toml" 2>"$run/cp.log" &
cp_pid=$!
ctl() { "$bin/weirctl" --socket "$run/cp.sock" "$@"; }
for _ in $(seq 100); do ctl --json status 2>/dev/null | grep -q '"connected":true' && break; sleep 0.1; done
good=$WEIR_GOOD
for _ in $(seq 100); do [ "$(curl -6 -s -o /dev/null -w '%{http_code}' --max-time 2 "http://[$good]/")" = 200 ] && break; sleep 0.1; done

echo "NATS $NATS_URL; weir-app a1 and a2 in queue group weir-app on subject weir.http"
echo "client $CLIENT → conforming destination $good"
echo
echo "\$ curl -6 -i http://[$good]/"
curl -6 -sS -i --max-time 5 "http://[$good]/"
echo
echo "10 more requests, answered by:"
for _ in $(seq 10); do
  curl -6 -sS -D - -o /dev/null --max-time 5 "http://[$good]/" | tr -d '\r' | sed -n 's/^X-Weir-App: //p'
done | sort | uniq -c

echo
target=$("$bin/weirctl" ssa pick --apl "$WEIR_APL" --rule src-mix --src "$ATTACKER")
echo "slowloris from $ATTACKER → $target: 100 connections, one header byte per second"
python3 - "$ATTACKER" "$target" <<'PY' &
import socket, sys, time
src, dst = sys.argv[1], sys.argv[2]
head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
socks = {}
t0 = time.time()
while time.time() - t0 < 25:
    for i in range(100):
        s = socks.get(i)
        if s is None:
            try:
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s.bind((src, 0))
                s.setblocking(False)
                s.connect_ex((dst, 80))
                socks[i] = [s, 0]
            except OSError:
                pass
            continue
        sock, n = s
        try:
            if sock.recv(512, socket.MSG_DONTWAIT) is not None:
                sock.close(); socks.pop(i); continue
        except BlockingIOError:
            pass
        except OSError:
            sock.close(); socks.pop(i); continue
        try:
            sock.send(head[n:n + 1] if n < len(head) else b"a")
            s[1] += 1
        except (BlockingIOError, OSError):
            pass
    time.sleep(1)
PY
attack_pid=$!
blocked=""
for _ in $(seq 200); do
  if ctl block list | grep -q "2001:db8:bad::/64"; then blocked=yes; break; fi
  sleep 0.1
done
[ -n "$blocked" ] || { echo "demo-app.sh: the attacker was not blocked" >&2; cat "$run/cp.log" >&2; exit 1; }
echo
echo "\$ weirctl block list"
ctl block list
echo
echo "\$ grep block-added weir-cp's log"
grep -o 'block-added.*' "$run/cp.log" | head -1
echo
echo "\$ weirctl stats   (the upstream and slow-source sections)"
ctl stats | sed -n '/^upstreams/,$p'
echo
echo "\$ curl -6 http://[$good]/    # the normal client, during the attack"
curl -6 -sS --max-time 5 "http://[$good]/"
kill "$attack_pid" 2>/dev/null || true; wait "$attack_pid" 2>/dev/null || true; attack_pid=""
echo
echo "Prometheus (127.0.0.1:$metrics):"
curl -sS "http://127.0.0.1:$metrics/metrics" | grep -E '^weir_(upstream_up|upstream_requests_total|slow_source_closes_total|decisions_total)' | grep -v ' 0$'
