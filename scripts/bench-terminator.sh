#!/usr/bin/env bash
# weir's terminator beside nginx: the same machine, the same run, the same wrk, the same
# body ("hello from weir\n"). Needs root (TAP device, routes), nginx, wrk, curl, ip.
#
#   nginx: the Debian package with a private config in a temp dir, one worker process,
#     `return 200 "hello from weir\n"`, no access log, keep-alive without a request limit;
#     wrk talks to it over loopback ([::1]:8080). Its figure is nginx's worker plus the
#     kernel's TCP on both ends of loopback.
#   weir: weir-dp on a TAP device (weirbench0) with one terminator worker, the static
#     adapter, as scripts/demo-tap.sh sets it up; wrk talks to a conforming address of
#     2001:db8:5::/64 through the TAP. Its figure includes the TAP in both directions, the
#     kernel's IPv6 stack and TCP on the client side only, weir's rx core (TAP read,
#     parse, classify, rings, and the worker's replies written back to the TAP) and the
#     terminator worker (smoltcp + HTTP). So: one nginx worker against one weir terminator
#     worker plus one rx core; both share the machine's cores with wrk (-t1).
#
#   (a) requests/s over keep-alive connections; (b) connections/s, every request with
#   `Connection: close` (the server closes; wrk opens a new connection per request).
#   Each: wrk -t1 -c$CONNS -d${SECS}s --latency, p99 from wrk's latency distribution.
#   Then `weir-bench terminator`: the terminator alone on one thread, no TAP, no kernel
#   (ns per packet against the number of connections, connections/s, memory).
#
# usage: sudo scripts/bench-terminator.sh       (SECS=5 CONNS=32 by default)
# The last line reads `weir/nginx requests/s: <ratio>` (keep-alive).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-terminator.sh: needs root (TAP devices, routes)" >&2; exit 1; }
for t in nginx wrk curl ip python3; do
  command -v "$t" >/dev/null || { echo "bench-terminator.sh: needs $t" >&2; exit 1; }
done
SECS=${SECS:-5}
CONNS=${CONNS:-32}
cargo build --release -q --bin weir-dp --bin weirctl
cargo build --release -q -p weir-bench
bin=${CARGO_TARGET_DIR:-target}/release

run=$(mktemp -d /tmp/weir-bench-term.XXXXXX)
chmod 700 "$run"
# nginx's workers drop root: their prefix must be readable to them.
ngx=$(mktemp -d /tmp/weir-bench-nginx.XXXXXX)
chmod 755 "$ngx"
IF=weirbench0
CLIENT=2001:db8:ff::1
dp_pid=""
ngx_pid=""
cleanup() {
  dp_pid=${dp_pid:-${WEIR_PID:-}}   # set by weir_tap_start even when its setup fails
  if [ -n "$dp_pid" ]; then kill -INT "$dp_pid" 2>/dev/null || true; wait "$dp_pid" 2>/dev/null || true; fi
  if [ -n "$ngx_pid" ]; then kill -QUIT "$ngx_pid" 2>/dev/null || true; wait "$ngx_pid" 2>/dev/null || true; fi
  rm -rf "$run" "$ngx"
}
trap cleanup EXIT

# --- nginx -------------------------------------------------------------------------------
cat > "$ngx/nginx.conf" <<CONF
worker_processes 1;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $ngx/client_body;
  proxy_temp_path $ngx/proxy;
  fastcgi_temp_path $ngx/fastcgi;
  uwsgi_temp_path $ngx/uwsgi;
  scgi_temp_path $ngx/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen [::1]:8080;
    listen 127.0.0.1:8080;
    location / {
      default_type text/plain;
      return 200 "hello from weir\n";
    }
  }
}
CONF
nginx -e "$ngx/error.log" -p "$ngx" -c "$ngx/nginx.conf" -g 'daemon off;' &
ngx_pid=$!

# --- weir-dp on a TAP ------------------------------------------------------------------------
. "$(dirname "$0")/lib-tap.sh"
weir_tap_start "$bin" "$run" "$IF" "$CLIENT"
dp_pid=$WEIR_PID
good=$WEIR_GOOD

