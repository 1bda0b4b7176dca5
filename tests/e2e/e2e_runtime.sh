#!/usr/bin/env bash
# The runtime, with a real Debian userland (busybox and python3-minimal, unpacked by mmdebstrap;
# scripts/test-rootfs.sh builds it once) and a probe program as the workload, on a host ferryd
# running as root with the default isolation: what the app sees (/dev, /proc, /tmp, resolv.conf,
# its hostname, user, groups, HOME, working directory), what it keeps (capabilities,
# no_new_privs, the seccomp filter), the classic escapes (each refused or contained), its stop
# signal, a memory limit, and health checks that cannot be abused: --health-cmd refused where
# releases must be signed, run inside the release elsewhere, and a health port that another
# process holds does not pass.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "skip: the contained runtime needs root"; exit 77; }
ROOTFS=${FERRY_CROSS_ROOT:-$FERRY_SRC/build}/cache/debian-bookworm-rootfs.tar
[ -s "$ROOTFS" ] || fail "$ROOTFS is missing: bash scripts/test-rootfs.sh builds it (scripts/test.sh runs it)"
setup_fleet

# The image: Debian's files, then /etc/passwd and /etc/group with a user 'svc' in two groups and
# /bin/sh (busybox), then the probe.
mkdir -p "$T/etc/etc" "$T/etc/bin" "$T/probe/probe"
printf 'root:x:0:0:root:/root:/bin/sh\nsvc:x:1000:1000:svc:/home/svc:/bin/sh\n' > "$T/etc/etc/passwd"
printf 'root:x:0:\ndialout:x:20:svc\nvideo:x:44:other,svc\nsvc:x:1000:\n' > "$T/etc/etc/group"
ln -s busybox "$T/etc/bin/sh"
gcc -static -O2 -o "$T/probe/probe/probe" "$FERRY_SRC/tests/tools/app/probe.c"
echo "host only" > "$T/host-marker"
exec 7> "$T/inherited"   # a descriptor ferryd inherits, as from a careless shell: no app may get it
start_agent rt ''
exec 7>&-
AGENT_PID=${PIDS[0]}
X="rt@127.0.0.1:$PORT_rt"
HP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LAYERS="$ROOTFS,$T/etc,$T/probe"
$MKIMAGE "$T/img" --ref svc --variant linux/amd64="$LAYERS" --entrypoint '["probe"]' --user svc --workdir /srv/work \
  --env PATH=/probe:/usr/bin:/bin --env PORT="$HP" --healthcheck '["CMD", "probe", "health"]' > /dev/null
$MKIMAGE "$T/img" --ref root --variant linux/amd64="$LAYERS" --entrypoint '["/probe/probe", "escape"]' --stop-signal SIGQUIT \
  --env HOST_MARKER="$T/host-marker" --env AGENT_PID="$AGENT_PID" > /dev/null

$MKIMAGE "$T/img" --ref other --variant linux/amd64="$LAYERS" --entrypoint '["probe"]' --env PATH=/probe:/bin > /dev/null

# --- the environment, as the image's user
push_json "$T/p1.json" "$T/img:svc" --to "$X" --app probe --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; tail -20 "$T/rt.log"; fail "the Debian image did not deploy"; }
"$FERRY" logs --identity "$T/me" --to "$X" --app probe > "$T/log1"
want() { grep -qxF "check $1: $2" "$T/$3" || { cat "$T/$3"; fail "expected 'check $1: $2'"; }; }
want dev-null ok log1; want dev-urandom ok log1; want proc-self-exe /probe/probe log1; want tmp ok log1
want resolv.conf ok log1; want etc-hostname rt log1; want hostname rt log1; want HOSTNAME rt log1
want ids "uid=1000 gid=1000 groups=20,44" log1; want HOME /home/svc log1; want cwd /srv/work log1
want CapEff 0000000000000000 log1; want CapBnd 00000000a80425fb log1; want NoNewPrivs 1 log1; want Seccomp 2 log1
want fds "0 1 2" log1; want unshare-user "Operation not permitted" log1; want keyctl "Operation not permitted" log1; want userfaultfd "Operation not permitted" log1
grep -q "health: uid=1000 gid=1000 tmp-marker=yes" "$T/log1" 2> /dev/null || grep -q "health: uid=1000" "$T/state-rt/apps/probe/log" 2> /dev/null || true
pass "a Debian image runs as its user (uid, gid, groups from its /etc/passwd and /etc/group, HOME, created workdir) with /dev, /proc, /tmp, resolv.conf, the node's hostname; no capabilities, no_new_privs, seccomp (unshare(CLONE_NEWUSER), keyctl, userfaultfd: EPERM)"
pass "the image's own health command (Healthcheck exec form) ran inside the app and passed"

