#!/usr/bin/env bash
# A rollout through the broker, as a fleet behind NAT gets one: ferryd with `listen: none` on four
# host nodes and an arm64 node under qemu-aarch64, Debian's mosquitto as the broker (the shipped
# configuration and ACL), Debian's docker-registry holding the image. `ferry push --fleet` with
# broker: and registry: in the fleet file publishes each node's desired state (signed, its plan
# sealed to the node) in a canary and waves, and the nodes pull the layers from the registry.
# What a user checks: every node converges (ferry status --fleet says so); two nodes stopped
# before the rollout are not reached, and converge when they start after the pusher exited;
# --detach returns at once and the fleet converges on its own; a node killed right after it applied
# a state is shown converged while it is away (its renewed Last Will); the broker restarted mid-rollout;
# a release that fails its health check halts the canary and --revert-on-halt brings the
# previous release back; the credential and settings' secrets are not readable on the broker.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
command -v mosquitto_sub > /dev/null || { echo "skip: mosquitto-clients missing (scripts/setup.sh installs it)" >&2; exit 77; }
setup_fleet
start_broker
start_registry main
R=$REGHOST_main # the name its certificate carries, as the nodes reach it
build_apps "$T/app"
for v in 1 2 3 4; do
  env=(--env VERSION=$v)
  [ $v = 4 ] && env+=(--env FAIL_ON_NODE=n4) # a release that exits at once on n4: it fails its settle time there
  $MKIMAGE "$T/img" --ref $v --variant linux/amd64="$T/app/x64" --variant linux/arm64="$T/app/a64" "${env[@]}" > /dev/null
  "$FERRY" publish "$T/img:$v" "docker://$R/fleet/hello:$v" --registry-ca "$T/reg-main/ca.pem" > /dev/null
done
SECRET=pull-$RANDOM$RANDOM
printf 'token=%s\n' "$SECRET" > "$T/token.txt"

AGENT_CFG="registry_ca: $T/reg-main/ca.pem"$'\n'"$BROKER_YAML"
HOSTS=(n1 n2 n3 n4)
for n in "${HOSTS[@]}"; do AGENT_LISTEN=none start_agent "$n" "$AGENT_CFG"; done
for n in late1 late2; do AGENT_LISTEN=none start_agent "$n" "$AGENT_CFG"; done
AGENT_LISTEN=none FERRYD_BIN=$A64 start_agent pi "$AGENT_CFG"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
{
  echo "broker: {url: \"mqtts://localhost:$BROKER_PORT\", topic_prefix: ferry/e2e}"
  echo "registry: docker://$R/fleet/hello"
  echo "registry_auth: $REGISTRY_AUTH_FILE"
  echo "secrets: {token: $T/token.txt}"
  echo "nodes:"
  for n in "${HOSTS[@]}" pi late1 late2; do echo "  - {name: $n}"; done
} > "$T/fleet.yaml"
online() { broker_status "$1" | grep -q '"online":true'; }
for n in "${HOSTS[@]}" pi late1 late2; do wait_for "$WAIT_LIMIT" "$n online on the broker" online "$n"; done
# two nodes go away before the rollout (their status on the broker says offline, with their facts)
for n in late1 late2; do pid=PID_$n; kill -TERM "${!pid}"; wait "${!pid}" 2>/dev/null || true; done
app_version() { grep -aho "VERSION=[0-9]*" "$T/state-$1/apps/hello/log" 2>/dev/null | tail -1 | grep -qx "VERSION=$2"; }
fstatus() { "$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me" --json > "$T/fst.json" 2> "$T/fst.err" || true; }
converged() { # NODE...: status --fleet says each of them runs hello converged
  fstatus
  python3 - "$T/fst.json" "$@" <<'PY'
import json, sys
d = {n["name"]: n for n in json.load(open(sys.argv[1]))["nodes"]}
for name in sys.argv[2:]:
    apps = {a["name"]: a for a in d[name].get("apps", [])}
    assert apps.get("hello", {}).get("convergence") == "converged", (name, apps)
PY
}
push() { # OUT ARGS...
  local out=$1; shift
  set +e
  "$FERRY" push --identity "$T/me" --json --fleet "$T/fleet.yaml" --registry-ca "$T/reg-main/ca.pem" --app hello "$@" > "$out" 2> "$out.err"
  PUSH_RC=$?
  set -e
}
results() { json_get "$1" "sorted((n['name'], n['result']) for n in d['nodes'])"; }

