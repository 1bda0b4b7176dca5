#!/usr/bin/env bash
# Enrolling a device: an OpenSSH server on loopback plays the device, as the user's own
# SSH access would. ferry install-agent --prefix installs ferryd there, ferry status reaches it, a
# push works; a re-run upgrades in place; uninstall removes everything. Bad input: an unreachable
# host, refused authentication, a riscv64 device, a full disk, each with its message and nothing
# half-installed.
source "$(dirname "$0")/lib.sh"
setup_fleet
export FERRY_HOME=$T/home
mkdir -p "$FERRY_HOME"
cp -a "$T/ca" "$FERRY_HOME/ca"; cp -a "$T/me" "$FERRY_HOME/identity"
start_sshd dev
D="root@127.0.0.1:$SSHD_PORT_dev"
AGENT_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PFX=$T/device
install() { "$FERRY" install-agent "$D" --name pi-lab --prefix "$PFX" --listen "127.0.0.1:$AGENT_PORT" "$@"; }
# app_running_again OUT WHY: waits (60 s at most) for the node's app to run again after its agent restarted.
app_running_again() {
  running_again() {
    "$FERRY" status --fleet "$T/fleet.yaml" --json > "$T/$1" 2>/dev/null &&
      [ "$(json_get "$T/$1" "[a['state'] for a in d['nodes'][0]['apps']]")" = "(['running'],)" ]
  }
  try_for 60 running_again "$1" || true
  [ "$(json_get "$T/$1" "[(a['name'], a['state']) for a in d['nodes'][0]['apps']]")" = "([('hello', 'running')],)" ] || { cat "$T/$1"; fail "$2"; }
}

# --- install
install --labels site=lab,topology.kubernetes.io/zone=a --fleet "$T/fleet.yaml" > "$T/i1.out" 2> "$T/i1.err" \
  || { cat "$T/i1.out" "$T/i1.err"; fail "install-agent"; }
grep -q "installed ferryd on $D\|installed ferryd on root@127.0.0.1 as pi-lab (linux/amd64), reachable at 127.0.0.1:$AGENT_PORT; started directly" "$T/i1.out" || { cat "$T/i1.out"; fail "install output"; }
grep -q 'userland linux/amd64 (/bin/sh is an x86-64 ELF)' "$T/i1.err" || { cat "$T/i1.err"; fail "platform detection"; }
[ -x "$PFX/usr/local/lib/ferry/ferryd" ] || fail "no ferryd binary"
[ "$(stat -c %a "$PFX/etc/ferry/identity/key.pem")" = 600 ] || fail "the node's key is not 0600"
grep -q '^name: pi-lab' "$PFX/etc/ferry/ferryd.yaml" || fail "config"
grep -q 'pi-lab' "$T/fleet.yaml" && grep -q "address: 127.0.0.1:$AGENT_PORT" "$T/fleet.yaml" || { cat "$T/fleet.yaml"; fail "fleet file"; }
pass "install-agent: platform from /bin/sh's ELF header, binary, config, identity (key 0600), started, added to the fleet file"

"$FERRY" status --fleet "$T/fleet.yaml" --json > "$T/s1.json" || { cat "$T/s1.json"; fail "status"; }
[ "$(json_get "$T/s1.json" "(d['nodes'][0]['name'], d['nodes'][0]['platform'], d['nodes'][0]['labels'].get('site'))")" = "(('pi-lab', 'linux/amd64', 'lab'),)" ] \
  || { cat "$T/s1.json"; fail "status through the fleet file"; }
build_apps "$T/app"
$MKIMAGE "$T/img" --ref v1 --variant linux/amd64="$T/app/x64" --env VERSION=1 > /dev/null
push_json "$T/p1.json" "$T/img:v1" --fleet "$T/fleet.yaml" --app hello --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "push to the installed node"; }
pass "ferry status reaches the new node through the fleet file, and a push deploys to it"