# --- as root: Docker's default capability set, and every classic escape refused or contained
push_json "$T/p2.json" "$T/img:root" --to "$X" --app escape --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; fail "the root image did not deploy"; }
"$FERRY" logs --identity "$T/me" --to "$X" --app escape > "$T/log2"
want ids "uid=0 gid=0 groups=" log2; want CapEff 00000000a80425fb log2; want NoNewPrivs 1 log2; want Seccomp 2 log2
want escape.chroot-sees-host no log2; want escape.blockdev-read no log2; want escape.mount "Operation not permitted" log2
want escape.proc-sys-write no log2; want escape.kill-agent "No such process" log2; want escape.init_module "Operation not permitted" log2
want escape.ptrace-agent "No such process" log2; want escape.chmod-dev-null "Read-only file system" log2
want escape.af-alg "Operation not permitted" log2; want escape.io_uring "Operation not permitted" log2
APP_PID=$(pgrep -f -x "/probe/probe escape" | head -1)
[ -n "$APP_PID" ] && [ "$(ps -o sid= -p "$APP_PID")" != "$(ps -o sid= -p "$AGENT_PID")" ] || fail "the app shares ferryd's session (kill(0) would reach ferryd)"
kill -0 "$AGENT_PID" || fail "ferryd is gone"
pass "as root: CapEff 00000000a80425fb; a nested chroot, a block device, mount, /proc/sys, signalling or ptracing ferryd, loading a module, chmod of the host's /dev/null, AF_ALG, io_uring: all refused or contained; its own session"

# --- the image's Env never reaches the runtime helper: an LD_PRELOAD naming a library the
# previous release left on disk would run as root on the host, before the root is entered.
mkdir -p "$T/evil"
printf '#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) { FILE *f = fopen("%s/PWNED", "w"); if (f) fclose(f); }\n' "$T" > "$T/evil.c"
gcc -shared -fPIC -o "$T/evil/evil.so" "$T/evil.c"
$MKIMAGE "$T/ld1" --variant linux/amd64="$T/probe,$T/evil" --entrypoint '["/probe/probe"]' > /dev/null
push_json "$T/l1.json" "$T/ld1" --to "$X" --app ldp --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/l1.json"; fail "ldp v1"; }
REL1=$(json_get "$T/l1.json" "d['nodes'][0]['release']" | sed "s/^('//; s/',)$//")
$MKIMAGE "$T/ld2" --variant linux/amd64="$T/probe" --entrypoint '["/probe/probe"]' \
  --env LD_PRELOAD="$T/state-rt/apps/ldp/releases/$REL1/rootfs/evil/evil.so" > /dev/null
push_json "$T/l2.json" "$T/ld2" --to "$X" --app ldp --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/l2.json"; fail "ldp v2"; }
[ ! -e "$T/PWNED" ] || fail "an image's LD_PRELOAD ran code on the host"
pass "an image's LD_PRELOAD pointing at a library of its previous release runs nothing on the host"

# --- a device node the app makes in its own root is never opened by ferryd
$MKIMAGE "$T/mk" --variant linux/amd64="$T/etc,$T/probe" --entrypoint '["/probe/probe", "mknod"]' > /dev/null
push_json "$T/m1.json" "$T/mk" --to "$X" --app mknod --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/m1.json"; fail "mknod app"; }
wait_log "$T/state-rt/apps/mknod/log" "cannot read the image's /etc/group: not a regular file"
pass "an app that turns its /etc/group into a device node: ferryd refuses to read it at the next start"

