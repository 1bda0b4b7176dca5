#!/usr/bin/env bash
# Per-node configuration and secrets as a user sets them: env at the fleet file's top, in a group
# and on a node, and --env on the command line (image < fleet < group < node < command line), on
# host ferryd and an arm64 ferryd under qemu-aarch64; `ferry plan` showing the merged result with
# secrets masked; a change of settings alone being a new release of the same image with nothing
# re-sent; a secret that reaches the app (on a contained node: /run/secrets on a read-only tmpfs)
# and whose value is nowhere in ferryd's log, `ferry status --json` or the push JSON; a file
# from the laptop in the release, never over the image's own; LD_PRELOAD never settable; and a
# node that requires signatures taking only what the signed image declares.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
setup_fleet
build_apps "$T/app"
IMG=$T/svc
$MKIMAGE "$IMG" --ref v1 --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=1 --env GREETING=image > /dev/null
SECRET="s3cr3t-$RANDOM-value"
printf '%s' "$SECRET" > "$T/token.txt"
echo "mode = test" > "$T/app.conf"

start_agent h1 'runtime: {isolation: none}'
start_agent h2 'runtime: {isolation: none}'
FERRYD_BIN=$A64 start_agent pi $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
F=$T/fleet.yaml
cat > "$F" <<EOF
# the whole fleet
env: {GREETING: fleet}
secrets: {token: token.txt}
nodes:
  - {name: h1, address: "127.0.0.1:$PORT_h1"}
  - {name: h2, address: "127.0.0.1:$PORT_h2"}
  - name: pi
    address: "127.0.0.1:$PORT_pi"
    env: {GREETING: node, VERSION: "7"}
groups:
  lab:
    nodes: [h2, pi]
    env: {GREETING: group}
EOF
fl() { "$FERRY" "$@" --identity "$T/me" --fleet "$F"; }
greets() { # greets NODE: the last hello line of NODE's app
  grep 'hello from' "$T/state-$1/apps/svc/log" | tail -1 | sed 's/.*GREETING=//'
}

# --- precedence, and plan
fl plan "$IMG:v1" --app svc > "$T/plan.txt" || { cat "$T/plan.txt"; fail "plan"; }
grep -A4 '^h1 ' "$T/plan.txt" | grep -q '    env GREETING=fleet' && grep -A4 '^h2 ' "$T/plan.txt" | grep -q '    env GREETING=group' \
  && grep -A4 '^pi ' "$T/plan.txt" | grep -q '    env GREETING=node' && grep -q '    secret token (set)' "$T/plan.txt" \
  || { cat "$T/plan.txt"; fail "plan shows the merged settings per node"; }
fl plan "$IMG:v1" --app svc --json > "$T/plan.json"
[ "$(json_get "$T/plan.json" "[n['settings']['secrets'] for n in d['nodes'] if n['name']=='h1']")" = "([{'token': '(set)'}],)" ] \
  || { cat "$T/plan.json"; fail "plan --json masks the secret"; }
push_json "$T/p1.json" "$IMG:v1" --fleet "$F" --app svc --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "push"; }
wait_log "$T/state-pi/apps/svc/log" 'hello from aarch64'
[ "$(greets h1)" = "fleet, VERSION=1" ] && [ "$(greets h2)" = "group, VERSION=1" ] && [ "$(greets pi)" = "node, VERSION=7" ] \
  || fail "precedence: h1 '$(greets h1)', h2 '$(greets h2)', pi '$(greets pi)'"
grep -q "secret token: ${#SECRET} bytes" "$T/state-h1/apps/svc/log" || fail "the secret did not reach the app"
REL1=$(json_get "$T/p1.json" "[n['release'] for n in d['nodes'] if n['name']=='h1']")
pass "env: image < fleet < group < node (h1 fleet, h2 group, pi node with VERSION 7 over the image's 1, under qemu); plan shows each node's, the secret masked"

