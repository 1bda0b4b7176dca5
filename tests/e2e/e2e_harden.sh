#!/usr/bin/env bash
# Hardening against careless and hostile peers and a full disk, against a running ferryd:
#  - slow peers: a byte at a time before the handshake, and after it (never a whole frame), are
#    dropped within the configured timeouts while status answers and a crashing app keeps being
#    restarted;
#  - resource limits: 1,000 connect/disconnect cycles and 200 garbage connections leave RSS and
#    the open file count flat (measured from /proc), max_connections refuses the excess;
#  - disk full: state_dir on a 40 MiB tmpfs; a deploy too big for it is refused up front with a
#    clear error, one that fills the disk while unpacking fails with ENOSPC; the old release keeps
#    running, and after a restart no partial file is left.
# The peers are Python's socket/ssl modules (tests/tools/hostile.py), not ferry's code.
source "$(dirname "$0")/lib.sh"
HOSTILE="python3 $FERRY_SRC/tests/tools/hostile.py"
setup_fleet
build_apps "$T/app"
$MKIMAGE "$T/crashy" --variant linux/amd64="$T/app/x64" --env EXIT_AFTER=1 > /dev/null

start_agent node $'limits: {handshake_timeout: 3s, idle_timeout: 3s, max_connections: 8}'
AGENT=${PIDS[0]}
N="node@127.0.0.1:$PORT_node"
push_json "$T/c.json" "$T/crashy" --to "$N" --app crashy --settle 0
restarts() { "$FERRY" status --identity "$T/me" --json --to "$N" > "$T/rs.json" && json_get "$T/rs.json" "d['nodes'][0]['apps'][0]['restarts']" | tr -dc 0-9; }

# --- slow peers
R0=$(restarts)
$HOSTILE trickle-raw "127.0.0.1:$PORT_node" 1 > "$T/tr1.out" &
T1=$!
$HOSTILE trickle-tls "$T/me" "127.0.0.1:$PORT_node" 1 > "$T/tr2.out" &
T2=$!
# status answers all the while the tricklers are connected (until the agent drops them both)
i=0; deadline=$(deadline_in 60)
while kill -0 $T1 2>/dev/null || kill -0 $T2 2>/dev/null; do
  i=$((i + 1))
  "$FERRY" status --identity "$T/me" --to "$N" > /dev/null || fail "status while trickling ($i)"
  past_deadline "$deadline" && fail "the tricklers were not dropped"
done
[ $i -ge 1 ] || fail "no status was asked while the tricklers were connected"
wait $T1 || fail "the pre-handshake trickler was never dropped"
wait $T2 || fail "the post-handshake trickler was never dropped"
R1=$(restarts)
grep -Eq 'dropped after [0-4]\.' "$T/tr1.out" || { cat "$T/tr1.out"; fail "pre-handshake trickle not dropped within 3 s"; }
grep -Eq 'dropped after [0-4]\.' "$T/tr2.out" || { cat "$T/tr2.out"; fail "post-handshake trickle not dropped within 3 s"; }
grep -q 'ETIMEDOUT: TLS handshake not completed within 3000 ms' "$T/node.log" || fail "handshake timeout log"
grep -q 'ETIMEDOUT: idle peer: no complete frame for 3000 ms' "$T/node.log" || fail "idle timeout log"
[ "$R1" -gt "$R0" ] || fail "the crashing app was not restarted while peers trickled ($R0 -> $R1)"
pass "slow peers (1 byte/s before and after the handshake) dropped within the 3 s timeouts ($(cat "$T/tr1.out"), $(cat "$T/tr2.out")); status answered and the app restarted $((R1 - R0)) times meanwhile"