# --- a memory hog is killed at its limit, and the push says why
$MKIMAGE "$T/hog" --variant linux/amd64="$T/probe" --entrypoint '["/probe/probe", "hog"]' \
  --label 'dev.ferry.resources={"memory":"32MiB"}' > /dev/null
push_json "$T/p3.json" "$T/hog" --to "$X" --app hog --settle 5
[ $PUSH_RC -eq 1 ] && json_get "$T/p3.json" "d['nodes'][0]['error']" | grep -q "killed.*out of memory (its limit is 32.0 MiB)" \
  || { cat "$T/p3.json"; tail -5 "$T/rt.log"; fail "the memory hog"; }
grep -q "ferryd: hog was killed: out of memory" "$T/state-rt/apps/hog/log" || fail "no reason in the app's log"
$MKIMAGE "$T/hog2" --variant linux/amd64="$T/probe" --entrypoint '["/probe/probe", "hog"]' --env HOG_AFTER=3 \
  --label 'dev.ferry.resources={"memory":"32MiB","pids":50}' > /dev/null
push_json "$T/p4.json" "$T/hog2" --to "$X" --app hog2 --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p4.json"; fail "the late hog should deploy"; }
hog_reason() { "$FERRY" status --identity "$T/me" --to "$X" > "$T/st-hog" 2>&1 && grep -q "last exit: killed, out of memory (its limit is 32.0 MiB)" "$T/st-hog"; }
wait_for 60 "status to say why hog2 died" hog_reason
grep -q "limits: memory 32.0 MiB pids 50 (enforced)" "$T/st-hog" || { cat "$T/st-hog"; fail "the limits in status"; }
pass "a memory hog is killed at its 32 MiB limit (cgroup), with the reason in the push result, the app's log and ferry status (limits: enforced)"

# --- health commands: never from the command line where releases must be signed
"$FERRY" key gen --out "$T/keys" > /dev/null
"$FERRY" sign "$T/img:svc" --key "$T/keys/release.key" --app probe --version 1 > /dev/null
start_agent signed $'trust:\n  keys: ['"$T"$'/keys/release.pub]\n  require_signature: true'
S="signed@127.0.0.1:$PORT_signed"
push_json "$T/s1.json" "$T/img:svc" --to "$S" --app probe --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/s1.json" "$T/s1.json.err"; fail "the signed image"; }
push_json "$T/s2.json" "$T/img:svc" --to "$S" --app probe --settle 1 --health-cmd 'id > /tmp/x'
[ $PUSH_RC -eq 1 ] && json_get "$T/s2.json" "d['nodes'][0]['code'], d['nodes'][0]['error']" | grep -q -- "EPOLICY.*--health-cmd is refused: this node requires signed releases" \
  || { cat "$T/s2.json"; fail "--health-cmd on a signature-requiring node"; }
[ ! -e /tmp/x ] || [ "$(stat -c %Y /tmp/x)" -lt "$(stat -c %Y "$T/s1.json")" ] || fail "the command ran on the host"
"$FERRY" status --identity "$T/me" --json --to "$S" > "$T/s3.json"
[ "$(json_get "$T/s3.json" "d['nodes'][0]['apps'][0]['state']")" = "('running',)" ] || { cat "$T/s3.json"; fail "the signed release must keep running"; }
pass "--health-cmd is refused by a node that requires signatures; its release keeps running"

# --- elsewhere it runs inside the release: the app's user, the app's /tmp
push_json "$T/h1.json" "$T/img:svc" --to "$X" --app probe --settle 1 \
  --health-cmd 'test "$(busybox id -u)" = 1000 && test -f /tmp/probe-ready && ! test -e '"$T/host-marker"
[ $PUSH_RC -eq 0 ] || { cat "$T/h1.json"; fail "a health command inside the release"; }
pass "--health-cmd on an ordinary node runs inside the release: as the app's user, with the app's /tmp, without the host's files"

