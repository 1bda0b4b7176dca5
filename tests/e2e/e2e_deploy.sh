#!/usr/bin/env bash
# Deploy end to end, as the README tells a user: one multi-arch image (amd64 and arm64 static
# binaries) pushed to a host ferryd and to an arm64 ferryd under qemu-aarch64 (exec_wrapper);
# each node runs its own variant. Then v1 -> v2 sends only the changed layer, a failing v3 is
# rolled back, `ferry rollback` by hand, logs, status, several apps, a wrong-arch binary and an
# image with no matching variant.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
setup_fleet
build_apps "$T/app"
mkdir -p "$T/data1" "$T/data2"
echo "data v1" > "$T/data1/data.txt"
echo "data v2" > "$T/data2/data.txt"
IMG=$T/img
$MKIMAGE "$IMG" --ref v1 --variant linux/amd64="$T/app/x64,$T/data1" --variant linux/arm64="$T/app/a64,$T/data1" \
  --env GREETING=hello-ferry --env VERSION=1 > /dev/null
$MKIMAGE "$IMG" --ref v2 --variant linux/amd64="$T/app/x64,$T/data2" --variant linux/arm64="$T/app/a64,$T/data2" \
  --env GREETING=hello-ferry --env VERSION=2 > /dev/null
$MKIMAGE "$IMG" --ref v3 --variant linux/amd64="$T/app/x64,$T/data2" --variant linux/arm64="$T/app/a64,$T/data2" \
  --env GREETING=hello-ferry --env VERSION=3 --env FAIL_WITH=3 > /dev/null

start_agent x64 ''
FERRYD_BIN=$A64 start_agent pi-arm64 $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
X="x64@127.0.0.1:$PORT_x64"
P="pi-arm64@127.0.0.1:$PORT_pi_arm64"

# --- two nodes, two variants
push_json "$T/p1.json" "$IMG:v1" --to "$X" --to "$P" --app hello --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "push v1 exit $PUSH_RC"; }
[ "$(json_get "$T/p1.json" "[(n['name'], n['platform'], n['result'], n['blobs_sent']) for n in d['nodes']]")" = \
  "([('x64', 'linux/amd64', 'deployed', 2), ('pi-arm64', 'linux/arm64', 'deployed', 2)],)" ] || { cat "$T/p1.json"; fail "v1 result"; }
pass "v1 deployed to an amd64 and an emulated arm64 node"
"$FERRY" logs --identity "$T/me" --to "$X" --app hello > "$T/log-x"
"$FERRY" logs --identity "$T/me" --to "$P" --app hello > "$T/log-a"
grep -q 'hello from x86_64, GREETING=hello-ferry, VERSION=1' "$T/log-x" || { cat "$T/log-x"; fail "x64 log"; }
grep -q 'hello from aarch64, GREETING=hello-ferry, VERSION=1' "$T/log-a" || { cat "$T/log-a"; fail "arm64 log"; }
pass "each node runs its own variant: its log shows its uname -m and the image's Env"

"$FERRY" status --identity "$T/me" --json --to "$X" --to "$P" > "$T/s1.json"
V1_X=$(json_get "$T/p1.json" "d['nodes'][0]['release']" | sed "s/^('//; s/',)$//")
[ "$(json_get "$T/s1.json" "[(a['name'], a['state'], a['restarts']) for a in d['nodes'][0]['apps']]")" = "([('hello', 'running', 0)],)" ] \
  || { cat "$T/s1.json"; fail "status apps"; }
pass "status lists the app, running, with its release"

# --- only the change travels
push_json "$T/p2.json" "$IMG:v2" --to "$X" --to "$P" --app hello --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; fail "push v2"; }
DATA2=$(stat -c %s "$IMG/blobs/sha256/$(python3 -c "
import json,sys
ix=json.load(open('$IMG/index.json'))
v2=[m for m in ix['manifests'] if m['annotations']['org.opencontainers.image.ref.name']=='v2'][0]
nested=json.load(open('$IMG/blobs/sha256/'+v2['digest'][7:]))
man=json.load(open('$IMG/blobs/sha256/'+nested['manifests'][0]['digest'][7:]))
print(man['layers'][1]['digest'][7:])")")
[ "$(json_get "$T/p2.json" "[(n['blobs_sent'], n['blobs_skipped'], n['bytes_sent']) for n in d['nodes']][0]")" = "((1, 1, $DATA2),)" ] \
  || { cat "$T/p2.json"; fail "v2 should send only the changed layer ($DATA2 bytes)"; }