# --- resource limits: flat RSS and fd count
rss() { awk '/VmRSS/ {print $2}' "/proc/$AGENT/status"; }
# Sockets are what connections leave behind; the crashing app's output pipes and log come and
# go with each of its restarts (two pipes per process, the old ones draining), so they are not
# counted.
fds() { find "/proc/$AGENT/fd" -mindepth 1 -lname 'socket:*' 2>/dev/null | wc -l; }
FDW=$(fds)
$HOSTILE churn "$T/me" "127.0.0.1:$PORT_node" 100 || fail "warm-up churn"
fds_back() { [ "$(fds)" -le "$1" ]; }
wait_for 30 "the warm-up connections to be closed" fds_back "$FDW"
RSS0=$(rss) FD0=$(fds)
$HOSTILE churn "$T/me" "127.0.0.1:$PORT_node" 1000 || fail "churn"
$HOSTILE garbage "127.0.0.1:$PORT_node" 200 || fail "garbage"
try_for 30 fds_back "$FD0" || true
RSS1=$(rss) FD1=$(fds)
kill -0 "$AGENT" || fail "ferryd died under churn"
"$FERRY" status --identity "$T/me" --to "$N" > /dev/null || fail "status after churn"
[ "$FD1" -le "$FD0" ] || { ls -l "/proc/$AGENT/fd"; fail "open sockets grew: $FD0 -> $FD1"; }
# (Under ASan freed memory sits in its quarantine, so RSS says nothing there: open files still do.)
case "$FERRY_BIN" in *asan*) ;; *) [ $((RSS1 - RSS0)) -lt 1024 ] || fail "RSS grew by $((RSS1 - RSS0)) KiB" ;; esac
pass "1,000 connect/disconnect cycles (250 full TLS handshakes) + 200 garbage connections: RSS $RSS0 -> $RSS1 KiB, open sockets $FD0 -> $FD1"
# Idle sockets that never start TLS cannot take the slots of authenticated peers: 200 of them
# from 127.0.0.1, and `ferry status` from 127.0.0.1 answers at its first attempt (the oldest
# unauthenticated connections are dropped to make room, per source and overall).
python3 - "$PORT_node" "$T/release-idle" "$T/idle-open" <<'PY' &
import os, socket, sys, time
s = []
for _ in range(200):
    try:
        s.append(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    except OSError:
        pass
open(sys.argv[3], "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.05)
PY
IDLE=$!
wait_for 60 "the 200 idle sockets to be open" test -e "$T/idle-open"
wait_log "$T/node.log" "dropped before its handshake completed, to make room (limits.max_handshakes_per_source)" 150
"$FERRY" status --identity "$T/me" --to "$N" --timeout 10 > "$T/idle-status.out" || { cat "$T/idle-status.out"; fail "status while 200 idle sockets are open"; }
touch "$T/release-idle"
wait $IDLE
pass "200 idle sockets from 127.0.0.1: the oldest unauthenticated ones are dropped (max_handshakes_per_source), and ferry status answers at its first attempt"

# max_connections counts authenticated peers: 8 held after their handshake, the 9th refused,
# served again once they go
start_agent lim $'limits: {max_connections: 8, idle_timeout: 120s}'
python3 - "$PORT_lim" "$T/me" "$T/release-hold" <<'PY' &
import os, socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.check_hostname = False
ctx.load_verify_locations(os.path.join(sys.argv[2], "ca.pem"))
ctx.load_cert_chain(os.path.join(sys.argv[2], "cert.pem"), os.path.join(sys.argv[2], "key.pem"))
s = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])))) for _ in range(8)]
deadline = time.monotonic() + 120
while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.05)
PY
HOLD=$!
wait_log "$T/lim.log" "TLS up" 8
L="lim@127.0.0.1:$PORT_lim"
set +e; "$FERRY" status --identity "$T/me" --to "$L" --timeout 5 > /dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "a 9th authenticated connection was served beyond max_connections"
grep -q 'too many connections (limits.max_connections 8)' "$T/lim.log" || fail "no refusal logged"
touch "$T/release-hold"
wait $HOLD
try_for 30 "$FERRY" status --identity "$T/me" --to "$L" > /dev/null || fail "status after the connection limit"
pass "max_connections 8 counts authenticated peers: the 9th is refused, and served again once the 8 are gone"

# limits.frame_memory (16 MiB) caps the frames being received across all connections: 60
# authenticated peers each start a 1 MiB frame and hold it; those past the cap get EBUSY.
start_agent mem ''
python3 - "$PORT_mem" "$T/me" > "$T/frames.out" <<'PY'
import json, os, socket, ssl, struct, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.check_hostname = False
ctx.load_verify_locations(os.path.join(sys.argv[2], "ca.pem"))
ctx.load_cert_chain(os.path.join(sys.argv[2], "cert.pem"), os.path.join(sys.argv[2], "key.pem"))
peers = []
for _ in range(60):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    s.sendall(b"FY" + bytes([1, 0]) + struct.pack(">I", 1 << 20) + bytes(4096))  # the start of a 1 MiB hello
    peers.append(s)
