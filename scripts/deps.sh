#!/usr/bin/env bash
# The libraries the static agents link, built from Debian's source packages against musl.
#
#   scripts/deps.sh fetch           apt-get source every package cmake/deps.lock names, into
#                                   build/deps/src (apt checks each file against the signed
#                                   Sources index; this script checks the .dsc against the lock)
#   scripts/deps.sh build TARGET    build them for TARGET (aarch64, armhf, amd64) into
#                                   build/deps/TARGET/{include,lib}; the cross presets' configure
#                                   step runs this, and it does nothing when the stamp is current;
#                                   a build with the same stamp kept in FERRY_DEPS_CACHE
#                                   (/var/cache/ferry/deps; empty: none) is copied instead
#
# Debian drops a superseded version from its archive. When apt resolves another version than the
# lock names, the new one is taken, one line says so, and the lock is rewritten; a .dsc whose
# hash differs from the lock at the same version is refused.
#
# Every library is built with -ffunction-sections -fdata-sections (the agent's link drops what it
# does not call) and -Os, but mbedTLS and zstd at -O2 (ciphers and the decompressor run at half
# speed at -Os); zstd twice,
# the agent's copy decompression-only; mbedTLS with ferry's protocol/mbedtls_config.h, installed
# as the library's own configuration.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCK=$ROOT/cmake/deps.lock
SRC=$ROOT/build/deps/src
JOBS=${JOBS:-$(nproc)}
CACHE=${FERRY_DEPS_CACHE-/var/cache/ferry/deps} # the machine's copy of what was built, by stamp

say() { echo "deps: $*" >&2; }   # stderr: seen even where a configure step's output is not
die() { echo "deps: $*" >&2; exit 1; }

# lock lines: NAME SUITE VERSION SHA256 (of the .dsc)
lock_entries() { grep -vE '^\s*(#|$)' "$LOCK"; }

fetch_one() {
  local name=$1 suite=$2 want=$3 sum=$4 uris dsc ver got
  uris=$(cd /tmp && apt-get source --print-uris "$name/$suite" 2>/dev/null) ||
    die "apt cannot find the source of $name in $suite: is there a deb-src line for $suite? (scripts/setup.sh adds one)"
  dsc=$(sed -nE "s/^'[^']*' ([^ ]+\.dsc) .*/\1/p" <<< "$uris" | head -1)
  [ -n "$dsc" ] || die "apt gives no .dsc for $name/$suite"
  ver=${dsc#"${name}_"}; ver=${ver%.dsc}
  if [ "$ver" != "$want" ]; then
    say "$name $want is no longer in Debian's $suite; using $ver (cmake/deps.lock updated)"
    sum=""
  fi
  mkdir -p "$SRC/dl"
  if [ ! -f "$SRC/dl/$dsc" ]; then
    (cd "$SRC/dl" && apt-get source -q --download-only "$name/$suite" > /dev/null 2>&1) ||
      die "apt-get source $name/$suite failed"
  fi
  got=$(sha256sum "$SRC/dl/$dsc" | cut -d' ' -f1)
  if [ -n "$sum" ] && [ "$got" != "$sum" ]; then
    die "$dsc has SHA-256 $got, but cmake/deps.lock says $sum for the same version: refusing it"
  fi
  if [ "$ver" != "$want" ] || [ -z "$sum" ]; then
    awk -v n="$name" -v s="$suite" -v v="$ver" -v h="$got" \
      '$1 == n && $2 == s { printf "%-11s %-9s %-22s %s\n", n, s, v, h; next } { print }' "$LOCK" > "$LOCK.new"
    mv "$LOCK.new" "$LOCK"
  fi
  if [ ! -f "$SRC/$name-$ver/.unpacked" ]; then
    rm -rf "$SRC/$name-$ver"
    # dpkg-source checks every file against the .dsc's checksums (the maintainer's signature key
    # is not installed: apt has already checked the .dsc against the signed Sources index).
    (cd "$SRC/dl" && dpkg-source -q -x "$dsc" "$SRC/$name-$ver" > /dev/null 2>&1) || die "unpacking $dsc failed (a file does not match its checksum?)"
    touch "$SRC/$name-$ver/.unpacked"
  fi
  ln -sfn "$name-$ver" "$SRC/$name"
}

fetch() {
  if ! command -v apt-get > /dev/null || ! command -v dpkg-source > /dev/null; then die "needs apt-get and dpkg-source (dpkg-dev)"; fi
  mkdir -p "$SRC"
  # One fetch at a time (the presets may configure at once): the lock file and src/ are shared.
  exec 9> "$SRC/.fetch.lock"
  flock 9
  local name suite ver sum
  while read -r name suite ver sum; do
    if [ ! -f "$SRC/$name-$ver/.unpacked" ] || [ ! -f "$SRC/dl/${name}_$ver.dsc" ] ||
       [ "$(sha256sum "$SRC/dl/${name}_$ver.dsc" | cut -d' ' -f1)" != "$sum" ]; then
      fetch_one "$name" "$suite" "$ver" "$sum"
    else
      ln -sfn "$name-$ver" "$SRC/$name"
    fi
  done < <(lock_entries)
}

# The cross gcc, musl's specs and the kernel headers for TARGET.
target_setup() {
  case "$1" in
    aarch64) GNU=aarch64-linux-gnu; MUSL=aarch64-linux-musl; TC=aarch64-linux-musl
             KDIRS=(/usr/aarch64-linux-gnu/include/linux /usr/aarch64-linux-gnu/include/asm /usr/aarch64-linux-gnu/include/asm-generic) ;;
    armhf)   GNU=arm-linux-gnueabihf; MUSL=arm-linux-musleabihf; TC=arm-linux-musleabihf
             KDIRS=(/usr/arm-linux-gnueabihf/include/linux /usr/arm-linux-gnueabihf/include/asm /usr/arm-linux-gnueabihf/include/asm-generic) ;;
    amd64)   GNU=x86_64-linux-gnu; MUSL=x86_64-linux-musl; TC=x86_64-linux-musl
             KDIRS=(/usr/include/linux /usr/include/x86_64-linux-gnu/asm /usr/include/asm-generic) ;;
    *) die "unknown target '$1' (aarch64, armhf, amd64)" ;;
  esac
  PREFIX=$ROOT/build/deps/$1
  local specs=/usr/lib/$MUSL/musl-gcc.specs
  [ -f "$specs" ] || die "$specs is missing: install musl-dev:${1/aarch64/arm64} (scripts/setup.sh does)"
  mkdir -p "$PREFIX/kernel-include"
  local d
  for d in "${KDIRS[@]}"; do
    [ -d "$d" ] || die "kernel headers $d are missing (linux-libc-dev for the target)"
    ln -sfn "$d" "$PREFIX/kernel-include/$(basename "$d")"
  done
  CC="$GNU-gcc -specs $specs -idirafter $PREFIX/kernel-include"
  CFLAGS="-Os -ffunction-sections -fdata-sections"
  CMAKE_ARGS=(-G Ninja -DCMAKE_TOOLCHAIN_FILE="$ROOT/toolchains/$TC.cmake" -DCMAKE_BUILD_TYPE=MinSizeRel
              -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_INSTALL_LIBDIR=lib
              -DBUILD_SHARED_LIBS=OFF -DCMAKE_POLICY_DEFAULT_CMP0069=NEW -Wno-dev)
  command -v ninja > /dev/null || CMAKE_ARGS=("${CMAKE_ARGS[@]:2}")
}

