#!/usr/bin/env bash
# Nodes behind NAT: ferryd with `listen: none` and a broker: keeps one outbound mutual-TLS
# connection to Debian's mosquitto (configured from examples/mosquitto: require_certificate, the
# certificate's name as the user, the shipped ACL), as a user sets it up. Three host agents and an
# arm64 ferryd under qemu-aarch64. What a user checks, from the broker (mosquitto_sub as the
# pusher): each node's retained status, online with its platform; no port open on the node; a
# node killed with SIGKILL marked offline by its Last Will; a clean stop marked offline; the
# broker killed and started again, the nodes back and their apps never stopped; a node of another
# fleet CA refused by the broker and retrying without harm; a node publishing under another
# node's topic dropped by the ACL.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
command -v mosquitto_sub > /dev/null || { echo "skip: mosquitto-clients missing (scripts/setup.sh installs it)" >&2; exit 77; }
setup_fleet
start_broker
STATUS=ferry/e2e/nodes

online() { # NAME [PLATFORM]: the retained status, signed by the node, says online (on PLATFORM)
  local m
  m=$(broker_status "$1")
  echo "$m" | grep -q '"online":true' && { [ -z "${2:-}" ] || echo "$m" | grep -q "\"platform\":\"$2\""; }
}
offline() { broker_status "$1" | grep -q '"online":false'; }

for n in n1 n2 n3; do AGENT_LISTEN=none start_agent "$n" "$BROKER_YAML"; done
AGENT_LISTEN=none FERRYD_BIN=$A64 start_agent pi "$BROKER_YAML"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
for n in n1 n2 n3; do wait_for "$WAIT_LIMIT" "$n's status on the broker" online "$n" linux/amd64; done
wait_for "$WAIT_LIMIT" "the arm64 node's status on the broker" online pi linux/arm64
[ "$(broker_sub "$STATUS/+/status" 4 10 | wc -l)" = 4 ] || fail "four retained statuses on the broker"
log_has "$T/n1.log" 'broker: connected to localhost:'"$BROKER_PORT"' as n1 (TLS' || fail "n1's log does not say it connected, over TLS"
for n in n1 pi; do
  pid=PID_$n
  ! ss -ltnpH 2>/dev/null | grep -q "pid=${!pid}," || fail "$n (listen: none) listens on a TCP port"
done
pass "listen: none nodes (three amd64, one arm64 under qemu) open no port, connect out to the broker with their own identity, and publish a retained status: online, their platform"

# --- an app keeps running through a broker outage (installed with ferryd --import: no pusher
#     can reach these nodes)
build_apps "$T/app"
$MKIMAGE "$T/img" --ref v1 --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=1 > /dev/null
"$FERRY" bundle "$T/img:v1" -o "$T/site.tar" > /dev/null 2>&1
"$FERRYD" --config "$T/n1.yaml" --import "$T/site.tar" --app hello > "$T/import.out" 2>&1 || { cat "$T/import.out"; fail "import on a listen: none node"; }
app_pid() { cat "$T/state-n1/apps/hello/pid" 2>/dev/null; }
apps_in_status() { broker_status n1 | grep -q '"name":"hello"'; }
wait_for "$WAIT_LIMIT" "the status on the broker lists the imported app" apps_in_status
before=$(app_pid)
stop_broker
wait_log "$T/n1.log" 'broker: .*next attempt in'
wait_log "$T/pi.log" 'broker: .*next attempt in'
start_broker
for n in n1 n2 n3 pi; do wait_log "$T/$n.log" "broker: connected to localhost:$BROKER_PORT as $n" 2; done
[ "$(app_pid)" = "$before" ] && kill -0 "$before" || fail "the app did not run on through the broker's outage"
for n in n1 n2 n3; do wait_for "$WAIT_LIMIT" "$n online again after the broker's restart" online "$n"; done
grep -q 'session resumed' "$T/n2.log" || fail "the nodes' sessions were not kept (clean session off)"
pass "the broker restarted: the nodes retry with backoff and come back (their sessions kept), the imported app runs on with the same pid, and the status lists it"

