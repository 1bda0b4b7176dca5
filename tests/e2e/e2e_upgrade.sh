#!/usr/bin/env bash
# Agent self-upgrade: ferry upgrade-agent sends the new ferryd through the ferry
# channel; the agent re-executes in place and its running app keeps running (same pid, its output
# still reaching the log); a broken new agent (one that hangs, one that exits) is replaced by the
# old one by the node's watchdog, the app still running; a binary that does not run on the node
# is refused before anything changes; canary and waves stop a bad agent at the canary; nodes that
# require signatures take only a signed agent.
source "$(dirname "$0")/lib.sh"
setup_fleet
build_apps "$T/app"
$MKIMAGE "$T/img" --ref v1 --variant linux/amd64="$T/app/x64" --env VERSION=1 > /dev/null
$MKIMAGE "$T/img" --ref v2 --variant linux/amd64="$T/app/x64" --env VERSION=2 > /dev/null
gcc -O2 -o "$T/hang-ferryd" "$FERRY_SRC/tests/tools/broken_ferryd.c"
gcc -O2 -DBROKEN_EXIT -o "$T/exit-ferryd" "$FERRY_SRC/tests/tools/broken_ferryd.c"
cp "$FERRYD" "$T/ferryd-v2"; echo "a newer build" >> "$T/ferryd-v2"   # same code, another digest
cp "$FERRYD" "$T/ferryd-v3"; echo "a third build" >> "$T/ferryd-v3"
SHA2=sha256:$(sha256sum < "$T/ferryd-v2" | cut -d' ' -f1)

# Each agent runs from its own copy of ferryd (that is the file an upgrade replaces).
agent() { # agent NAME [extra yaml]
  mkdir -p "$T/bin-$1"; cp "$FERRYD" "$T/bin-$1/ferryd"
  AGENT_LISTEN_PORT=$(free_port) FERRYD_BIN=$T/bin-$1/ferryd start_agent "$1" "${2:-}"
}
digest_of() { "$FERRY" status --identity "$T/me" --to "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"][0].get("agent_digest",""))' 2>/dev/null || true; }
app_pid() { cat "$T/state-$1/apps/hello/pid"; }
upgrade() { # upgrade OUT ARGS...
  local out=$1; shift
  set +e; "$FERRY" upgrade-agent --identity "$T/me" --json "$@" > "$out" 2> "$out.err"; UP_RC=$?; set -e
}

agent a1
A1="a1@127.0.0.1:$PORT_a1"
push_json "$T/p1.json" "$T/img:v1" --to "$A1" --app hello --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json.err"; fail "push v1"; }
PID_APP=$(app_pid a1); PID_AGENT=$(pgrep -f "$T/bin-a1/ferryd --config" | head -1)

# --- a good upgrade
upgrade "$T/u1.json" --to "$A1" --agent-binary linux/amd64="$T/ferryd-v2"
[ $UP_RC -eq 0 ] || { cat "$T/u1.json" "$T/u1.json.err"; fail "upgrade-agent"; }
[ "$(json_get "$T/u1.json" "(d['nodes'][0]['result'],)")" = "(('deployed',),)" ] || { cat "$T/u1.json"; fail "upgrade result"; }
[ "$(digest_of "$A1")" = "$SHA2" ] || fail "the node does not run the new agent"
cmp -s "$T/bin-a1/ferryd" "$T/ferryd-v2" || fail "the binary on the node is not the new one"
cmp -s "$T/bin-a1/ferryd.prev" "$FERRYD" || fail "the old binary is not kept as ferryd.prev"
[ "$(pgrep -f "$T/bin-a1/ferryd --config" | head -1)" = "$PID_AGENT" ] || fail "the agent did not re-execute in place"
[ "$(app_pid a1)" = "$PID_APP" ] && kill -0 "$PID_APP" || fail "the app did not keep running (pid $PID_APP)"
grep -q "took over release .*, pid $PID_APP, from the previous agent" "$T/a1.log" || fail "no takeover logged"
pass "upgrade-agent: the node runs the new ferryd (same agent pid, re-executed), the old one kept as ferryd.prev, the app kept running (pid $PID_APP)"
push_json "$T/p2.json" "$T/img:v2" --to "$A1" --app hello --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json.err"; fail "push v2 after the upgrade"; }
"$FERRY" logs --identity "$T/me" --to "$A1" --app hello > "$T/log1"
grep -q 'stopping' "$T/log1" && grep -q 'VERSION=2' "$T/log1" || { cat "$T/log1"; fail "log after the upgrade"; }
pass "the new agent supervises the app it took over: v1's last words reach the log through the handed-over pipe, v2 deploys"

