#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan, -DFERRY_FUZZ=ON in build/fuzz) and fuzzes
# each for SECONDS (default 60), two at a time, starting from tests/fuzz/corpus/<target>; new
# inputs stay in build/fuzz/corpus-<target>. Prints the executions per target and exits 1 when a
# target crashed: its input is left in build/fuzz/ (fix the bug, add the input to the corpus).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_EACH=${1:-60}
OUT=$SRC/build/fuzz
mkdir -p "$OUT"
cmake -S "$SRC" -B "$OUT" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DFERRY_FUZZ=ON \
  -DCMAKE_C_FLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" > "$OUT/configure.log" 2>&1 || { cat "$OUT/configure.log"; exit 1; }
TARGETS=(frame wire oci tar yaml selector unpack config recipe fleet trust httpauth imageref http mqtt)
cmake --build "$OUT" -j "$(nproc)" --target "${TARGETS[@]/#/fuzz_}" > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
run_one() {
  local t=$1
  mkdir -p "$OUT/corpus-$t" "$OUT/art-$t"
  (cd "$OUT/art-$t" && "$OUT/bin/fuzz_$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=20 -rss_limit_mb=2048 \
    "$OUT/corpus-$t" "$SRC/tests/fuzz/corpus/$t" > "$OUT/fuzz-$t.log" 2>&1)
}
status=0
for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
  pids=()
  for t in "${TARGETS[@]:i:2}"; do run_one "$t" & pids+=($!); done
  for k in "${!pids[@]}"; do
    t=${TARGETS[$((i + k))]}
    if wait "${pids[$k]}"; then
      printf 'fuzz %-9s %s\n' "$t" "$(grep -E '^Done [0-9]+ runs' "$OUT/fuzz-$t.log" | tail -1)"
    else
      status=1
      echo "fuzz $t: FAILED — see $OUT/fuzz-$t.log and the input in $OUT/art-$t/"
      grep -E 'ERROR|SUMMARY|runtime error' "$OUT/fuzz-$t.log" | head -5
    fi
  done
done
exit $status
