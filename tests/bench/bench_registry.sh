#!/usr/bin/env bash
# Registry figures for docs/figures.md (prints them): 50 ferryd on loopback deploy a fresh 64 MiB
# image (a) streamed from the laptop, as before, and (b) pulled by each node from Debian's
# docker-registry on loopback (TLS, htpasswd; ferry push --via). For each: the wall time, and the
# bytes the laptop sent to the nodes, counted by the kernel (iptables byte counters on the
# agents' ports; the pusher's own bytes_sent beside it). The baseline is (a), in the same run.
# On one machine the registry shares the CPU with 50 agents: the time says little about a real
# fleet, where the registry (or a CDN) is elsewhere; the laptop's bytes are the point.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=${FERRY_BIN:-$SRC/build/host/bin} FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
N=${BENCH_NODES:-50}
setup_fleet
build_apps "$T/app"
start_registry main
R=$REGHOST_main
echo "== starting $N ferryd on loopback"
CHAIN="FERRYB$$"
COUNT=0
if iptables -N "$CHAIN" 2>/dev/null && iptables -I OUTPUT -j "$CHAIN" 2>/dev/null; then
  COUNT=1
  CLEANUP_CMDS+=("iptables -D OUTPUT -j $CHAIN" "iptables -F $CHAIN" "iptables -X $CHAIN")
fi
echo "nodes:" > "$T/fleet.yaml"
for i in $(seq -w 1 "$N"); do
  start_agent "n$i" "runtime: {isolation: none}"$'\n'"registry_ca: $T/reg-main/ca.pem"
  var="PORT_n$i"
  echo "  - {name: n$i, address: \"127.0.0.1:${!var}\"}" >> "$T/fleet.yaml"
  [ $COUNT = 1 ] && iptables -A "$CHAIN" -p tcp -d 127.0.0.1 --dport "${!var}"
done
laptop_bytes() { [ $COUNT = 1 ] && iptables -L "$CHAIN" -v -x -n | awk 'NR > 2 { s += $2 } END { print s + 0 }' || echo 0; }

run() { # run NAME [push flags]: a fresh 64 MiB image each time, so every node needs every byte
  local name=$1; shift
  mkdir -p "$T/big-$name"
  head -c $((64 << 20)) /dev/urandom > "$T/big-$name/data.bin"
  $MKIMAGE "$T/img-$name" --ref 1 --variant linux/amd64="$T/app/x64,$T/big-$name" > /dev/null
  "$FERRY" publish "$T/img-$name:1" "docker://$R/bench/$name:1" --registry-ca "$T/reg-main/ca.pem" > /dev/null
  [ $COUNT = 1 ] && iptables -Z "$CHAIN"
  local t0 t1
  t0=$(date +%s.%N)
  "$FERRY" push "$T/img-$name:1" --fleet "$T/fleet.yaml" --identity "$T/me" --app "$name" --settle 0.2 --timeout 900 --json "$@" \
    > "$T/$name.json" 2> "$T/$name.err" || { tail "$T/$name.err"; exit 1; }
  t1=$(date +%s.%N)
  local ok sent kernel
  read -r ok sent < <(python3 -c "
import json; d=json.load(open('$T/$name.json'))
print(sum(n['result']=='deployed' for n in d['nodes']), sum(n['bytes_sent'] for n in d['nodes']))")
  kernel=$(laptop_bytes)
  printf '%-28s %3d/%-3d deployed  %6.1f s  laptop sent %9.1f MiB (kernel: %9.1f MiB, %7.1f KiB per node)\n' \
    "$name:" "$ok" "$N" "$(echo "$t1 - $t0" | bc)" "$(echo "$sent / 1048576" | bc -l)" "$(echo "$kernel / 1048576" | bc -l)" \
    "$(echo "$kernel / 1024 / $N" | bc -l)"
}
echo "== 64 MiB image to $N nodes"
run streamed
run pulled --via "docker://$R/bench/pulled" --registry-ca "$T/reg-main/ca.pem"
