#!/usr/bin/env bash
# Build and field-test figures (prints, asserts nothing): the cross build time of the example for
# linux/arm64 against the native linux/amd64 build, and `ferry test` against running
# qemu-aarch64 by hand on the same binary (goal: within 10% + 100 ms).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=${FERRY_BIN:-$SRC/build/host/bin} FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
N=${BENCH_N:-10}
cp -r "$SRC/examples/hello-svc" "$T/src"
secs() { python3 -c "import time; print(time.time())"; }
build_time() { # platform
  local total=0 t0 t1
  for _ in $(seq 1 3); do
    rm -rf "$T/src/.ferry-build" "$T/out"
    t0=$(secs); "$FERRY" build -f "$T/src/ferry.yaml" -o "$T/out" --platform "$1" > /dev/null; t1=$(secs)
    total=$(python3 -c "print($total + $t1 - $t0)")
  done
  python3 -c "print(round($total / 3, 3))"
}
A=$(build_time linux/amd64)
B=$(build_time linux/arm64)
echo "build of examples/hello-svc (configure + compile + pack, mean of 3): amd64 ${A}s, arm64 (cross) ${B}s, ratio $(python3 -c "print(round($B / $A, 2))")"
"$FERRY" build -f "$T/src/ferry.yaml" -o "$T/img" > /dev/null
ROOT=$T/root; mkdir -p "$ROOT"
"$FERRY" test "$T/img:1.0.0" --platform linux/arm64 > /dev/null
layer=$(python3 -c "
import json; d='$T/img'
ix=json.load(open(d+'/index.json')); n=json.load(open(d+'/blobs/sha256/'+ix['manifests'][0]['digest'][7:]))
m=[x for x in n['manifests'] if x['platform']['architecture']=='arm64'][0]
man=json.load(open(d+'/blobs/sha256/'+m['digest'][7:])); print(d+'/blobs/sha256/'+man['layers'][0]['digest'][7:])")
zstd -dc "$layer" | tar -x -C "$ROOT"
t0=$(secs); for _ in $(seq 1 "$N"); do qemu-aarch64 -L "$ROOT" "$ROOT/app/hello-svc" --self-test > /dev/null; done; t1=$(secs)
HAND=$(python3 -c "print(round(($t1 - $t0) / $N * 1000, 1))")
t0=$(secs); for _ in $(seq 1 "$N"); do "$FERRY" test "$T/img:1.0.0" --platform linux/arm64 > /dev/null; done; t1=$(secs)
FT=$(python3 -c "print(round(($t1 - $t0) / $N * 1000, 1))")
echo "arm64 self-test, mean of $N: qemu-aarch64 by hand ${HAND} ms, ferry test (unpack + run + clean up) ${FT} ms; overhead $(python3 -c "print(round($FT - $HAND, 1))") ms (goal: within 10% + 100 ms = $(python3 -c "print(round($HAND * 1.1 + 100, 1))") ms)"
