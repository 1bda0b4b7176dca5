#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and fuzzes each for SECONDS (default 60),
# starting from tests/fuzz/corpus/<target>; new inputs stay in build/fuzz/corpus-<target>.
# A crash leaves its input in build/fuzz/: fix it and add the input to the seed corpus.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_EACH=${1:-60}
OUT=$SRC/build/fuzz
mkdir -p "$OUT"
[ -f "$SRC/build/host/protocol/boards_builtin.c" ] || { cmake --preset host > /dev/null && cmake --build --preset host > /dev/null; }
P=$SRC/protocol/src
for t in frame oci tar yaml selector; do
  clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I"$SRC/protocol/include" -o "$OUT/fuzz_$t" \
    "$SRC/tests/fuzz/fuzz_$t.c" "$P"/error.c "$P"/buf.c "$P"/frame.c "$P"/platform.c "$P"/yaml.c "$P"/digest.c "$P"/oci.c \
    "$P"/tar.c "$P"/board.c "$P"/selector.c "$SRC/build/host/protocol/boards_builtin.c" -lyaml -ljansson -lmbedcrypto
  mkdir -p "$OUT/corpus-$t"
  (cd "$OUT" && ./fuzz_$t -max_total_time="$SECONDS_EACH" -max_len=65536 "corpus-$t" "$SRC/tests/fuzz/corpus/$t" 2>&1 | grep -E "^Done|ERROR|SUMMARY" | sed "s/^/$t: /")
done
