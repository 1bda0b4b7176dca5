#!/usr/bin/env bash
# Foundation figures for docs/figures.md: stripped static ferryd size per architecture (and what
# dominates it), idle RSS of the host ferryd, and the status round trip (connect + TLS
# handshake + hello) on loopback, native and with the arm64 agent under qemu-aarch64.
# Needs the host, aarch64 and armhf presets built. Prints figures; asserts nothing.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=$SRC/build/host/bin FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
N=${BENCH_N:-40}

echo "== stripped static ferryd"
for p in aarch64 armhf; do
  case $p in aarch64) strip=aarch64-linux-gnu-strip ;; armhf) strip=arm-linux-gnueabihf-strip ;; esac
  bin=$(cross_bin "$p" ferryd)
  $strip -o "$T/ferryd.$p" "$bin"
  bytes=$(stat -c %s "$T/ferryd.$p")
  printf '%-8s %8d bytes (%.2f MiB)   goal for arm64: < 1.5 MiB\n' "$p" "$bytes" "$(echo "$bytes/1048576" | bc -l)"
  python3 "$SRC/tests/bench/mapsize.py" "$SRC/build/$p/ferryd.map" | head -6 | sed 's/^/         /'
done

setup_fleet
start_agent bench-host ''
FERRYD_BIN=$(cross_bin aarch64 ferryd) start_agent bench-a64 '' qemu-aarch64
PID=${PIDS[0]}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
echo "== idle RSS of the host ferryd (goal: < 4 MiB)"
echo "after start:         $(rss "$PID") KiB"
for _ in 1 2 3 4 5; do "$FERRY" status --identity "$T/me" --to 127.0.0.1:$PORT_bench_host > /dev/null; done
echo "after 5 status calls: $(rss "$PID") KiB"

ms_loop() { # command...: mean wall ms over N runs
  local s e
  s=$(date +%s%N)
  for _ in $(seq 1 "$N"); do "$@" > /dev/null; done
  e=$(date +%s%N)
  echo $(( (e - s) / N / 1000 ))
}
echo "== status round trip on loopback, mean of $N (microseconds)"
base=$(ms_loop "$FERRY" --version)
host=$(ms_loop "$FERRY" status --identity "$T/me" --to 127.0.0.1:$PORT_bench_host)
a64=$(ms_loop "$FERRY" status --identity "$T/me" --to 127.0.0.1:$PORT_bench_a64)
echo "ferry --version (process start, the baseline): $base us"
echo "status, host ferryd:                 $host us  (minus start: $((host - base)) us)"
echo "status, arm64 ferryd under qemu:     $a64 us  (minus start: $((a64 - base)) us)"
