#!/usr/bin/env bash
# The .deb packages: CPack builds ferry (amd64) and ferryd (amd64 here, arm64 and
# armhf from the cross presets when they are built). Checked as Debian would: dpkg-deb --info
# and --contents, lintian (no error), the unit file through systemd-analyze verify, and the
# packaged binaries run (the arm64 one under qemu-aarch64).
source "$(dirname "$0")/lib.sh"
command -v lintian > /dev/null || { echo "skip: lintian missing (scripts/setup.sh installs it)"; exit 77; }
OUT=$T/debs
mkdir -p "$OUT"
build_debs() { # build_debs BUILD_DIR
  (cd "$1" && cpack -G DEB -B "$OUT/$(basename "$1")" > "$OUT/$(basename "$1").log" 2>&1) || { cat "$OUT/$(basename "$1").log"; fail "cpack in $1"; }
}
build_debs "$FERRY_CROSS_ROOT/host"
for p in aarch64 armhf; do [ -x "$FERRY_CROSS_ROOT/$p/bin/ferryd" ] && build_debs "$FERRY_CROSS_ROOT/$p"; done
find "$OUT" -maxdepth 2 -name '*.deb' | sort > "$T/debs.txt"
grep -q 'host/ferry_.*_amd64.deb' "$T/debs.txt" && grep -q 'host/ferryd_.*_amd64.deb' "$T/debs.txt" || { cat "$T/debs.txt"; fail "no amd64 packages"; }
pass "cpack: $(tr '\n' ' ' < "$T/debs.txt" | sed "s|$OUT/||g")"

field() { dpkg-deb --field "$1" "$2"; }
for deb in $(cat "$T/debs.txt"); do
  name=$(field "$deb" Package); arch=$(field "$deb" Architecture)
  [ -n "$(field "$deb" Version)" ] && [ -n "$(field "$deb" Maintainer)" ] && [ "$(field "$deb" Section)" = admin ] || fail "$deb: control fields"
  dpkg-deb --info "$deb" > "$T/info" && dpkg-deb --contents "$deb" > "$T/contents" || fail "$deb: dpkg-deb"
  grep -q "usr/share/doc/$name/copyright" "$T/contents" && grep -q "usr/share/doc/$name/changelog.Debian.gz" "$T/contents" || fail "$deb: doc files"
  case "$name" in
  ferryd)
    for f in ./usr/lib/ferry/ferryd ./usr/sbin/ferryd ./lib/systemd/system/ferryd.service ./etc/ferry/ferryd.yaml; do
      grep -q " $f" "$T/contents" || { cat "$T/contents"; fail "$deb: no $f"; }
    done
    grep -q '^drwx------ root/root .* ./var/lib/ferry/$' "$T/contents" || fail "$deb: /var/lib/ferry is not 0700"
    dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/ferry/ferryd.yaml || fail "$deb: the config is not a conffile"
    if [ "$arch" = amd64 ]; then field "$deb" Depends | grep -q libmbedtls || fail "$deb: no library dependencies"
    else [ -z "$(field "$deb" Depends)" ] || fail "$deb: a static agent needs no Depends"; fi
    ;;
  ferry)
    grep -q ' ./usr/bin/ferry$' "$T/contents" && grep -q ' ./usr/lib/ferry/agents/linux-amd64/ferryd$' "$T/contents" || { cat "$T/contents"; fail "$deb: files"; }
    ;;
  esac
  set +e; lintian --fail-on error "$deb" > "$T/lintian" 2>&1; rc=$?; set -e
  [ $rc -eq 0 ] || { cat "$T/lintian"; fail "$deb: lintian found errors"; }
  pass "$(basename "$deb"): fields, files and modes as intended; lintian: $(grep -c '^E:' "$T/lintian") errors, $(grep -c '^W:' "$T/lintian") warnings"
done

# The unit, as systemd reads it (ExecStart pointed at the extracted binary).
mkdir -p "$T/root"
dpkg-deb -x "$(grep 'host/ferryd_' "$T/debs.txt")" "$T/root"
sed "s|ExecStart=/usr/lib/ferry/ferryd|ExecStart=$T/root/usr/lib/ferry/ferryd|" "$T/root/lib/systemd/system/ferryd.service" > "$T/ferryd.service"
systemd-analyze verify "$T/ferryd.service" > "$T/verify" 2>&1 || true
[ ! -s "$T/verify" ] || { cat "$T/verify"; fail "systemd-analyze verify"; }
grep -q '^Restart=always' "$T/ferryd.service" && grep -q '^ReadWritePaths=/var/lib/ferry /usr/lib/ferry' "$T/ferryd.service" || fail "unit: Restart/ReadWritePaths"
"$T/root/usr/lib/ferry/ferryd" --version | grep -q '^ferryd ' || fail "the packaged ferryd does not run"
pass "ferryd.service passes systemd-analyze verify (Restart=always, hardening); the packaged ferryd runs"
if grep -q 'aarch64/ferryd_.*_arm64.deb' "$T/debs.txt"; then
  mkdir -p "$T/root64"; dpkg-deb -x "$(grep 'aarch64/ferryd_' "$T/debs.txt")" "$T/root64"
  qemu-aarch64 "$T/root64/usr/lib/ferry/ferryd" --version | grep -q '^ferryd ' || fail "the arm64 packaged ferryd does not run"
  file "$T/root64/usr/lib/ferry/ferryd" 2>/dev/null | grep -q 'statically linked' || true
  pass "the arm64 ferryd package's binary runs under qemu-aarch64"
fi
# install-agent finds the agents where the ferry package puts them
mkdir -p "$T/rootp"; dpkg-deb -x "$(grep 'host/ferry_' "$T/debs.txt")" "$T/rootp"
"$T/rootp/usr/bin/ferry" --version | grep -q '^ferry ' || fail "the packaged ferry does not run"
finish
