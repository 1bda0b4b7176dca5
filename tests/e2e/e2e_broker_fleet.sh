#!/usr/bin/env bash
# A fleet behind NAT at the size the broker is for: 50 host ferryd and 2 arm64 ferryd under
# qemu-aarch64, all with `listen: none`, Debian's mosquitto (the shipped configuration and ACL)
# and Debian's docker-registry. What a user checks: a canary-and-waves rollout through the broker
# converges on every node that is online; ten nodes stopped before the rollout and started after
# the pusher exited converge by themselves, and `ferry status --fleet` shows all 52 converged; a
# pusher killed with SIGKILL in the middle of a rollout leaves the fleet consistent, and a second
# laptop identity follows it with `ferry status --fleet --watch`.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
command -v mosquitto_sub > /dev/null || { echo "skip: mosquitto-clients missing (scripts/setup.sh installs it)" >&2; exit 77; }
setup_fleet
"$FERRY" cert issue --ca "$T/ca" --name laptop2 --role pusher --out "$T/me2" > /dev/null
BROKER_EXTRA_PUSHERS=laptop2 start_broker
start_registry main
R=$REGHOST_main
build_apps "$T/app"
for v in 1 2; do
  $MKIMAGE "$T/img" --ref $v --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" --env VERSION=$v > /dev/null
  "$FERRY" publish "$T/img:$v" "docker://$R/fleet/hello:$v" --registry-ca "$T/reg-main/ca.pem" > /dev/null 2>&1
done
AGENT_CFG="registry_ca: $T/reg-main/ca.pem"$'\n'"$BROKER_YAML"
HOSTS=()
for i in $(seq -w 1 50); do HOSTS+=("n$i"); done
for n in "${HOSTS[@]}"; do AGENT_LISTEN=none start_agent "$n" "$AGENT_CFG"; done
for n in a1 a2; do
  AGENT_LISTEN=none FERRYD_BIN=$A64 start_agent "$n" "$AGENT_CFG"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
done
ALL=("${HOSTS[@]}" a1 a2)
{
  echo "broker: {url: \"mqtts://localhost:$BROKER_PORT\", topic_prefix: ferry/e2e}"
  echo "registry: docker://$R/fleet/hello"
  echo "registry_auth: $REGISTRY_AUTH_FILE"
  echo "nodes:"
  for n in "${ALL[@]}"; do echo "  - {name: $n}"; done
} > "$T/fleet.yaml"
# fleet_state ID: status --fleet --json as laptop ID ($T/me, $T/me2)
fleet_state() { "$FERRY" status --fleet "$T/fleet.yaml" --identity "$1" --json > "$T/fst.json" 2> "$T/fst.err" || true; }
# count WHAT: nodes online (online), or whose hello is converged (converged)
count() {
  python3 - "$T/fst.json" "$1" <<'PY'
import json, sys
nodes = json.load(open(sys.argv[1]))["nodes"]
if sys.argv[2] == "online":
    print(sum(1 for n in nodes if n.get("online")))
else:
    print(sum(1 for n in nodes for a in n.get("apps", []) if a["name"] == "hello" and a.get("convergence") == sys.argv[2]))
PY
}
all_online() { fleet_state "$T/me"; [ "$(count online)" = "$1" ]; }
wait_for 180 "all 52 nodes online on the broker" all_online 52
# ten nodes go away before the rollout
LATE=(n41 n42 n43 n44 n45 n46 n47 n48 n49 n50)
for n in "${LATE[@]}"; do pid=PID_$n; kill -TERM "${!pid}"; done
for n in "${LATE[@]}"; do pid=PID_$n; wait "${!pid}" 2>/dev/null || true; done
wait_for "$WAIT_LIMIT" "42 nodes online once ten stopped" all_online 42

# --- a canary and waves through the broker
set +e
"$FERRY" push "$T/img:1" --app hello --identity "$T/me" --fleet "$T/fleet.yaml" --registry-ca "$T/reg-main/ca.pem" \
  --canary 1 --max-parallel 25% --max-failures 2 --settle 1 --json > "$T/p1.json" 2> "$T/p1.err"