# --- SIGKILL: the Last Will; SIGTERM: a goodbye
kill -9 "$PID_n2"
wait_for "$WAIT_LIMIT" "n2 marked offline by its Last Will after SIGKILL" offline n2
kill -TERM "$PID_n3"
wait_for "$WAIT_LIMIT" "n3 marked offline after a clean stop" offline n3
broker_status n3 | grep -q '"time":' || fail "the goodbye status carries the time"
online n1 || fail "n1 went offline with its neighbours"
pass "a node killed with SIGKILL is marked offline by its Last Will; a clean stop says offline itself, with the time"

# --- an agent of another fleet: the broker refuses it, it retries and stays up
"$FERRY" ca init "$T/ca2" > /dev/null
"$FERRY" cert issue --ca "$T/ca2" --name stray --role agent --out "$T/id-stray" > /dev/null
cp "$T/ca/ca.pem" "$T/id-stray/ca.pem" # it trusts the right broker, but its certificate is another CA's
AGENT_LISTEN=none start_agent stray "$BROKER_YAML"
wait_log "$T/stray.log" 'broker: .*next attempt in' 2
kill -0 "$PID_stray" || fail "the agent of another fleet exited"
! log_has "$T/stray.log" 'broker: connected' || fail "the broker accepted a certificate of another CA"
[ -z "$(broker_sub "$STATUS/stray/status" 1 3)" ] || fail "the stray agent published a status"
pass "an agent whose certificate is another CA's is refused by the broker, retries with backoff and keeps running"

# --- the ACL: a node may publish only under its own nodes/NAME/
id_pub() { # IDENTITY TOPIC PAYLOAD
  mosquitto_pub -h localhost -p "$BROKER_PORT" --cafile "$T/ca/ca.pem" --cert "$1/cert.pem" --key "$1/key.pem" -t "$2" -m "$3" -q 1
}
# The watcher takes the first message on n1's desired topic. pi's publish is acknowledged before
# the pusher's is sent, so had the broker let it through it would come first.
n=$(grep -c "$STATUS/n1/desired (QoS 0)" "$T/broker.log" || true)
broker_sub "$STATUS/n1/desired" 1 "$WAIT_LIMIT" > "$T/watch.out" &
watcher=$!
wait_log "$T/broker.log" "$STATUS/n1/desired (QoS 0)" $((n + 1))
id_pub "$T/id-pi" "$STATUS/n1/desired" '{"forged":"by pi"}'
id_pub "$T/me" "$STATUS/n1/desired" '{"sentinel":true}'
wait "$watcher" || true
grep -q sentinel "$T/watch.out" || { cat "$T/watch.out"; fail "the first message a subscriber saw was not the pusher's"; }
id_pub "$T/id-pi" "$STATUS/n1/status" '{"online":false,"forged":true}'
online n1 || fail "a node overwrote another node's retained status"
# Were the broker to let it through (or write one itself), the signature tells: pi's status
# republished as n1's is refused by the reader.
broker_sub "$STATUS/pi/status" 1 5 | cut -d' ' -f2- | "$FERRY_BIN/envelope_open" "$T/me" status n1 > "$T/swap.out" || true
grep -q 'refused ENAME' "$T/swap.out" || { cat "$T/swap.out"; fail "a node's status read as another node's"; }
pass "the shipped ACL: a node's message on another node's topics is dropped (a subscriber sees only the pusher's), and it cannot overwrite another's status; a status is signed by its node, and one node's passed off as another's is refused"