busy = held = 0
for s in peers:
    s.settimeout(3)
    try:
        hdr = s.recv(8)
        body = s.recv(struct.unpack(">I", hdr[4:])[0]) if len(hdr) == 8 else b""
        busy += b"EBUSY" in body
        held += not hdr
    except socket.timeout:
        held += 1  # still receiving: within the cap
print(json.dumps({"busy": busy, "held": held}))
PY
[ "$(json_get "$T/frames.out" "d['busy'] >= 40 and d['held'] >= 10 and d['busy'] + d['held'] == 60")" = "(True,)" ] \
  || { cat "$T/frames.out"; grep -c busy "$T/mem.log"; fail "frame memory cap"; }
grep -q "EBUSY: busy: the frames being received from all peers fill the agent's frame memory" "$T/mem.log" || fail "no EBUSY logged"
"$FERRY" status --identity "$T/me" --to "mem@127.0.0.1:$PORT_mem" > /dev/null || fail "status after the frame memory test"
pass "60 authenticated peers each holding the start of a 1 MiB frame: $(json_get "$T/frames.out" "d['held']" | tr -dc 0-9) held within limits.frame_memory (16 MiB), $(json_get "$T/frames.out" "d['busy']" | tr -dc 0-9) refused with EBUSY; status still answers"

# --- disk full
if ! mkdir -p "$T/small" || ! mount -t tmpfs -o size=40m tmpfs "$T/small" 2>/dev/null; then
  echo "skip: cannot mount a tmpfs here (needs root)" >&2
  finish
  exit 0
fi
MOUNTS+=("$T/small")
mkdir -p "$T/r1" "$T/r2" "$T/zero"
head -c $((8 << 20)) /dev/urandom > "$T/r1/data.bin"
head -c $((24 << 20)) /dev/urandom > "$T/r2/data.bin"
head -c $((96 << 20)) /dev/zero > "$T/zero/zeros.bin"   # compresses to almost nothing
$MKIMAGE "$T/img" --ref v1 --variant linux/amd64="$T/app/x64,$T/r1" --env VERSION=1 > /dev/null
$MKIMAGE "$T/img" --ref big --variant linux/amd64="$T/app/x64,$T/r2" --env VERSION=big > /dev/null
$MKIMAGE "$T/img" --ref bomb --variant linux/amd64="$T/app/x64,$T/zero" --env VERSION=bomb > /dev/null
cat > "$T/full.yaml" <<EOF
name: full
listen: 127.0.0.1:0
state_dir: $T/small/state
identity: $T/id-full
EOF
"$FERRY" cert issue --ca "$T/ca" --name full --role agent --out "$T/id-full" > /dev/null
"$FERRYD" --config "$T/full.yaml" 2> "$T/full.log" &
PIDS+=($!)
wait_log "$T/full.log" 'listening on [0-9.]*:[0-9]* as '
PF=$(grep -o 'listening on [0-9.]*:[0-9]*' "$T/full.log" | sed 's/.*://')
F="full@127.0.0.1:$PF"
push_json "$T/f1.json" "$T/img:v1" --to "$F" --app hello --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/f1.json.err"; fail "v1 on the small disk"; }
REL1=$(json_get "$T/f1.json" "d['nodes'][0]['release']")
push_json "$T/f2.json" "$T/img:big" --to "$F" --app hello --settle 0.5
[ $PUSH_RC -eq 1 ] || fail "a deploy bigger than the disk succeeded"
json_get "$T/f2.json" "d['nodes'][0]['error']" | grep -q "not enough space in $T/small/state: the deploy needs about" || { cat "$T/f2.json"; fail "ENOSPC up front"; }
[ -z "$(find "$T/small/state" -name '*.partial')" ] || fail "partial files after the up-front refusal"
pass "a deploy bigger than the free space is refused before any byte: $(json_get "$T/f2.json" "d['nodes'][0]['error']" | cut -c1-90)..."
push_json "$T/f3.json" "$T/img:bomb" --to "$F" --app hello --settle 0.5
[ $PUSH_RC -eq 1 ] || fail "a deploy that fills the disk succeeded"
json_get "$T/f3.json" "d['nodes'][0]['error']" | grep -qi "no space left" || { cat "$T/f3.json"; fail "ENOSPC while unpacking"; }
"$FERRY" status --identity "$T/me" --json --to "$F" > "$T/fs.json"
[ "$(json_get "$T/fs.json" "d['nodes'][0]['apps'][0]['release']")" = "$REL1" ] || { cat "$T/fs.json"; fail "the old release is not current"; }
[ "$(json_get "$T/fs.json" "d['nodes'][0]['apps'][0]['state']")" = "('running',)" ] || fail "the old release is not running"
wait_version "$F" hello 1 || fail "v1 not running after ENOSPC"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
"$FERRYD" --config "$T/full.yaml" 2>> "$T/full.log" &
PIDS+=($!)
wait_log "$T/full.log" 'listening on [0-9.]*:[0-9]* as ' 2
PF=$(grep -o 'listening on [0-9.]*:[0-9]*' "$T/full.log" | tail -1 | sed 's/.*://')
[ -z "$(find "$T/small/state" -name '*.partial')" ] || { find "$T/small/state" -name '*.partial'; fail "partial files after a restart"; }
"$FERRYD" --config "$T/full.yaml" --check-state > "$T/cs.out" || { cat "$T/cs.out"; fail "check-state after ENOSPC"; }
wait_version "full@127.0.0.1:$PF" hello 1 || fail "v1 not running after the restart"
pass "a deploy that fills the disk while unpacking fails with '$(json_get "$T/f3.json" "d['nodes'][0]['error']" | cut -c3-70)...'; v1 keeps running; no partial file after a restart"

