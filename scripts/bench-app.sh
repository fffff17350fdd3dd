#!/usr/bin/env bash
# One application behind weir's `nats` adapter beside the same application behind nginx
# as a reverse proxy: the same machine, the same run, the same wrk, the same answer
# ("hello from weir-app\n", from the same weir-app code). Needs root (TAP device, routes),
# nats-server, nginx, wrk, curl, ip, python3.
#
#   weir:  wrk ─TAP─► weir-dp (rx core + 1 terminator worker + the weir-nats thread)
#                       ─► nats-server ─► weir-app (NATS, 1 runtime thread)
#   nginx: wrk ─loopback─► nginx (1 worker, keep-alive upstream)
#                       ─► weir-app --http (1 runtime thread)
#   app:   wrk ─loopback─► weir-app --http alone (what the application itself sustains)
#
# Each: wrk -t1 -c$CONNS -d${SECS}s --latency over keep-alive connections, requests/s and
# p99 from wrk; the two setups alternate, ROUNDS times, and the medians are compared.
# weir's path has one more process (nats-server) and one more hop than nginx's, and its
# client reaches it through a TAP device, nginx's over loopback: the ratios compare the
# two ways of putting an edge in front of an application, not the proxies alone.
#
# usage: sudo scripts/bench-app.sh     (SECS=10 CONNS=32 ROUNDS=3 by default)
# The last lines read `weir/nginx requests/s: <ratio>` and `weir/nginx p99: <ratio>`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-app.sh: needs root (TAP devices, routes)" >&2; exit 1; }
for t in nats-server nginx wrk curl ip python3; do
  command -v "$t" >/dev/null || { echo "bench-app.sh: needs $t" >&2; exit 1; }
done
SECS=${SECS:-10}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
# WEIR_BIN: a folder with weir-dp, weirctl and weir-app already built (CI passes the
# test build for a smoke run; figures come from the release build, the default).
if [ -z "${WEIR_BIN:-}" ]; then
  cargo build --release -q --bin weir-dp --bin weirctl --bin weir-app
  WEIR_BIN=${CARGO_TARGET_DIR:-target}/release
fi
bin=$(cd "$WEIR_BIN" && pwd)
run=$(mktemp -d /tmp/weir-bench-app.XXXXXX)
chmod 700 "$run"
# nginx's workers drop root: their prefix must be readable to them.
ngx=$(mktemp -d /tmp/weir-bench-app-nginx.XXXXXX)
chmod 755 "$ngx"
IF=weirbapp0
CLIENT=2001:db8:ff::1
ngx_pid=""
. "$(dirname "$0")/lib-app.sh"
cleanup() {
  if [ -n "$ngx_pid" ]; then kill -QUIT "$ngx_pid" 2>/dev/null || true; wait "$ngx_pid" 2>/dev/null || true; fi
  app_stop_all
  rm -rf "$run" "$ngx"
}
trap cleanup EXIT

app_nats_start "$run"
app_start "$bin" "$run" nats-app --nats "$NATS_URL"
app_port=$(app_free_port)
app_start "$bin" "$run" http-app --http "127.0.0.1:$app_port"
app_weir_start "$bin" "$run" "$IF" "$CLIENT" "
[terminator]
enabled = true

[terminator.adapter]
kind = \"nats\"
url = \"$NATS_URL\"
subject = \"weir.http\"
"
ngx_port=$(app_free_port)
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
  upstream app {
    server 127.0.0.1:$app_port;
    keepalive 64;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$ngx_port;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
CONF
nginx -e "$ngx/error.log" -p "$ngx" -c "$ngx/nginx.conf" -g 'daemon off;' &
ngx_pid=$!
weir_url="http://[$WEIR_GOOD]/"
ngx_url="http://127.0.0.1:$ngx_port/"
app_url="http://127.0.0.1:$app_port/"
for u in "$weir_url" "$ngx_url" "$app_url"; do
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$u")" = 200 ] && break
    sleep 0.1
  done
  body=$(curl -sS --max-time 5 "$u")
  [ "$body" = "hello from weir-app" ] || { echo "bench-app.sh: $u answered '$body'" >&2; exit 1; }
done

# wrk URL → "requests/s p99_ms errors"
measure() {
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s --latency "$1")
  python3 - "$out" <<'PY'
import re, sys
t = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
err = 0
s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
if s: err += sum(int(x) for x in s.groups())
n = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if n: err += int(n.group(1))
print(f"{rps:.0f} {p99:.3f} {err}")
PY
}

echo "wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternating (requests/s, p99 ms, errors)"
: >"$run/results"
for r in $(seq "$ROUNDS"); do
  for who in weir nginx; do
    url=$weir_url; [ "$who" = nginx ] && url=$ngx_url
    res=$(measure "$url")
    echo "$who $res" >>"$run/results"
    printf '  round %d  %-5s  %s\n' "$r" "$who" "$res"
  done
done
res=$(measure "$app_url")
printf '  app alone (weir-app --http, no proxy)  %s\n' "$res"
python3 - "$run/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def med(who, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == who)
errors = sum(int(r[3]) for r in rows)
w_rps, n_rps = med("weir", 1), med("nginx", 1)
w_p99, n_p99 = med("weir", 2), med("nginx", 2)
print(f"median: weir {w_rps:.0f} requests/s, p99 {w_p99:.3f} ms; nginx {n_rps:.0f} requests/s, p99 {n_p99:.3f} ms; errors {errors}")
print(f"weir/nginx requests/s: {w_rps / n_rps:.2f}")
print(f"weir/nginx p99: {w_p99 / n_p99:.2f}")
if errors:
    sys.exit("bench-app.sh: errors during the runs")
PY