# --- re-run: upgrade in place, config and identity kept, the app back up
PID1=$(cat "$PFX/run/ferryd.pid")
CERT1=$(sha256sum < "$PFX/etc/ferry/identity/cert.pem")
install --fleet "$T/fleet.yaml" > "$T/i2.out" 2> "$T/i2.err" || { cat "$T/i2.out" "$T/i2.err"; fail "re-run"; }
grep -q 'upgraded ferryd on .*kept its config and identity' "$T/i2.out" || { cat "$T/i2.out"; fail "re-run output"; }
grep -q 'already lists pi-lab' "$T/i2.out" || fail "the fleet file should not get a second entry"
[ "$(grep -c 'name: pi-lab' "$T/fleet.yaml")" = 1 ] || fail "two fleet entries"
[ "$(cat "$PFX/run/ferryd.pid")" != "$PID1" ] || fail "the agent was not restarted"
[ "$CERT1" = "$(sha256sum < "$PFX/etc/ferry/identity/cert.pem")" ] || fail "the identity changed"
[ -f "$PFX/usr/local/lib/ferry/ferryd.prev" ] || fail "no ferryd.prev kept"
app_running_again s2.json "app after the upgrade"
pass "a re-run upgrades in place: new agent process, config and identity kept, the app running again"

# --- bad input: nothing half-installed
expect_fail() { # expect_fail NAME PATTERN CMD...
  local name=$1 pat=$2; shift 2
  set +e; "$@" > "$T/$name.out" 2> "$T/$name.err"; local rc=$?; set -e
  [ $rc -ne 0 ] || { cat "$T/$name.out"; fail "$name: succeeded"; }
  grep -q -- "$pat" "$T/$name.err" || { cat "$T/$name.err"; fail "$name: message"; }
}
CLOSED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect_fail unreachable "cannot reach 127.0.0.1:$CLOSED over SSH: .*Connection refused" \
  "$FERRY" install-agent "root@127.0.0.1:$CLOSED" --name x1 --prefix "$T/dev-x1"
[ ! -e "$T/dev-x1" ] || fail "unreachable: something was created"
expect_fail auth "SSH authentication refused by nobody@127.0.0.1 .*Permission denied" \
  "$FERRY" install-agent "nobody@127.0.0.1:$SSHD_PORT_dev" --name x2 --prefix "$T/dev-x2"
pass "an unreachable host and refused SSH authentication: clear messages, nothing created"

# A riscv64 device: this sshd's sessions see FERRY_PROBE_SH, the one seam in the probe (a real
# riscv64 userland cannot run here), pointing at a riscv64 ELF header.
python3 -c "
import struct, sys
h = b'\x7fELF' + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack('<HHIQQQIHHHHHH', 2, 243, 1, 0, 64, 0, 5, 64, 56, 0, 64, 0, 0)
open(sys.argv[1], 'wb').write(h)" "$T/riscv-sh"
start_sshd rv "SetEnv FERRY_PROBE_SH=$T/riscv-sh"
expect_fail riscv "runs linux/riscv64 (its /bin/sh is a RISC-V 64 ELF): ferry has no agent for it; agents here: linux/amd64" \
  "$FERRY" install-agent "root@127.0.0.1:$SSHD_PORT_rv" --name x3 --prefix "$T/dev-x3"
[ ! -e "$T/dev-x3" ] || fail "riscv64: something was created"
pass "a linux/riscv64 device is refused, naming the platforms ferry has agents for"

mkdir -p "$T/small"
mount -t tmpfs -o size=512k tmpfs "$T/small" || { echo "skip: cannot mount a tmpfs"; finish; exit 0; }
MOUNTS+=("$T/small")
expect_fail nospace "no space on the device: .* KiB free in $T/small, the agent needs .* KiB; nothing was installed" \
  "$FERRY" install-agent "$D" --name x4 --prefix "$T/small/ferry" --listen 127.0.0.1:1
[ -z "$(ls -A "$T/small")" ] || { ls -laR "$T/small"; fail "no space: files were left"; }
pass "a device without the space: refused before anything is copied, nothing left"