cmake_dep() { # NAME [cmake args...]
  local name=$1; shift
  local b=$PREFIX/build/$name
  rm -rf "$b"
  cmake -S "$SRC/$name" -B "$b" "${CMAKE_ARGS[@]}" "$@" > "$b.log" 2>&1 || { tail -30 "$b.log"; die "configuring $name failed ($b.log)"; }
  cmake --build "$b" -j "$JOBS" >> "$b.log" 2>&1 || { tail -30 "$b.log"; die "building $name failed ($b.log)"; }
  cmake --install "$b" >> "$b.log" 2>&1 || { tail -30 "$b.log"; die "installing $name failed ($b.log)"; }
}

build_mbedtls() {
  # -O2, not -Os: ChaCha20 and GCM at -Os run at half speed, and the transfers are TLS-bound.
  cmake_dep mbedtls -DCMAKE_BUILD_TYPE=Release -DENABLE_PROGRAMS=OFF -DENABLE_TESTING=OFF -DGEN_FILES=OFF \
    -DUSE_SHARED_MBEDTLS_LIBRARY=OFF -DUSE_STATIC_MBEDTLS_LIBRARY=ON -DMBEDTLS_FATAL_WARNINGS=OFF \
    -DMBEDTLS_CONFIG_FILE="$ROOT/protocol/mbedtls_config.h"
  # Whoever includes the headers sees the configuration the library was built with.
  cp "$ROOT/protocol/mbedtls_config.h" "$PREFIX/include/mbedtls/mbedtls_config.h"
}

build_zstd() {
  local b=$PREFIX/build/zstd v
  rm -rf "$b"; mkdir -p "$b"
  cp -a "$SRC/libzstd/lib" "$b/lib"
  # The pusher and the tests get all of it; ferryd links libzstd_decompress.a.
  for v in full decompress; do
    local extra=()
    [ $v = decompress ] && extra=(ZSTD_LIB_COMPRESSION=0 ZSTD_LIB_DICTBUILDER=0 ZSTD_LIB_DEPRECATED=0)
    # -O2 too: the agent decompresses every layer it receives.
    make -C "$b/lib" -j "$JOBS" libzstd.a CC="$CC" AR="$GNU-ar" CFLAGS="${CFLAGS/-Os/-O2}" ZSTD_LEGACY_SUPPORT=0 \
      HAVE_THREAD=0 ZSTD_NO_ASM=1 "${extra[@]}" > "$b/$v.log" 2>&1 || { tail -30 "$b/$v.log"; die "building zstd ($v) failed"; }
    if [ $v = full ]; then cp "$b/lib/libzstd.a" "$PREFIX/lib/libzstd.a"; else cp "$b/lib/libzstd.a" "$PREFIX/lib/libzstd_decompress.a"; fi
    rm -f "$b/lib/libzstd.a"
  done
  cp "$b/lib/zstd.h" "$b/lib/zstd_errors.h" "$b/lib/zdict.h" "$PREFIX/include/"
}

