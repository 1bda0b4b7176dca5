#!/usr/bin/env bash
# ferry doctor's binfmt_misc findings, on a faked binfmt_misc tree: a tmpfs over
# /proc/sys/fs/binfmt_misc in a private mount namespace (this machine's own tree is untouched).
# The global switch (status) and each handler's own switch are told apart, and so are their fixes.
source "$(dirname "$0")/lib.sh"
command -v unshare > /dev/null || fail "unshare missing (util-linux)"
B=/proc/sys/fs/binfmt_misc

# doctor_with STATUS AARCH64-ENTRY-STATE ARM-ENTRY-STATE OUT: doctor --json on such a tree
doctor_with() {
  unshare --mount --propagation private bash -c '
    set -e
    B=$1
    mount -t tmpfs ferry-fake-binfmt "$B"
    echo "$2" > "$B/status"
    entry() { printf "%s\ninterpreter /usr/libexec/qemu-binfmt/%s-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n" "$2" "$1" > "$B/qemu-$1"; }
    [ "$3" = none ] || entry aarch64 "$3"
    [ "$4" = none ] || entry arm "$4"
    "$5" doctor --json > "$6" || true
  ' fake "$B" "$1" "$2" "$3" "$FERRY" "$4"
}
check() { # OUT PLATFORM STATUS DETAIL-PART FIX-PART
  python3 - "$@" <<'PY' || { cat "$1"; fail "doctor: $2 binfmt_misc: want $3, '$4', fix '$5'"; }
import json, sys
out, plat, status, detail, fix = sys.argv[1:]
c = [c for c in json.load(open(out))["checks"] if c["platform"] == plat and c["check"] == "binfmt_misc"]
assert len(c) == 1, c
c = c[0]
assert c["status"] == status and detail in c["detail"] and fix in c["fix"], c
PY
}

# 1. Everything on: ok.
doctor_with enabled enabled enabled "$T/on.json"
check "$T/on.json" linux/arm64 ok "registered, enabled, F flag" ""
check "$T/on.json" linux/arm/v7 ok "registered, enabled, F flag" ""
pass "handlers registered and enabled with the F flag: ok"

# 2. The global switch off: no handler runs, whatever the entries say; the fix is the switch.
doctor_with disabled enabled enabled "$T/off.json"
check "$T/off.json" linux/arm64 note "switched off as a whole" "echo 1 > $B/status"
check "$T/off.json" linux/arm/v7 note "switched off as a whole" "echo 1 > $B/status"
pass "binfmt_misc switched off as a whole: not ok, and the fix is 'echo 1 > $B/status'"

# 3. One entry off: the fix names that entry, not the global switch.
doctor_with enabled disabled enabled "$T/entry.json"
check "$T/entry.json" linux/arm64 note "registered but disabled" "echo 1 > $B/qemu-aarch64"
check "$T/entry.json" linux/arm/v7 ok "registered, enabled, F flag" ""
python3 -c 'import json,sys; c=[c for c in json.load(open(sys.argv[1]))["checks"] if c["check"]=="binfmt_misc" and "/status" in c["fix"]]; sys.exit(1 if c else 0)' "$T/entry.json" \
  || fail "a disabled entry's fix points at the global switch"
pass "a disabled qemu-aarch64 entry: the fix is 'echo 1 > $B/qemu-aarch64', the other entry stays ok"

# 4. No handler registered.
doctor_with enabled none none "$T/none.json"
check "$T/none.json" linux/arm64 note "no qemu handler registered" "qemu-user-static"
pass "no handler registered: named, with the package that registers one"

# 5. The kernel's own binfmt_misc (mounted again in a private namespace; only read): its files
# report a size of 0, and doctor must read what they hold all the same.
if unshare --mount --propagation private sh -c 'mount -t binfmt_misc binfmt_misc "$0"' "$B" 2> /dev/null; then
  unshare --mount --propagation private sh -c 'mount -t binfmt_misc binfmt_misc "$0" && cat "$0/status" > "$1" && "$2" doctor --json > "$3" || true' \
    "$B" "$T/real-status" "$FERRY" "$T/real.json"
  if [ "$(cat "$T/real-status")" = enabled ]; then
    python3 -c 'import json,sys; c=[c for c in json.load(open(sys.argv[1]))["checks"] if c["check"]=="binfmt_misc" and "switched off" in c["detail"]]; sys.exit(1 if c else 0)' "$T/real.json" \
      || { cat "$T/real.json"; fail "the kernel's binfmt_misc says enabled, doctor says switched off"; }
    pass "the kernel's binfmt_misc (files of size 0): doctor reads its status as it is"
  fi
fi

# The machine's own tree was not touched.
[ ! -e "$B/qemu-aarch64" ] || [ "$(head -1 "$B/qemu-aarch64")" != disabled ] || fail "this machine's binfmt_misc changed"
pass "this machine's binfmt_misc is untouched"
finish
