#!/usr/bin/env bash
# An app over its life, as a user drives it from the laptop: three host ferryd and one arm64
# ferryd under qemu-aarch64 in one fleet file. Covers: a double push reporting `unchanged` with
# the same pid and previous kept (and `ferry plan` saying so; --force deploys again), stop /
# start / restart / rm with and without --purge (stop survives an agent restart), --replicas 3
# then 1 leaving one copy, --revert-on-halt removing first installs, and a canary per variant
# catching an arm64-only failure before any wave.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
setup_fleet
build_apps "$T/app"
IMG=$T/svc
$MKIMAGE "$IMG" --ref v1 --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=1 > /dev/null
$MKIMAGE "$IMG" --ref v2 --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=2 > /dev/null
$MKIMAGE "$IMG" --ref armbad --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=3 \
  --env FAIL_ON_ARCH=aarch64 > /dev/null
$MKIMAGE "$IMG" --ref h3bad --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=4 \
  --env FAIL_ON_NODE=h3 > /dev/null

F=$T/fleet.yaml
echo "nodes:" > "$F"
for n in h1 h2 h3; do
  start_agent "$n" 'runtime: {isolation: none, allow_pusher_commands: true}'
  var="PORT_$n"
  printf '  - {name: %s, address: "127.0.0.1:%s"}\n' "$n" "${!var}" >> "$F"
done
FERRYD_BIN=$A64 start_agent pi $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
printf '  - {name: pi, address: "127.0.0.1:%s"}\n' "$PORT_pi" >> "$F"
printf 'groups:\n  one: [h1]\n  amd: [h1, h2, h3]\n' >> "$F"
fl() { "$FERRY" "$@" --identity "$T/me" --fleet "$F"; }
H1="h1@127.0.0.1:$PORT_h1"
pid_of() { cat "$T/state-$1/apps/$2/pid" 2>/dev/null; }
app_field() { # NODE APP FIELD: from ferry status --json
  fl status --group "${4:-amd}" --json > "$T/st.json"
  json_get "$T/st.json" "[a.get('$3') for n in d['nodes'] if n['name']=='$1' for a in n['apps'] if a['name']=='$2']"
}
copies() { pgrep -f "$T/state-[a-z0-9]*/apps/$1/releases/" | wc -l; }

# --- idempotent pushes
push_json "$T/p1.json" "$IMG:v1" --fleet "$F" --group one --app svc --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "first push"; }
push_json "$T/p2.json" "$IMG:v2" --fleet "$F" --group one --app svc --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json"; fail "second push"; }
PID=$(pid_of h1 svc); REL=$(app_field h1 svc release); PREV=$(app_field h1 svc previous)
fl plan "$IMG:v2" --group one --app svc > "$T/plan.txt" 2>&1 || { cat "$T/plan.txt"; fail "plan"; }
grep -Eq '^h1 +linux/amd64 +unchanged .*runs it already' "$T/plan.txt" || { cat "$T/plan.txt"; fail "plan does not say unchanged"; }
push_json "$T/p3.json" "$IMG:v2" --fleet "$F" --group one --app svc --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p3.json"; fail "the same push again failed"; }
[ "$(json_get "$T/p3.json" "d['nodes'][0]['result'], d['nodes'][0]['bytes_sent']")" = "('unchanged', 0)" ] || { cat "$T/p3.json"; fail "not unchanged"; }
[ "$(pid_of h1 svc)" = "$PID" ] || fail "an unchanged push restarted the app (pid $PID -> $(pid_of h1 svc))"
[ "$(app_field h1 svc release)" = "$REL" ] && [ "$(app_field h1 svc previous)" = "$PREV" ] || fail "an unchanged push moved current or previous"
grep -q "rollout: 0 deployed, 1 unchanged" "$T/p3.json.err" 2>/dev/null || "$FERRY" push "$IMG:v2" --identity "$T/me" --to "$H1" --app svc | grep -q "rollout: 0 deployed, 1 unchanged" \
  || fail "the summary does not count unchanged"
push_json "$T/p4.json" "$IMG:v2" --fleet "$F" --group one --app svc --settle 0.5 --force
[ "$(json_get "$T/p4.json" "d['nodes'][0]['result']")" = "('deployed',)" ] || { cat "$T/p4.json"; fail "--force"; }
[ "$(pid_of h1 svc)" != "$PID" ] || fail "--force kept the old process"
# Other options are another configuration: a deploy (this image has no /bin/sh, so its health
# check fails and the node goes back to what it ran).
push_json "$T/p5.json" "$IMG:v2" --fleet "$F" --group one --app svc --settle 0.5 --health-cmd 'true'
[ "$(json_get "$T/p5.json" "d['nodes'][0]['result']")" = "('rolled-back',)" ] || { cat "$T/p5.json"; fail "other options are a new deploy"; }
pass "the same image twice: 'unchanged', same pid, current/previous kept, plan says so; --force and other options deploy"

