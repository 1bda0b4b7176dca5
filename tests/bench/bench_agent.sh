#!/usr/bin/env bash
# The purpose-built agent's figures for docs/figures.md, each against its baseline in the same
# run:
#   1. stripped static ferryd per architecture: musl + mbedTLS 3.6 (the presets) against a
#      static glibc + Debian 2.28 build of the same source (built here into build/bench-glibc-*);
#   2. idle RSS, and RSS after a burst of 1,000 TCP connects and 200 garbage connections:
#      the static musl amd64 agent against the host (glibc, 2.28) one;
#   3. status round trips (connect, handshake, hello) with TLS 1.3 against 1.2, with the 3.6
#      pusher, native and to the arm64 agent under qemu-aarch64;
#   4. SHA-256, ChaCha20-Poly1305 and AES-128-GCM throughput of 3.6 against Debian's 2.28,
#      native and under qemu-aarch64 (tests/bench/crypto_bench.c).
# The 256 MiB deploy against the OpenSSH pipeline is bench_deploy.sh's.
# Needs the host, amd64, aarch64 and armhf presets built. Prints figures; exits 1 when a figure
# misses what the issue requires (size, RSS).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=$SRC/build/host/bin FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
N=${BENCH_N:-40}
missed=0
mib() { echo "scale=2; $1/1048576" | bc -l; }

echo "== 1. stripped static ferryd: musl + mbedTLS 3.6 against glibc + mbedTLS 2.28 (same source)"
for p in aarch64 armhf; do
  case $p in
    aarch64) strip=aarch64-linux-gnu-strip tc=aarch64-linux-gnu must=1258291 ;;   # 1.2 MiB
    armhf)   strip=arm-linux-gnueabihf-strip tc=arm-linux-gnueabihf must=943718 ;; # 0.9 MiB
  esac
  b="$SRC/build/bench-glibc-$p"
  if [ ! -x "$b/bin/ferryd" ]; then
    cmake -S "$SRC" -B "$b" -DCMAKE_TOOLCHAIN_FILE="$SRC/toolchains/$tc.cmake" -DCMAKE_BUILD_TYPE=MinSizeRel \
      -DFERRY_STATIC=ON -DFERRY_TESTS=OFF > "$T/glibc-$p.log" 2>&1 || { tail "$T/glibc-$p.log"; exit 1; }
    cmake --build "$b" --target ferryd -j "$(nproc)" >> "$T/glibc-$p.log" 2>&1 || { tail "$T/glibc-$p.log"; exit 1; }
  fi
  $strip -o "$T/musl.$p" "$(cross_bin "$p" ferryd)"
  $strip -o "$T/glibc.$p" "$b/bin/ferryd"
  m=$(stat -c %s "$T/musl.$p") g=$(stat -c %s "$T/glibc.$p")
  printf '%-8s musl %8d bytes (%s MiB)   glibc %8d bytes (%s MiB)   %.2fx   must reach <= %s MiB\n' \
    "$p" "$m" "$(mib "$m")" "$g" "$(mib "$g")" "$(echo "$m/$g" | bc -l)" "$(mib "$must")"
  [ "$m" -le "$must" ] || { echo "   MISSED"; missed=1; }
  python3 "$SRC/tests/bench/mapsize.py" "$SRC/build/$p/ferryd.map" | head -6 | sed 's/^/         /'
done
strip -o "$T/musl.amd64" "$(cross_bin amd64 ferryd)"
printf '%-8s musl %8d bytes (%s MiB)\n' amd64 "$(stat -c %s "$T/musl.amd64")" "$(mib "$(stat -c %s "$T/musl.amd64")")"

echo "== 2. RSS: idle, and after 1,000 TCP connects and 200 garbage connections"
setup_fleet
FERRYD_BIN=$(cross_bin amd64 ferryd) start_agent musl ''
start_agent glibc ''
FERRYD_BIN=$(cross_bin aarch64 ferryd) start_agent a64 '' qemu-aarch64
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
burst() { # PORT: 10 waves of 100 held connections, then 200 sending garbage, all closed
  python3 - "$1" <<'PY'
import os, socket, sys
port = int(sys.argv[1])
def wave(n, garbage):
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if garbage:
            s.sendall(os.urandom(300))
        held.append(s)
    for s in held:
        s.close()
for _ in range(10):
    wave(100, False)
wave(200, True)
PY
}
for who in musl glibc; do
  pid=${PIDS[$([ $who = musl ] && echo 0 || echo 1)]}
  port_var=PORT_$who
  "$FERRY" status --identity "$T/me" --to "127.0.0.1:${!port_var}" > /dev/null   # warm: one full conversation
  idle_fds=$(fds "$pid") idle=$(rss "$pid")
  burst "${!port_var}"
  deadline=$(deadline_in 60)
  until [ "$(fds "$pid")" -le "$idle_fds" ] || past_deadline "$deadline"; do sleep 0.2; done
  after=$(rss "$pid")
  printf '%-6s idle %5d KiB   after the burst %5d KiB (+%d KiB)\n' "$who" "$idle" "$after" $((after - idle))
  if [ $who = musl ]; then
    [ "$idle" -le 2560 ] || { echo "   MISSED: idle RSS over 2.5 MiB"; missed=1; }
    [ $((after - idle)) -le 1024 ] || { echo "   MISSED: more than idle + 1 MiB after the burst"; missed=1; }
  fi
done

echo "== 3. status round trips, TLS 1.3 against 1.2 ($N each, 3.6 pusher)"
F36=$(cross_bin amd64 ferry)
trips() { # PORT [VAR=VALUE] -> ms per round trip
  local port=$1 t0 t1
  shift
  t0=$(date +%s%N)
  for _ in $(seq "$N"); do env "$@" "$F36" status --identity "$T/me" --to "127.0.0.1:$port" > /dev/null; done
  t1=$(date +%s%N)
  echo "scale=1; ($t1 - $t0) / 1000000 / $N" | bc -l
}
for who in musl a64; do
  port_var=PORT_$who
  printf '%-6s TLS 1.3 %6s ms   TLS 1.2 %6s ms\n' "$who" "$(trips "${!port_var}")" "$(trips "${!port_var}" FERRY_TLS_MAX=1.2)"
done

echo "== 4. crypto throughput, mbedTLS 3.6 (this build) against Debian's 2.28"
cc_musl() { # GNU-TRIPLET MUSL-TRIPLET DEPS OUT
  "$1-gcc" -O2 -specs "/usr/lib/$2/musl-gcc.specs" -static -I"$SRC/build/deps/$3/include" \
    -o "$4" "$SRC/tests/bench/crypto_bench.c" -L"$SRC/build/deps/$3/lib" -lmbedcrypto
}
gcc -O2 -o "$T/cb-228" "$SRC/tests/bench/crypto_bench.c" -lmbedcrypto
cc_musl x86_64-linux-gnu x86_64-linux-musl amd64 "$T/cb-36"
aarch64-linux-gnu-gcc -O2 -static -o "$T/cb-228-a64" "$SRC/tests/bench/crypto_bench.c" -lmbedcrypto
cc_musl aarch64-linux-gnu aarch64-linux-musl aarch64 "$T/cb-36-a64"
echo "-- native x86-64 (64 MiB)"; paste <("$T/cb-228" 64) <("$T/cb-36" 64) | column -t -s $'\t'
echo "-- qemu-aarch64, -cpu max (16 MiB)"; paste <(qemu-aarch64 "$T/cb-228-a64" 16) <(qemu-aarch64 "$T/cb-36-a64" 16) | column -t -s $'\t'
exit $missed
