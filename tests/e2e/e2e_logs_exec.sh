#!/usr/bin/env bash
# Logs and exec as a user drives them from the laptop, on a host ferryd and an arm64 ferryd under
# qemu-aarch64: stdout and stderr kept apart (--stream), --timestamps, --since, `ferry logs -f`
# from two nodes showing lines the apps write after it started (each prefixed by its node);
# and `ferry exec` into a contained app (a Debian userland on a host ferryd running as root)
# proving it runs inside it (its hostname, a mount namespace that is not ferryd's), with stdin,
# a tty and the command's exit code, refused where allow_exec is off and where apps run without
# isolation.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
setup_fleet
build_apps "$T/app"
IMG=$T/svc
$MKIMAGE "$IMG" --ref v1 --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=1 > /dev/null

F=$T/fleet.yaml
start_agent h1 'runtime: {isolation: none}
allow_exec: true'
FERRYD_BIN=$A64 start_agent pi $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
printf 'nodes:\n  - {name: h1, address: "127.0.0.1:%s"}\n  - {name: pi, address: "127.0.0.1:%s"}\n' "$PORT_h1" "$PORT_pi" > "$F"
fl() { "$FERRY" "$@" --identity "$T/me" --fleet "$F"; }
H1="h1@127.0.0.1:$PORT_h1"
push_json "$T/p1.json" "$IMG:v1" --fleet "$F" --app svc --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "push"; }
wait_log "$T/state-h1/apps/svc/log" 'stderr from x86_64'
wait_log "$T/state-pi/apps/svc/log" 'stderr from aarch64'

# --- streams, timestamps, since
lg() { "$FERRY" logs --identity "$T/me" --to "$H1" --app svc "$@"; }
lg > "$T/all.txt"
grep -qx 'hello from x86_64, GREETING=(unset), VERSION=1' "$T/all.txt" && grep -qx 'stderr from x86_64' "$T/all.txt" \
  || { cat "$T/all.txt"; fail "logs shows stdout and stderr"; }
grep -q '^ferryd: starting svc' "$T/all.txt" || { cat "$T/all.txt"; fail "logs shows ferryd's own lines"; }
lg --stream stderr > "$T/err.txt"
grep -qx 'stderr from x86_64' "$T/err.txt" && ! grep -q 'hello from' "$T/err.txt" && ! grep -q '^ferryd:' "$T/err.txt" \
  || { cat "$T/err.txt"; fail "--stream stderr"; }
lg --stream stdout > "$T/out.txt"
grep -q 'hello from x86_64' "$T/out.txt" && ! grep -q 'stderr from' "$T/out.txt" || { cat "$T/out.txt"; fail "--stream stdout"; }
lg --timestamps > "$T/ts.txt"
grep -Eq '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z hello from x86_64' "$T/ts.txt" \
  || { cat "$T/ts.txt"; fail "--timestamps"; }
# A line recorded long ago (in the rotated log, as the agent writes records): --since leaves it out.
printf '2020-01-02T03:04:05.678Z O a line from 2020\n' > "$T/state-h1/apps/svc/log.1"
lg --timestamps > "$T/old.txt"
grep -qx '2020-01-02T03:04:05.678Z a line from 2020' "$T/old.txt" || { cat "$T/old.txt"; fail "the rotated log is read"; }
lg --since 10m > "$T/since.txt"
! grep -q 'a line from 2020' "$T/since.txt" && grep -q 'hello from x86_64' "$T/since.txt" || { cat "$T/since.txt"; fail "--since 10m"; }
set +e
lg --since yesterday 2> "$T/bad1"; r1=$?
lg --stream both 2> "$T/bad2"; r2=$?
"$FERRY" stop --identity "$T/me" --to "$H1" --app svc --follow 2> "$T/bad3"; r3=$?
set -e
[ "$r1$r2$r3" = 222 ] || fail "bad logs flags: exit codes $r1$r2$r3"
grep -q -- "--since: a duration such as 30s" "$T/bad1" && grep -q -- "--stream: stdout, stderr or all, not 'both'" "$T/bad2" \
  && grep -q -- "--follow goes with ferry logs" "$T/bad3" || { cat "$T/bad1" "$T/bad2" "$T/bad3"; fail "bad logs flags: messages"; }
pass "logs: stdout and stderr apart (--stream), --timestamps as recorded, --since leaves out older lines; bad flags exit 2"