# --- trust does not move to the broker: desired state signed by a pusher, checked by the node.
# (The pusher's broker path is the next stage; envelope_sign signs with the same code.)
SIGN="$FERRY_BIN/envelope_sign"
now=$(date +%s)
"$SIGN" "$T/me/key.pem" "$T/me/cert.pem" desired n1 5 "$now" $((now + 30 * 86400)) '{"apps":{}}' > "$T/d5.json"
"$SIGN" "$T/me/key.pem" "$T/me/cert.pem" desired n1 6 "$now" $((now + 30 * 86400)) '{"apps":{}}' > "$T/d6.json"
"$SIGN" "$T/me/key.pem" "$T/me/cert.pem" desired n1 7 $((now - 90000)) $((now - 3600)) '{"apps":{}}' > "$T/d-expired.json"
"$SIGN" "$T/id-pi/key.pem" "$T/id-pi/cert.pem" desired n1 8 "$now" $((now + 3600)) '{"apps":{}}' > "$T/d-forged.json"
"$SIGN" "$T/me/key.pem" "$T/me/cert.pem" desired n2 9 "$now" $((now + 3600)) '{"apps":{}}' > "$T/d-other.json"
"$SIGN" "$T/me/key.pem" "$T/me/cert.pem" desired n1 9 "$now" $((now + 3600)) '{"apps":{"../etc":{"digest":"sha256:00"}}}' > "$T/d-badapp.json"
n=$(grep -c "$STATUS/n1/events (QoS 0)" "$T/broker.log" || true)
broker_sub "$STATUS/n1/events" 7 "$WAIT_LIMIT" > "$T/events.out" &
watcher=$!
wait_log "$T/broker.log" "$STATUS/n1/events (QoS 0)" $((n + 1))
for f in d5 d5 d6 d5 d-expired d-forged d-other d-badapp; do # d5 again at once: the same state, not news; after d6: an old one replayed
  mosquitto_pub -h localhost -p "$BROKER_PORT" --cafile "$T/ca/ca.pem" --cert "$T/me/cert.pem" --key "$T/me/key.pem" \
    -t "$STATUS/n1/desired" -f "$T/$f.json" -q 1
done
wait "$watcher" || true
ev() { sed -n "${1}p" "$T/events.out"; }
ev 1 | grep -q '"event":"verified".*"seq":5' || { cat "$T/events.out"; fail "a pusher's signed desired state was not verified"; }
ev 2 | grep -q '"event":"verified".*"seq":6' || { cat "$T/events.out"; fail "the same desired state twice is not news (no event), the next one is"; }
ev 3 | grep -q '"code":"EDOWNGRADE".*replayed' || { cat "$T/events.out"; fail "a replayed desired state: no refusal with the reason"; }
ev 4 | grep -q '"code":"EEXPIRED".*expired' || { cat "$T/events.out"; fail "an expired desired state: no refusal with the reason"; }
ev 5 | grep -q '"code":"EROLE".*not from a pusher' || { cat "$T/events.out"; fail "a desired state signed by an agent's identity: no refusal"; }
ev 6 | grep -q '"code":"ENAME".*another node' || { cat "$T/events.out"; fail "a desired state for another node: no refusal"; }
ev 7 | grep -q '"code":"EPROTO".*is not an app name' || { cat "$T/events.out"; fail "a desired state naming a path as its app: no refusal"; }
grep -q '"desired":6' "$T/state-n1/broker-seq.json" || fail "the newest sequence is not kept in the state directory"
log_has "$T/n1.log" 'desired message refused: EDOWNGRADE' || fail "n1's log does not give the refusals"
# n1 connected twice in all this (at its start, after the broker's restart): a healthy connection stays up
[ "$(grep -c 'broker: connected' "$T/n1.log")" = 2 ] || { grep broker "$T/n1.log"; fail "n1's connection to the broker did not stay up"; }
# --- nothing secret is readable on the broker: a retained desired state with a secret sealed to n1
SECRET=s3cr3t-$RANDOM-$RANDOM
"$SIGN" "$T/me/key.pem" "$T/me/cert.pem" desired n1 10 "$now" $((now + 3600)) '{"apps":{}}' "$T/id-n1/cert.pem" "db=$SECRET" > "$T/d9.json"
n=$(grep -c '"event":"verified"' "$T/events.out" || true)
broker_sub "$STATUS/n1/events" 1 "$WAIT_LIMIT" > "$T/events2.out" &
watcher=$!
wait_log "$T/broker.log" "$STATUS/n1/events (QoS 0)" 2
mosquitto_pub -h localhost -p "$BROKER_PORT" --cafile "$T/ca/ca.pem" --cert "$T/me/cert.pem" --key "$T/me/key.pem" \
  -t "$STATUS/n1/desired" -f "$T/d9.json" -q 1 -r