# --- stop, start, restart, rm
fl stop --group one --app svc > "$T/stop.txt" || { cat "$T/stop.txt"; fail "stop"; }
grep -q "^h1: svc stopped" "$T/stop.txt" || { cat "$T/stop.txt"; fail "stop output"; }
[ "$(app_field h1 svc state)" = "(['stopped'],)" ] || fail "stopped state"
[ "$(copies svc)" -eq 0 ] || fail "stop left the process running"
H1PID=$(pgrep -f "ferryd --config $T/h1.yaml")
kill "$H1PID"
wait_for 30 "h1 to exit" bash -c "! kill -0 $H1PID 2> /dev/null"
AGENT_LISTEN_PORT=$PORT_h1 start_agent h1 'runtime: {isolation: none, allow_pusher_commands: true}'
wait_log "$T/h1.log" "ready: "
[ "$(app_field h1 svc state)" = "(['stopped'],)" ] || { cat "$T/st.json"; fail "a stopped app started with the agent"; }
grep -q "app svc: stays stopped" "$T/h1.log" || fail "the agent does not say why it left svc stopped"
fl start --group one --app svc --json > "$T/start.json" || { cat "$T/start.json"; fail "start"; }
[ "$(json_get "$T/start.json" "d['nodes'][0]['result']")" = "('started',)" ] || { cat "$T/start.json"; fail "start result"; }
[ "$(app_field h1 svc state)" = "(['running'],)" ] || fail "started state"
[ ! -e "$T/state-h1/apps/svc/stopped" ] || fail "start left the stopped mark"
PID=$(pid_of h1 svc)
fl restart --group one --app svc --json > "$T/restart.json" || { cat "$T/restart.json"; fail "restart"; }
[ "$(json_get "$T/restart.json" "d['nodes'][0]['result']")" = "('restarted',)" ] || fail "restart result"
[ "$(pid_of h1 svc)" != "$PID" ] && [ "$(copies svc)" -eq 1 ] || fail "restart: one new process"
set +e; fl start --group amd --app svc --json > "$T/start2.json"; rc=$?; set -e
[ $rc -eq 0 ] && [ "$(json_get "$T/start2.json" "sorted((n['name'], n['result']) for n in d['nodes'])")" = \
  "([('h1', 'started'), ('h2', 'skipped'), ('h3', 'skipped')],)" ] || { cat "$T/start2.json"; fail "nodes without the app are skipped"; }
set +e; fl stop --group amd --app nosuch > "$T/nosuch.txt" 2>&1; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "no node has app 'nosuch'" "$T/nosuch.txt" || { cat "$T/nosuch.txt"; fail "an app nobody has"; }
mkdir -p "$T/state-h1/apps/svc/volumes/data" && echo 41 > "$T/state-h1/apps/svc/volumes/data/count" # a volume's data
fl rm --group one --app svc --json > "$T/rm.json" || { cat "$T/rm.json"; fail "rm"; }
[ "$(json_get "$T/rm.json" "d['nodes'][0]['result']")" = "('removed',)" ] || fail "rm result"
[ "$(app_field h1 svc name)" = "([],)" ] && [ "$(copies svc)" -eq 0 ] || fail "rm left the app"
[ "$(ls "$T/state-h1/apps/svc")" = "volumes" ] && [ "$(cat "$T/state-h1/apps/svc/volumes/data/count")" = 41 ] || { ls -R "$T/state-h1/apps/svc"; fail "rm without --purge keeps only the volumes"; }
[ -z "$(ls "$T/state-h1/blobs/sha256" 2>/dev/null)" ] || { ls "$T/state-h1/blobs/sha256"; fail "rm left blobs no release uses"; }
fl rm --group one --app svc --purge > "$T/rm2.txt" || { cat "$T/rm2.txt"; fail "rm --purge"; }
[ ! -e "$T/state-h1/apps/svc" ] || fail "rm --purge left the app's directory"
pass "stop (kept across an agent restart), start, restart (one new process), rm (volumes kept), rm --purge; absent apps skipped"

# --- --replicas 3, then 1: one copy left, the others removed
push_json "$T/r3.json" "$IMG:v1" --fleet "$F" --group amd --app rep --replicas 3 --settle 0.5
[ $PUSH_RC -eq 0 ] && [ "$(copies rep)" -eq 3 ] || { cat "$T/r3.json"; fail "3 replicas"; }
fl plan "$IMG:v1" --group amd --app rep --replicas 1 --json > "$T/r1plan.json" 2>/dev/null || true
[ "$(json_get "$T/r1plan.json" "sorted(n['action'] for n in d['nodes'])")" = "(['remove', 'remove', 'unchanged'],)" ] || { cat "$T/r1plan.json"; fail "plan for replicas 1"; }
push_json "$T/r1.json" "$IMG:v1" --fleet "$F" --group amd --app rep --replicas 1 --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/r1.json" "$T/r1.json.err"; fail "replicas 1"; }
[ "$(json_get "$T/r1.json" "sorted(n['result'] for n in d['nodes'])")" = "(['removed', 'removed', 'unchanged'],)" ] || { cat "$T/r1.json"; fail "replicas 1 results"; }
[ "$(copies rep)" -eq 1 ] || fail "replicas 1 left $(copies rep) copies"

