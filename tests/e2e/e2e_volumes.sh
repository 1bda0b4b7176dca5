#!/usr/bin/env bash
# Volumes and devices as a user sees them. A counter app counts its starts in its volume: the
# count survives three deploys, an automatic rollback, `ferry rollback`, an agent upgrade (on the
# host agent: emulated agents cannot re-execute themselves) and `ferry rm`, and goes only with
# `ferry rm --purge`. Contained on a host ferryd running as root (the volume bind-mounted at its
# path, owned by the image's user) and under qemu-aarch64 on an arm64 ferryd (the path in
# FERRY_VOLUME_DATA). A device node the agent allows (a stand-in for /dev/gpiomem: the null
# device under another name) is in the app's /dev; one it does not allow is refused before the
# switch, naming the device and the config key, with the running release untouched.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "skip: the contained runtime and mknod need root"; exit 77; }
A64=$(cross_bin aarch64 ferryd)
ROOTFS=${FERRY_CROSS_ROOT:-$FERRY_SRC/build}/cache/debian-bookworm-rootfs.tar
[ -s "$ROOTFS" ] || fail "$ROOTFS is missing: bash scripts/test-rootfs.sh builds it (scripts/test.sh runs it)"
setup_fleet
build_apps "$T/app"
DEV=/dev/ferry-e2e-gpio-$$
mknod -m 0666 "$DEV" c 1 3
CLEANUP_FILES+=("$DEV")

# The image: Debian's files, a user svc (uid 1000), the counter app.
mkdir -p "$T/etc/etc" "$T/svc/app"
printf 'root:x:0:0:root:/root:/bin/sh\nsvc:x:1000:1000:svc:/home/svc:/bin/sh\n' > "$T/etc/etc/passwd"
printf 'root:x:0:\nsvc:x:1000:\n' > "$T/etc/etc/group"
cp "$T/app/x64/app" "$T/svc/app/counter"
VOL='dev.ferry.volumes={"data": "/var/lib/counter"}'
LAYERS="$ROOTFS,$T/etc,$T/svc"
for v in 1 2 3; do
  $MKIMAGE "$T/img" --ref v$v --variant linux/amd64="$LAYERS" --entrypoint '["/app/counter"]' \
    --user svc --env VERSION=$v --env PATH=/usr/bin:/bin --label "$VOL" --label "dev.ferry.devices=[\"$DEV\"]" > /dev/null
done
$MKIMAGE "$T/img" --ref bad --variant linux/amd64="$LAYERS" --entrypoint '["/app/counter"]' --user svc --env FAIL_WITH=3 \
  --env PATH=/usr/bin:/bin --label "$VOL" --label "dev.ferry.devices=[\"$DEV\"]" > /dev/null
$MKIMAGE "$T/img" --ref nodev --variant linux/amd64="$LAYERS" --entrypoint '["/app/counter"]' --user svc --env VERSION=9 \
  --env PATH=/usr/bin:/bin --label "$VOL" --label 'dev.ferry.devices=["/dev/video7"]' > /dev/null
# For the arm64 node: the same app, its volume's path in FERRY_VOLUME_DATA (no containment there).
for v in 1 2; do
  $MKIMAGE "$T/img" --ref a$v --variant linux/arm64="$T/app/a64" --env VERSION=$v --label "$VOL" > /dev/null
done

"$FERRY" inspect "$T/img:v1" > "$T/inspect.txt"
grep -q '^  Volume:     data at /var/lib/counter$' "$T/inspect.txt" && grep -q "^  Device:     $DEV$" "$T/inspect.txt" \
  && grep -q '^  Restart:    always$' "$T/inspect.txt" || { cat "$T/inspect.txt"; fail "inspect: volumes, devices, restart policy"; }