# --- the command line wins; a settings change alone is a new release, nothing re-sent
push_json "$T/p2.json" "$IMG:v1" --fleet "$F" --app svc --settle 0.5 --env GREETING=cli
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; fail "push --env"; }
[ "$(json_get "$T/p2.json" "sorted(set((n['result'], n['bytes_sent']) for n in d['nodes']))")" = "([('deployed', 0)],)" ] \
  || { cat "$T/p2.json"; fail "a settings change: deployed, nothing sent"; }
[ "$(json_get "$T/p2.json" "[n['release'] for n in d['nodes'] if n['name']=='h1']")" != "$REL1" ] || fail "no new release"
[ "$(greets h1)" = "cli, VERSION=1" ] && [ "$(greets pi)" = "cli, VERSION=7" ] || fail "--env did not win"
push_json "$T/p3.json" "$IMG:v1" --fleet "$F" --app svc --settle 0.5 --env GREETING=cli
[ "$(json_get "$T/p3.json" "sorted(set(n['result'] for n in d['nodes']))")" = "(['unchanged'],)" ] || { cat "$T/p3.json"; fail "the same settings again"; }
printf 'GREETING=from-file\n# a comment\nexport EXTRA=1\n' > "$T/env.txt"
fl plan "$IMG:v1" --app svc --env-file "$T/env.txt" | grep -q '    env GREETING=from-file' || fail "--env-file"
pass "--env wins over the fleet file; a settings change alone: a new release on every node, 0 bytes sent; the same settings again: unchanged"

# --- the secret's value is nowhere
"$FERRY" status --identity "$T/me" --fleet "$F" --json > "$T/st.json"
for f in "$T"/h1.log "$T"/h2.log "$T"/pi.log "$T"/p1.json "$T"/p1.json.err "$T"/p2.json "$T"/st.json "$T"/plan.txt "$T"/plan.json; do
  ! grep -qF "$SECRET" "$f" || fail "the secret's value is in $(basename "$f")"