# --- logs -f from two nodes: lines written after it started, each with its node's name
fl logs --app svc -f > "$T/follow.txt" 2> "$T/follow.err" &
FOLLOW=$!
wait_log "$T/follow.txt" '^h1: hello from x86_64'
wait_log "$T/follow.txt" '^pi: hello from aarch64'
! grep -q 'usr1 from' "$T/follow.txt" || fail "usr1 lines before the signal"
kill -USR1 "$(cat "$T/state-h1/apps/svc/pid")" "$(cat "$T/state-pi/apps/svc/pid")"
wait_log "$T/follow.txt" '^h1: usr1 from x86_64$'
wait_log "$T/follow.txt" '^pi: usr1 from aarch64$'
wait_log "$T/follow.txt" '^pi: usr1 on stderr from aarch64$'
kill -0 $FOLLOW || { cat "$T/follow.err"; fail "logs -f ended by itself"; }
kill $FOLLOW; wait $FOLLOW 2> /dev/null || true
# One node: no prefix; --stream narrows what is followed too.
"$FERRY" logs --identity "$T/me" --to "$H1" --app svc -f --stream stderr --tail 1 > "$T/follow1.txt" 2>&1 &
FOLLOW=$!
wait_log "$T/follow1.txt" '^usr1 on stderr from x86_64$'
kill -USR1 "$(cat "$T/state-h1/apps/svc/pid")"
wait_log "$T/follow1.txt" '^usr1 on stderr from x86_64$' 2
kill $FOLLOW; wait $FOLLOW 2> /dev/null || true
! grep -q '^usr1 from' "$T/follow1.txt" || { cat "$T/follow1.txt"; fail "-f --stream stderr showed stdout"; }
# `ferry logs -f | head -1`: once head is gone, the next line ends ferry (as it ends kubectl).
( "$FERRY" logs --identity "$T/me" --to "$H1" --app svc -f --tail 1 | head -1 > "$T/head.txt" ) &
HEADP=$!
wait_for 60 "head's line" test -s "$T/head.txt"
kill -USR1 "$(cat "$T/state-h1/apps/svc/pid")"
wait_for 60 "ferry logs -f | head to end" bash -c "! kill -0 $HEADP 2> /dev/null"
grep -q 'peer .*: ' "$T/h1.log" && kill -0 "${PIDS[0]}" || fail "the agent went away with its follower"
pass "logs -f on two nodes (one under qemu): the lines the apps wrote after it started, prefixed h1:/pi:; one node unprefixed, --stream kept"

# --- a followed app that is removed ends its followers (they do not hold a slot for ever)
push_json "$T/p9.json" "$IMG:v1" --to "$H1" --app gone --settle 0.5
"$FERRY" logs --identity "$T/me" --to "$H1" --app gone -f > "$T/gone.txt" 2> "$T/gone.err" &
FOLLOW=$!
wait_log "$T/gone.txt" 'hello from x86_64'
"$FERRY" rm --identity "$T/me" --to "$H1" --app gone > /dev/null || fail "rm of a followed app"
wait_for 60 "the follower to end" bash -c "! kill -0 $FOLLOW 2> /dev/null"
set +e; wait $FOLLOW; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "the app was removed" "$T/gone.err" || { cat "$T/gone.err"; fail "the follower of a removed app"; }
pass "ferry rm ends the app's followers with the reason"

# --- exec refused: without isolation (h1), and where allow_exec is off (pi)
set +e
"$FERRY" exec "$H1" --app svc --identity "$T/me" -- /app > /dev/null 2> "$T/ex1"; r1=$?
"$FERRY" exec pi --fleet "$F" --identity "$T/me" --app svc -- /app > /dev/null 2> "$T/ex2"; r2=$?
"$FERRY" exec "$H1" --identity "$T/me" -- /app 2> "$T/ex3"; r3=$?
set -e
[ "$r1$r2$r3" = 1251252 ] || fail "exec refusals: exit codes $r1 $r2 $r3"
grep -q "exec needs a contained app: svc runs no isolation here" "$T/ex1" || { cat "$T/ex1"; fail "exec on isolation none"; }
grep -q "exec is off on pi: its agent config does not say allow_exec: true" "$T/ex2" || { cat "$T/ex2"; fail "exec without allow_exec"; }
grep -q "exec needs --app NAME" "$T/ex3" || { cat "$T/ex3"; fail "exec without --app"; }
pass "exec refused on a node without allow_exec and on one running apps without isolation (exit 125, the reason)"