# --- upgrade-agent on the installed node: a good one, then a broken one the watchdog undoes
cp "$FERRYD" "$T/ferryd-v2"; echo "a newer build" >> "$T/ferryd-v2"
gcc -O2 -o "$T/hang-ferryd" "$FERRY_SRC/tests/tools/broken_ferryd.c"
APP_PID=$(cat "$PFX/var/lib/ferry/apps/hello/pid")
"$FERRY" upgrade-agent --fleet "$T/fleet.yaml" --agent-binary linux/amd64="$T/ferryd-v2" > "$T/up1.out" 2>&1 || { cat "$T/up1.out"; fail "upgrade-agent"; }
cmp -s "$PFX/usr/local/lib/ferry/ferryd" "$T/ferryd-v2" || fail "the installed binary is not the new one"
set +e; "$FERRY" upgrade-agent --fleet "$T/fleet.yaml" --agent-binary linux/amd64="$T/hang-ferryd" --upgrade-timeout 5 > "$T/up2.out" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q 'rolled-back' "$T/up2.out" || { cat "$T/up2.out"; fail "broken agent"; }
cmp -s "$PFX/usr/local/lib/ferry/ferryd" "$T/ferryd-v2" || fail "the old agent binary is not back"
"$FERRY" status --fleet "$T/fleet.yaml" --json > "$T/s3.json"
[ "$(json_get "$T/s3.json" "[(a['name'], a['state']) for a in d['nodes'][0]['apps']]")" = "([('hello', 'running')],)" ] || { cat "$T/s3.json"; fail "app after the broken upgrade"; }
pass "upgrade-agent on the installed node (app kept, pid $APP_PID); a broken new agent ends with the old one back and the app running"

# --- a new agent that passes --version but does not start: undone, fresh or not
gcc -O2 -DBROKEN_EXIT -o "$T/exit-ferryd" "$FERRY_SRC/tests/tools/broken_ferryd.c"
expect_fail broken-fresh "the new ferryd did not start" \
  "$FERRY" install-agent "$D" --name x5 --prefix "$T/dev-x5" --listen "127.0.0.1:$(free_port)" --agent-binary "$T/exit-ferryd"
grep -q 'nothing was installed' "$T/broken-fresh.err" || { cat "$T/broken-fresh.err"; fail "broken fresh install: message"; }
[ ! -e "$T/dev-x5" ] || { find "$T/dev-x5"; fail "a failed fresh install left files"; }
expect_fail broken-upgrade "the previous ferryd is back and running" \
  "$FERRY" install-agent "$D" --name pi-lab --prefix "$PFX" --listen "127.0.0.1:$AGENT_PORT" --agent-binary "$T/exit-ferryd"
cmp -s "$PFX/usr/local/lib/ferry/ferryd" "$T/ferryd-v2" || fail "the previous binary is not back"
app_running_again s4.json "app after a failed re-install"
pass "a new agent that does not start: a fresh install leaves nothing; a re-install puts the previous agent back (status answers, the app runs)"

# --- uninstall, and the node leaves the fleet file (its groups too; everything else stays)
cat >> "$T/fleet.yaml" <<'EOF2'
  # a second node on the same host, kept by the uninstall
  - {name: other, address: "127.0.0.1:1"}
groups:
  lab: [pi-lab, other]
  solo:
    - pi-lab
EOF2
cp "$T/fleet.yaml" "$T/fleet.before"
expect_fail uninstall-ambiguous "lists several nodes at 127.0.0.1 (pi-lab, other): say which with --name" \
  "$FERRY" uninstall-agent "$D" --prefix "$PFX" --fleet "$T/fleet.yaml"
cmp -s "$T/fleet.yaml" "$T/fleet.before" && [ -e "$PFX/usr/local/lib/ferry/ferryd" ] || fail "a refused uninstall changed something"
# A pid file that outlived its agent, its pid now another program's (one that even has "ferryd"
# in its command line): that program is left alone; the agent is found by its binary.
python3 -c 'import time; time.sleep(600)' ferryd-lookalike --config x &
DECOY=$!; PIDS+=($DECOY)
echo "$DECOY" > "$PFX/run/ferryd.pid"
"$FERRY" uninstall-agent "$D" --prefix "$PFX" --fleet "$T/fleet.yaml" --name pi-lab > "$T/u.out" || fail "uninstall"
kill -0 "$DECOY" 2> /dev/null || fail "uninstall-agent killed the process a stale pid file named"
grep -q "removed ferryd from $D\|removed ferryd from root@127.0.0.1" "$T/u.out" || { cat "$T/u.out"; fail "uninstall output"; }
grep -q "fleet: removed pi-lab from $T/fleet.yaml" "$T/u.out" || { cat "$T/u.out"; fail "uninstall: fleet output"; }
! grep -q "pi-lab" "$T/fleet.yaml" && grep -q '^  lab: \[other\]$' "$T/fleet.yaml" && grep -q "# a second node" "$T/fleet.yaml" \
  || { cat "$T/fleet.yaml"; fail "the fleet file after uninstall"; }
