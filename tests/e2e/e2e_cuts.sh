#!/usr/bin/env bash
# Dropped and slow links: a 64 MiB deploy through a loopback proxy (tests/tools/cutproxy.py) that
# resets the connection at random byte offsets, 200 times; ferry push is simply run again after
# each cut, as a user would, and resumes from what the node kept. Checks: the final release's
# digests verify, the app runs, and the bytes that crossed the link towards the node exceed the
# image by at most 10 %. Then the proxy stalls the link (1.5 s pauses, under idle_timeout): the
# deploy still completes. FERRY_CUTS changes the 200 (the asan preset uses fewer).
source "$(dirname "$0")/lib.sh"
CUTS=${FERRY_CUTS:-200}
case "$FERRY_BIN" in *asan*) CUTS=${FERRY_CUTS:-40} ;; esac
setup_fleet
build_apps "$T/app"
mkdir -p "$T/big" "$T/big2"
head -c $((64 << 20)) /dev/urandom > "$T/big/data.bin"
head -c $((4 << 20)) /dev/urandom > "$T/big2/data.bin"
$MKIMAGE "$T/img" --ref v1 --variant linux/amd64="$T/app/x64,$T/big" --env VERSION=1 > /dev/null
$MKIMAGE "$T/img" --ref v2 --variant linux/amd64="$T/app/x64,$T/big2" --env VERSION=2 > /dev/null
IMAGE_BYTES=$(python3 - "$T/img" <<'PY'
import json, sys
d = sys.argv[1]
ix = json.load(open(d + "/index.json"))
top = [m for m in ix["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "v1"][0]
nested = json.load(open(d + "/blobs/sha256/" + top["digest"][7:]))
man = json.load(open(d + "/blobs/sha256/" + nested["manifests"][0]["digest"][7:]))
print(sum(l["size"] for l in man["layers"]))
PY
)
start_agent node ''
start_proxy() { # start_proxy NAME ARGS...: sets PROXY_PORT
  local name=$1; shift
  python3 "$FERRY_SRC/tests/tools/cutproxy.py" "127.0.0.1:$PORT_node" "$T/$name.port" "$T/$name.stats" "$@" &
  PIDS+=($!)
  wait_for 30 "the proxy $name to listen" test -s "$T/$name.port"
  PROXY_PORT=$(cat "$T/$name.port")
}
start_proxy cut --cuts "$CUTS" --mean $((IMAGE_BYTES / CUTS)) --seed 7

attempts=0
while :; do
  attempts=$((attempts + 1))
  [ $attempts -le $((CUTS * 3 + 20)) ] || { cat "$T/p.json.err" "$T/cut.stats"; tail -5 "$T/node.log"; fail "no complete deploy after $attempts attempts"; }
  push_json "$T/p.json" "$T/img:v1" --to "node@127.0.0.1:$PROXY_PORT" --app hello --settle 0.5 --timeout 20
  [ $PUSH_RC -eq 0 ] && break
done
read -r cuts c2s < <(python3 -c "import json; s=json.load(open('$T/cut.stats')); print(s['cuts'], s['client_to_server'])")
[ "$cuts" -eq "$CUTS" ] || fail "the proxy made $cuts cuts, not $CUTS"
RESENT=$((c2s - IMAGE_BYTES))
PCT=$(python3 -c "print(round(100 * $RESENT / $IMAGE_BYTES, 2))")
"$FERRYD" --config "$T/node.yaml" --check-state --verify > "$T/verify.out" || { cat "$T/verify.out"; fail "digests after the cuts"; }
wait_version "node@127.0.0.1:$PORT_node" hello 1 || fail "v1 not running"
python3 -c "import sys; sys.exit(0 if $RESENT * 10 <= $IMAGE_BYTES else 1)" || fail "re-sent $RESENT bytes ($PCT %) > 10 %"
pass "$CUTS cuts at random offsets of a $((IMAGE_BYTES >> 20)) MiB deploy, $attempts pushes: digests verify, v1 runs; $RESENT bytes beyond the image crossed the link ($PCT % incl. handshakes)"
echo "cuts=$CUTS attempts=$attempts resent_bytes=$RESENT resent_pct=$PCT" > "${FERRY_CUTS_FIGURES:-/dev/null}"

# A stalling link: 1.5 s pauses every 1 MiB, under the agent's idle_timeout (60 s default) and
# the pusher's --timeout: slow, but it completes.
start_proxy stall --stall-ms 1500 --stall-every $((1 << 20))
push_json "$T/s.json" "$T/img:v2" --to "node@127.0.0.1:$PROXY_PORT" --app hello --settle 0.5 --timeout 10
[ $PUSH_RC -eq 0 ] || { cat "$T/s.json.err"; fail "deploy over a stalling link"; }
wait_version "node@127.0.0.1:$PORT_node" hello 2 || fail "v2 not running"
pass "a link that stalls 1.5 s every MiB still delivers a 4 MiB deploy"

# A link that goes dead: the laptop drops off the network mid-transfer, and no FIN or reset ever
# reaches the agent (the proxy freezes both ways after 2 MiB; the pusher is killed). The agent
# still holds the app's deploy until its idle_timeout (60 s); the same pusher pushing again
# supersedes that transfer at once and resumes from the bytes already on the node.
mkdir -p "$T/d3"; head -c $((8 << 20)) /dev/urandom > "$T/d3/blob"
$MKIMAGE "$T/img" --ref v3 --variant linux/amd64="$T/app/x64,$T/d3" --compress none --env VERSION=3 > /dev/null
start_proxy dead --stall-ms 600000 --stall-every $((2 << 20))
"$FERRY" push --identity "$T/me" "$T/img:v3" --to "node@127.0.0.1:$PROXY_PORT" --app hello --settle 0.5 --timeout 120 > /dev/null 2>&1 &
DEAD_PUSHER=$!
wait_log "$T/node.log" "plan from 127.0.0.1:.*, 2 blob(s) to receive\|plan from 127.0.0.1:.*, 1 blob(s) to receive, 1 already"
# the link is frozen (2 MiB crossed it) before the laptop drops off: killed earlier, the pusher's
# socket would close and the proxy would pass the close on, which is not a dead link
wait_for 60 "the proxy to freeze the link" test -e "$T/dead.stats.stalled"
kill -9 $DEAD_PUSHER; wait $DEAD_PUSHER 2>/dev/null || true
push_json "$T/d.json" "$T/img:v3" --to "node@127.0.0.1:$PORT_node" --app hello --settle 0.5 --timeout 20
[ $PUSH_RC -eq 0 ] || { cat "$T/d.json" "$T/d.json.err"; tail -5 "$T/node.log"; fail "the push after a dead link"; }
grep -q 'a new plan from laptop supersedes its unfinished transfer' "$T/node.log" || fail "no takeover logged"
SENT=$(json_get "$T/d.json" "d['nodes'][0]['bytes_sent']" | tr -d '(),')
[ "$SENT" -lt $((8 << 20)) ] || fail "the second push sent $SENT bytes: nothing was resumed"
wait_version "node@127.0.0.1:$PORT_node" hello 3 || fail "v3 not running"
pass "a dead link (no FIN reaches the agent): the same pusher's next push supersedes the stale transfer at once and resumes ($SENT of $((8 << 20)) bytes sent)"
finish
