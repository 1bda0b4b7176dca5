#!/usr/bin/env bash
# Old and new keep talking: the ferryd of the previous release (tag v0.1.0, built here from this
# repository's history) driven by this ferry, as a user with a fleet of old agents would: status,
# push, logs and rollback, then `ferry upgrade-agent` to this build's ferryd, which takes the app
# over and answers as the new agent. FERRY_COMPAT_REV picks another revision.
source "$(dirname "$0")/lib.sh"
REV=${FERRY_COMPAT_REV:-v0.1.0}
command -v git > /dev/null || { echo "skip: git missing" >&2; exit 77; }
commit=$(git -C "$FERRY_SRC" rev-parse --verify --quiet "$REV^{commit}" 2>/dev/null ||
         git -C "$FERRY_SRC" rev-parse --verify --quiet "2110799^{commit}" 2>/dev/null || true)
if [ -z "$commit" ]; then
  echo "skip: $REV is not in this clone's history (a shallow clone?)" >&2
  exit 77
fi
# Built once per revision, beside the other presets.
OLD_BUILD=$FERRY_CROSS_ROOT/compat-${commit:0:12}
OLD=$OLD_BUILD/bin/ferryd
if [ ! -x "$OLD" ]; then
  rm -rf "$OLD_BUILD.src"; mkdir -p "$OLD_BUILD.src"
  git -C "$FERRY_SRC" archive "$commit" | tar -x -C "$OLD_BUILD.src"
  cmake -S "$OLD_BUILD.src" -B "$OLD_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_TESTS=OFF > "$T/old-cmake.log" 2>&1 ||
    { cat "$T/old-cmake.log"; fail "configuring the ferryd of $REV"; }
  cmake --build "$OLD_BUILD" --target ferryd -j "$(nproc)" > "$T/old-build.log" 2>&1 || { tail -30 "$T/old-build.log"; fail "building the ferryd of $REV"; }
fi
OLD_VERSION=$("$OLD" --version)
setup_fleet
build_apps "$T/app"
$MKIMAGE "$T/img" --ref v1 --variant linux/amd64="$T/app/x64" --env VERSION=1 > /dev/null
$MKIMAGE "$T/img" --ref v2 --variant linux/amd64="$T/app/x64" --env VERSION=2 > /dev/null

# The old agent runs from its own copy (the file an upgrade replaces).
mkdir -p "$T/bin-old"; cp "$OLD" "$T/bin-old/ferryd"
AGENT_LISTEN_PORT=$(free_port) FERRYD_BIN=$T/bin-old/ferryd start_agent old ''
N="old@127.0.0.1:$PORT_old"
digest_of() { "$FERRY" status --identity "$T/me" --to "$N" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0].get("agent_digest",""))'; }
OLD_DIGEST=sha256:$(sha256sum < "$T/bin-old/ferryd" | cut -d' ' -f1)

"$FERRY" status --identity "$T/me" --to "$N" --json > "$T/s0.json" || { cat "$T/s0.json"; fail "status against the $REV agent"; }
[ "$(json_get "$T/s0.json" "d['nodes'][0]['platform']")" = "('linux/amd64',)" ] || { cat "$T/s0.json"; fail "status fields"; }
[ "$(digest_of)" = "$OLD_DIGEST" ] || fail "the old agent's digest"
pass "status: this ferry reads the facts of the $REV agent ($OLD_VERSION)"

push_json "$T/p1.json" "$T/img:v1" --to "$N" --app hello --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "push to the $REV agent"; }
push_json "$T/p2.json" "$T/img:v2" --to "$N" --app hello --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; fail "second push to the $REV agent"; }
wait_version "$N" hello 2 || fail "v2 does not run on the $REV agent"
"$FERRY" rollback --identity "$T/me" --to "$N" --app hello > "$T/rb.out" 2>&1 || { cat "$T/rb.out"; fail "rollback on the $REV agent"; }
wait_version "$N" hello 1 || fail "v1 is not back after the rollback"
pass "push (two releases), logs and rollback against the $REV agent"

PID_APP=$(cat "$T/state-old/apps/hello/pid")
set +e; "$FERRY" upgrade-agent --identity "$T/me" --json --to "$N" --agent-binary linux/amd64="$FERRYD" > "$T/u.json" 2> "$T/u.json.err"; rc=$?; set -e
[ $rc -eq 0 ] || { cat "$T/u.json" "$T/u.json.err"; tail -20 "$T/old.log"; fail "upgrade-agent from $REV to this build"; }
NEW_DIGEST=sha256:$(sha256sum < "$FERRYD" | cut -d' ' -f1)
[ "$(digest_of)" = "$NEW_DIGEST" ] || fail "the node does not answer as this build's agent"
[ "$(cat "$T/state-old/apps/hello/pid")" = "$PID_APP" ] && kill -0 "$PID_APP" || fail "the app did not keep running across the upgrade"
cmp -s "$T/bin-old/ferryd.prev" "$OLD" || fail "the $REV binary is not kept as ferryd.prev"
push_json "$T/p3.json" "$T/img:v2" --to "$N" --app hello --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/p3.json" "$T/p3.json.err"; fail "push after the upgrade"; }
wait_version "$N" hello 2 || fail "v2 does not run on the upgraded agent"
pass "upgrade-agent from $REV to this build: the app kept running (pid $PID_APP), the new agent deploys"
finish