wait "$watcher" || true
grep -q '"event":"verified".*1 secret(s) open' "$T/events2.out" || { cat "$T/events2.out"; fail "the node did not open the secret sealed to it"; }
stop_broker # TERM: mosquitto writes its persistence file
[ -s "$T/broker/persist/mosquitto.db" ] || fail "mosquitto wrote no persistence file"
! grep -qa -- "$SECRET" "$T/broker/persist/mosquitto.db" || fail "the secret is readable in mosquitto's persistence file"
python3 - "$T/d9.json" "$SECRET" <<'PY' || fail "the secret is readable in the signed payload"
import base64, json, sys
env = json.load(open(sys.argv[1]))
assert sys.argv[2].encode() not in base64.b64decode(env["payload"])
PY
! grep -q -- "$SECRET" "$T"/*.log || fail "a log carries the secret"
start_broker

# --- ferry status --fleet from the broker: every node at once, online or not, none waited for
for n in n1 pi; do wait_for "$WAIT_LIMIT" "$n online again after the second restart of the broker" online "$n"; done
cat > "$T/fleet.yaml" <<EOF
broker: {url: "mqtts://localhost:$BROKER_PORT", topic_prefix: ferry/e2e}
nodes:
  - {name: n1}
  - {name: n2}
  - {name: n3}
  - {name: pi}
  - {name: ghost}
EOF
set +e
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me" > "$T/fst.out" 2> "$T/fst.err"
rc=$?
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me" --json > "$T/fst.json" 2> /dev/null
set -e
row() { grep -E "^$1 " "$T/fst.out" | head -1; }
row n1 | grep -q ' ONLINE ' && row pi | grep -q ' ONLINE .*arm64' && row n2 | grep -q 'LAST SEEN .* ago' &&
  row n3 | grep -q 'LAST SEEN .* ago' && row ghost | grep -q 'NEVER SEEN' && row n1 | grep -q ' hello ' ||
  { cat "$T/fst.out" "$T/fst.err"; fail "ferry status --fleet from the broker"; }
[ $rc -eq 1 ] || fail "status --fleet exits 0 with a node never seen"
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me" -l kubernetes.io/arch=arm64 > "$T/fsel.out"
[ "$(grep -c ' ONLINE ' "$T/fsel.out")" = 1 ] && grep -q '^pi ' "$T/fsel.out" || { cat "$T/fsel.out"; fail "status --fleet --selector from the broker"; }
python3 - "$T/fst.json" <<'PY' || { cat "$T/fst.json"; fail "status --fleet --json from the broker"; }
import json, sys
d = {n["name"]: n for n in json.load(open(sys.argv[1]))["nodes"]}
assert d["n1"]["online"] and d["n1"]["verified"] and d["n1"]["via"] == "broker" and d["n1"]["platform"] == "linux/amd64"
import re
assert not d["n2"]["online"] and d["n2"]["verified"] and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["n2"]["last_seen"])
assert not d["ghost"]["seen"]
PY
"$FERRY" cert issue --ca "$T/ca" --name laptop2 --role pusher --out "$T/me2" > /dev/null
set +e
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me2" --timeout 3 > /dev/null 2> "$T/fst2.err"
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "the broker's ACL must let 'laptop2' read and write ferry/e2e/#" "$T/fst2.err" || { cat "$T/fst2.err"; fail "a pusher the ACL does not list"; }
pass "ferry status --fleet with broker: answers from the broker at once: ONLINE, LAST SEEN for the nodes that went away, NEVER SEEN, each status's signature checked (--json and --selector too); a pusher the broker's ACL does not list is told why"
# A node whose status says online but is three hours old (it said it republishes hourly):
# killed while it renewed its Will, so no Will reached the broker. It is read as away.
"$FERRY" cert issue --ca "$T/ca" --name silent --role agent --out "$T/id-silent" > /dev/null
now=$(date +%s); then=$((now - 3 * 3600))
"$FERRY_BIN/envelope_sign" "$T/id-silent/key.pem" "$T/id-silent/cert.pem" status silent "${then}000" "$then" $((now + 86400)) \
  '{"name":"silent","platform":"linux/amd64","accepts":["linux/amd64"],"online":true,"time":'"$then"',"refresh_s":3600,"apps":[{"name":"hello","release":"r1","state":"running"}]}' > "$T/silent.json"
mosquitto_pub -h localhost -p "$BROKER_PORT" --cafile "$T/ca/ca.pem" --cert "$T/id-silent/cert.pem" --key "$T/id-silent/key.pem" \
  -t ferry/e2e/nodes/silent/status -f "$T/silent.json" -q 1 -r
printf '  - {name: silent}\n' >> "$T/fleet.yaml"
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me" > "$T/fst3.out" 2> /dev/null || true
grep -q '^silent  *LAST SEEN 3h[0-9]*m ago ' "$T/fst3.out" || { cat "$T/fst3.out"; fail "a stale online status"; }
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me" --json > "$T/fst3.json" 2> /dev/null || true
[ "$(json_get "$T/fst3.json" "[(n['online'], n['last_seen']) for n in d['nodes'] if n['name'] == 'silent']")" = \
  "([(False, '$(date -u -d "@$then" +%Y-%m-%dT%H:%M:%SZ)')],)" ] || { cat "$T/fst3.json"; fail "a stale online status (--json)"; }
sed -i '/name: silent/d' "$T/fleet.yaml"
pass "a status that says online but is three hours older than the hourly refresh it promises (no Will reached the broker) is shown as LAST SEEN 3h ago, online false"
# --watch: where each node stands, then a line whenever a status changes (n3 comes back)
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me" --watch > "$T/watch.out" 2> "$T/watch.err" &
wpid=$!
wait_for "$WAIT_LIMIT" "--watch's first lines" log_has "$T/watch.out" ' ghost  *NEVER SEEN'
grep -q ' n3  *LAST SEEN' "$T/watch.out" || { cat "$T/watch.out"; fail "--watch: n3 is not shown as gone"; }
AGENT_LISTEN=none start_agent n3 "$BROKER_YAML"
wait_for "$WAIT_LIMIT" "--watch did not show n3 coming back" log_has "$T/watch.out" ' n3  *ONLINE'
kill -INT "$wpid"
wait "$wpid" || fail "--watch did not end cleanly on Ctrl-C"
pass "ferry status --fleet --watch: where each node stands, then n3 coming back as it happens; Ctrl-C ends it"

# n1 restarted: the retained state it has (sequence 10) is not news; an older one is still a replay
kill -TERM "$PID_n1"
wait "$PID_n1" 2>/dev/null || true
AGENT_LISTEN=none start_agent n1 "$BROKER_YAML"
wait_log "$T/n1.log" "broker: connected to localhost:$BROKER_PORT as n1"
n=$(grep -c "$STATUS/n1/events (QoS 0)" "$T/broker.log" || true)
broker_sub "$STATUS/n1/events" 1 "$WAIT_LIMIT" > "$T/events3.out" &
watcher=$!
wait_log "$T/broker.log" "$STATUS/n1/events (QoS 0)" $((n + 1))
mosquitto_pub -h localhost -p "$BROKER_PORT" --cafile "$T/ca/ca.pem" --cert "$T/me/cert.pem" --key "$T/me/key.pem" \
  -t "$STATUS/n1/desired" -f "$T/d6.json" -q 1
wait "$watcher" || true
grep -q '"code":"EDOWNGRADE"' "$T/events3.out" || { cat "$T/events3.out"; fail "after a restart, an old desired state replayed was not refused"; }
pass "desired state through the broker is checked by the node: a pusher's signature verifies; a replay (captured and republished with mosquitto_pub), an expired one, one signed by an agent's identity and one for another node are refused, each with its reason in the node's events; a secret sealed to the node opens there and is in neither mosquitto's persistence file, the payload nor any log; the newest sequence survives a restart of the node"

# --- a broker whose certificate another CA issued (as AWS IoT's is Amazon's): an RSA key, no
#     ferry broker role. broker.ca in the node's config and in the fleet file names that CA; the
#     clients' certificates are still the fleet's, and so is every signature.
P=$T/public
mkdir -p "$P"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.pem" -days 30 -subj "/CN=Public Root" 2> /dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$P/key.pem" -out "$P/req.pem" -subj "/CN=localhost" 2> /dev/null
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$P/ext"
openssl x509 -req -in "$P/req.pem" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial -days 30 -extfile "$P/ext" -out "$P/cert.pem" 2> /dev/null
stop_broker
BROKER_SERVER_ID=$P # from here on: the broker and the test's own subscriptions
start_broker
PUB_YAML="$BROKER_YAML"$'
'"  ca: $P/ca.pem"
AGENT_LISTEN=none start_agent pubn "$PUB_YAML"
AGENT_LISTEN=none FERRYD_BIN=$A64 start_agent pubpi "$PUB_YAML"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
wait_for "$WAIT_LIMIT" "the host node online through the broker with broker.ca" online pubn linux/amd64
wait_for "$WAIT_LIMIT" "the arm64 node (mbedTLS 3.6, static) online through the broker with broker.ca" online pubpi linux/arm64
n=$(grep -c 'broker: .*next attempt in' "$T/n1.log" || true)
wait_log "$T/n1.log" 'broker: .*next attempt in' $((n + 1)) # n1, without broker.ca: the broker is not the fleet's
! online n1 || fail "n1 (no broker.ca) is online through a broker whose certificate the fleet CA did not issue"
printf 'broker: {url: "mqtts://localhost:%s", topic_prefix: ferry/e2e, ca: public/ca.pem}\nnodes: [{name: pubn}, {name: pubpi}]\n' "$BROKER_PORT" > "$T/pubfleet.yaml"
"$FERRY" status --fleet "$T/pubfleet.yaml" --identity "$T/me" > "$T/pub.out" 2> "$T/pub.err" || { cat "$T/pub.out" "$T/pub.err"; fail "status --fleet with broker.ca"; }
grep -q '^pubn  *ONLINE ' "$T/pub.out" && grep -q '^pubpi  *ONLINE .*arm64' "$T/pub.out" || { cat "$T/pub.out"; fail "status --fleet with broker.ca: rows"; }
set +e
"$FERRY" logs --fleet "$T/pubfleet.yaml" --identity "$T/me" --app hello --timeout 60 > "$T/publogs.out" 2>&1
set -e
grep -q "pubn.*no app\|pubn.*not installed\|pubn.*EAPP\|pubn.*ENOENT" "$T/publogs.out" || { cat "$T/publogs.out"; fail "a request through the broker with broker.ca"; }
sed 's|, ca: public/ca.pem||' "$T/pubfleet.yaml" > "$T/nocafleet.yaml"
"$FERRY" status --fleet "$T/nocafleet.yaml" --identity "$T/me" > /dev/null 2> "$T/noca.err" && fail "status --fleet without broker.ca trusted another CA's broker"
grep -q 'broker.ca names it\|needs broker.ca' "$T/noca.err" || { cat "$T/noca.err"; fail "status --fleet without broker.ca: message"; }
echo "not a certificate" > "$T/public/bad.pem"
sed 's|public/ca.pem|public/bad.pem|' "$T/pubfleet.yaml" > "$T/badfleet.yaml"
"$FERRY" status --fleet "$T/badfleet.yaml" --identity "$T/me" > /dev/null 2> "$T/bad.err" && fail "status --fleet with a broker.ca that is no certificate"
grep -q "broker.ca: $T/public/bad.pem: " "$T/bad.err" || { cat "$T/bad.err"; fail "a bad broker.ca (fleet): message"; }
printf 'name: pubn\nlisten: none\nstate_dir: %s\nidentity: %s\n%s\n  ca: %s\n' "$T/state-badca" "$T/id-pubn" "$BROKER_YAML" "$T/public/bad.pem" > "$T/badca.yaml"
"$FERRYD" --config "$T/badca.yaml" > /dev/null 2> "$T/badca.err" && fail "ferryd started with a broker.ca that is no certificate"
grep -q "broker.ca: $T/public/bad.pem" "$T/badca.err" || { cat "$T/badca.err"; fail "a bad broker.ca (agent): message"; }
mkfifo "$T/public/fifo.pem" # a FIFO where the file was expected: refused at once, nothing waits on it
sed 's|public/ca.pem|public/fifo.pem|' "$T/pubfleet.yaml" > "$T/fifofleet.yaml"
"$FERRY" status --fleet "$T/fifofleet.yaml" --identity "$T/me" > /dev/null 2> "$T/fifo.err" && fail "status --fleet with a FIFO as broker.ca"
grep -q "broker.ca: cannot read $T/public/fifo.pem" "$T/fifo.err" || { cat "$T/fifo.err"; fail "a FIFO as broker.ca (fleet): message"; }
sed "s|$T/public/bad.pem|$T/public/fifo.pem|" "$T/badca.yaml" > "$T/fifoca.yaml"
"$FERRYD" --config "$T/fifoca.yaml" > /dev/null 2> "$T/fifoca.err" && fail "ferryd started with a FIFO as broker.ca"
grep -q "broker.ca: cannot read $T/public/fifo.pem" "$T/fifoca.err" || { cat "$T/fifoca.err"; fail "a FIFO as broker.ca (agent): message"; }
# broker.ca holding the fleet CA too (two bundles concatenated): a node's certificate, named as the
# broker's host, still cannot be the broker
cat "$P/ca.pem" "$T/ca/ca.pem" > "$P/bundle.pem"
"$FERRY" cert issue --ca "$T/ca" --name localhost --role agent --out "$T/fakebroker" > /dev/null
stop_broker
BROKER_SERVER_ID=$T/fakebroker
start_broker
AGENT_LISTEN=none start_agent bundlen "$BROKER_YAML"$'\n'"  ca: $P/bundle.pem"
wait_log "$T/bundlen.log" "broker: the broker's certificate lacks the broker role.*next attempt in"
! online bundlen || fail "a node accepted another node's certificate as the broker"
sed 's|public/ca.pem|public/bundle.pem|' "$T/pubfleet.yaml" > "$T/bundlefleet.yaml"
"$FERRY" status --fleet "$T/bundlefleet.yaml" --identity "$T/me" > /dev/null 2> "$T/bundle.err" && fail "status --fleet through a node's certificate as the broker"
grep -q "the broker's certificate lacks the broker role" "$T/bundle.err" || { cat "$T/bundle.err"; fail "a node's certificate as the broker: message"; }
pass "a broker whose certificate another CA issued (RSA, no broker role): nodes with broker.ca (amd64, and arm64 under qemu) connect, status --fleet and a request go through it with the fleet file's broker.ca; without it the node and the pusher refuse that broker; a broker.ca that is no certificate, or a FIFO, is refused by ferryd and ferry, naming the file; with the fleet CA in broker.ca too, a node's certificate still cannot be the broker"
finish
