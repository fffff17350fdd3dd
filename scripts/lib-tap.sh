# Shared by scripts/demo-tap.sh and scripts/bench-terminator.sh (sourced, not run):
# start weir-dp on a TAP device with one terminator worker and the `static` adapter, and
# give the host side a client address and a route to the service prefix via weir's
# link-local address (not on-link, so the kernel resolves one neighbour, weir, instead of
# every service address).
#
# weir_tap_start BIN RUNDIR IFACE CLIENT   sets WEIR_PID and WEIR_GOOD (the conforming
#                                          destination for CLIENT, from `weirctl ssa pick`)

# weir's link-local address: EUI-64 of its MAC 02:77:65:69:72:01.
WEIR_MAC=02:77:65:69:72:01
WEIR_LL=fe80::77:65ff:fe69:7201
WEIR_APL="2:2001:db8:5::/64"

weir_tap_start() {
  local bin=$1 run=$2 iface=$3 client=$4
  cat > "$run/dp.toml" <<TOML
[service]
apl = "$WEIR_APL"

[dataplane]
workers = 1
control_socket = "$run/dp.sock"

[port]
kind = "tap"
name = "$iface"
mac = "$WEIR_MAC"

[terminator]
enabled = true

[terminator.adapter]
kind = "static"
body = "hello from weir\n"
TOML
  "$bin/weir-dp" run --config "$run/dp.toml" --json >"$run/stats.json" 2>"$run/dp.log" &
  WEIR_PID=$!
  for _ in $(seq 100); do [ -e "/sys/class/net/$iface" ] && break; sleep 0.05; done
  [ -e "/sys/class/net/$iface" ] || { cat "$run/dp.log" >&2; return 1; }
  ip link set "$iface" up
  ip -6 addr add "$client/64" dev "$iface" nodad
  ip -6 route replace 2001:db8:5::/64 via "$WEIR_LL" dev "$iface"
  WEIR_GOOD=$("$bin/weirctl" ssa pick --apl "$WEIR_APL" --rule src-mix --src "$client")
}