pass "v1 -> v2 sends only the changed layer ($DATA2 bytes; the app layer is skipped)"
"$FERRY" logs --identity "$T/me" --to "$P" --app hello --tail 3 > "$T/log-a2"
grep -q 'VERSION=2' "$T/log-a2" || fail "v2 not running on arm64"
[ "$(wc -l < "$T/log-a2")" -le 3 ] || fail "--tail 3 printed more"
pass "v2 runs on both; logs --tail works"

# --- a release whose process exits at once is rolled back
push_json "$T/p3.json" "$IMG:v3" --to "$X" --to "$P" --app hello --settle 2
[ $PUSH_RC -eq 1 ] || fail "a failing release must make push exit 1"
[ "$(json_get "$T/p3.json" "[n['result'] for n in d['nodes']]")" = "(['rolled-back', 'rolled-back'],)" ] || { cat "$T/p3.json"; fail "v3 result"; }
json_get "$T/p3.json" "d['nodes'][0]['error']" | grep -q 'exited with status 3' || { cat "$T/p3.json"; fail "rollback reason"; }
json_get "$T/p3.json" "d['nodes'][1]['log_tail']" | grep -q 'VERSION=3' || fail "the last log lines travel with the result"
"$FERRY" status --identity "$T/me" --json --to "$X" > "$T/s3.json"
V2_X=$(json_get "$T/p2.json" "d['nodes'][0]['release']")
[ "$(json_get "$T/s3.json" "d['nodes'][0]['apps'][0]['release'], d['nodes'][0]['apps'][0]['state']")" = "($(echo "$V2_X" | sed 's/^(//; s/,)$//'), 'running')" ] \
  || { cat "$T/s3.json"; fail "after the rollback v2 must run"; }
pass "a release that exits at once is rolled back; the push says why (exit code, last log lines); v2 runs again"

# --- a health port that never answers: rolled back, and the push says so
push_json "$T/ph.json" "$IMG:v2" --to "$X" --app hello --settle 1 --health-port 1
[ $PUSH_RC -eq 1 ] && json_get "$T/ph.json" "d['nodes'][0]['result'], d['nodes'][0]['error']" | grep -q "rolled-back.*health port 1" \
  || { cat "$T/ph.json"; fail "health port"; }
# A health command runs inside the release (its root, as its user): the image needs a shell.
mkdir -p "$T/bb/bin" && cp /bin/busybox "$T/bb/bin/sh"
$MKIMAGE "$T/hc" --variant linux/amd64="$T/app/x64,$T/data2,$T/bb" --env VERSION=hc > /dev/null
push_json "$T/pc.json" "$T/hc" --to "$X" --app hello --settle 1 --health-cmd 'test -x /app && test -f /data.txt'
[ $PUSH_RC -eq 0 ] || { cat "$T/pc.json"; fail "a passing health command"; }
push_json "$T/pc2.json" "$T/hc" --to "$X" --app hello --settle 1 --health-cmd 'test -f /etc/shadow-of-the-host'
[ $PUSH_RC -eq 1 ] && json_get "$T/pc2.json" "d['nodes'][0]['error']" | grep -q "health command 'test -f /etc/shadow-of-the-host' exited with status 1" \
  || { cat "$T/pc2.json"; fail "a failing health command"; }
pass "--health-port that does not answer rolls back; --health-cmd runs inside the release: passing deploys, failing rolls back"

# --- a workload that crashes after it settled is restarted with backoff
$MKIMAGE "$T/crashy" --variant linux/amd64="$T/app/x64" --env EXIT_AFTER=1 > /dev/null
push_json "$T/pr.json" "$T/crashy" --to "$X" --app crashy --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/pr.json"; fail "crashy deploy"; }
restarted_twice() {
  "$FERRY" status --identity "$T/me" --json --to "$X" > "$T/sr.json" &&
    [ "$(json_get "$T/sr.json" "[a['restarts'] for a in d['nodes'][0]['apps'] if a['name'] == 'crashy'][0] >= 2")" = "(True,)" ]
}
try_for 60 restarted_twice || true
[ "$(json_get "$T/sr.json" "[a['restarts'] for a in d['nodes'][0]['apps'] if a['name'] == 'crashy'][0] >= 2")" = "(True,)" ] || { cat "$T/sr.json"; fail "no restarts"; }
grep -q 'restart 2 after 2000 ms' "$T/x64.log" || fail "the backoff does not grow"
pass "a workload that exits later is restarted with a growing backoff; status counts the restarts"