# --- a new agent that never answers: the watchdog brings the old one back
PID_APP=$(app_pid a1)
upgrade "$T/u2.json" --to "$A1" --agent-binary linux/amd64="$T/hang-ferryd" --upgrade-timeout 5
[ $UP_RC -ne 0 ] || { cat "$T/u2.json"; fail "a hanging agent was reported as upgraded"; }
[ "$(json_get "$T/u2.json" "(d['nodes'][0]['result'],)")" = "(('rolled-back',),)" ] || { cat "$T/u2.json" "$T/u2.json.err"; fail "hang: result"; }
json_get "$T/u2.json" "d['nodes'][0]['error']" | grep -q 'did not answer (within 5 s, or it exited); the old agent' || { cat "$T/u2.json"; fail "hang: message"; }
[ "$(digest_of "$A1")" = "$SHA2" ] || fail "the previous agent is not back"
cmp -s "$T/bin-a1/ferryd" "$T/ferryd-v2" || fail "the previous binary is not back in place"
grep -q 'watchdog: the new agent did not answer in time' "$T/a1.log" || fail "no watchdog line"
"$FERRY" status --identity "$T/me" --to "$A1" --json > "$T/s2.json"
[ "$(json_get "$T/s2.json" "[(a['name'], a['state']) for a in d['nodes'][0]['apps']]")" = "([('hello', 'running')],)" ] || { cat "$T/s2.json"; fail "app after the fallback"; }
pass "a new agent that never answers: after --upgrade-timeout the watchdog restores the old ferryd by itself; the app runs"

upgrade "$T/u3.json" --to "$A1" --agent-binary linux/amd64="$T/exit-ferryd" --upgrade-timeout 20
[ "$(json_get "$T/u3.json" "(d['nodes'][0]['result'],)")" = "(('rolled-back',),)" ] || { cat "$T/u3.json" "$T/u3.json.err"; fail "exit: result"; }
[ "$(digest_of "$A1")" = "$SHA2" ] || fail "exit: the previous agent is not back"
grep -q 'watchdog: the new agent exited' "$T/a1.log" || fail "exit: no watchdog line"
pass "a new agent that exits at start: the watchdog sees it go and restores the old one at once"

# --- refused before anything changes
PID_AGENT=$(pgrep -f "$T/bin-a1/ferryd --config" | head -1); PID_APP=$(app_pid a1)
printf '#!/bin/sh\nexit 1\n' > "$T/script-ferryd"; chmod +x "$T/script-ferryd"
upgrade "$T/u4.json" --to "$A1" --agent-binary linux/amd64="$T/script-ferryd"
[ $UP_RC -ne 0 ] && grep -q 'is not an ELF file\|not a ferryd for linux/amd64' "$T/u4.json.err" || { cat "$T/u4.json.err"; fail "a script as agent"; }
upgrade "$T/u5.json" --to "$A1" --agent-binary linux/amd64="$(cross_bin aarch64 ferryd 2>/dev/null || echo /bin/true)"
[ $UP_RC -ne 0 ] && grep -q 'not a ferryd for linux/amd64\|is an AArch64 ELF' "$T/u5.json.err" || { cat "$T/u5.json.err"; fail "an arm64 agent for amd64"; }
gcc -O2 -x c -o "$T/noversion-ferryd" - <<'C'
int main(void) { return 1; }
C
upgrade "$T/u6.json" --to "$A1" --agent-binary linux/amd64="$T/noversion-ferryd"
[ "$(json_get "$T/u6.json" "(d['nodes'][0]['result'],)")" = "(('failed',),)" ] || { cat "$T/u6.json"; fail "no-version: result"; }
json_get "$T/u6.json" "d['nodes'][0]['error']" | grep -q 'does not run on this node' || { cat "$T/u6.json"; fail "no-version: message"; }
[ "$(pgrep -f "$T/bin-a1/ferryd --config" | head -1)" = "$PID_AGENT" ] && [ "$(app_pid a1)" = "$PID_APP" ] || fail "a refused upgrade disturbed the node"
cmp -s "$T/bin-a1/ferryd" "$T/ferryd-v2" && [ ! -e "$T/bin-a1/ferryd.new" ] || fail "a refused upgrade left files"
pass "refused with nothing changed: not an ELF, the wrong architecture (by the pusher), a binary that fails --version (by the node)"

