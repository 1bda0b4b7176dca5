#!/usr/bin/env bash
# Fleet figures for docs/figures.md (prints; exits 1 only when the goal is missed):
#  - the pusher's peak RSS pushing an 8 MiB image to 10, 25 and 50 ferryd on loopback, every
#    node in one wave (the worst case for memory), against the issue's goal: at most 64 MiB at
#    50 nodes, growing less than linearly (RSS at 50 under 5x RSS at 10);
#  - wall time of each rollout and how much of what was sent was read from disk (the shared
#    chunk cache), against the naive baseline of one disk read per node;
#  - the same 50 nodes with --canary 1 --max-parallel 25% (five waves).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=${FERRY_BIN:-$SRC/build/host/bin} FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
setup_fleet
build_apps "$T/app"

echo "== starting 50 ferryd on loopback"
echo "nodes:" > "$T/all.yaml"
for i in $(seq -w 1 50); do
  start_agent "n$i" 'runtime: {isolation: none}'
  var="PORT_n$i"
  echo "  - {name: n$i, address: \"127.0.0.1:${!var}\"}" >> "$T/all.yaml"
done

run() { # run NAME NODES FLAGS...: a fresh 8 MiB image each time, so every node needs every byte
  local name=$1 n=$2; shift 2
  mkdir -p "$T/big-$name"
  head -c $((8 << 20)) /dev/urandom > "$T/big-$name/data.bin"
  $MKIMAGE "$T/img-$name" --variant linux/amd64="$T/app/x64,$T/big-$name" > /dev/null
  head -n $((n + 1)) "$T/all.yaml" > "$T/f$n.yaml"
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$T/rss" "$FERRY" push "$T/img-$name" --fleet "$T/f$n.yaml" --identity "$T/me" --app "$name" \
    --settle 0.2 --json "$@" > "$T/$name.json" 2> "$T/$name.err" || { tail "$T/$name.err"; exit 1; }
  t1=$(date +%s.%N)
  local rss ok disk sent
  rss=$(cat "$T/rss")
  read -r ok disk sent < <(python3 -c "
import json; d=json.load(open('$T/$name.json'))
print(sum(n['result']=='deployed' for n in d['nodes']), d['disk_read_bytes'], d['bytes_sent'])")
  printf '%-34s %3d/%-3d deployed  %6.1f s  peak RSS %5.1f MiB  disk read %6.1f MiB of %7.1f MiB sent (%.0f%%; baseline 100%%)\n' \
    "$name: $n nodes $*" "$ok" "$n" "$(echo "$t1 - $t0" | bc)" "$(echo "$rss / 1024" | bc -l)" \
    "$(echo "$disk / 1048576" | bc -l)" "$(echo "$sent / 1048576" | bc -l)" "$(echo "100 * $disk / $sent" | bc -l)"
  echo "$rss" > "$T/rss-$name"
}
echo "== 8 MiB image, one wave"
run w10 10
run w25 25
run w50 50
echo "== 8 MiB image, canary and waves"
run waves50 50 --canary 1 --max-parallel 25%
r10=$(cat "$T/rss-w10") r50=$(cat "$T/rss-w50")
echo "== goal: at most 64 MiB at 50 nodes and less than linear growth"
printf 'RSS at 50 nodes: %.1f MiB (goal <= 64); RSS(50)/RSS(10) = %.2f (linear would be 5.00)\n' \
  "$(echo "$r50 / 1024" | bc -l)" "$(echo "$r50 / $r10" | bc -l)"
[ "$r50" -le $((64 * 1024)) ] && [ $((r50 * 100 / r10)) -lt 500 ] || { echo "goal missed"; exit 1; }
echo "goal met"
