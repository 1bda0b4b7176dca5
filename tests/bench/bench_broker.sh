#!/usr/bin/env bash
# Broker figures for docs/figures.md (prints them), with Debian's mosquitto on loopback
# (examples/mosquitto: mutual TLS, the ACL):
#  (a) one ferryd with listen: none, idle for BENCH_IDLE_S (120) seconds at the default keepalive
#      (30 s): its RSS, and its traffic to and from the broker counted by the kernel (iptables on
#      the broker's port), scaled to an hour. Baseline, same run: the same ferryd with a listening
#      port and no broker (its RSS; it sends nothing while idle).
#  (b) `ferry status --fleet` reading 50, 200 and 1,000 nodes' retained statuses: its wall time,
#      its peak RSS (/usr/bin/time) and the bytes per node it received (kernel counters). The
#      statuses are simulated, honestly: each is signed by its own node identity, exactly as
#      ferryd signs its status (the same protocol/ code, through tests/tools/envelope_sign), with a
#      status body as a real node sends it, and retained on the broker by mosquitto_pub; the
#      pusher checks every signature as it does for real nodes. Goal: 1,000 nodes, RSS <= 64 MiB.
#  (c) `ferry push --detach` through the broker to the same 50, 200 and 1,000 simulated nodes, the
#      layers in Debian's docker-registry: its wall time, peak RSS and the laptop's traffic per
#      node (both ways on the broker's port: the statuses and desired states read, each node's
#      signed desired state with its sealed plan published). Nothing applies them (the nodes are
#      simulated): this measures the laptop's side, which is what the goal is about (RSS <= 64 MiB
#      and < 16 KiB per node at 1,000 nodes). The baseline, same run: (b)'s status read.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=${FERRY_BIN:-$SRC/build/host/bin} FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
IDLE_S=${BENCH_IDLE_S:-120}
SIZES=${BENCH_SIZES:-"50 200 1000"}
setup_fleet
start_broker bench
CHAIN="FERRYQ$$"
COUNT=0
if iptables -N "$CHAIN" 2>/dev/null && iptables -I OUTPUT -j "$CHAIN" 2>/dev/null; then
  COUNT=1
  CLEANUP_CMDS+=("iptables -D OUTPUT -j $CHAIN" "iptables -F $CHAIN" "iptables -X $CHAIN")
  iptables -A "$CHAIN" -p tcp --dport "$BROKER_PORT"
  iptables -A "$CHAIN" -p tcp --sport "$BROKER_PORT"
