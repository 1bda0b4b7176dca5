#!/usr/bin/env bash
# Installs everything ferry needs on Debian 12, from Debian's packages only.
# Safe to run twice: it installs only what is missing.
#
# Debian's mirrors are sometimes mid-sync: one architecture's index of a suite fails to download
# ("File has unexpected size … Mirror sync in progress?"). apt then leaves that suite out for the
# foreign architectures while amd64 keeps its newer versions, and a Multi-Arch: same library
# (libzstd1, libc6…) cannot have two versions at once: "you have held broken packages". So:
#   1. the update is retried;
#   2. for every library needed on more than one architecture, the highest version that every
#      one of those architectures can get is chosen, and pinned (pkg:arch=version) when it is
#      not what apt would pick by itself;
#   3. one line says what was pinned and why.
#
# For the test (tests/setup/test_setup_apt.sh) the whole of it can run against another apt state:
#   FERRY_APT_OPTS       extra options for apt-get/apt-cache (-o Dir::State=… and so on)
#   FERRY_DPKG_ADMINDIR  the dpkg database to read what is installed from
#   FERRY_SETUP_SIMULATE=1  no update, no dpkg --add-architecture, `apt-get -s install`, and
#                        every package counts as missing
#
# The static agents are built from Debian's source packages (scripts/deps.sh, cmake/deps.lock):
# a deb-src entry for bookworm and trixie (mbedTLS 3.6 comes from trixie's sources; no binary
# package is taken from trixie) is added to /etc/apt/sources.list.d/ferry-src.sources, and the
# sources are fetched into build/deps/src at the end.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
SIMULATE=${FERRY_SETUP_SIMULATE:-0}
read -r -a APT_OPTS <<< "${FERRY_APT_OPTS:-}"
DPKG_QUERY=(dpkg-query)
[ -n "${FERRY_DPKG_ADMINDIR:-}" ] && DPKG_QUERY+=(--admindir="$FERRY_DPKG_ADMINDIR")
NATIVE=$(dpkg --print-architecture)
FOREIGN=(arm64 armhf)

HOST_PKGS=(
  build-essential cmake pkg-config ninja-build git ca-certificates
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf
  libc6-dev-arm64-cross libc6-dev-armhf-cross
  qemu-user
  libuv1-dev libmbedtls-dev libzstd-dev libyaml-dev libjansson-dev zlib1g-dev libseccomp-dev
  openssl zstd tar coreutils procps python3 iproute2 openssh-client openssh-server
  skopeo buildah clang time bc lintian fakeroot dpkg-dev valgrind shellcheck mmdebstrap busybox-static
  musl-dev musl-dev:arm64 musl-dev:armhf gperf iptables
  libcurl4-openssl-dev curl docker-registry apache2-utils mosquitto mosquitto-clients
)
# (musl-dev for arm64/armhf stays out of CROSS_PKGS: it shares no library with the native side,
# and its gcc dependency would drag the cross compilers' libraries into the version pins.)
CROSS_PKGS=()
for arch in "${FOREIGN[@]}"; do
  CROSS_PKGS+=("libuv1-dev:$arch" "libmbedtls-dev:$arch" "libzstd-dev:$arch"
               "libyaml-dev:$arch" "libjansson-dev:$arch" "libseccomp-dev:$arch")
done

apt_get() { $SUDO apt-get "${APT_OPTS[@]}" "$@"; }
apt_cache() { apt-cache "${APT_OPTS[@]}" "$@"; }

# status PKG[:ARCH] -> "installed" or something else
pkg_status() {
  "${DPKG_QUERY[@]}" -W -f='${db:Status-Status}' "$1" 2>/dev/null || true
}

missing=()
for p in "${HOST_PKGS[@]}" "${CROSS_PKGS[@]}"; do
  if [ "$SIMULATE" = 1 ]; then missing+=("$p"); continue; fi
  case "$p" in *:*) q="$p" ;; *) q="$p:$NATIVE" ;; esac
  # Architecture-independent packages (cmake, git…) answer only to their bare name.
  st=$(pkg_status "$q")
  case "$p" in *:*) ;; *) [ -n "$st" ] || st=$(pkg_status "$p") ;; esac
  [ "$st" = "installed" ] || missing+=("$p")
done