"$FERRY" status --fleet "$T/fleet.yaml" --group lab --json > "$T/sl.json" 2> /dev/null || true # other is not there: it loads, that is all
[ "$(json_get "$T/sl.json" "[n['name'] for n in d['nodes']]")" = "(['other'],)" ] || { cat "$T/fleet.yaml" "$T/sl.json"; fail "the fleet file does not load"; }

[ ! -e "$PFX" ] || { find "$PFX"; fail "uninstall left files"; }
pgrep -f "$PFX/" > /dev/null && fail "processes from the prefix still run"
expect_fail uninstall-again "no ferryd installed under $PFX" "$FERRY" uninstall-agent "$D" --prefix "$PFX"
pass "uninstall-agent stops ferryd and its app, removes everything it installed, and takes the node out of the fleet file and its groups (ambiguous: refused, nothing touched; the program a stale pid file names left running)"
# --- a node behind NAT: install-agent --broker configures listen: none and the fleet's broker,
#     and checks the node through the broker
start_broker
# broker.ca naming the fleet CA's own certificate (any CA bundle goes the same way): it goes to
# the node as identity/broker-ca.pem, and the node checks the broker against it
cp "$T/ca/ca.pem" "$T/broker-ca.pem"
printf 'broker: {url: "mqtts://localhost:%s", topic_prefix: ferry/e2e, ca: broker-ca.pem}\nnodes: []   # install-agent --broker fills it\n' "$BROKER_PORT" > "$T/bfleet.yaml"
"$FERRY" status --fleet "$T/bfleet.yaml" > /dev/null 2> "$T/bs0.err" && fail "status --fleet of an empty fleet exits 0"
grep -q 'lists no node yet (ferry install-agent' "$T/bs0.err" || { cat "$T/bs0.err"; fail "status --fleet of an empty fleet: message"; }
"$FERRY" install-agent "$D" --name nat-1 --prefix "$T/dev-nat" --fleet "$T/bfleet.yaml" --broker > "$T/ib.out" 2> "$T/ib.err" ||
  { cat "$T/ib.out" "$T/ib.err"; fail "install-agent --broker"; }
grep -q "as nat-1 (linux/amd64), online on the broker localhost:$BROKER_PORT (listen: none)" "$T/ib.out" || { cat "$T/ib.out"; fail "install-agent --broker output"; }
grep -q '^listen: none' "$T/dev-nat/etc/ferry/ferryd.yaml" && grep -q "url: mqtts://localhost:$BROKER_PORT" "$T/dev-nat/etc/ferry/ferryd.yaml" &&
  grep -q "ca: $T/dev-nat/etc/ferry/identity/broker-ca.pem" "$T/dev-nat/etc/ferry/ferryd.yaml" && cmp -s "$T/broker-ca.pem" "$T/dev-nat/etc/ferry/identity/broker-ca.pem" ||
  { cat "$T/dev-nat/etc/ferry/ferryd.yaml"; fail "the node's config"; }
grep -q 'name: nat-1' "$T/bfleet.yaml" && ! grep -q 'address:' "$T/bfleet.yaml" && ! grep -q '\[\]' "$T/bfleet.yaml" || { cat "$T/bfleet.yaml"; fail "the fleet file of a broker node"; }
"$FERRY" status --fleet "$T/bfleet.yaml" > "$T/bs.out" && grep -q '^nat-1  *ONLINE ' "$T/bs.out" || { cat "$T/bs.out"; fail "status --fleet of the node through the broker"; }
"$FERRY" install-agent "$D" --name nat-2 --prefix "$T/dev-nat2" --broker > /dev/null 2> "$T/ib2.err" && fail "--broker without --fleet"
grep -q -- '--broker takes the broker from the fleet file' "$T/ib2.err" || { cat "$T/ib2.err"; fail "--broker without --fleet: message"; }
[ ! -e "$T/dev-nat2" ] || fail "a refused install-agent --broker left files"
"$FERRY" uninstall-agent "$D" --prefix "$T/dev-nat" --fleet "$T/bfleet.yaml" --name nat-1 > /dev/null 2> "$T/ub.err" || { cat "$T/ub.err"; fail "uninstall of the broker node"; }
pass "install-agent --broker: listen: none and the fleet's broker (its broker.ca too) in the node's config, checked online through the broker, added to the fleet file without an address; without --fleet it says where the broker comes from"
finish