# --- transfers cut on the small disk leave partial blobs; they count as free space for the next
# deploy, which removes them to make room (and a deploy's GC removes those nobody resumes)
F="full@127.0.0.1:$PF"
for k in 1 2 3; do
  mkdir -p "$T/cut$k" && head -c $((5 << 20)) /dev/urandom > "$T/cut$k/data.bin"
  $MKIMAGE "$T/cutimg$k" --ref v1 --variant linux/amd64="$T/cut$k" --compress none > /dev/null
  python3 "$FERRY_SRC/tests/tools/rawpeer.py" "$T/me" "127.0.0.1:$PF" cut-blob "$T/cutimg$k" v1 linux/amd64 "cut$k" $((4 << 20)) > "$T/cut$k.out"
  wait_log "$T/full.log" "pusher went away during the transfer" "$k"
done
[ "$(find "$T/small/state/blobs" -name '*.partial' | wc -l)" -eq 3 ] || { find "$T/small/state/blobs"; fail "three partial blobs expected"; }
mkdir -p "$T/fits" && head -c $((8 << 20)) /dev/urandom > "$T/fits/data.bin"
$MKIMAGE "$T/img" --ref fits --variant linux/amd64="$T/app/x64,$T/fits" --env VERSION=fits > /dev/null
push_json "$T/f4.json" "$T/img:fits" --to "$F" --app hello --settle 0.5
[ $PUSH_RC -eq 0 ] || { cat "$T/f4.json"; df -h "$T/small"; fail "a deploy that fits once the abandoned partials are gone"; }
grep -q "made room: removed [0-9]* partial or cached blob(s)" "$T/full.log" || { tail "$T/full.log"; fail "no room was made"; }
[ -z "$(find "$T/small/state/blobs" -name '*.partial')" ] || fail "partial blobs left after the deploy"
pass "three cut transfers leave 12 MiB of partial blobs on a 40 MiB disk; the next 8 MiB deploy, which would not fit beside them, removes them to make room and completes"

# A node whose free space is below what the variant needs is left out of the plan, and the
# summary says why.
mkdir -p "$T/r3" && head -c $((32 << 20)) /dev/urandom > "$T/r3/data.bin"
$MKIMAGE "$T/img" --ref huge --variant linux/amd64="$T/app/x64,$T/r3" --env VERSION=huge > /dev/null
"$FERRY" plan --identity "$T/me" --json "$T/img:huge" --to "$F" > "$T/plan-space.json" || true
[ "$(json_get "$T/plan-space.json" "d['nodes'][0]['action']")" = "('skip',)" ] \
  && json_get "$T/plan-space.json" "d['nodes'][0]['reason']" | grep -q "not enough free space: .* free, the release needs at least" \
  && json_get "$T/plan-space.json" "d['summary']" | grep -q "1 doesn't have enough free space" || { cat "$T/plan-space.json"; fail "the plan ignores free space"; }
pass "ferry plan leaves out a node without the free space its variant needs: $(json_get "$T/plan-space.json" "d['nodes'][0]['reason']" | cut -c3-90)"
finish