fi
bytes() { [ $COUNT = 1 ] && iptables -L "$CHAIN" -v -x -n | awk 'NR > 2 { s += $2 } END { print s + 0 }' || echo 0; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

echo "== (a) one idle ferryd, ${IDLE_S} s"
[ $COUNT = 1 ] && iptables -Z "$CHAIN"
AGENT_LISTEN=none start_agent idle "${BROKER_YAML/keepalive: 5s/keepalive: 30s}"
wait_log "$T/idle.log" 'broker: connected'
wait_for "$WAIT_LIMIT" "idle's status on the broker" log_has "$T/broker.log" "PUBLISH from idle .*nodes/idle/status"
wait_for "$WAIT_LIMIT" "the broker's PUBACK of idle's status" log_has "$T/broker.log" "Sending PUBACK to idle"
connect_bytes=$(bytes) # one connection: what the hourly renewal of the Last Will costs again
[ $COUNT = 1 ] && iptables -Z "$CHAIN"
sleep "$IDLE_S" # a benchmark: it measures what an idle agent does in this time
idle_bytes=$(bytes)
idle_rss=$(rss_kib "$PID_idle")
start_agent listening ""
listen_rss=$(rss_kib "$PID_listening")
per_hour=$((idle_bytes * 3600 / IDLE_S))
echo "idle ferryd (listen: none, broker, keepalive 30 s): RSS $((idle_rss)) KiB; ${idle_bytes} bytes in ${IDLE_S} s both ways, ${per_hour} bytes/hour"
echo "one connection (TLS, CONNECT with the Will, SUBSCRIBE, the status): ${connect_bytes} bytes; with the hourly renewal of the Will: $((per_hour + connect_bytes)) bytes/hour"
echo "baseline, same run: ferryd listening, no broker: RSS ${listen_rss} KiB, 0 bytes while idle"

echo "== (b) ferry status --fleet from the broker"
BODY='{"accepts":["linux/arm64"],"agent_version":"0.2.0","apps":[{"name":"hello","release":"20261205T000000Z-00000000","state":"running","age_s":3600,"restarts":0}],"board":"rpi4","labels":{"kubernetes.io/arch":"arm64","kubernetes.io/os":"linux","ferry.dev/board":"rpi4"},"name":"NODE","online":true,"platform":"linux/arm64","proto":5,"time":TIME}'
made=0
for size in $SIZES; do
  while [ "$made" -lt "$size" ]; do
    made=$((made + 1))
    name=$(printf 'sim%04d' "$made")
    "$FERRY" cert issue --ca "$T/ca" --name "$name" --role agent --out "$T/sim/$name" > /dev/null
    now=$(date +%s)
    body=${BODY//NODE/$name}
    "$FERRY_BIN/envelope_sign" "$T/sim/$name/key.pem" "$T/sim/$name/cert.pem" status "$name" "$((now * 1000))" "$now" \
      $((now + 400 * 86400)) "${body//TIME/$now}" > "$T/sim/$name.json"
    mosquitto_pub -h localhost -p "$BROKER_PORT" --cafile "$T/ca/ca.pem" --cert "$T/me/cert.pem" --key "$T/me/key.pem" \
      -t "ferry/bench/nodes/$name/status" -f "$T/sim/$name.json" -q 1 -r
  done
  { echo "broker: {url: \"mqtts://localhost:$BROKER_PORT\", topic_prefix: ferry/bench}"; echo "nodes:"
    for i in $(seq 1 "$size"); do printf '  - {name: sim%04d}\n' "$i"; done; } > "$T/fleet-$size.yaml"
  [ $COUNT = 1 ] && iptables -Z "$CHAIN"
  /usr/bin/time -f '%e %M' -o "$T/time-$size" "$FERRY" status --fleet "$T/fleet-$size.yaml" --identity "$T/me" --timeout 120 > "$T/st-$size.out"
  read -r secs maxkib < "$T/time-$size"
  got=$(bytes)
  online=$(grep -c ' ONLINE ' "$T/st-$size.out" || true)
  echo "status --fleet, $size nodes: ${secs} s, peak RSS ${maxkib} KiB, $((got / size)) bytes per node received; $online of $size verified and online"
  [ "$online" = "$size" ] || fail "only $online of $size statuses verified"
done

echo "== (c) ferry push --detach through the broker"
start_registry main
build_apps "$T/app"
$MKIMAGE "$T/img" --ref 1 --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=1 > /dev/null
"$FERRY" publish "$T/img:1" "docker://$REGHOST_main/bench/hello:1" --registry-ca "$T/reg-main/ca.pem" > /dev/null 2>&1
for size in $SIZES; do
  { echo "registry: docker://$REGHOST_main/bench/hello"; echo "registry_auth: $REGISTRY_AUTH_FILE"; cat "$T/fleet-$size.yaml"; } > "$T/pfleet-$size.yaml"
  [ $COUNT = 1 ] && iptables -Z "$CHAIN"
  /usr/bin/time -f '%e %M' -o "$T/ptime-$size" "$FERRY" push "$T/img:1" --app hello --fleet "$T/pfleet-$size.yaml" --identity "$T/me" \
    --registry-ca "$T/reg-main/ca.pem" --detach --json --timeout 120 > "$T/push-$size.json" 2> "$T/push-$size.err" || { tail -5 "$T/push-$size.err"; fail "push --detach to $size nodes"; }
  read -r secs maxkib < "$T/ptime-$size"
  got=$(bytes)
  det=$(python3 -c 'import json,sys; print(sum(n["result"] == "detached" for n in json.load(open(sys.argv[1]))["nodes"]))' "$T/push-$size.json")
  echo "push --detach, $size nodes: ${secs} s, peak RSS ${maxkib} KiB, $((got / size)) bytes per node both ways; $det of $size published"
  [ "$det" = "$size" ] || fail "only $det of $size desired states published"
done