# The deb-src entry, then the sources of what the static agents link.
SRC_LIST=/etc/apt/sources.list.d/ferry-src.sources
sources_ready() {
  apt-cache "${APT_OPTS[@]}" showsrc mbedtls 2>/dev/null | grep '^Version: 3\.6\.' > /dev/null
}
fetch_sources() {
  [ "$SIMULATE" = 1 ] && return 0
  if [ ! -f "$SRC_LIST" ]; then
    printf '%s\n' "# ferry: the source packages its static agents are built from (scripts/deps.sh)" \
      "Types: deb-src" "URIs: http://deb.debian.org/debian" "Suites: bookworm trixie" "Components: main" \
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" | $SUDO tee "$SRC_LIST" > /dev/null
    echo "setup: added $SRC_LIST (deb-src for bookworm and trixie)"
  fi
  if ! sources_ready; then
    $SUDO apt-get "${APT_OPTS[@]}" update -qq > /dev/null 2>&1 || $SUDO apt-get "${APT_OPTS[@]}" update -qq > /dev/null 2>&1 || true
    sources_ready || { echo "setup: apt offers no mbedtls 3.6 source package (trixie's deb-src); cannot build the static agents" >&2; exit 1; }
  fi
  bash "$(dirname "$0")/deps.sh" fetch
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  fetch_sources
  exit 0
fi

echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# The indexes that could not be downloaded, as "ARCH index of SUITE", one per line.
broken=""
update_indexes() {
  local try out
  for try in 1 2 3; do
    out=$(apt_get update 2>&1) || true
    broken=$(grep -E '^(E|W): Failed to fetch' <<< "$out" |
             sed -nE 's#.*/dists/([^/]+)/.*binary-([a-z0-9]+)/.*#\2 index of \1#p' | sort -u || true)
    if ! grep -qE '^(E|W): ' <<< "$out"; then return 0; fi
    if [ "$try" -lt 3 ]; then
      echo "setup: apt-get update failed (try $try of 3), retrying: $(grep -E '^(E|W): ' <<< "$out" | head -1)"
      sleep $((try * 10))
    fi
  done
  echo "setup: warning: apt-get update still fails after 3 tries; continuing with the indexes it has"
  grep -E '^(E|W): ' <<< "$out" | head -5 | sed 's/^/setup:   /'
}

if [ "$SIMULATE" != 1 ]; then
  for arch in "${FOREIGN[@]}"; do
    dpkg --print-foreign-architectures | grep -qx "$arch" || $SUDO dpkg --add-architecture "$arch"
  done
  update_indexes
fi

# Every library the cross packages pull in, on each architecture it is (or will be) on; for each
# one on two or more architectures, the pins that make them agree. Prints "pkg:arch=version"
# lines on stdout; a library with no common version is named on stderr and fails. Three apt-cache
# calls in all (each loads the whole cache).
multiarch_pins() {
  local -a roots=()
  local p
  for p in "${CROSS_PKGS[@]}"; do roots+=("$p" "${p%%:*}:$NATIVE"); done
  local closure
  closure=$(apt_cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
              --no-replaces --no-enhances "${roots[@]}" 2>/dev/null | grep -E '^[a-z0-9]' |
            awk -v nat="$NATIVE" '{ if (index($0, ":") == 0) print $0 ":" nat; else print }' | sort -u)
  [ -n "$closure" ] || return 0
  local -a names=()
  mapfile -t names < <(cut -d: -f1 <<< "$closure" | sort -u)
  # What is installed counts too: libzstd1:amd64 is there before libzstd1:armhf is asked for.
  local installed
  installed=$("${DPKG_QUERY[@]}" -W -f='${Package}:${Architecture} ${Version} ${db:Status-Status}\n' "${names[@]}" 2>/dev/null |
              awk '$3 == "installed" && $1 !~ /:all$/ { print $1, $2 }' || true)
  local -a quals=()
  mapfile -t quals < <({ printf '%s\n' "$closure"; awk '{ print $1 }' <<< "$installed"; } | grep -v '^$' | sort -u)
  local offered candidates
  offered=$(apt_cache madison "${quals[@]}" 2>/dev/null |
            awk -F'|' '{ gsub(/ /, "", $1); gsub(/ /, "", $2); sub(/:.*/, "", $1); n = split($3, w, " ");
                       if (w[n] == "Packages") print $1 ":" w[n-1], $2 }' | sort -u)
  candidates=$(apt_cache policy "${quals[@]}" 2>/dev/null |
               awk '/^[^ ].*:$/ { q = substr($0, 1, length($0) - 1) } / Candidate:/ { print q, $2 }')
  awk -v nat="$NATIVE" '
    FNR == 1 { file++ }
    file == 1 { q = $1; if (index(q, ":") == 0) q = q ":" nat; want[q] = 1; next }   # closure
    file == 2 { want[$1] = 1; have[$1] = $2; next }                                    # installed
    file == 3 { off[$1, $2] = 1; vers[$1] = vers[$1] " " $2; next }                    # offered
    file == 4 { q = $1; if (index(q, ":") == 0) q = q ":" nat; cand[q] = $2 }          # candidates
    END {
      for (q in want) { split(q, nq, ":"); archs[nq[1]] = archs[nq[1]] " " nq[2] }
      for (n in archs) {
        k = split(archs[n], a, " "); if (k < 2) continue
        # the versions the first architecture is offered that every other one is offered too
        m = split(vers[n ":" a[1]], v, " "); common = ""
        for (i = 1; i <= m; i++) {
          ok = 1
          for (j = 2; j <= k; j++) if (!((n ":" a[j], v[i]) in off)) ok = 0
          if (ok) common = common " " v[i]
        }
        print n, common, "|", archs[n]
        for (j = 1; j <= k; j++) print "#", n ":" a[j], cand[n ":" a[j]], have[n ":" a[j]]
      }
    }' <(printf '%s\n' "$closure") <(printf '%s\n' "$installed") <(printf '%s\n' "$offered") \
       <(printf '%s\n' "$candidates") > "$WORK/multiarch"
  # Choose the newest common version with dpkg's ordering (awk cannot compare Debian versions).
  local rc=0 line n best v pinned=0 q cand have
  local -a set=()
  while read -r line; do
    case "$line" in
      "# "*)
        read -r _ q cand have <<< "$line"
        if [ -n "$best" ] && { [ "$cand" != "$best" ] || { [ -n "$have" ] && [ "$have" != "$best" ]; }; }; then pinned=1; fi
        set+=("$q")
        ;;
      *)
        flush_pins
        n=${line%% *}; best=""; pinned=0; set=()
        for v in $(sed -E 's/^[^ ]+ (.*)\|.*/\1/' <<< "$line"); do
          if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
        done
        if [ -z "$best" ]; then
          echo "setup: $n has no version that every architecture ($(sed 's/.*| *//' <<< "$line")) can get" >&2
          rc=1
        fi
        ;;
    esac
  done < "$WORK/multiarch"
  flush_pins
  return $rc
}
flush_pins() {
  [ "${pinned:-0}" = 1 ] || return 0
  local q
  for q in "${set[@]}"; do printf '%s=%s\n' "$q" "$best"; done
  pinned=0
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Every package must be in some index apt has: otherwise name it, instead of apt's "held broken".
unavailable=$(comm -23 \
  <(printf '%s\n' "${missing[@]}" | awk -v nat="$NATIVE" '{ if (index($0, ":") == 0) $0 = $0 ":" nat; print }' | sort -u) \
  <(apt_cache policy "${missing[@]}" 2>/dev/null |
    awk -v nat="$NATIVE" '/^[^ ].*:$/ { q = substr($0, 1, length($0) - 1); if (index(q, ":") == 0) q = q ":" nat }
                         / Candidate:/ && $2 != "(none)" { print q }' | sort -u))
if [ -n "$unavailable" ]; then
  echo "setup: no index apt has offers $(echo $unavailable)${broken:+ (the $(paste -sd, - <<< "$broken" | sed 's/,/, the /g') could not be downloaded)}; try again when Debian's mirror has finished syncing" >&2
  exit 1
fi

pins=()
pinlist=$(multiarch_pins "${missing[@]}") || { echo "setup: cannot find library versions that fit every architecture; try again when Debian's mirror has finished syncing" >&2; exit 1; }
while read -r pin; do [ -n "$pin" ] && pins+=("$pin"); done <<< "$pinlist"

install=()
for p in "${missing[@]}"; do
  case "$p" in *:*) q="$p" ;; *) q="$p:$NATIVE" ;; esac
  skip=0
  for pin in "${pins[@]}"; do [ "${pin%%=*}" = "$q" ] && skip=1; done
  [ $skip = 1 ] || install+=("$p")
done

if [ ${#pins[@]} -gt 0 ]; then
  why="the package indexes of the architectures disagree"
  [ -n "$broken" ] && why="the $(paste -sd, - <<< "$broken" | sed 's/,/, the /g') could not be downloaded"
  # Name each library once, with its version.
  named=$(printf '%s\n' "${pins[@]}" | sed -E 's/:[a-z0-9]+=/=/' | sort -u | paste -sd' ' -)
  echo "setup: pinned $(printf '%s\n' "${pins[@]}" | wc -l) packages ($named) on every architecture because $why"
fi

if [ "$SIMULATE" = 1 ]; then
  apt_get install -s --no-install-recommends --allow-downgrades "${install[@]}" "${pins[@]}" > /dev/null
  echo "setup: simulated install resolves"
  exit 0
fi
apt_get install -y -qq --no-install-recommends --allow-downgrades "${install[@]}" "${pins[@]}"
fetch_sources
echo "setup: done"