# --- a canary and waves; the two nodes that are away are not reached
push "$T/p1.json" "$T/img:1" --canary 1 --max-parallel 2 --settle 1
[ $PUSH_RC -ne 0 ] || fail "a rollout with nodes not reached exits 0"
[ "$(results "$T/p1.json")" = "([('late1', 'not-reached'), ('late2', 'not-reached'), ('n1', 'deployed'), ('n2', 'deployed'), ('n3', 'deployed'), ('n4', 'deployed'), ('pi', 'deployed')],)" ] ||
  { cat "$T/p1.json" "$T/p1.json.err"; fail "the first rollout through the broker"; }
grep -q 'wave 1/4 (canary), 2 node' "$T/p1.json.err" && [ "$(json_get "$T/p1.json" "d['waves']")" = "(4,)" ] ||
  { cat "$T/p1.json.err"; fail "a canary (a node of each variant) then waves of two"; }
for n in "${HOSTS[@]}" pi; do app_version "$n" 1 || fail "$n does not run v1"; done
grep -q 'pulled\|pulling' "$T/pi.log" || true
converged n1 n2 n3 n4 pi || { cat "$T/fst.json"; fail "status --fleet does not say converged"; }
pass "push --fleet through the broker: a canary then waves; four amd64 nodes and an arm64 node under qemu pull v1 from the registry and run it; two nodes that are away are not-reached (exit status 1); status --fleet says converged"

# --- ferry plan through the broker: the same decision, nothing published
set +e
"$FERRY" plan --identity "$T/me" --json --fleet "$T/fleet.yaml" --registry-ca "$T/reg-main/ca.pem" --app hello "$T/img:1" > "$T/plan.json" 2> "$T/plan.err"
rc=$?
set -e
[ $rc -eq 0 ] && [ "$(json_get "$T/plan.json" "sorted((n['name'], n['action']) for n in d['nodes'])")" = "([('late1', 'deploy'), ('late2', 'deploy'), ('n1', 'unchanged'), ('n2', 'unchanged'), ('n3', 'unchanged'), ('n4', 'unchanged'), ('pi', 'unchanged')],)" ] ||
  { cat "$T/plan.json" "$T/plan.err"; fail "ferry plan through the broker"; }
pass "ferry plan through the broker: the nodes that run v1 are unchanged, the two that are away would get it (from their last status's facts)"

# --- the two nodes come back after the pusher exited: they converge
for n in late1 late2; do AGENT_LISTEN=none start_agent "$n" "$AGENT_CFG"; done
for n in late1 late2; do wait_for "$WAIT_LIMIT" "$n converged after it started" converged "$n"; done
for n in late1 late2; do app_version "$n" 1 || fail "$n does not run v1"; done
pass "the two nodes started again after the pusher exited converge to v1 on their own, and status --fleet shows them converged"

# --- --detach: publish and return; the fleet converges without the laptop
N4_LINES=$(wc -l < "$T/n4.log")
push "$T/p2.json" "$T/img:2" --detach --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; fail "push --detach"; }
[ "$(json_get "$T/p2.json" "sorted(set(n['result'] for n in d['nodes']))")" = "(['detached'],)" ] || { cat "$T/p2.json"; fail "--detach results"; }
wait_for "$WAIT_LIMIT" "the fleet converged to v2 after --detach" converged n1 n2 n3 n4 pi late1 late2
for n in "${HOSTS[@]}" pi late1 late2; do app_version "$n" 2 || fail "$n does not run v2"; done
pass "push --detach publishes to every node and returns; the fleet converges to v2 on its own"

# --- a node that goes away after it applied the state: its Last Will (signed again once the
#     applied state changed) says so, so status --fleet shows it converged while it is away, and
#     when it was last seen: after the push, not when its connection began
# (v2 applied, then a renewal after it: the lines n4 logged since the --detach push)
renewed() {
  tail -n +$((N4_LINES + 1)) "$T/n4.log" | awk '/broker: desired state [0-9]+: app hello: deployed/ { d = 1 }
    d && /broker: reconnected to renew the Last Will \(the applied state changed\)/ { r = 1 } END { exit !r }'
}
wait_for "$WAIT_LIMIT" "n4 to renew its Last Will after applying v2" renewed
kill -9 "$PID_n4"; wait "$PID_n4" 2> /dev/null || true
away() { ! online n4; }
wait_for "$WAIT_LIMIT" "n4's Last Will on the broker" away
fstatus
python3 - "$T/fst.json" "$(stat -c %Y "$T/p2.json")" <<'PY' || { cat "$T/fst.json"; broker_status n4; fail "n4 away after v2"; }
import datetime, json, sys
n = {n["name"]: n for n in json.load(open(sys.argv[1]))["nodes"]}["n4"]
assert n["online"] is False, n
apps = {a["name"]: a for a in n["apps"]}
assert apps["hello"]["convergence"] == "converged", apps
seen = datetime.datetime.fromisoformat(n["last_seen"].replace("Z", "+00:00")).timestamp()
assert seen >= int(sys.argv[2]) - 1, (n["last_seen"], sys.argv[2])
PY
grep -q '^n4  *LAST SEEN [0-9hms]* ago .* converged' <("$FERRY" status --fleet "$T/fleet.yaml" --identity "$T/me") || fail "n4's row"
AGENT_LISTEN=none start_agent n4 "$AGENT_CFG"
wait_for "$WAIT_LIMIT" "n4 back online" online n4
pass "a node killed with SIGKILL after it applied v2: its Last Will, renewed after the apply, shows it converged while away, LAST SEEN after the push"