# --- canary and waves: a bad agent stops at the canary
agent a2; agent a3
A2="a2@127.0.0.1:$PORT_a2"; A3="a3@127.0.0.1:$PORT_a3"
upgrade "$T/u7.json" --to "$A2" --to "$A3" --canary 1 --agent-binary linux/amd64="$T/exit-ferryd" --upgrade-timeout 10
[ $UP_RC -ne 0 ] || fail "a bad canary should fail the rollout"
[ "$(json_get "$T/u7.json" "(sorted((n['name'], n['result']) for n in d['nodes']), d['halted'])")" = "(([('a2', 'rolled-back'), ('a3', 'skipped')], True),)" ] \
  || { cat "$T/u7.json"; fail "canary"; }
upgrade "$T/u8.json" --to "$A2" --to "$A3" --canary 1 --max-parallel 1 --agent-binary linux/amd64="$T/ferryd-v3"
[ $UP_RC -eq 0 ] || { cat "$T/u8.json" "$T/u8.json.err"; fail "good agent in waves"; }
[ "$(json_get "$T/u8.json" "sorted((n['name'], n['result'], n['wave']) for n in d['nodes'])")" = "([('a2', 'deployed', 1), ('a3', 'deployed', 2)],)" ] \
  || { json_get "$T/u8.json" "sorted((n['name'], n['result'], n['wave'], n['error']) for n in d['nodes'])"; fail "waves"; }
pass "canary and waves as for app pushes: a bad agent halts at the canary (the other node untouched); a good one goes canary, then wave"

# --- nodes that require signatures take a signed agent only
"$FERRY" key gen --out "$T/keys" > /dev/null
agent s1 $'trust:\n  keys: ['"$T"$'/keys/release.pub]\n  require_signature: true'
S1="s1@127.0.0.1:$PORT_s1"
upgrade "$T/u9.json" --to "$S1" --agent-binary linux/amd64="$T/ferryd-v2"
[ "$(json_get "$T/u9.json" "(d['nodes'][0]['result'], d['nodes'][0]['code'])")" = "(('failed', 'EUNSIGNED'),)" ] || { cat "$T/u9.json"; fail "unsigned agent"; }
upgrade "$T/u10.json" --to "$S1" --agent-binary linux/amd64="$T/ferryd-v2" --key "$T/keys/release.key" --version 2
[ $UP_RC -eq 0 ] && [ "$(digest_of "$S1")" = "$SHA2" ] || { cat "$T/u10.json" "$T/u10.json.err"; fail "signed agent"; }
upgrade "$T/u11.json" --to "$S1" --agent-binary linux/amd64="$T/ferryd-v3" --key "$T/keys/release.key" --version 1
[ "$(json_get "$T/u11.json" "(d['nodes'][0]['code'],)")" = "(('EDOWNGRADE',),)" ] || { cat "$T/u11.json"; fail "older signed agent"; }
pass "with require_signature the node takes only a signed agent, and not an older version"
finish
