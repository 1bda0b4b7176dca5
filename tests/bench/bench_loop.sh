#!/usr/bin/env bash
# Does the agent's loop stay free while a big deploy streams in? Status round trips (a `ferry
# status` from process start to answer: TLS handshake, hello, facts) to one ferryd, first idle
# (the baseline, same run), then while a 256 MiB deploy streams to the same agent. The blob
# bytes are written and hashed on libuv's worker pool with the connection paused meanwhile, so
# the goal is a median under 50 ms during the deploy. Prints the figures; exits 1 when the goal
# is missed. FERRY_BENCH_MIB changes the 256.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=${FERRY_BIN:-$SRC/build/host/bin} FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
MIB=${FERRY_BENCH_MIB:-256}
setup_fleet
build_apps "$T/app"
mkdir -p "$T/big"
head -c $((MIB << 20)) /dev/urandom > "$T/big/data.bin"
$MKIMAGE "$T/img" --variant linux/amd64="$T/app/x64,$T/big" --compress none > /dev/null
start_agent node 'runtime: {isolation: none}'
N="node@127.0.0.1:$PORT_node"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
one() { local t0; t0=$(ms); "$FERRY" status --identity "$T/me" --to "$N" > /dev/null; echo $(( $(ms) - t0 )) >> "$1"; }
stats() { # stats FILE -> "n median p90 max"
  sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%d %d %d %d\n", NR, v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)], v[NR] }'
}

for _ in $(seq 1 30); do one "$T/idle.ms"; done
"$FERRY" push --identity "$T/me" "$T/img" --to "$N" --app big --settle 0.2 > "$T/push.out" 2>&1 &
PUSH=$!
started() { grep -q 'app big: plan from' "$T/node.log"; }
wait_for 120 "the deploy to start" started
t0=$(ms)
while kill -0 "$PUSH" 2>/dev/null && ! grep -q 'app big: release .* unpacked' "$T/node.log"; do one "$T/busy.ms"; done
t1=$(ms)
wait "$PUSH" || { cat "$T/push.out"; fail "the 256 MiB deploy"; }
[ -s "$T/busy.ms" ] || fail "no status round trip during the transfer"
read -r n0 med0 p900 max0 < <(stats "$T/idle.ms")
read -r n1 med1 p901 max1 < <(stats "$T/busy.ms")
printf 'status round trip, idle agent (baseline): median %4d ms  p90 %4d ms  max %4d ms  (%d calls)\n' "$med0" "$p900" "$max0" "$n0"
printf 'status round trip, during a %d MiB deploy: median %4d ms  p90 %4d ms  max %4d ms  (%d calls over %.1f s of transfer)\n' \
  "$MIB" "$med1" "$p901" "$max1" "$n1" "$(echo "($t1 - $t0) / 1000" | bc -l)"
if [ "$med1" -lt 50 ]; then echo "goal met: median under 50 ms while the deploy streams"; else echo "GOAL MISSED: median $med1 ms >= 50 ms"; exit 1; fi