done
[ "$(stat -c %a "$(ls -d "$T"/state-h1/apps/svc/releases/*/secrets/token | head -1)")" = 600 ] || fail "the stored secret is not 0600"
pass "the secret's value is in no ferryd log, no status --json, no push JSON, no plan; stored 0600"

# --- refused: LD_PRELOAD, from the command line and the fleet file
set +e
fl push "$IMG:v1" --app svc --env LD_PRELOAD=/tmp/x.so > /dev/null 2> "$T/e1"; r1=$?
printf 'env: {LD_LIBRARY_PATH: /tmp}\nnodes:\n  - {name: h1, address: "127.0.0.1:%s"}\n' "$PORT_h1" > "$T/ld.yaml"
"$FERRY" push "$IMG:v1" --app svc --identity "$T/me" --fleet "$T/ld.yaml" > /dev/null 2> "$T/e2"; r2=$?
set -e
[ "$r1$r2" = 22 ] && grep -q "env LD_PRELOAD cannot be set from outside the image" "$T/e1" \
  && grep -q "ld.yaml:1: env LD_LIBRARY_PATH cannot be set from outside the image" "$T/e2" || { cat "$T/e1" "$T/e2"; fail "LD_* refused"; }
pass "LD_PRELOAD and LD_LIBRARY_PATH are never settable: refused on the command line and in the fleet file (exit 2)"

# --- a contained node: /run/secrets on a read-only tmpfs, a file from the laptop, never over the image's
if [ "$(id -u)" = 0 ]; then
  ROOTFS=${FERRY_CROSS_ROOT:-$FERRY_SRC/build}/cache/debian-bookworm-rootfs.tar
  [ -s "$ROOTFS" ] || fail "$ROOTFS is missing: bash scripts/test-rootfs.sh builds it"
  mkdir -p "$T/svc-layer/app"; cp "$T/app/x64/app" "$T/svc-layer/app/hello"
  $MKIMAGE "$T/deb" --ref v1 --variant linux/amd64="$ROOTFS,$T/svc-layer" --entrypoint '["/app/hello"]' --env PATH=/usr/bin:/bin > /dev/null
  start_agent ct 'allow_exec: true'
  printf 'secrets: {token: token.txt}\nfiles: {/etc/app.conf: app.conf}\nnodes:\n  - {name: ct, address: "127.0.0.1:%s"}\n' "$PORT_ct" > "$T/ct.yaml"
  push_json "$T/c1.json" "$T/deb:v1" --fleet "$T/ct.yaml" --app deb --settle 0.5
  [ $PUSH_RC -eq 0 ] || { cat "$T/c1.json" "$T/c1.json.err"; tail "$T/ct.log"; fail "contained push"; }
  ex() { "$FERRY" exec ct --fleet "$T/ct.yaml" --identity "$T/me" --app deb -- "$@"; }
  [ "$(ex /bin/busybox cat /run/secrets/token)" = "$SECRET" ] || fail "the secret at /run/secrets/token"
  ex /bin/busybox grep -q ' /run/secrets tmpfs ro,' /proc/mounts || fail "/run/secrets is not a read-only tmpfs"
  [ "$(ex /bin/busybox cat /etc/app.conf)" = "mode = test" ] || fail "the file from the laptop"
  ! grep -rqF "$SECRET" "$T"/state-ct/apps/deb/releases/*/rootfs 2>/dev/null || fail "the secret is on the release's disk"
  PID=$(cat "$T/state-ct/apps/deb/pid")
  printf 'files: {/app/hello: app.conf}\nnodes:\n  - {name: ct, address: "127.0.0.1:%s"}\n' "$PORT_ct" > "$T/own.yaml"
  push_json "$T/c2.json" "$T/deb:v1" --fleet "$T/own.yaml" --app deb --settle 0.5
  [ $PUSH_RC -ne 0 ] && grep -q "files: /app/hello is one of the image's own files" "$T/c2.json" || { cat "$T/c2.json"; fail "a file over the image's own"; }
  [ "$(cat "$T/state-ct/apps/deb/pid")" = "$PID" ] || fail "the refused push touched the running app"
  pass "contained: the secret at /run/secrets/token on a read-only tmpfs (not on the release's disk), /etc/app.conf from the laptop; a file over the image's own refused, the app untouched"
fi

# --- a node that requires signatures: only what the signed image declares
"$FERRY" key gen --out "$T/keys" > /dev/null
$MKIMAGE "$T/signed" --ref v1 --variant linux/amd64="$T/app/x64" --env VERSION=1 --label 'dev.ferry.config={"env": ["GREETING"], "secrets": ["token"]}' > /dev/null
"$FERRY" sign "$T/signed:v1" --key "$T/keys/release.key" --app svc --version 1 > /dev/null
start_agent sg $'runtime: {isolation: none}\ntrust:\n  keys: ['"$T"$'/keys/release.pub]\n  require_signature: true'
SG="sg@127.0.0.1:$PORT_sg"
push_json "$T/s1.json" "$T/signed:v1" --to "$SG" --app svc --settle 0.5 --env GREETING=ok
[ $PUSH_RC -eq 0 ] || { cat "$T/s1.json" "$T/s1.json.err"; fail "a declared env key on a signed node"; }
push_json "$T/s2.json" "$T/signed:v1" --to "$SG" --app svc --settle 0.5 --env MODE=debug
[ $PUSH_RC -ne 0 ] && grep -q "env MODE is refused: this node requires signed releases and the signed image does not declare it (config.env in ferry.yaml)" "$T/s2.json" \
  || { cat "$T/s2.json"; fail "an undeclared env key on a signed node"; }
pass "a node requiring signatures takes the env the signed image declares (GREETING) and refuses one it does not (MODE), naming it"
finish