mkdir -p "$T/bin-ct"; cp "$FERRYD" "$T/bin-ct/ferryd"  # the file an agent upgrade replaces
CT_CONF="allow_exec: true
devices: [$DEV]"
AGENT_LISTEN_PORT=$(free_port) FERRYD_BIN=$T/bin-ct/ferryd start_agent ct "$CT_CONF"
FERRYD_BIN=$A64 start_agent pi $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
CT="ct@127.0.0.1:$PORT_ct"; PI="pi@127.0.0.1:$PORT_pi"
VDIR=$T/state-ct/apps/counter/volumes/data
count() { cat "$VDIR/count" 2>/dev/null || echo 0; }
LAST=0
counted() { [ "$(count)" -gt "$LAST" ]; }
grew() { # grew WHAT: the app started again and counted on from where it was (never from a fresh start)
  try_for "$WAIT_LIMIT" counted || fail "$1: the count is $(count), it was $LAST"
  LAST=$(count)
}
push() { push_json "$T/$1.json" "$T/img:$1" --to "$CT" --app counter --settle 0.5 "${@:2}"; }

push v1; [ $PUSH_RC -eq 0 ] || { cat "$T/v1.json" "$T/v1.json.err"; tail -20 "$T/ct.log"; fail "v1"; }
grew "first deploy"
[ "$(stat -c %u:%g "$VDIR")" = 1000:1000 ] || fail "the volume is not owned by the app's user ($(stat -c %u:%g "$VDIR"))"
"$FERRY" logs --identity "$T/me" --to "$CT" --app counter | grep -q '^count 1$' || fail "the app did not count in its volume"
push v2; [ $PUSH_RC -eq 0 ] || fail "v2"; grew "second deploy"
push v3; [ $PUSH_RC -eq 0 ] || fail "v3"; grew "third deploy"
push bad; [ "$(json_get "$T/bad.json" "d['nodes'][0]['result']")" = "('rolled-back',)" ] || { cat "$T/bad.json"; fail "bad release"; }
grew "automatic rollback"
"$FERRY" rollback --identity "$T/me" --to "$CT" --app counter > /dev/null || fail "ferry rollback"
grew "ferry rollback"
PID=$(cat "$T/state-ct/apps/counter/pid")
cp "$FERRYD" "$T/ferryd-v2"; echo "a newer build" >> "$T/ferryd-v2"
"$FERRY" upgrade-agent --identity "$T/me" --to "$CT" --agent-binary linux/amd64="$T/ferryd-v2" > "$T/up.out" 2>&1 || { cat "$T/up.out"; fail "upgrade-agent"; }
cmp -s "$T/bin-ct/ferryd" "$T/ferryd-v2" || fail "the agent was not upgraded"
[ "$(cat "$T/state-ct/apps/counter/pid")" = "$PID" ] || fail "the upgrade restarted the app"
"$FERRY" restart --identity "$T/me" --to "$CT" --app counter > /dev/null || fail "restart after the upgrade"
grew "restart after the agent upgrade"
"$FERRY" status --identity "$T/me" --to "$CT" --json > "$T/st.json"
[ "$(json_get "$T/st.json" "[v['name'] for a in d['nodes'][0]['apps'] for v in a.get('volumes', [])]")" = "(['data'],)" ] \
  && [ "$(json_get "$T/st.json" "[v['bytes'] > 0 for a in d['nodes'][0]['apps'] for v in a.get('volumes', [])]")" = "([True],)" ] \
  || { cat "$T/st.json"; fail "status --json: the volume and its size"; }
"$FERRY" status --identity "$T/me" --to "$CT" > "$T/st.txt"
grep -Eq 'data=[0-9]+ B' "$T/st.txt" || { cat "$T/st.txt"; fail "status: the volume's size"; }
"$FERRY" rm --identity "$T/me" --to "$CT" --app counter > /dev/null || fail "rm"
[ -f "$VDIR/count" ] || fail "rm took the volume"
push v1; [ $PUSH_RC -eq 0 ] || fail "v1 after rm"; grew "a push after rm"
pass "a volume's count survives 3 deploys, an automatic rollback, ferry rollback, an agent upgrade and rm (count $LAST), owned by the app's user; status shows its size"

# --- devices
[ "$("$FERRY" exec "$CT" --app counter --identity "$T/me" -- /bin/busybox sh -c "[ -c $DEV ] && echo hi > $DEV && echo granted")" = granted ] \
  || fail "the granted device is not in the app's /dev"