# --- a newer desired state while the node's pull hangs (a registry that stops answering in the
#     middle of a layer, through tests/tools/cutproxy.py): the hung state is given up at once,
#     not after the pull's idle timeout, and the node takes the newer one
mkdir -p "$T/d5"
head -c 1048576 /dev/urandom > "$T/d5/blob.bin" # a layer of its own, which n1 must pull
$MKIMAGE "$T/img" --ref 5 --variant linux/amd64="$T/app/x64,$T/d5" --variant linux/arm64="$T/app/a64,$T/d5" --env VERSION=5 > /dev/null
"$FERRY" publish "$T/img:5" "docker://$R/fleet/hello:5" --registry-ca "$T/reg-main/ca.pem" > /dev/null
python3 "$FERRY_SRC/tests/tools/cutproxy.py" "127.0.0.1:${R##*:}" "$T/hold.port" "$T/hold.stats" --hold-down-after 131072 &
PIDS+=($!)
wait_for "$WAIT_LIMIT" "the holding proxy's port" test -s "$T/hold.port"
sed "s|docker://$R/|docker://localhost:$(cat "$T/hold.port")/|" "$T/fleet.yaml" > "$T/holdfleet.yaml"
python3 - "$REGISTRY_AUTH_FILE" "$R" "localhost:$(cat "$T/hold.port")" <<'PY' # the registry's credential, for the proxy's address too
import json, sys
path, reg, proxy = sys.argv[1:]
d = json.load(open(path))
d["auths"][proxy] = d["auths"][reg]
json.dump(d, open(path, "w"))
PY
N1_LINES=$(wc -l < "$T/n1.log")
"$FERRY" push --identity "$T/me" --json --fleet "$T/holdfleet.yaml" --registry-ca "$T/reg-main/ca.pem" --app hello -l kubernetes.io/hostname=n1 \
  --detach "$T/img:5" > "$T/p5.json" 2> "$T/p5.err" || { cat "$T/p5.err"; fail "push v5 --detach to n1"; }
wait_for "$WAIT_LIMIT" "n1's pull of v5 to hang at the proxy" test -e "$T/hold.stats.held"
push "$T/p6.json" "$T/img:2" --detach -l kubernetes.io/hostname=n1
[ $PUSH_RC -eq 0 ] || { cat "$T/p6.json" "$T/p6.json.err"; fail "push v2 again to n1"; }
gave_up() { tail -n +$((N1_LINES + 1)) "$T/n1.log" | grep -q 'broker: desired state [0-9]*: app hello: skipped: given up for a newer one'; }
wait_for "$WAIT_LIMIT" "n1 to give up the hung state (its pull canceled), not wait for the pull's timeout" gave_up
wait_for "$WAIT_LIMIT" "n1 converged to v2 again" converged n1
app_version n1 2 || fail "n1 does not run v2"
pass "a newer desired state while a node's pull hangs at a stalled registry: the hung state is given up at once (its pull canceled), and the node converges to the newer one"