# --- ferry rollback by hand
"$FERRY" status --identity "$T/me" --json --to "$X" > "$T/before.json"
BEFORE=$(json_get "$T/before.json" "[(a['release'], a['previous']) for a in d['nodes'][0]['apps'] if a['name'] == 'hello'][0]")
"$FERRY" rollback --identity "$T/me" --to "$X" --app hello > "$T/rb.txt" || { cat "$T/rb.txt"; fail "manual rollback"; }
"$FERRY" status --identity "$T/me" --json --to "$X" > "$T/after.json"
AFTER=$(json_get "$T/after.json" "[(a['previous'], a['release']) for a in d['nodes'][0]['apps'] if a['name'] == 'hello'][0]")
[ "$BEFORE" = "$AFTER" ] || fail "rollback: before (current, previous) $BEFORE, after (previous, current) $AFTER"
hello_started() { "$FERRY" logs --identity "$T/me" --to "$X" --app hello --tail 3 | grep -q "starting hello release"; }
wait_for 60 "the previous release to start again" hello_started
pass "ferry rollback switches to the previous release and back again is possible (current and previous swap)"

# --- several apps per node
push_json "$T/p4.json" "$IMG:v2" --to "$X" --app second --settle 1
[ $PUSH_RC -eq 0 ] || fail "second app"
"$FERRY" status --identity "$T/me" --json --to "$X" > "$T/s4.json"
[ "$(json_get "$T/s4.json" "sorted(a['name'] for a in d['nodes'][0]['apps'])")" = "(['crashy', 'hello', 'second'],)" ] || fail "several apps"
pass "several apps per node, each with its own releases"

# Without --app the name is the layout's folder, never the tag: v1 then v2 is one app.
push_json "$T/n1.json" "$IMG:v1" --to "$X" --settle 0.5
push_json "$T/n2.json" "$IMG:v2" --to "$X" --settle 0.5
[ "$(json_get "$T/n2.json" "d['nodes'][0]['app'], d['nodes'][0]['result']")" = "('img', 'deployed')" ] || { cat "$T/n2.json"; fail "the derived app name"; }
"$FERRY" status --identity "$T/me" --json --to "$X" > "$T/n3.json"
[ "$(json_get "$T/n3.json" "sorted(a['name'] for a in d['nodes'][0]['apps'] if a['name'] in ('img', 'v1', 'v2'))")" = "(['img'],)" ] \
  || { cat "$T/n3.json"; fail "v1 and v2 became two apps"; }
pass "without --app, IMG:v1 then IMG:v2 deploy as one app named after the layout's folder (never the tag)"

# --- a wrong-arch binary: caught with a clear exec format error before the running release stops
$MKIMAGE "$T/wrong" --variant linux/arm64="$T/app/x64" > /dev/null
HELLO_P="[a for a in d['nodes'][0]['apps'] if a['name'] == 'hello'][0]"
"$FERRY" status --identity "$T/me" --json --to "$P" > "$T/s5a.json"
push_json "$T/p5.json" "$T/wrong" --to "$P" --app hello --settle 1
[ $PUSH_RC -eq 1 ] || fail "wrong arch accepted"
json_get "$T/p5.json" "d['nodes'][0]['error']" | grep -q 'exec format error: /app is an x86-64 ELF, this node runs linux/arm64' \
  || { cat "$T/p5.json"; fail "exec format error message"; }
[ "$(json_get "$T/p5.json" "d['nodes'][0]['result'], d['nodes'][0]['code']")" = "('failed', 'EEXEC')" ] || { cat "$T/p5.json"; fail "wrong arch: failed/EEXEC"; }
"$FERRY" status --identity "$T/me" --json --to "$P" > "$T/s5b.json"
[ "$(json_get "$T/s5a.json" "$HELLO_P['release'], $HELLO_P['state']")" = "$(json_get "$T/s5b.json" "$HELLO_P['release'], $HELLO_P['state']")" ] \
  || { cat "$T/s5a.json" "$T/s5b.json"; fail "the running release was disturbed by a wrong-arch push"; }
pass "a wrong-arch binary gets 'exec format error: /app is an x86-64 ELF, this node runs linux/arm64' before anything stops"

# --- nothing fits
$MKIMAGE "$T/riscv" --variant linux/riscv64="$T/data1" --variant linux/s390x="$T/data1" > /dev/null
push_json "$T/p6.json" "$T/riscv" --to "$P" --app hello
[ $PUSH_RC -eq 1 ] || fail "no-variant push exit status"
json_get "$T/p6.json" "d['nodes'][0]['error']" | grep -q 'it runs linux/arm64; the image offers linux/riscv64, linux/s390x' \
  || { cat "$T/p6.json"; fail "no-variant message"; }
pass "no matching variant: the error names the node's platform and every platform offered"

# --- Docker media types and an index without platforms are normal input
$MKIMAGE "$T/docker" --docker --compress none --variant linux/amd64="$T/app/x64,$T/data1" --env VERSION=d > /dev/null
push_json "$T/p7.json" "$T/docker" --to "$X" --app docker --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p7.json" "$T/p7.json.err"; fail "docker media types / uncompressed layers"; }
pass "Docker manifest-list media types and uncompressed layers deploy"