build_seccomp() {
  local b=$PREFIX/build/libseccomp
  rm -rf "$b"; mkdir -p "$b"
  (cd "$b" && "$SRC/libseccomp/configure" --host="$GNU" --prefix="$PREFIX" --enable-static --disable-shared \
      --disable-python CC="$CC" CFLAGS="$CFLAGS" > configure.log 2>&1) || { tail -30 "$b/configure.log"; die "configuring libseccomp failed"; }
  (make -C "$b/src" -j "$JOBS" libseccomp.la && make -C "$b/src" install-libLTLIBRARIES && make -C "$b/include" install) \
    > "$b/make.log" 2>&1 || { tail -30 "$b/make.log"; die "building libseccomp failed"; }
}

build() {
  local target=$1
  target_setup "$target"
  # Rebuilt when the lock, this script, ferry's mbedTLS configuration or the toolchain change.
  local stamp
  stamp=$({ cat "$LOCK" "$ROOT/scripts/deps.sh" "$ROOT/protocol/mbedtls_config.h" "$ROOT/toolchains/musl.cmake" \
              "$ROOT/toolchains/$TC.cmake"; "$GNU-gcc" -dumpfullversion; cat "/usr/lib/$MUSL/musl-gcc.specs";
            dpkg-query -W -f='${Version}' "musl-dev:${1/aarch64/arm64}" 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
  if [ -f "$PREFIX/stamp" ] && [ "$(cat "$PREFIX/stamp")" = "$stamp" ]; then return 0; fi
  # Built before on this machine (another clone, a CI run) from exactly these inputs: the same
  # libraries, from the machine's cache (FERRY_DEPS_CACHE; empty: none).
  local cached="${CACHE:+$CACHE/$target-$stamp}"
  if [ -n "$cached" ] && [ -f "$cached/stamp" ] && [ "$(cat "$cached/stamp")" = "$stamp" ]; then
    rm -rf "${PREFIX:?}/lib" "${PREFIX:?}/include" "${PREFIX:?}/stamp"
    mkdir -p "$PREFIX"
    cp -a "$cached/lib" "$cached/include" "$PREFIX/"
    cp "$cached/stamp" "$PREFIX/stamp"
    say "the musl libraries for $target from $cached (built before from the same lock, script, configuration and toolchain)"
    return 0
  fi
  # The sources the lock names, unpacked (a lock moved on since: fetch them first).
  local name suite ver sum
  while read -r name suite ver sum; do
    if [ "$(readlink "$SRC/$name" 2>/dev/null)" != "$name-$ver" ] || [ ! -f "$SRC/$name-$ver/.unpacked" ]; then
      fetch
      break
    fi
  done < <(lock_entries)
  say "building the musl libraries for $target into build/deps/$target (once; a few minutes)"
  rm -rf "${PREFIX:?}/lib" "${PREFIX:?}/include" "${PREFIX:?}/build" "${PREFIX:?}/stamp"
  mkdir -p "$PREFIX/lib" "$PREFIX/include" "$PREFIX/build"
  build_mbedtls
  cmake_dep libuv1 -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF
  build_zstd
  cmake_dep libyaml -DBUILD_TESTING=OFF -DINSTALL_CMAKE_DIR=lib/cmake/yaml
  cmake_dep jansson -DJANSSON_EXAMPLES=OFF -DJANSSON_BUILD_DOCS=OFF -DJANSSON_WITHOUT_TESTS=ON \
    -DJANSSON_BUILD_SHARED_LIBS=OFF -DUSE_URANDOM=ON
  build_seccomp
  rm -rf "$PREFIX/build"   # the objects; the logs of a failed build stay
  echo "$stamp" > "$PREFIX/stamp"
  say "built for $target: $(cd "$PREFIX/lib" && echo ./*.a | sed 's#\./##g')"
  if [ -n "$cached" ] && mkdir -p "$CACHE" 2>/dev/null; then # kept whole or not at all
    local tmp="$cached.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp" && cp -a "$PREFIX/lib" "$PREFIX/include" "$PREFIX/stamp" "$tmp/" &&
      { rm -rf "$cached"; mv "$tmp" "$cached"; } || rm -rf "$tmp"
  fi
}

case "${1:-}" in
  fetch) fetch ;;
  build) [ $# -eq 2 ] || die "usage: scripts/deps.sh build aarch64|armhf|amd64"; build "$2" ;;
  *) echo "usage: scripts/deps.sh fetch | build aarch64|armhf|amd64" >&2; exit 2 ;;
esac
