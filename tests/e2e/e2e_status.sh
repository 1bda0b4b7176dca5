#!/usr/bin/env bash
# The foundation end to end: an arm64 ferryd under qemu-aarch64, an armhf one under qemu-arm
# and a host one, each on loopback with its own state dir; `ferry status --json` reports each
# with its platform and Kubernetes arch label, as the README tells a user to run it.
source "$(dirname "$0")/lib.sh"

A64=$(cross_bin aarch64 ferryd)
ARMHF=$(cross_bin armhf ferryd)
command -v qemu-aarch64 >/dev/null || fail "qemu-aarch64 not installed (scripts/setup.sh)"
command -v qemu-arm >/dev/null || fail "qemu-arm not installed (scripts/setup.sh)"

setup_fleet
FERRYD_BIN=$A64 start_agent pi-arm64 'labels: {site: kitchen, tier: edge}' qemu-aarch64
FERRYD_BIN=$ARMHF start_agent pi-armhf 'labels: {site: garage}' qemu-arm
start_agent x64 'labels: {site: rack}'

"$FERRY" status --identity "$T/me" --json \
  --to "pi-arm64@127.0.0.1:$PORT_pi_arm64" --to "pi-armhf@127.0.0.1:$PORT_pi_armhf" \
  --to "x64@127.0.0.1:$PORT_x64" > "$T/status.json" || fail "ferry status exited nonzero"

check() { # index name platform arch
  local got
  got=$(json_get "$T/status.json" "d['nodes'][$1]['name'], d['nodes'][$1]['platform'], d['nodes'][$1]['labels']['kubernetes.io/arch'], d['nodes'][$1]['labels']['kubernetes.io/os'], d['nodes'][$1]['error']")
  [ "$got" = "('$2', '$3', '$4', 'linux', None)" ] || fail "node $1: got $got"
  pass "$2 reports $3 with kubernetes.io/arch=$4"
}
check 0 pi-arm64 linux/arm64 arm64
check 1 pi-armhf linux/arm/v7 arm
check 2 x64 linux/amd64 amd64

[ "$(json_get "$T/status.json" "d['nodes'][0]['labels']['site'], d['nodes'][0]['labels']['tier'], d['nodes'][0]['board']")" = "('kitchen', 'edge', 'generic-arm64')" ] \
  || fail "config labels and board of pi-arm64"
pass "config labels merged with facts; board detected"
python3 - "$T/status.json" <<'PY' || fail "accepted platforms"
import json, sys
d = json.load(open(sys.argv[1]))
arm64, armhf, x64 = (n['accepts'] for n in d['nodes'][:3])
assert armhf == ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5'], armhf
# The emulated arm64 board: its CPU level (qemu-aarch64's CPU, from AT_HWCAP) leads the list,
# the base platform follows, and no 32-bit arm entry (qemu-aarch64 runs none).
level = d['nodes'][0]['labels'].get('ferry.dev/cpu-level')
base = arm64.index('linux/arm64')
assert base >= 1 and arm64[0] == 'linux/arm64/' + level, (arm64, level)
assert arm64[:base] == ['linux/arm64/v8.%d' % m for m in range(base, 0, -1)], arm64
assert not any(a.startswith('linux/arm/') for a in arm64), arm64
# The x86-64 node: cpuid's psABI level and each one below it, the baseline, then 386.
assert x64[-2:] == ['linux/amd64', 'linux/386'], x64
levels = [int(a.rsplit('/v', 1)[1]) for a in x64[:-2]]
assert levels == (list(range(levels[0], 1, -1)) if levels else []), x64
print("ok: arm64 (emulated) accepts %s; x86-64 accepts %s" % (arm64, x64))
PY
pass "accepted platforms: CPU levels first, then containerd's fallback order; the platform stays the base name"
[ "$(json_get "$T/status.json" "d['nodes'][2]['free_bytes'] > 0, d['nodes'][2]['address'] == '127.0.0.1:$PORT_x64'")" = "(True, True)" ] \
  || fail "free_bytes/address"
pass "free space and address reported"

# Human table: one line per node.
"$FERRY" status --identity "$T/me" --to "127.0.0.1:$PORT_pi_arm64" > "$T/table.txt"
grep -q '^pi-arm64 .*linux/arm64 .*kubernetes.io/arch=arm64' "$T/table.txt" || { cat "$T/table.txt"; fail "table"; }
pass "table output for people"

# One unreachable node is reported with its error and does not hide the others; exit 1.
set +e
"$FERRY" status --identity "$T/me" --json --timeout 5 --to "127.0.0.1:$PORT_x64" --to 127.0.0.1:1 > "$T/mixed.json"
rc=$?
set -e
[ $rc -eq 1 ] || fail "exit status with an unreachable node: $rc"
[ "$(json_get "$T/mixed.json" "d['nodes'][0]['platform'], d['nodes'][1]['platform'], 'refused' in d['nodes'][1]['error']")" = \
  "('linux/amd64', None, True)" ] || fail "mixed report: $(cat "$T/mixed.json")"
pass "an unreachable node is reported, the others still answer, exit status 1"

# The name in NAME@ must be the certificate's.
set +e
"$FERRY" status --identity "$T/me" --to "pi-kitchen@127.0.0.1:$PORT_x64" > "$T/wrong.txt" 2> "$T/wrong.err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q 'does not carry the expected name' "$T/wrong.err" || fail "wrong name accepted"
pass "a node name that is not the certificate's is refused"

# SIGTERM closes each agent cleanly.
for i in 0 1 2; do kill -TERM "${PIDS[$i]}"; done
for i in 0 1 2; do wait "${PIDS[$i]}" || fail "agent $i exit status $? after SIGTERM"; done
PIDS=()
grep -q 'received SIGTERM' "$T/pi-arm64.log" && grep -q 'stopped' "$T/pi-arm64.log" || fail "no clean stop"
pass "SIGTERM stops every agent cleanly (exit 0)"
finish