NGINX_URL="http://[::1]:8080/"
WEIR_URL="http://[$good]/"
# Both answer before anything is timed.
for u in "$NGINX_URL" "$WEIR_URL"; do
  ok=""
  for _ in $(seq 50); do
    if body=$(curl -6 -sS --max-time 2 "$u" 2>/dev/null) && [ "$body" = "hello from weir" ]; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "bench-terminator.sh: $u does not answer"; cat "$ngx/error.log" "$run/dp.log" >&2; exit 1; }
done
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///') on $NGINX_URL (loopback, 1 worker); weir on $WEIR_URL (TAP $IF, 1 terminator worker + rx core)"
echo "wrk -t1 -c$CONNS -d${SECS}s --latency; $(nproc) CPUs; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# wrk NAME URL [ARGS...]: output kept in $run/NAME.wrk
wrk_run() {
  local name=$1 url=$2
  shift 2
  wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 2s --latency "$@" "$url" >"$run/$name.wrk" 2>&1 || {
    echo "bench-terminator.sh: wrk $name failed:" >&2
    cat "$run/$name.wrk" >&2
    exit 1
  }
}
wrk_run nginx-keepalive "$NGINX_URL"
wrk_run weir-keepalive "$WEIR_URL"
wrk_run nginx-close "$NGINX_URL" -H "Connection: close"
wrk_run weir-close "$WEIR_URL" -H "Connection: close"

kill -INT "$dp_pid"
wait "$dp_pid" || true
dp_pid=""

python3 - "$run" <<'PY'
import json, re, sys
run = sys.argv[1]

def ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]

def parse(name):
    w = {"rps": 0.0, "p99": float("nan"), "requests": 0, "errors": 0, "non2xx": 0}
    for line in open(f"{run}/{name}.wrk"):
        l = line.strip()
        if l.startswith("Requests/sec:"):
            w["rps"] = float(l.split()[1])
        elif l.startswith("99%"):
            w["p99"] = ms(l.split()[1])
        elif "requests in" in l:
            w["requests"] = int(l.split()[0])
        elif l.startswith("Socket errors:"):
            w["errors"] = sum(int(p.split()[-1]) for p in l.split(":", 1)[1].split(","))
        elif l.startswith("Non-2xx or 3xx responses:"):
            w["non2xx"] = int(l.split(":")[1])
    return w

r = {n: parse(n) for n in ["nginx-keepalive", "weir-keepalive", "nginx-close", "weir-close"]}
def ratio(a, b):
    return f"{a / b:.3f}" if b > 0 else "n/a"

print(f"{'':28} {'nginx':>12} {'weir':>12} {'weir/nginx':>11}")
for kind, label in [("keepalive", "requests/s (keep-alive)"), ("close", "connections/s (close)")]:
    n, w = r[f"nginx-{kind}"], r[f"weir-{kind}"]
    print(f"{label:28} {n['rps']:12.0f} {w['rps']:12.0f} {ratio(w['rps'], n['rps']):>11}")
    print(f"{'  p99 latency, ms':28} {n['p99']:12.3f} {w['p99']:12.3f} {ratio(w['p99'], n['p99']):>11}")
    print(f"{'  socket errors / non-2xx':28} {str(n['errors']) + ' / ' + str(n['non2xx']):>12} "
          f"{str(w['errors']) + ' / ' + str(w['non2xx']):>12}")
try:
    s = json.load(open(f"{run}/stats.json"))
    e = s.get("events", {})
    print(f"weir-dp counted: {s.get('packets')} frames; classes {s.get('classes')}; "
          f"established {e.get('term-established', 0)}, HTTP requests {e.get('term-http-requests', 0)}")
    flagged = {k: v for k, v in s.get("reasons", {}).items() if v}
    print(f"  suspect/reject reasons: {flagged or 'none'}")
except (OSError, ValueError) as err:
    print(f"weir-dp stats: unreadable ({err})")
open(f"{run}/ratio", "w").write(ratio(r["weir-keepalive"]["rps"], r["nginx-keepalive"]["rps"]))
PY
echo
echo "\$ weir-bench terminator    # the terminator alone: one thread, no TAP, no kernel"
"$bin/weir-bench" terminator 2>/dev/null
echo
echo "weir/nginx requests/s: $(cat "$run/ratio")"
