#!/usr/bin/env bash
# A cluster of weir hosts in Linux network namespaces (root): a router (BIRD 2 with ECMP
# `merge paths` and BFD, etcd), three weir hosts (each: weir-dp on a TAP device, weir-cp
# with [cluster], BIRD announcing the routes weir-cp writes) and a client namespace with
# many client addresses from different /64s. Used by scripts/demo-cluster.sh and by the
# end-to-end tests (controlplane/cp/tests/cluster_e2e.rs).
#
#   cluster-lab.sh up DIR      start everything, wait until the cluster is assigned and the
#                              router has an ECMP route over the three hosts
#   cluster-lab.sh down DIR    stop every process it started (by PID) and delete the
#                              namespaces; safe to run twice, and after a failed `up`
#
# Environment: WEIR_BIN (folder with weir-dp, weir-cp, weirctl; default target/release),
# LAB_HOSTS (3), LAB_CLIENTS (256 client /64s), LAB_DRAIN_S (10), LAB_LEASE_TTL_S (3).
#
#   client ── router ── h1 … h3         (veth pairs; IPv6 documentation addresses)
#   client 2001:db8:c::2, client sources 2001:db8:c000:X::1 (X = 0 … LAB_CLIENTS-1)
#   router 2001:db8:c::1, 2001:db8:100:N::1, etcd on 2001:db8:ffff::1 (its loopback)
#   host N eth0 2001:db8:100:N::2, handover address 2001:db8:77::N
#   service 2001:db8:5::/64, 16384 slices
#
# How a host namespace reaches its weir-dp: weir-dp creates the TAP `weir0` *inside* the
# host namespace, and the host's kernel is the router between the uplink (eth0) and weir:
# the service prefix and the handover address are routed via weir's link-local address on
# weir0 (so the kernel resolves one neighbour, weir, not every service address), and
# weir's replies go back to the kernel (weir answers to the MAC it heard from) and out of
# eth0 by the default route. The host kernel forwards IPv6 (forwarding=1); BIRD on the
# host only announces (no kernel protocol), so its `unreachable` routes never reach the
# host's FIB. Rejected: moving the TAP into the router namespace or bridging it to the
# veth (the host namespace would then hold nothing but BIRD, and BFD would watch a link
# that stays up when weir-dp dies).
#
# Every PID is recorded in DIR/pids; `down` kills them, waits, and removes the namespaces.
set -euo pipefail

