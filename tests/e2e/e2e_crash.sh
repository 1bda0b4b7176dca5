#!/usr/bin/env bash
# kill -9 of ferryd at 120 random moments of deploys (transfer, unpack, switch, settle, and the
# garbage collection after each switch: three versions take turns, so every deploy removes the
# blobs of the one before last) and of manual rollbacks: after each, `ferryd --check-state` finds
# every invariant holding and `current` names a complete release; on restart ferryd removes
# partial releases, runs the current app exactly once, and the next push completes (resuming
# partial blobs). FERRY_CRASH_ROUNDS changes the 120 (the asan preset uses fewer).
source "$(dirname "$0")/lib.sh"
ROUNDS=${FERRY_CRASH_ROUNDS:-120}
case "$FERRY_BIN" in *asan*) ROUNDS=${FERRY_CRASH_ROUNDS:-40} ;; esac
setup_fleet
build_apps "$T/app"
for v in 1 2 3; do
  mkdir -p "$T/big$v"
  head -c 3000000 /dev/urandom > "$T/big$v/blob"
  $MKIMAGE "$T/img" --ref v$v --variant linux/amd64="$T/app/x64,$T/big$v" --compress none --env VERSION=$v > /dev/null
done
start_agent node ''
push_json "$T/first.json" "$T/img:v1" --to "node@127.0.0.1:$PORT_node" --app hello --settle 0.5
[ $PUSH_RC -eq 0 ] || fail "first deploy"
APPDIR=$T/state-node/apps/hello

app_running() {
  "$FERRY" status --identity "$T/me" --json --to "127.0.0.1:$PORT_node" > "$T/st.json" 2>/dev/null &&
    [ "$(json_get "$T/st.json" "d['nodes'][0]['apps'][0]['state']" 2>/dev/null)" = "('running',)" ]
}
# One copy is one runtime helper: the processes that name the release (the helper and its PID-1
# shim, a fork of it) counted once per tree, by leaving out those whose parent is one of them.
copies() {
  local pids p n=0
  pids=" $(pgrep -f "$APPDIR/releases/" | tr '\n' ' ') "
  for p in $pids; do
    case "$pids" in *" $(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ') "*) ;; *) n=$((n + 1)) ;; esac
  done
  echo "$n"
}
one_copy() { [ "$(copies)" -eq 1 ]; }
check_consistent() { # round
  local cur
  cur=$(readlink "$APPDIR/current") || { echo "round $1: no current link"; return 1; }
  case "$cur" in releases/*) ;; *) echo "round $1: current -> $cur"; return 1 ;; esac
  [ -f "$APPDIR/$cur/run.json" ] && [ -d "$APPDIR/$cur/rootfs" ] && [ -x "$APPDIR/$cur/rootfs/app" ] \
    || { echo "round $1: current -> $cur is not a complete release"; return 1; }
  case "$cur" in *.partial) echo "round $1: current is partial"; return 1 ;; esac
  "$FERRYD" --config "$T/node.yaml" --check-state > "$T/check.out" || { cat "$T/check.out"; echo "round $1: ferryd --check-state"; return 1; }
  return 0
}

bad=0
declare -A OPS=()
for r in $(seq 1 "$ROUNDS"); do
  v=$(( r % 3 + 1 ))
  if [ $((r % 4)) -eq 0 ]; then
    op=rollback
    ( "$FERRY" rollback --identity "$T/me" --to "node@127.0.0.1:$PORT_node" --app hello > /dev/null 2>&1 || true ) &
  else
    op=deploy
    ( "$FERRY" push --identity "$T/me" --json "$T/img:v$v" --to "node@127.0.0.1:$PORT_node" --app hello --settle 0.3 \
        > "$T/push.json" 2>/dev/null || true ) &
  fi
  OPS[$op]=$(( ${OPS[$op]:-0} + 1 ))
  PUSHER=$!
  # The kill lands at a random moment of the operation: this pause is the experiment, not a wait.
  sleep "$(python3 -c "import random; print(round(random.uniform(0.0, 0.7), 3))")"
  kill -9 "${PIDS[-1]}" 2>/dev/null || true
  wait "${PIDS[-1]}" 2>/dev/null || true
  wait $PUSHER || true
  check_consistent "$r" || bad=$((bad + 1))
  start_agent node ''
  # after the restart: no partial release, the current app runs exactly once
  [ -z "$(find "$APPDIR/releases" -maxdepth 1 -name '*.partial')" ] || { echo "round $r: partial release left after restart"; bad=$((bad + 1)); }
  try_for 60 app_running || true
  if ! app_running; then
    echo "round $r ($op): app not running after restart; status: $(cat "$T/st.json" 2>/dev/null)"
    ls -l "$APPDIR" "$APPDIR/releases" || true
    tail -n 15 "$T/node.log" || true
    bad=$((bad + 1))
  fi
  # exactly one copy: the helper or the app itself (the count can be caught mid-start: retry)
  try_for 30 one_copy || true
  n=$(copies)
  if [ "$n" -ne 1 ]; then
    echo "round $r ($op): $n copies of the app running; pid file: $(cat "$APPDIR/pid" 2>/dev/null || echo none)"
    ps -eo pid,ppid,stat,cmd | grep -F -e "$APPDIR/releases/" -e "$T/" | grep -v grep || true
    tail -n 12 "$T/node.log" || true
    bad=$((bad + 1))
  fi
done
echo "kill -9 rounds: $ROUNDS (${OPS[deploy]} during deploys, ${OPS[rollback]} during rollbacks), inconsistent states: $bad"
[ $bad -eq 0 ] || fail "$bad inconsistent states"
pass "$ROUNDS kill -9 rounds at random moments (${OPS[deploy]} deploys with their GC, ${OPS[rollback]} rollbacks): 0 inconsistent states, the current app running after each restart"

push_json "$T/final.json" "$T/img:v2" --to "node@127.0.0.1:$PORT_node" --app hello --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/final.json"; fail "the push after the kill loop"; }
wait_version "127.0.0.1:$PORT_node" hello 2 || fail "v2 not running at the end"
pass "the next push completes and runs"
"$FERRYD" --config "$T/node.yaml" --check-state --verify > "$T/check.out" || { cat "$T/check.out"; fail "check-state --verify"; }
grep -q ' 0 problem(s)' "$T/check.out" || fail "check-state output"
rm "$APPDIR/current" && ln -s releases/nope "$APPDIR/current"
if "$FERRYD" --config "$T/node.yaml" --check-state > "$T/check2.out"; then fail "a broken current link passed --check-state"; fi
grep -q "is not a complete release" "$T/check2.out" || { cat "$T/check2.out"; fail "check-state message"; }
pass "ferryd --check-state verifies the invariants (and catches a broken current link)"
finish