# --- exec into a contained app
[ "$(id -u)" = 0 ] || { finish; exit 0; }
ROOTFS=${FERRY_CROSS_ROOT:-$FERRY_SRC/build}/cache/debian-bookworm-rootfs.tar
[ -s "$ROOTFS" ] || fail "$ROOTFS is missing: bash scripts/test-rootfs.sh builds it (scripts/test.sh runs it)"
mkdir -p "$T/svc-layer/app"
cp "$T/app/x64/app" "$T/svc-layer/app/hello"
$MKIMAGE "$T/deb" --ref v1 --variant linux/amd64="$ROOTFS,$T/svc-layer" --entrypoint '["/app/hello"]' --env PATH=/usr/bin:/bin > /dev/null
start_agent ct 'allow_exec: true'
CT="ct@127.0.0.1:$PORT_ct"
CT_PID=${PIDS[${#PIDS[@]}-1]}
push_json "$T/p2.json" "$T/deb:v1" --to "$CT" --app deb --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; tail -20 "$T/ct.log"; fail "the contained app did not deploy"; }
ex() { "$FERRY" exec "$CT" --app deb --identity "$T/me" "$@"; }
[ "$(ex -- busybox hostname)" = ct ] || fail "exec hostname: not the app's"
INSIDE=$(ex -- busybox readlink /proc/self/ns/mnt)
[ -n "$INSIDE" ] && [ "$INSIDE" != "$(readlink /proc/$CT_PID/ns/mnt)" ] || fail "exec ran in ferryd's mount namespace ($INSIDE)"
ex -- busybox test -e /app/hello || fail "exec does not see the release's files"
set +e; ex -- busybox sh -c 'echo to-out; echo to-err >&2; exit 7' > "$T/o.txt" 2> "$T/e.txt"; rc=$?; set -e
[ $rc -eq 7 ] && [ "$(cat "$T/o.txt")" = to-out ] && [ "$(cat "$T/e.txt")" = to-err ] \
  || { cat "$T/o.txt" "$T/e.txt"; fail "exec: exit code 7 and the streams (got $rc)"; }
[ "$(printf 'one\ntwo\n' | ex -i -- busybox cat)" = "$(printf 'one\ntwo')" ] || fail "exec -i: stdin"
[ "$(ex -t -- busybox sh -c '[ -t 1 ] && echo on-a-tty' | tr -d '\r')" = on-a-tty ] || fail "exec -t: no terminal"
set +e; ex -- /no/such/program 2> "$T/e2.txt"; rc=$?; set -e
[ $rc -ge 125 ] || { cat "$T/e2.txt"; fail "exec of a missing program (got $rc)"; }
grep -q "app deb: exec busybox ..." "$T/ct.log" || fail "the agent does not log the exec"
kill -0 "$CT_PID" || fail "the agent died"
pass "exec: inside the app (hostname ct, a mount namespace not ferryd's, the release's files), stdout/stderr apart, exit code 7, -i stdin, -t a terminal"

# --- exec under pressure: stdin from a file and /dev/null, a command slower than its input, a
# reader slower than the output, and a pusher that goes away
head -c 100000 /dev/urandom > "$T/in.bin"
[ "$(ex -i -- busybox md5sum < "$T/in.bin" | cut -d' ' -f1)" = "$(md5sum < "$T/in.bin" | cut -d' ' -f1)" ] || fail "exec -i < a file"
[ "$(ex -i -- busybox wc -c < /dev/null | tr -d ' ')" = 0 ] || fail "exec -i < /dev/null"
GOT=$(head -c 3000000 /dev/zero | ex -i -- busybox sh -c "busybox sleep 2; busybox wc -c" | tr -d " ")
[ "$GOT" = 3000000 ] \
  || fail "exec -i: input for a command that reads late was lost or refused (got $GOT)"
[ "$(ex -- busybox sh -c 'busybox head -c 3000000 /dev/zero; exit 3' | (sleep 2; wc -c) | tr -d ' ')" = 3000000 ] \
  || fail "exec: output to a slow reader was cut"
"$FERRY" exec "$CT" --app deb --identity "$T/me" -- busybox sleep 777 > /dev/null 2>&1 &
EXP=$!
sleep_runs() { pgrep -f '^[^ ]*busybox sleep 777' > /dev/null; }
wait_for 60 "the exec'd command to start" sleep_runs
kill -TERM $EXP; wait $EXP 2> /dev/null || true
wait_for 60 "the command to go with its pusher" bash -c '! pgrep -f "^[^ ]*busybox sleep 777" > /dev/null'
no_zombie() { ! ps -o stat= --ppid "$CT_PID" | grep -q Z; }
wait_for 30 "no zombie under ferryd" no_zombie
kill -0 "$CT_PID" && "$FERRY" status --identity "$T/me" --to "$CT" > /dev/null || fail "the agent after the attacks"
pass "exec: stdin from a file and /dev/null, 3 MB into a command that reads late, 3 MB out to a slow reader, all intact; Ctrl-C kills the command, no zombie left"
finish