cmd=${1:-}
D=${2:-}
[ -n "$cmd" ] && [ -n "$D" ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
BIN=${WEIR_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
HOSTS=${LAB_HOSTS:-3}
CLIENTS=${LAB_CLIENTS:-256}
DRAIN_S=${LAB_DRAIN_S:-10}
TTL_S=${LAB_LEASE_TTL_S:-3}
APL="2:2001:db8:5::/64"
SVC=2001:db8:5::/64
ETCD='http://[2001:db8:ffff::1]:2379'
WEIR_LL=fe80::77:65ff:fe69:7201

# Namespace names are unique per lab (several labs, or another engineer's, may run).
if [ -f "$D/tag" ]; then T=$(cat "$D/tag"); else T=""; fi
ns_r() { echo "${T}r"; }
ns_c() { echo "${T}c"; }
ns_h() { echo "${T}h$1"; }

log() { printf '[lab %s] %s\n' "$(date +%T.%3N)" "$*" >&2; }

bg() {  # bg NAME NS CMD...: start in NS, record the PID (ip netns exec execs: $! is the daemon)
  local name=$1 ns=$2; shift 2
  ip netns exec "$ns" "$@" >"$D/$name.log" 2>&1 &
  echo "$! $name" >>"$D/pids"
}

pid_of() { awk -v n="$1" '$2 == n { print $1 }' "$D/pids" | tail -1; }

down() {
  [ -d "$D" ] || return 0
  if [ -f "$D/pids" ]; then
    local pids
    pids=$(awk '{ print $1 }' "$D/pids")
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
      local alive=""
      for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
      [ -z "$alive" ] && break
      sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$D/pids"
  fi
  if [ -n "$T" ]; then
    for ns in "$(ns_c)" "$(ns_r)" $(for n in $(seq "$HOSTS"); do ns_h "$n"; done); do
      ip netns del "$ns" 2>/dev/null || true
    done
  fi
  rm -rf "$D/etcd-data"
}

topology() {
  for ns in "$(ns_c)" "$(ns_r)" $(for n in $(seq "$HOSTS"); do ns_h "$n"; done); do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
      net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
      net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1
  done
  local r c
  r=$(ns_r); c=$(ns_c)
  # Deterministic 5-tuple ECMP (RECIPE: policy 3, fields src,dst,proto,sport,dport).
  ip netns exec "$r" sysctl -qw net.ipv6.conf.all.forwarding=1 \
    net.ipv6.fib_multipath_hash_policy=3 net.ipv6.fib_multipath_hash_fields=0x0037
  ip -n "$r" addr add 2001:db8:ffff::1/128 dev lo
  ip link add r-client netns "$r" type veth peer name eth0 netns "$c"
  ip -n "$r" addr add 2001:db8:c::1/64 dev r-client nodad
  ip -n "$c" addr add 2001:db8:c::2/64 dev eth0 nodad
  ip -n "$r" link set r-client up
  ip -n "$c" link set eth0 up
  ip -n "$c" -6 route add default via 2001:db8:c::1
  ip -n "$r" -6 route add 2001:db8:c000::/48 via 2001:db8:c::2
  {
    for i in $(seq 0 $((CLIENTS - 1))); do
      printf 'address add 2001:db8:c000:%x::1/64 dev eth0 nodad\n' "$i"
    done
  } | ip -n "$c" -batch -
  for n in $(seq "$HOSTS"); do
    local h
    h=$(ns_h "$n")
    ip netns exec "$h" sysctl -qw net.ipv6.conf.all.forwarding=1
    ip link add "r-h$n" netns "$r" type veth peer name eth0 netns "$h"
    ip -n "$r" addr add "2001:db8:100:$n::1/64" dev "r-h$n" nodad
    ip -n "$h" addr add "2001:db8:100:$n::2/64" dev eth0 nodad
    ip -n "$r" link set "r-h$n" up
    ip -n "$h" link set eth0 up
    ip -n "$h" -6 route add default via "2001:db8:100:$n::1"
  done
}

router_up() {
  local r
  r=$(ns_r)
  cat >"$D/router-bird.conf" <<CONF
router id 0.0.0.100;
protocol device { scan time 5; }
protocol kernel kfib {
  ipv6 { import none; export all; };
  merge paths on limit 16;
}
protocol bfd { interface "r-h*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
template bgp hosts {
  local as 65000;
  hold time 3; connect retry time 1; error wait time 1, 10;
  bfd on;
  ipv6 { import all; export none; };
}
CONF
  for n in $(seq "$HOSTS"); do
    echo "protocol bgp h$n from hosts { neighbor 2001:db8:100:$n::2 as $((65000 + n)); }" >>"$D/router-bird.conf"
  done
  ip netns exec "$r" bird -p -c "$D/router-bird.conf"
  bg router-bird "$r" bird -f -c "$D/router-bird.conf" -s "$D/router-bird.ctl" -P "$D/router-bird.pidf"
  bg etcd "$r" etcd --name s1 --data-dir "$D/etcd-data" \
    --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls 'http://[::1]:2380' --initial-advertise-peer-urls 'http://[::1]:2380' \
    --initial-cluster 's1=http://[::1]:2380' --logger zap --log-outputs stderr --log-level warn
}

host_up() {  # host_up N
  local n=$1 h H
  h=$(ns_h "$n"); H="$D/h$n"
  mkdir -p "$H"
  chmod 700 "$H"
  cat >"$H/dp.toml" <<TOML
[service]
apl = "$APL"

[dataplane]
workers = 1
control_socket = "$H/dp.sock"

[port]
kind = "tap"
name = "weir0"

[limits]
flow_table_capacity = 65536
rate_table_capacity = 4096

[terminator]
enabled = true
shards = 64
max_connections = 8192
idle_timeout_s = 30
pin = false

[terminator.adapter]
kind = "static"
body = "h$n\n"
TOML
  cat >"$H/cp.toml" <<TOML
[service]
apl = "$APL"

[dataplane]
workers = 1

[control]
socket = "$H/cp.sock"
prometheus = ""
poll_ms = 200
dataplanes = [{ name = "dp", socket = "$H/dp.sock" }]

[cluster]
service = "lab"
host = "h$n"
etcd = ["$ETCD"]
bird_socket = "$H/bird.ctl"
bird_include = "$H/routes.conf"
handover_addr = "2001:db8:77::$n"
drain_s = $DRAIN_S
lease_ttl_s = $TTL_S
TOML
  # BIRD starts with no routes; weir-cp rewrites the include and runs `birdc configure`.
  printf 'protocol static weir {\n  ipv6;\n}\n' >"$H/routes.conf"
  cat >"$H/bird.conf" <<CONF
router id 0.0.0.$n;
protocol device {}
include "$H/routes.conf";
protocol bfd { interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp up {
  local as $((65000 + n));
  neighbor 2001:db8:100:$n::1 as 65000;
  hold time 3; connect retry time 1; error wait time 1, 10;
  bfd on;
  ipv6 { import none; export where proto = "weir"; };
}
CONF
  ip netns exec "$h" bird -p -c "$H/bird.conf"
  bg "h$n-dp" "$h" env RUST_LOG=warn "$BIN/weir-dp" run --config "$H/dp.toml"
  for _ in $(seq 100); do
    ip netns exec "$h" test -e /sys/class/net/weir0 && break
    sleep 0.05
  done
  ip netns exec "$h" test -e /sys/class/net/weir0 || { log "h$n: weir-dp did not create weir0"; cat "$D/h$n-dp.log" >&2; return 1; }
  ip -n "$h" link set weir0 up
  ip -n "$h" -6 route replace "$SVC" via "$WEIR_LL" dev weir0
  ip -n "$h" -6 route replace "2001:db8:77::$n/128" via "$WEIR_LL" dev weir0
  bg "h$n-bird" "$h" bird -f -c "$H/bird.conf" -s "$H/bird.ctl" -P "$H/bird.pidf"
  bg "h$n-cp" "$h" env RUST_LOG=info "$BIN/weir-cp" --config "$H/cp.toml"
}

nexthops() { ip -n "$(ns_r)" -6 route show "$SVC" | grep -c 'nexthop via' || true; }

wait_ready() {  # every host owns slices, no handover, and the router has one nexthop per host
  local want=$HOSTS i
  for i in $(seq 300); do
    local ok=1
    [ "$(nexthops)" = "$want" ] || ok=0
    if [ $ok = 1 ]; then
      local st
      st=$("$BIN/weirctl" --socket "$D/h1/cp.sock" --json cluster status 2>/dev/null) || ok=0
      if [ $ok = 1 ]; then
        echo "$st" | python3 -c '
import json, sys
v = json.load(sys.stdin)
owners = [h for h in v["hosts"] if h["live"] and h["slices"] > 0]
sys.exit(0 if v["epoch"] > 0 and len(owners) == int(sys.argv[1]) and not v["handovers"] else 1)' "$want" || ok=0
      fi
    fi
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  log "the cluster did not become ready in 30 s"
  ip -n "$(ns_r)" -6 route >&2 || true
  "$BIN/weirctl" --socket "$D/h1/cp.sock" cluster status >&2 || true
  return 1
}

case "$cmd" in
  up)
    mkdir -p "$D"
    chmod 700 "$D"
    [ -f "$D/tag" ] || echo "wl$(( $$ % 100000 ))" >"$D/tag"
    T=$(cat "$D/tag")
    : >"$D/pids"
    # A failure half way leaves nothing behind: everything started so far is stopped.
    trap 'rc=$?; if [ $rc -ne 0 ]; then log "up failed (status $rc); tearing down"; down; fi' EXIT
    for t in "$BIN/weir-dp" "$BIN/weir-cp" "$BIN/weirctl"; do
      [ -x "$t" ] || { echo "$0: $t is missing (cargo build --release)" >&2; exit 1; }
    done
    for t in bird birdc etcd ip; do
      command -v "$t" >/dev/null || { echo "$0: needs $t (apt-get install bird2 etcd-server iproute2)" >&2; exit 1; }
    done
    log "namespaces ${T}r, ${T}c, ${T}h1..${T}h$HOSTS"
    topology
    router_up
    for n in $(seq "$HOSTS"); do host_up "$n"; done
    wait_ready
    trap - EXIT
    log "ready: $(nexthops) ECMP nexthops for $SVC"
    ;;
  down)
    down
    ;;
  *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