[ "$("$FERRY" exec "$CT" --app counter --identity "$T/me" -- /bin/busybox sh -c '[ -e /dev/sda ] || echo absent')" = absent ] \
  || fail "a device not granted is in the app's /dev"
DL=$(awk '$5 == "/sys/fs/cgroup/devices" || ($9 == "cgroup" && $NF ~ /(^|,)devices(,|$)/) {print $5; exit}' /proc/self/mountinfo)
if [ -n "$DL" ]; then # cgroup v1's devices controller: only the runtime's /dev and the granted node
  RULES=$(cat "$DL/ferry/counter/devices.list")
  MAJMIN=$(printf '%d:%d' "0x$(stat -c %t "$DEV")" "0x$(stat -c %T "$DEV")")
  echo "$RULES" | grep -qx "c $MAJMIN rwm" && echo "$RULES" | grep -qx 'c 136:\* rwm' && ! echo "$RULES" | grep -q '^a ' \
    || { echo "$RULES"; fail "the app's device cgroup rules"; }
fi
PID=$(cat "$T/state-ct/apps/counter/pid"); C=$(count)
push nodev
[ $PUSH_RC -ne 0 ] && grep -q "the app needs the device /dev/video7, which ct does not allow (devices: in its agent config)" "$T/nodev.json" \
  || { cat "$T/nodev.json" "$T/nodev.json.err"; fail "a device the node does not allow"; }
[ "$(cat "$T/state-ct/apps/counter/pid")" = "$PID" ] && [ "$(count)" = "$C" ] || fail "a refused push touched the running release"
pass "a device the agent allows is in the app's /dev (and nothing else is); one it does not allow is refused before the switch, naming it and devices:"

# --- rm --purge takes the volume
"$FERRY" rm --purge --identity "$T/me" --to "$CT" --app counter > /dev/null || fail "rm --purge"
[ ! -e "$VDIR" ] || fail "rm --purge left the volume"
LAST=0; push v1; [ $PUSH_RC -eq 0 ] || fail "v1 after purge"
[ "$(count)" = 1 ] || fail "after rm --purge the count starts again (it is $(count))"
pass "rm --purge removes the volume: the next push starts from an empty one"

# --- a device the node stops allowing: the next start is refused, naming it
CTPID=$(pgrep -f "$T/bin-ct/ferryd --config $T/ct.yaml" | head -1)
kill "$CTPID"
wait_for 30 "ct to stop" bash -c "! kill -0 $CTPID 2> /dev/null"
AGENT_LISTEN_PORT=$PORT_ct FERRYD_BIN=$T/bin-ct/ferryd start_agent ct 'allow_exec: true'
wait_log "$T/ct.log" "no longer allows (devices: in its agent config)"
"$FERRY" status --identity "$T/me" --to "$CT" --json > "$T/st2.json"
[ "$(json_get "$T/st2.json" "d['nodes'][0]['apps'][0]['state']")" != "('running',)" ] || fail "an app whose device is no longer allowed runs"
pass "a device taken out of the agent's devices: the app does not start again, and the log says why"

# --- arm64 under qemu: the path in FERRY_VOLUME_DATA
push_json "$T/a1.json" "$T/img:a1" --to "$PI" --app counter --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/a1.json" "$T/a1.json.err"; fail "arm64 a1"; }
push_json "$T/a2.json" "$T/img:a2" --to "$PI" --app counter --settle 0.5
[ $PUSH_RC -eq 0 ] || fail "arm64 a2"
wait_for 60 "the second count on pi" bash -c "[ \"\$(cat '$T/state-pi/apps/counter/volumes/data/count' 2>/dev/null)\" = 2 ]"
"$FERRY" logs --identity "$T/me" --to "$PI" --app counter | grep -q '^count 2$' || fail "pi: the count"
pass "on an arm64 agent under qemu (exec_wrapper) the app finds its volume in FERRY_VOLUME_DATA: 2 deploys, count 2"
finish