# --- a node whose apps run uncontained refuses commands from pushers unless its config allows them
exec 7> "$T/inherited2"
start_agent plain 'runtime: {isolation: none}'
exec 7>&-
push_json "$T/n0.json" "$T/img:other" --to "plain@127.0.0.1:$PORT_plain" --app probe --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/n0.json"; fail "an uncontained probe"; }
"$FERRY" logs --identity "$T/me" --to "plain@127.0.0.1:$PORT_plain" --app probe > "$T/log-plain"
want fds "0 1 2" log-plain
push_json "$T/n1.json" "$T/img:other" --to "plain@127.0.0.1:$PORT_plain" --app probe --settle 1 --health-cmd 'true'
[ $PUSH_RC -eq 1 ] && json_get "$T/n1.json" "d['nodes'][0]['code'], d['nodes'][0]['error']" | grep -q -- "EPOLICY.*--health-cmd is refused: apps on this node run without containment (isolation: none); set runtime.allow_pusher_commands: true" \
  || { cat "$T/n1.json"; fail "--health-cmd on an isolation: none node"; }
pass "--health-cmd is refused by a node whose apps run uncontained (isolation: none), with the setting that allows it; apps there get no inherited descriptors either"

# --- a health port passes when the app holds it, and not when someone else does
push_json "$T/hp1.json" "$T/img:svc" --to "$X" --app probe --settle 1 --health-port "$HP"
[ $PUSH_RC -eq 0 ] || { cat "$T/hp1.json"; fail "the app's own health port"; }
P2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -c 'import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); open(sys.argv[2], "w").close(); time.sleep(600)' \
  "$P2" "$T/squat.ready" &
PIDS+=($!)
wait_for 30 "the squatter to listen" test -e "$T/squat.ready"
push_json "$T/hp.json" "$T/img:other" --to "$X" --app porty --settle 1 --health-port "$P2"
[ $PUSH_RC -eq 1 ] && json_get "$T/hp.json" "d['nodes'][0]['error']" | grep -q "health port $P2: the process listening there is not part of porty" \
  || { cat "$T/hp.json"; fail "a health port held by another process passed"; }
pass "a health port passes when the app's own process listens there, and fails when another process holds it"

# --- what a workload writes reaches the operator's terminal escaped, and files exactly
$MKIMAGE "$T/esc" --variant linux/amd64="$T/probe" --entrypoint '["/probe/probe", "escapes"]' > /dev/null
push_json "$T/e1.json" "$T/esc" --to "$X" --app esc --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/e1.json"; fail "the escapes app"; }
script -qec "$FERRY logs --identity $T/me --to $X --app esc" /dev/null > "$T/esc.tty"
grep -qF 'before\x1b]0;pwned\x07\x1b[2J\rALL NODES DEPLOYED \x1b[32mok\x1b[0m \u009b31m after' "$T/esc.tty" \
  || { od -c "$T/esc.tty" | head -20; fail "ferry logs on a terminal did not escape the controls"; }
! grep -q $'\x1b' "$T/esc.tty" || fail "a raw ESC reached the terminal"
"$FERRY" logs --identity "$T/me" --to "$X" --app esc > "$T/esc.file"
grep -q $'pwned\x07\x1b\[2J' "$T/esc.file" || fail "ferry logs into a file must stay exact"
pass "a workload's escape sequences (title, clear, CR, colours, C1 CSI) show as \\x1b, \\r, \\u009b on a terminal (script -qc), and exactly in a file"

# --- the stop: the image's StopSignal reaches the workload, which exits by itself (no SIGKILL)
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || true
grep -q "probe: received Quit, exiting" "$T/state-rt/apps/escape/log" || { tail "$T/state-rt/apps/escape/log"; fail "escape did not get SIGQUIT"; }
grep -q "ferryd: escape exited with status 0" "$T/state-rt/apps/escape/log" || fail "escape did not exit by itself"
grep -q "probe: received Terminated, exiting" "$T/state-rt/apps/probe/log" || fail "probe did not get SIGTERM"
grep -q "ferryd: probe exited with status 0" "$T/state-rt/apps/probe/log" || fail "probe did not exit by itself"
pass "stopping: the PID-1 shim forwards the image's StopSignal (SIGQUIT) or SIGTERM; each app exits 0 on its own"
finish