rc=$?
set -e
python3 - "$T/p1.json" <<'PY' || { tail -20 "$T/p1.err"; fail "the rollout to 52 nodes through the broker"; }
import json, sys
d = json.load(open(sys.argv[1]))
r = {}
for n in d["nodes"]:
    r.setdefault(n["result"], []).append(n["name"])
assert sorted(r.get("not-reached", [])) == ["n%02d" % i for i in range(41, 51)], r.get("not-reached")
assert len(r.get("deployed", [])) == 42, {k: len(v) for k, v in r.items()}
assert not d["halted"] and d["waves"] >= 5, (d["halted"], d["waves"])
PY
[ $rc -eq 1 ] || fail "a rollout with nodes not reached exits $rc"
grep -q 'wave 1/[0-9]* (canary), 2 node' "$T/p1.err" || { grep wave "$T/p1.err"; fail "no canary wave (a node of each variant)"; }
pass "push through the broker to 52 nodes (50 amd64, 2 arm64 under qemu): a canary of each variant, then waves of 25%; the 42 online nodes deploy v1 from the registry, the 10 that are away are not-reached"

# --- the ten come back after the pusher exited
for n in "${LATE[@]}"; do AGENT_LISTEN=none start_agent "$n" "$AGENT_CFG"; done
all_converged() { fleet_state "$T/me"; [ "$(count converged)" = 52 ]; }
wait_for 240 "all 52 nodes converged" all_converged
for n in "${LATE[@]}"; do grep -aq 'VERSION=1' "$T/state-$n/apps/hello/log" || fail "$n does not run v1"; done
pass "the ten nodes started after the pusher exited converge on their own; status --fleet shows all 52 converged"

# --- the pusher killed mid-rollout; a second laptop follows the fleet
"$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me2" --watch > "$T/watch.out" 2> "$T/watch.err" &
watcher=$!
wait_for "$WAIT_LIMIT" "--watch's first lines" log_has "$T/watch.out" ' a2 ' 1
"$FERRY" push "$T/img:2" --app hello --identity "$T/me" --fleet "$T/fleet.yaml" --registry-ca "$T/reg-main/ca.pem" \
  --max-parallel 5 --settle 1 > /dev/null 2> "$T/p2.err" &
pusher=$!
wait_for "$WAIT_LIMIT" "the rollout's third wave" log_has "$T/p2.err" 'wave 3/'
kill -9 "$pusher"
wait "$pusher" 2>/dev/null || true
published=$(grep -c 'desired state [0-9]* published' "$T/p2.err" || true)
[ "$published" -ge 10 ] && [ "$published" -lt 52 ] || fail "the pusher published $published desired states before it was killed"
# each node converges to what was published for it: v2 where the pusher got to it, v1 elsewhere
wait_for 240 "all 52 nodes converged after the pusher was killed" all_converged
v2=0
for n in "${ALL[@]}"; do grep -aq 'VERSION=2' "$T/state-$n/apps/hello/log" 2>/dev/null && v2=$((v2 + 1)); done
# (a desired state of the wave in flight may have been published after the last line was written)
[ "$v2" -ge "$published" ] && [ "$v2" -le $((published + 5)) ] || fail "$v2 nodes run v2, but $published desired states were published"
wait_for "$WAIT_LIMIT" "--watch shows the nodes converging and converged" log_has "$T/watch.out" 'converged)' 52
grep -q 'converging)' "$T/watch.out" || { tail -20 "$T/watch.out"; fail "--watch never showed a node converging"; }
kill -INT "$watcher"
wait "$watcher" || fail "--watch did not end cleanly on Ctrl-C"
pass "a pusher killed with SIGKILL mid-rollout: the $v2 nodes it published to converge to v2 and the others stay on v1, every one converged; a second laptop identity follows it all with status --fleet --watch"
finish
