#!/usr/bin/env bash
# scripts/setup.sh on a Debian mirror that is mid-sync, simulated in a separate apt state so that
# this machine's own apt state is never changed:
#   - a copy of apt's lists, with the foreign-architecture indexes of the update suites removed
#     (what apt is left with when one of them fails to download: amd64 keeps the newer versions);
#   - a dpkg database with only the native and architecture-independent packages, as on a machine
#     where setup has not run yet;
#   - `apt-get -s` (simulate) for every install.
# Then: a plain install of what setup needs fails (when the mirror has newer native versions of a
# Multi-Arch: same library) and setup's install resolves, saying in one line what it pinned. With the
# foreign index of the base suite gone too, nothing fits and setup says so and fails.
set -euo pipefail
SRC=${FERRY_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
LISTS=/var/lib/apt/lists
command -v apt-get > /dev/null || { echo "skip: not a Debian machine"; exit 77; }
ls "$LISTS"/*_Packages* > /dev/null 2>&1 || { echo "skip: no apt lists (run apt-get update)"; exit 77; }
for a in arm64 armhf; do
  ls "$LISTS"/*binary-${a}_Packages* > /dev/null 2>&1 || { echo "skip: no $a index (scripts/setup.sh adds the architecture)"; exit 77; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-setup.XXXXXX")
trap 'rm -rf "$T"' EXIT
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; echo "test_setup_apt: $passed passed, 1 failed"; exit 1; }

before=$(cd "$LISTS" && ls -l --time-style=+%s | sha256sum; sha256sum /var/lib/dpkg/status)

mkdir -p "$T/state/lists/partial" "$T/cache/archives/partial" "$T/etc/sources.list.d" "$T/dpkg/updates"
cp "$LISTS"/*Release* "$LISTS"/*_Packages* "$T/state/lists/"
cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$T/etc/sources.list.d/" 2>/dev/null || true
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$T/etc/" || touch "$T/etc/sources.list"
cp /var/lib/dpkg/arch "$T/dpkg/arch" 2>/dev/null || printf 'amd64\narm64\narmhf\n' > "$T/dpkg/arch"
# A fresh machine: no foreign package installed yet.
awk -v RS= -v ORS='\n\n' '!/\nArchitecture: (arm64|armhf)\n/' /var/lib/dpkg/status > "$T/dpkg/status"

removed=()
for f in "$T"/state/lists/*_dists_*-security_*binary-arm64_Packages* "$T"/state/lists/*_dists_*-security_*binary-armhf_Packages* \
         "$T"/state/lists/*_dists_*-updates_*binary-arm64_Packages* "$T"/state/lists/*_dists_*-updates_*binary-armhf_Packages*; do
  [ -f "$f" ] && removed+=("$f")
done
[ ${#removed[@]} -gt 0 ] || { echo "skip: no update suite in this machine's apt sources"; exit 77; }
rm -f "${removed[@]}"
echo "removed from the copy: ${removed[*]##*/}"

OPTS="-o Dir::State=$T/state -o Dir::State::status=$T/dpkg/status -o Dir::Cache=$T/cache"
OPTS+=" -o Dir::Etc::SourceList=$T/etc/sources.list -o Dir::Etc::SourceParts=$T/etc/sources.list.d"
OPTS+=" -o Debug::NoLocking=1 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o APT::Architectures::=armhf"
read -r -a opts <<< "$OPTS"
want=()
for a in amd64 arm64 armhf; do
  for p in libuv1-dev libmbedtls-dev libzstd-dev libyaml-dev libjansson-dev; do want+=("$p:$a"); done
done

# 1. The problem, as apt meets it.
if apt-get "${opts[@]}" install -s --no-install-recommends "${want[@]}" > "$T/plain.out" 2>&1; then
  plain=resolves
  echo "note: this mirror's update suites hold no newer native version of these libraries; the plain install resolves too"
else
  plain=broken
  grep -q 'held broken packages\|Unable to correct problems' "$T/plain.out" || { cat "$T/plain.out"; fail "plain install failed for another reason"; }
  ok "without pins apt refuses: $(grep -m1 -E '^E:' "$T/plain.out")"
fi

# 2. setup.sh resolves it and says what it did.
run_setup() {
  FERRY_SETUP_SIMULATE=1 FERRY_APT_OPTS="$OPTS" FERRY_DPKG_ADMINDIR="$T/dpkg" bash "$SRC/scripts/setup.sh"
}
run_setup > "$T/setup.out" 2>&1 || { cat "$T/setup.out"; fail "setup did not resolve the install"; }
grep -q '^setup: simulated install resolves' "$T/setup.out" || { cat "$T/setup.out"; fail "no resolution line"; }
ok "setup's install resolves"
if [ "$plain" = broken ]; then
  line=$(grep '^setup: pinned' "$T/setup.out") || { cat "$T/setup.out"; fail "no line saying what was pinned"; }
  [ "$(grep -c '^setup: pinned' "$T/setup.out")" = 1 ] || fail "more than one line about pins"
  grep -q ' because ' <<< "$line" || fail "the pin line does not say why: $line"
  # Each pin names a version the foreign architectures can still get.
  for pv in $(sed -E 's/^setup: pinned [0-9]+ packages \(([^)]*)\).*/\1/' <<< "$line"); do
    p=${pv%%=*} v=${pv#*=}
    apt-cache "${opts[@]}" madison "$p:armhf" | grep -q "| *$v *|" || fail "$p=$v is not offered for armhf"
  done
  ok "one line says what was pinned and why: $line"
fi

# 3. Nothing fits: the foreign indexes of the base suite are gone too.
(cd "$T/state/lists" && rm -f ./*_dists_*_binary-armhf_Packages*)
if run_setup > "$T/none.out" 2>&1; then cat "$T/none.out"; fail "setup passed with no armhf index at all"; fi
grep -q 'no index apt has offers .*libzstd-dev:armhf' "$T/none.out" || { cat "$T/none.out"; fail "no clear error"; }
grep -q 'try again when' "$T/none.out" || { cat "$T/none.out"; fail "no advice"; }
grep -q 'held broken' "$T/none.out" && fail "apt's own riddle reached the user"
ok "with no armhf index at all setup names what is missing and fails: $(grep -m1 'no index' "$T/none.out" | cut -c1-120)…"

after=$(cd "$LISTS" && ls -l --time-style=+%s | sha256sum; sha256sum /var/lib/dpkg/status)
[ "$before" = "$after" ] || fail "this machine's apt lists or dpkg status changed"
ok "this machine's apt state is untouched"
echo "test_setup_apt: $passed passed, 0 failed"