# --- gzip layers (as docker and buildah write them) are recompressed to zstd once, cached
$MKIMAGE "$T/gz" --docker --compress gzip --variant linux/amd64="$T/app/x64,$T/data2" --variant linux/arm64="$T/app/a64,$T/data2" --env VERSION=gz > /dev/null
tree_sum() { (cd "$1" && find . -printf '%p %s %m\n' | sort && find . -type f -exec sha256sum {} + | sort) | sha256sum; }
before=$(tree_sum "$T/gz")
"$FERRY" push --identity "$T/me" "$T/gz" --to "$X" --app gz --settle 1 > "$T/gz.out" 2> "$T/gz.err" || { cat "$T/gz.out" "$T/gz.err"; fail "gzip push"; }
grep -q 'recompressed 2 gzip layer(s) to zstd' "$T/gz.err" || { cat "$T/gz.err"; fail "no recompression reported"; }
ls "$FERRY_HOME/cache/zstd/" | grep -q . || fail "no cached rewrite in \$FERRY_HOME/cache"
[ "$(tree_sum "$T/gz")" = "$before" ] || fail "the push wrote into the layout"
# Both digests are named: the zstd manifest sent, and the gzip one skopeo or a registry shows.
grep -q "the zstd rewrite of sha256:" "$T/gz.err" || { cat "$T/gz.err"; fail "the source manifest digest is not named"; }
push_json "$T/gz2.json" "$T/gz" --to "$P" --app gz --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/gz2.json" "$T/gz2.json.err"; fail "gzip push to arm64"; }
"$FERRY" logs --identity "$T/me" --to "$P" --app gz | grep -q 'aarch64.*VERSION=gz' || fail "gzip image on arm64"
pass "gzip layers are recompressed to zstd once, cached in \$FERRY_HOME/cache (the layout untouched), and deploy"

# --- shutdown with apps running and a health check in flight: every handle is closed, the loop
# ends by itself (uv_loop_close returns 0) and the exit status is 0; the workloads are stopped.
"$FERRY" push --identity "$T/me" "$T/hc" --to "$X" --app slowcheck --settle 0 \
  --health-cmd "while :; do sleep 1; done # $T" > "$T/sc.out" 2>&1 &
SC=$!
health_running() { pgrep -f "^/bin/sh -c while :; do sleep 1; done # $T" > /dev/null; }
wait_for 60 "the health command to run" health_running
XPID=${PIDS[0]}
kill -TERM "$XPID"
set +e; wait "$XPID"; XRC=$?; set -e
wait "$SC" || true
[ "$XRC" -eq 0 ] || { tail -20 "$T/x64.log"; fail "ferryd exited with $XRC after SIGTERM"; }
grep -q 'still open at exit\|still has work at exit' "$T/x64.log" && { grep 'still' "$T/x64.log"; fail "handles left open at exit"; }
grep -q 'ferryd: .* info stopped' "$T/x64.log" || fail "no 'stopped' line"
grep -q "app slowcheck: failed: the agent is shutting down" "$T/x64.log" || { grep -e slowcheck -e SIGTERM "$T/x64.log"; fail "the deploy in its health check was not ended"; }
no_workloads() { ! pgrep -f "$T/state-x64/apps/" > /dev/null; }
try_for 30 no_workloads || { pgrep -af "$T/state-x64/apps/" || true; fail "workloads outlived their agent"; }
no_health() { ! health_running; }
try_for 30 no_health || fail "the health command outlived its agent"
pass "SIGTERM during a health check: the deploy ends, the workloads stop, every handle is closed (uv_loop_close 0), exit 0"

# --- the same during the settle time, with the pusher's connection still open (its close and the
# deploy's end race: under valgrind this showed a use-after-free once)
start_agent settle ''
"$FERRY" push --identity "$T/me" "$IMG:v2" --to "settle@127.0.0.1:$PORT_settle" --app hello --settle 30 > "$T/st.out" 2>&1 &
ST=$!
wait_log "$T/settle.log" 'app hello: started release'
SPID=${PIDS[-1]}
kill -TERM "$SPID"
set +e; wait "$SPID"; SRC_RC=$?; wait "$ST"; set -e
[ "$SRC_RC" -eq 0 ] || { tail -20 "$T/settle.log"; fail "ferryd exited with $SRC_RC after SIGTERM during a settle"; }
grep -q 'still open at exit\|still has work at exit' "$T/settle.log" && fail "handles left open at exit (settle)"
pass "SIGTERM during a settle with the pusher connected: exit 0, every handle closed"
finish
