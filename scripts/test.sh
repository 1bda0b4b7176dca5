#!/usr/bin/env bash
# The README's test command: installs what is missing, builds every preset with -Werror and runs
# every test (unit tests natively, under ASan+UBSan, and under qemu-aarch64 / qemu-arm for the
# cross builds; end-to-end tests with the arm64 and armhf agents under qemu), then fuzzes every
# libFuzzer target for FERRY_FUZZ_SECONDS (36: fifteen targets, two at a time, about 4.5 minutes). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/test-rootfs.sh
JOBS=$(nproc)
# The static presets' libraries, built from Debian's sources against musl (scripts/deps.sh; the
# presets' configure step would build them one target after the other): all three targets at
# once, since most of their build is serial configure steps.
mkdir -p build
deps_pids=()
for t in aarch64 armhf amd64; do
  JOBS=1 bash scripts/deps.sh build "$t" > "build/deps-$t.log" 2>&1 &
  deps_pids+=($!)
done
for i in 0 1 2; do
  t=$(echo aarch64 armhf amd64 | cut -d' ' -f$((i + 1)))
  wait "${deps_pids[$i]}" || { cat "build/deps-$t.log"; echo "== building the musl libraries for $t failed"; exit 1; }
  cat "build/deps-$t.log"
done
PRESETS=(host aarch64 armhf asan)   # built and tested
for p in amd64 "${PRESETS[@]}"; do  # amd64: the static x86-64 agent install-agent copies (no tests of its own)
  echo "== build $p (at ${SECONDS} s)"
  log=$(mktemp)
  cmake --preset "$p" -DFERRY_WERROR=ON > "$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
  rm -f "$log"
  cmake --build --preset "$p" -j "$JOBS"
done

export FERRY_REQUIRE_CROSS=1   # the e2e tests must not skip the emulated boards here
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp
passed=0; failed=0; status=0
for p in "${PRESETS[@]}"; do
  echo "== test $p (at ${SECONDS} s)"
  set +e
  ctest --preset "$p" -j "$JOBS" 2>&1 | tee "build/$p/ctest.out"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || status=1
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "build/$p/ctest.out" | tail -1 || true)
  if [ -n "$line" ]; then
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
    n=$(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/')
    passed=$((passed + n - f)); failed=$((failed + f))
  else
    status=1
  fi
done
echo "== fuzz: every target for ${FERRY_FUZZ_SECONDS:-36} s (clang libFuzzer, ASan + UBSan) (at ${SECONDS} s)"
fuzz=ok
bash tests/fuzz/run.sh "${FERRY_FUZZ_SECONDS:-36}" || { fuzz=FAILED; status=1; }
echo "== summary over presets ${PRESETS[*]} (after ${SECONDS} s)"
echo "ctest: $passed passed, $failed failed"
echo "fuzz: $fuzz"
exit $status