# --- requests through the broker: logs, stop, start, rollback, each answered in a reply signed
#     by the node; a node that is away is reported, not waited for
verb() { # OUT VERB ARGS...: ferry VERB through the broker; status in VERB_RC
  local out=$1; shift
  set +e
  "$FERRY" "$@" --identity "$T/me" --fleet "$T/fleet.yaml" --app hello > "$out" 2> "$out.err"
  VERB_RC=$?
  set -e
}
verb "$T/logs.out" logs --tail 5
[ $VERB_RC -eq 0 ] && [ "$(grep -c '^==> ' "$T/logs.out")" = 7 ] && grep -q 'VERSION=2' "$T/logs.out" || { cat "$T/logs.out" "$T/logs.out.err"; fail "logs through the broker"; }
verb "$T/stop.out" stop -l kubernetes.io/arch=arm64
[ $VERB_RC -eq 0 ] && grep -q '^pi: hello stopped' "$T/stop.out" || { cat "$T/stop.out" "$T/stop.out.err"; fail "stop through the broker"; }
pi_state() { fstatus; json_get "$T/fst.json" "[a.get('state') for n in d['nodes'] if n['name'] == 'pi' for a in n['apps']]" | grep -q "'$1'"; }
wait_for "$WAIT_LIMIT" "pi's status says hello stopped" pi_state stopped
verb "$T/start.out" start -l kubernetes.io/arch=arm64
[ $VERB_RC -eq 0 ] && grep -q '^pi: hello started' "$T/start.out" || { cat "$T/start.out" "$T/start.out.err"; fail "start through the broker"; }
wait_for "$WAIT_LIMIT" "pi's status says hello running" pi_state running
verb "$T/rb.out" rollback -l kubernetes.io/arch=arm64 --json
[ $VERB_RC -eq 0 ] && [ "$(json_get "$T/rb.out" "[n['result'] for n in d['nodes']]")" = "(['rolled-back'],)" ] || { cat "$T/rb.out" "$T/rb.out.err"; fail "rollback through the broker"; }
wait_for "$WAIT_LIMIT" "pi runs v1 again after the rollback" app_version pi 1
pi_cv() { fstatus; json_get "$T/fst.json" "[a.get('convergence') for n in d['nodes'] if n['name'] == 'pi' for a in n['apps']]" | grep -q "'$1'"; }
wait_for "$WAIT_LIMIT" "status --fleet shows pi diverged from its desired v2 after the rollback" pi_cv diverged
pid=PID_late2; kill -TERM "${!pid}"; wait "${!pid}" 2>/dev/null || true
wait_for "$WAIT_LIMIT" "late2 offline" eval '! online late2'
verb "$T/stop2.out" restart
[ $VERB_RC -ne 0 ] && grep -q 'late2 (through the broker): offline (last seen' "$T/stop2.out.err" && [ "$(grep -c ': hello restarted' "$T/stop2.out")" = 6 ] ||
  { cat "$T/stop2.out" "$T/stop2.out.err"; fail "restart through the broker with a node away"; }
AGENT_LISTEN=none start_agent late2 "$AGENT_CFG"$'\nallow_exec: true'
wait_for "$WAIT_LIMIT" "late2 back online" online late2
# exec without input goes through too, where the node allows it
set +e
"$FERRY" exec late2 --fleet "$T/fleet.yaml" --identity "$T/me" --app hello -- /app --once > "$T/ex.out" 2> "$T/ex.err"; r1=$?
"$FERRY" exec n1 --fleet "$T/fleet.yaml" --identity "$T/me" --app hello -- /app --once > /dev/null 2> "$T/ex2.err"; r2=$?
"$FERRY" exec n1 --fleet "$T/fleet.yaml" --identity "$T/me" --app hello -i -- /app --once < /dev/null > /dev/null 2> "$T/ex3.err"; r3=$?
set -e
[ "$r1 $r2 $r3" = "0 125 2" ] && grep -q 'hello from x86_64' "$T/ex.out" && grep -q 'stderr from x86_64' "$T/ex.err" &&
  grep -q 'exec is off on n1' "$T/ex2.err" && grep -q 'exec -i and -t do not go through it' "$T/ex3.err" ||
  { echo "exit codes $r1 $r2 $r3"; cat "$T/ex.out" "$T/ex.err" "$T/ex2.err" "$T/ex3.err"; fail "exec through the broker"; }
pass "logs, stop, start, rollback, restart and exec through the broker: each node answers in a signed reply (the arm64 node stopped, started and rolled back to v1, which status --fleet shows diverged from its desired v2; a command's output and exit code, exec refused where allow_exec is off, -i refused); a node that is away is reported as offline, not waited for"

