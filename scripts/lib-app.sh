# Shared by scripts/demo-app.sh and scripts/bench-app.sh (sourced, not run): a nats-server
# on a free loopback port, weir-app instances, and weir-dp on a TAP device with the `nats`
# adapter. Every function records the PIDs it starts in APP_PIDS (weir-dp: WEIR_PID,
# nats-server: NATS_PID) for the caller's cleanup, which stops them by PID.
#
# app_free_port                              prints a free loopback TCP port
# app_nats_start RUN                         sets NATS_PID, NATS_URL
# app_start BIN RUN NAME ARGS...             starts weir-app, waits for `ready`
# app_weir_start BIN RUN IFACE CLIENT TOML   weir-dp with TOML ([terminator] and adapter
#                                            sections); sets WEIR_PID, WEIR_GOOD (the
#                                            conforming destination for CLIENT)
# app_stop_all                               stops what was started, by PID

WEIR_LL=fe80::77:65ff:fe69:7201
WEIR_APL="2:2001:db8:5::/64"
APP_PIDS=()
NATS_PID=""
WEIR_PID=""

app_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

app_nats_start() {
  local run=$1 port
  port=$(app_free_port)
  nats-server -a 127.0.0.1 -p "$port" >"$run/nats.log" 2>&1 &
  NATS_PID=$!
  NATS_URL="nats://127.0.0.1:$port"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nats-server did not start:" >&2; cat "$run/nats.log" >&2; return 1
}

app_start() {
  local bin=$1 run=$2 name=$3; shift 3
  "$bin/weir-app" --name "$name" "$@" >"$run/app-$name.out" 2>"$run/app-$name.log" &
  APP_PIDS+=($!)
  for _ in $(seq 200); do
    grep -q '^ready$' "$run/app-$name.out" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "weir-app $name did not get ready:" >&2; cat "$run/app-$name.log" >&2; return 1
}

app_weir_start() {
  local bin=$1 run=$2 iface=$3 client=$4 toml=$5
  cat > "$run/dp.toml" <<TOML
[service]
apl = "$WEIR_APL"

[dataplane]
workers = 1
control_socket = "$run/dp.sock"

[port]
kind = "tap"
name = "$iface"

$toml
TOML
  "$bin/weir-dp" run --config "$run/dp.toml" >"$run/stats.json" 2>"$run/dp.log" &
  WEIR_PID=$!
  for _ in $(seq 200); do [ -e "/sys/class/net/$iface" ] && [ -e "$run/dp.sock" ] && break; sleep 0.05; done
  [ -e "/sys/class/net/$iface" ] || { cat "$run/dp.log" >&2; return 1; }
  ip link set "$iface" up
  ip -6 addr add "$client/64" dev "$iface" nodad
  ip -6 route replace 2001:db8:5::/64 via "$WEIR_LL" dev "$iface" src "$client"
  WEIR_GOOD=$("$bin/weirctl" ssa pick --apl "$WEIR_APL" --rule src-mix --src "$client")
}

app_stop_all() {
  local p
  if [ -n "$WEIR_PID" ]; then kill -INT "$WEIR_PID" 2>/dev/null || true; wait "$WEIR_PID" 2>/dev/null || true; WEIR_PID=""; fi
  for p in "${APP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  APP_PIDS=()
  if [ -n "$NATS_PID" ]; then kill -TERM "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; NATS_PID=""; fi
}