pass "--replicas 3 then --replicas 1: one copy runs, the two others are removed (reported 'removed')"

# --- --revert-on-halt removes what was a first install
push_json "$T/rv.json" "$IMG:h3bad" --fleet "$F" --group amd --app fresh --max-parallel 1 --max-failures 1 --revert-on-halt --settle 1
[ $PUSH_RC -eq 1 ] || { cat "$T/rv.json"; fail "the bad release did not halt"; }
[ "$(json_get "$T/rv.json" "sorted((n['name'], n['result']) for n in d['nodes'])")" = "([('h1', 'removed'), ('h2', 'removed'), ('h3', 'failed')],)" ] \
  && [ "$(json_get "$T/rv.json" "d['halted']")" = "(True,)" ] || { json_get "$T/rv.json" "[(n['name'], n['result'], n['error']) for n in d['nodes']]"; cat "$T/rv.json.err"; fail "revert of first installs"; }
fl status --group amd --json > "$T/rvs.json"
[ "$(json_get "$T/rvs.json" "[a['name'] for n in d['nodes'] for a in n['apps'] if a['name']=='fresh']")" = "([],)" ] || { cat "$T/rvs.json"; fail "fresh is still installed"; }
[ "$(copies fresh)" -eq 0 ] || fail "a reverted first install still runs"
pass "--revert-on-halt on a first install removes the app from the nodes that took it"

# --- a canary per variant: the arm64 failure is caught before any wave
push_json "$T/cn.json" "$IMG:armbad" --fleet "$F" --app canary --canary 1 --settle 2
[ $PUSH_RC -eq 1 ] || { cat "$T/cn.json"; fail "the arm64 failure was not caught"; }
[ "$(json_get "$T/cn.json" "sorted((n['name'], n['wave'], n['result']) for n in d['nodes'])")" = \
  "([('h1', 1, 'deployed'), ('h2', 2, 'skipped'), ('h3', 2, 'skipped'), ('pi', 1, 'failed')],)" ] || { json_get "$T/cn.json" "sorted((n['name'], n['wave'], n['result']) for n in d['nodes'])"; fail "canary per variant"; }
json_get "$T/cn.json" "d['halt_reason']" | grep -q "the canary pi failed: the release exited with status 5" || { json_get "$T/cn.json" "d['halt_reason']"; fail "halt reason"; }
pass "--canary 1 takes one node of each variant (amd64 and arm64): the arm64-only failure halts before any wave"

# --- health after the settle window: checked every second, unhealthy after 3 failures, restarted
$MKIMAGE "$T/sick" --variant linux/amd64="$T/app/x64" --env VERSION=h --env SICK_FILE="$T/sick-now" \
  --healthcheck '["CMD", "/app", "--health"]' --label dev.ferry.health_interval_ms=1000 > /dev/null
push_json "$T/hs.json" "$T/sick" --fleet "$F" --group one --app sick --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/hs.json" "$T/hs.json.err"; fail "the healthy deploy"; }
healthy() { fl status --group one --json > "$T/hh.json" && [ "$(json_get "$T/hh.json" "[a['health']['state'] for a in d['nodes'][0]['apps'] if a['name']=='sick']")" = "(['healthy'],)" ]; }
wait_for 60 "a passing check after the settle window" healthy
touch "$T/sick-now"
unhealthy_restarted() { fl status --group one --json > "$T/hst.json" &&
  [ "$(json_get "$T/hst.json" "[a['restarts'] >= 1 for a in d['nodes'][0]['apps'] if a['name']=='sick']")" = "([True],)" ]; }
wait_for 60 "the unhealthy app to be restarted" unhealthy_restarted
json_get "$T/hst.json" "[a['health'].get('last_failure', '') for a in d['nodes'][0]['apps'] if a['name']=='sick']" | grep -q "health command '/app --health' exited with status 1" \
  || { cat "$T/hst.json"; fail "the last failure"; }
grep -q "sick is unhealthy after 3 failed checks" <("$FERRY" logs --identity "$T/me" --to "$H1" --app sick --tail 50) || fail "the app log does not say it turned unhealthy"
rm -f "$T/sick-now"
wait_for 60 "healthy again after the restart" healthy
pass "a check every run.health.interval after settle: 3 failures make it unhealthy (status: last_failure), restart policy always restarts it"
finish