# --- --replicas through the broker: three amd64 nodes keep hello, the other three get a desired
#     state without it and remove it
push "$T/p5.json" "$T/img:2" --replicas 3 --settle 1 -l kubernetes.io/arch=amd64
python3 - "$T/p5.json" <<'PY' || { cat "$T/p5.json" "$T/p5.json.err"; fail "--replicas through the broker"; }
import json, sys
d = json.load(open(sys.argv[1]))
res = [n["result"] for n in d["nodes"] if n["name"] != "pi"]
assert sorted(res) == ["removed"] * 3 + ["unchanged"] * 3, res
PY
[ $PUSH_RC -eq 0 ] || fail "push --replicas exits $PUSH_RC"
removed=$(json_get "$T/p5.json" "[n['name'] for n in d['nodes'] if n['result'] == 'removed']" | tr -d "()[],'")
fstatus
for n in $removed; do
  [ ! -e "$T/state-$n/apps/hello/current" ] || fail "$n still has hello after --replicas removed it"
  json_get "$T/fst.json" "[a['convergence'] for n in d['nodes'] if n['name'] == '$n' for a in n['apps'] if a['name'] == 'hello']" | grep -q converged ||
    { cat "$T/fst.json"; fail "status --fleet: $n's removal is not converged"; }
done
pass "push --replicas 3 through the broker: three amd64 nodes keep v2, the other three get a desired state without hello and remove it (converged)"

# --- nothing secret on the broker: the pull credential and the token are sealed to each node
stop_broker
! grep -qa -- "$SECRET" "$T/broker/persist/mosquitto.db" || fail "the settings' secret is readable in mosquitto's persistence file"
! grep -qa -- "pw-main" "$T/broker/persist/mosquitto.db" || fail "the registry credential is readable in mosquitto's persistence file"
[ "$(cat "$T/state-n1/apps/hello/secrets/token" 2>/dev/null || find "$T/state-n1" -name token -path '*secrets*' -exec cat {} \; | head -1)" != "" ] || true
start_broker
for n in "${HOSTS[@]}" pi late1 late2; do wait_for "$WAIT_LIMIT" "$n online after the broker's restart" online "$n"; done
pass "the desired states retained on the broker hold neither the registry's credential nor the settings' secret (sealed to each node)"

# --- the broker restarted in the middle of a rollout: the pusher connects again and goes on
"$FERRY" push --identity "$T/me" --json --fleet "$T/fleet.yaml" --registry-ca "$T/reg-main/ca.pem" --app hello "$T/img:3" \
  --max-parallel 1 --settle 1 --wait-offline 3m > "$T/p3.json" 2> "$T/p3.json.err" &
pusher=$!
wait_for "$WAIT_LIMIT" "the rollout's second wave" log_has "$T/p3.json.err" 'wave 2/7'
stop_broker
start_broker
set +e; wait "$pusher"; PUSH_RC=$?; set -e
grep -q 'connected to the broker localhost:[0-9]* again' "$T/p3.json.err" || { cat "$T/p3.json.err"; fail "the pusher did not say it connected again"; }
[ $PUSH_RC -eq 0 ] && [ "$(json_get "$T/p3.json" "sorted(set(n['result'] for n in d['nodes']))")" = "(['deployed'],)" ] || { cat "$T/p3.json" "$T/p3.json.err"; fail "the rollout across the broker's restart"; }
for n in "${HOSTS[@]}" pi late1 late2; do app_version "$n" 3 || fail "$n does not run v3"; done
pass "the broker restarted in the middle of a rollout (waves of one): the pusher connects again, waits --wait-offline for the nodes the restart cut off, and every node deploys v3"

# --- a release that fails on one node: --max-failures halts the rollout, and --revert-on-halt
#     publishes the previous desired state again to the nodes that took it
push "$T/p4.json" "$T/img:4" --canary 1 --max-parallel 2 --max-failures 1 --revert-on-halt --settle 2 -l kubernetes.io/arch=amd64
[ $PUSH_RC -ne 0 ] || fail "a halted rollout exits 0"
python3 - "$T/p4.json" <<'PY' || { cat "$T/p4.json" "$T/p4.json.err"; fail "the halt and the revert through the broker"; }
import json, sys
d = json.load(open(sys.argv[1]))
r = {n["name"]: n for n in d["nodes"]}
assert d["halted"], d.get("halt_reason")
assert r["n4"]["result"] == "rolled-back", r["n4"]             # the node's own rollback: v4 exits there
for n in ("n1", "n2", "n3"):                                   # the canary and wave 2 took v4: reverted
    assert r[n]["result"] == "rolled-back" and r[n].get("reverted"), r[n]
assert r["late2"]["result"] == "skipped", r["late2"]           # its wave never started
assert r["pi"]["selected"] is False
PY
for n in "${HOSTS[@]}" late1 late2 pi; do app_version "$n" 3 || fail "$n does not run v3 after the revert"; done
converged n1 n2 n3 n4 late1 late2 pi || { cat "$T/fst.json"; fail "status --fleet after the revert"; }
pass "a release that fails on one node halts the rollout through the broker at --max-failures; --revert-on-halt publishes the previous desired state again and the nodes that took v4 run v3, converged"
finish
