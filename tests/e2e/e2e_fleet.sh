#!/usr/bin/env bash
# Fleet rollouts as a user runs them: 50 ferryd processes on loopback (own name, port, state dir
# and certificate each) plus 2 arm64 ones under qemu-aarch64, one fleet.yaml, and ferry status,
# plan and push driving them all from one process. Covers: the status table, selectors and the
# Kubernetes-style "0/N nodes available" reasons, an 8 MiB image to every node, a bad release
# halting at the canary and --revert-on-halt, arch selection, --replicas with a preferred
# affinity, Ctrl-C, logs/rollback over the fleet, a certificate that does not carry the
# inventory's name, and 5 nodes killed mid-rollout. FERRY_FLEET_N changes the 50 (the asan
# preset uses fewer: 50 sanitized agents add nothing but minutes).
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
N=${FERRY_FLEET_N:-50}
case "$FERRY_BIN" in *asan*) N=${FERRY_FLEET_N:-16} ;; esac
setup_fleet
build_apps "$T/app"
mkdir -p "$T/big1" "$T/big2" "$T/small"
head -c $((8 << 20)) /dev/urandom > "$T/big1/data.bin"   # 8 MiB that does not compress
head -c $((8 << 20)) /dev/urandom > "$T/big2/data.bin"
echo small > "$T/small/data.txt"
IMG=$T/img
$MKIMAGE "$IMG" --ref v1 --variant linux/amd64="$T/app/x64,$T/big1" --variant linux/arm64="$T/app/a64,$T/big1" --env VERSION=1 > /dev/null
$MKIMAGE "$IMG" --ref v2 --variant linux/amd64="$T/app/x64,$T/big2" --variant linux/arm64="$T/app/a64,$T/big2" --env VERSION=2 > /dev/null
$MKIMAGE "$IMG" --ref bad --variant linux/amd64="$T/app/x64,$T/small" --variant linux/arm64="$T/app/a64,$T/small" \
  --env VERSION=bad --env FAIL_ON_NODE=n02 > /dev/null
$MKIMAGE "$IMG" --ref small --variant linux/amd64="$T/app/x64,$T/small" --variant linux/arm64="$T/app/a64,$T/small" --env VERSION=s > /dev/null
$MKIMAGE "$T/armonly" --variant linux/arm64="$T/app/a64,$T/small" > /dev/null

# --- the fleet: n01..nN on the host, pi-1 and pi-2 under qemu-aarch64
F=$T/fleet.yaml
{
  echo "# $N amd64 nodes and 2 emulated arm64 boards"
  echo "nodes:"
} > "$F"
for i in $(seq -w 1 "$N"); do
  start_agent "n$i" 'runtime: {isolation: none}'
  var="PORT_n$i"
  zone=$([ $((10#$i % 2)) -eq 0 ] && echo a || echo b)
  tier=$([ "$i" = 03 ] || [ "$i" = 07 ] || [ "$i" = 10 ] && echo gold || echo std)
  printf '  - {name: n%s, address: "127.0.0.1:%s", labels: {topology.kubernetes.io/zone: %s, tier: %s}}\n' "$i" "${!var}" "$zone" "$tier" >> "$F"
done
for p in pi-1 pi-2; do
  FERRYD_BIN=$A64 start_agent "$p" $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
  var="PORT_${p//-/_}"
  printf '  - {name: %s, address: "127.0.0.1:%s", labels: {topology.kubernetes.io/zone: c, tier: std}}\n' "$p" "${!var}" >> "$F"
done
cat >> "$F" <<'EOF'
groups:
  boards: [pi-1, pi-2]
  first: [n01, n02, n03]
affinity:
  preferred:
    - weight: 50
      preference:
        matchExpressions:
          - {key: tier, operator: In, values: [gold]}
EOF
TOTAL=$((N + 2))
fl() { "$FERRY" "$@" --identity "$T/me" --fleet "$F"; }

# --- status --fleet: one row per node, kubectl style
fl status > "$T/st0" || { cat "$T/st0"; fail "status --fleet"; }
head -1 "$T/st0" | grep -Eq '^NODE +ARCH +BOARD +APP +RELEASE +STATE +AGE' || { head -3 "$T/st0"; fail "status --fleet header"; }
[ "$(grep -c '^n[0-9]* *amd64 ' "$T/st0")" -eq "$N" ] || { cat "$T/st0"; fail "status --fleet amd64 rows"; }
[ "$(grep -Ec '^pi-[12] +arm64 ' "$T/st0")" -eq 2 ] || { cat "$T/st0"; fail "status --fleet arm64 rows"; }
fl status -L tier,topology.kubernetes.io/zone > "$T/st0L"
grep -Eq '^n07 .* gold +b *$' "$T/st0L" || { head -9 "$T/st0L"; fail "-L columns"; }
pass "status --fleet: $TOTAL rows (node, arch, board, app, release, state, age), -L adds label columns"

# --- plan: who gets what, and why the rest do not
fl plan "$IMG:v1" --selector kubernetes.io/arch=arm64 --json > "$T/plan1.json" 2> "$T/plan1.err" || { cat "$T/plan1.err"; fail "plan exit"; }
[ "$(json_get "$T/plan1.json" "sorted(n['name'] for n in d['nodes'] if n['action']=='deploy')")" = "(['pi-1', 'pi-2'],)" ] || fail "plan: arm64 nodes"
[ "$(json_get "$T/plan1.json" "[n['variant']['platform'] for n in d['nodes'] if n['action']=='deploy']")" = "(['linux/arm64', 'linux/arm64'],)" ] || fail "plan: variant"
json_get "$T/plan1.json" "d['summary']" | grep -qF "2/$TOTAL nodes available: $N didn't match node selector" \
  || { json_get "$T/plan1.json" "d['summary']"; fail "plan summary"; }
fl plan "$T/armonly" > "$T/plan2" 2>&1 || { cat "$T/plan2"; fail "plan armonly"; }
grep -q "2/$TOTAL nodes available: $N have no matching platform (image offers linux/arm64)" "$T/plan2" || { tail -3 "$T/plan2"; fail "platform reason"; }
grep -Eq '^pi-1 +linux/arm64 +deploy +1 +linux/arm64 .*exact platform match' "$T/plan2" || { grep pi-1 "$T/plan2"; fail "plan row"; }
fl push "$IMG:v1" --dry-run --selector 'tier in (gold),kubernetes.io/arch!=arm64' > "$T/plan3" 2>&1
grep -q "3/$TOTAL nodes available: $((TOTAL - 3)) didn't match node selector" "$T/plan3" || { tail -3 "$T/plan3"; fail "push --dry-run"; }
for s in "$T"/state-n*; do [ ! -e "$s/apps" ] || [ -z "$(ls "$s/apps")" ] || fail "plan touched $s"; done
pass "plan / push --dry-run: variant and reason per node, '2/$TOTAL nodes available: $N didn't match node selector', nothing touched"

# --- full rollout: 8 MiB to every node, canary then waves, one process
/usr/bin/time -f '%M' -o "$T/rss" "$FERRY" push "$IMG:v1" --fleet "$F" --identity "$T/me" --app hello --settle 1 \
  --canary 1 --max-parallel 25% --json > "$T/p1.json" 2> "$T/p1.err" || { tail -20 "$T/p1.err"; fail "full rollout exit"; }
[ "$(json_get "$T/p1.json" "sorted(set(n['result'] for n in d['nodes']))")" = "(['deployed'],)" ] || { tail -20 "$T/p1.err"; fail "not all deployed"; }
[ "$(json_get "$T/p1.json" "len(d['nodes'])")" = "($TOTAL,)" ] || fail "report size"
# --canary 1 is one node per variant: the preferred amd64 node and the first arm64 board
[ "$(json_get "$T/p1.json" "[n['name'] for n in d['nodes'] if n['wave']==1]")" = "(['n03', 'pi-1'],)" ] || fail "canary: the preferred node of each variant goes first, alone"
grep -q 'wave 1/[0-9]* (canary), 2 node(s): n03, pi-1' "$T/p1.err" || fail "canary event line"
[ "$(json_get "$T/p1.json" "min(n['bytes_sent'] for n in d['nodes']) >= 8<<20")" = "(True,)" ] || fail "each node got 8 MiB"
DISK=$(json_get "$T/p1.json" "d['disk_read_bytes'] * 100 // d['bytes_sent']" | tr -dc 0-9)
RSS=$(cat "$T/rss")
fl status --json > "$T/st1.json"
[ "$(json_get "$T/st1.json" "sorted(set(a['state'] for n in d['nodes'] for a in n['apps']))")" = "(['running'],)" ] || fail "all running"
pass "8 MiB image on all $TOTAL nodes (2 under qemu), canary first; pusher peak RSS $((RSS / 1024)) MiB; disk reads ${DISK}% of bytes sent"

# --- a bad release halts at the canary; --revert-on-halt brings the canary back
V1_N01=$(json_get "$T/st1.json" "[a['release'] for n in d['nodes'] if n['name']=='n01' for a in n['apps']][0]")
set +e
"$FERRY" push "$IMG:bad" --fleet "$F" --identity "$T/me" --app hello --settle 1 --selector 'tier=std,kubernetes.io/arch=amd64' \
  --canary 2 --revert-on-halt --json > "$T/bad.json" 2> "$T/bad.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "a halted rollout exits nonzero"
[ "$(json_get "$T/bad.json" "(d['halted'], sorted((n['name'], n['result']) for n in d['nodes'] if n['wave']==1))")" = \
  "((True, [('n01', 'rolled-back'), ('n02', 'rolled-back')]),)" ] || { cat "$T/bad.err"; fail "canary results"; }
[ "$(json_get "$T/bad.json" "[n['reverted'] for n in d['nodes'] if n['name']=='n01']")" = "([True],)" ] || fail "n01 reverted"
[ "$(json_get "$T/bad.json" "sorted(set(n['result'] for n in d['nodes'] if n['selected'] and n['wave']!=1))")" = "(['skipped'],)" ] || fail "nodes past the canary"
[ "$(json_get "$T/bad.json" "sum(n['bytes_sent'] for n in d['nodes'] if n['wave']!=1)")" = "(0,)" ] || fail "bytes past the canary"
fl status --json > "$T/st2.json"
[ "$(json_get "$T/st2.json" "[a['release'] for n in d['nodes'] if n['name']=='n01' for a in n['apps']][0]")" = "$V1_N01" ] || fail "n01 back on v1"
[ "$(json_get "$T/st2.json" "sorted(set(a['state'] for n in d['nodes'] for a in n['apps']))")" = "(['running'],)" ] || fail "all running after the halt"
grep -q "halted: the canary n02 rolled-back" "$T/bad.err" || { cat "$T/bad.err"; fail "halt reason"; }
pass "bad release: halted at the canary (n02 failed), nothing past it touched, --revert-on-halt put n01 back on v1"

# --- arch selection: only the arm64 nodes are touched
push_json "$T/arm.json" "$IMG:small" --fleet "$F" --app hello --settle 1 --selector kubernetes.io/arch=arm64
[ $PUSH_RC -eq 0 ] || { cat "$T/arm.json.err"; fail "arm64 push"; }
[ "$(json_get "$T/arm.json" "sorted(n['name'] for n in d['nodes'] if n['result']=='deployed')")" = "(['pi-1', 'pi-2'],)" ] || fail "arm64 only"
[ "$(json_get "$T/arm.json" "sum(n['bytes_sent'] for n in d['nodes'] if n['platform']!='linux/arm64')")" = "(0,)" ] || fail "x64 got bytes"
fl status --json > "$T/st3.json"
X64_REL="sorted((n['name'], a['release']) for n in d['nodes'] if n['name'].startswith('n') for a in n['apps'])"
[ "$(json_get "$T/st3.json" "$X64_REL")" = "$(json_get "$T/st2.json" "$X64_REL")" ] || fail "x64 releases changed"
pass "--selector kubernetes.io/arch=arm64 touched only pi-1 and pi-2"

# --- replicas: the 3 nodes the preferred affinity names
push_json "$T/rep.json" "$IMG:small" --fleet "$F" --app placed --settle 1 --replicas 3
[ $PUSH_RC -eq 0 ] || { cat "$T/rep.json.err"; fail "replicas push"; }
[ "$(json_get "$T/rep.json" "sorted(n['name'] for n in d['nodes'] if n['result']=='deployed')")" = "(['n03', 'n07', 'n10'],)" ] || fail "replicas"
grep -q "3 chosen for --replicas 3 by preferred affinity" "$T/rep.json.err" || fail "replicas summary"
pass "--replicas 3 placed the app on the 3 nodes with the preferred label (tier=gold)"
# equal scores: the replicas spread over --spread-by (the zones) before they double up
fl plan "$IMG:small" --app spread --replicas 5 --selector 'tier notin (gold)' --json > "$T/spread.json" 2> /dev/null || true
python3 - "$T/spread.json" <<'PY' || fail "--replicas did not spread over the zones"
import collections, json, sys
d = json.load(open(sys.argv[1]))
zone = lambda n: n["labels"].get("topology.kubernetes.io/zone")
chosen = [n for n in d["nodes"] if n["selected"]]
cand = {zone(n) for n in d["nodes"] if n["selected"] or "--replicas" in (n.get("reason") or "")}
per = collections.Counter(zone(n) for n in chosen)
assert len(chosen) == 5, chosen
assert max(per.values()) - min(per.get(z, 0) for z in cand) <= 1, (per, cand)
PY
pass "--replicas 5 with equal scores spreads over the zones ($(python3 -c "import collections,json; d=json.load(open('$T/spread.json')); print(dict(collections.Counter(n['labels'].get('topology.kubernetes.io/zone') for n in d['nodes'] if n['selected'])))"))"

# --- logs and rollback over the fleet
fl logs --group boards --app hello --tail 2 > "$T/logs" || fail "logs --fleet"
[ "$(grep -c 'hello from aarch64' "$T/logs")" -eq 2 ] && grep -q '==> pi-2 (hello) <==' "$T/logs" || { cat "$T/logs"; fail "logs"; }
fl rollback --group boards --app hello > "$T/rb" || { cat "$T/rb"; fail "rollback --fleet"; }
[ "$(grep -c 'rolled back to' "$T/rb")" -eq 2 ] || fail "rollback output"
pass "logs and rollback take --fleet (with --group)"

# --- a node whose certificate does not carry its inventory name
sed "s/name: n03, address: \"127.0.0.1:$PORT_n03\"/name: n03, address: \"127.0.0.1:$PORT_n04\"/" "$F" > "$T/liar.yaml"
set +e
"$FERRY" status --identity "$T/me" --fleet "$T/liar.yaml" --group first --json > "$T/liar.json" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] || fail "status with a misnamed node should exit 1"
json_get "$T/liar.json" "[n['error'] for n in d['nodes'] if n['address'].endswith(':$PORT_n04')][0]" | grep -q 'name' || fail "name error"
[ "$(json_get "$T/liar.json" "[n['error'] for n in d['nodes'] if n['name']!='n03']")" = "([None, None],)" ] || fail "others fine"
pass "a node is checked against its certificate: n03's address answering as n04 is refused"

# --- bad input: fleet file and selector errors are clear, exit 2, nothing touched
printf 'nodes:\n  - {name: a, address: "127.0.0.1:1"}\n  - {name: a, address: "127.0.0.1:2"}\n' > "$T/dup.yaml"
set +e
"$FERRY" status --identity "$T/me" --fleet "$T/dup.yaml" 2> "$T/e1"; r1=$?
printf 'nodes:\n  - {name: a, adress: "127.0.0.1:1"}\n' > "$T/typo.yaml"
"$FERRY" status --identity "$T/me" --fleet "$T/typo.yaml" 2> "$T/e2"; r2=$?
"$FERRY" push "$IMG:v1" --identity "$T/me" --fleet "$F" --selector 'tier in gold' 2> "$T/e3"; r3=$?
"$FERRY" push "$IMG:v1" --identity "$T/me" --fleet "$F" --max-failures 0 2> "$T/e4"; r4=$?
"$FERRY" status --identity "$T/me" --fleet "$F" --group nope 2> "$T/e5"; r5=$?
set -e
[ "$r1$r2$r3$r4$r5" = 22222 ] || fail "bad input exit codes: $r1$r2$r3$r4$r5"
grep -q "dup.yaml:3: node 'a' is listed twice" "$T/e1" || { cat "$T/e1"; fail "dup message"; }
grep -q "typo.yaml:2: unknown key 'adress'" "$T/e2" || { cat "$T/e2"; fail "typo message"; }
grep -q "tier in gold': 'tier in': expected '('" "$T/e3" || { cat "$T/e3"; fail "selector message"; }
grep -q -- "--max-failures: a number of nodes (1 or more)" "$T/e4" || { cat "$T/e4"; fail "max-failures message"; }
grep -q "no group 'nope' (the file has: boards, first)" "$T/e5" || { cat "$T/e5"; fail "group message"; }
pass "bad fleet file, selector, flag and group: file:line or flag errors, exit 2"

# --- Ctrl-C: in-flight nodes finish, no new ones start
"$FERRY" push "$IMG:v2" --fleet "$F" --identity "$T/me" --app hello --settle 1 --selector kubernetes.io/arch=amd64 \
  --max-parallel 4 --json > "$T/int.json" 2> "$T/int.err" &
FP=$!
wait_log "$T/int.err" 'wave 1/'
kill -INT $FP
set +e; wait $FP; rc=$?; set -e
[ $rc -ne 0 ] || fail "an interrupted rollout exits nonzero"
[ "$(json_get "$T/int.json" "(d['interrupted'], sorted(set(n['result'] for n in d['nodes'] if n['wave']==1)))")" = "((True, ['deployed']),)" ] \
  || { cat "$T/int.err"; fail "in-flight wave should finish"; }
[ "$(json_get "$T/int.json" "sum(n['bytes_sent'] for n in d['nodes'] if n['wave'] and n['wave']>1)")" = "(0,)" ] || fail "a later wave started"
grep -q 'interrupted: 4 in-flight node(s) finish' "$T/int.err" || fail "interrupt message"
pass "Ctrl-C: the 4 in-flight nodes finished, no later wave started, exit nonzero"

# --- 5 nodes killed mid-rollout: 2 while their layers are on the wire, 3 waiting in the next
# wave. They fail with reasons; the rest finish.
"$FERRY" push "$IMG:v2" --fleet "$F" --identity "$T/me" --app hello --settle 1 --max-parallel 50% --json > "$T/kill.json" 2> "$T/kill.err" &
FP=$!
kill_node() { local idx=$((10#${1#n})); kill -9 "${PIDS[$((idx - 1))]}"; }
victims="n02 n04 $(printf 'n%02d ' $((N - 2)) $((N - 1)) "$N")"
wait_log "$T/kill.err" '^n02: sending'
wait_log "$T/kill.err" '^n04: sending'
for v in $victims; do kill_node "$v"; done
set +e; wait $FP; rc=$?; set -e
[ $rc -eq 1 ] || { tail -30 "$T/kill.err"; fail "a rollout with failures exits 1 (got $rc)"; }
[ "$(json_get "$T/kill.json" "sorted(n['name'] for n in d['nodes'] if n['result']=='failed')")" = \
  "($(python3 -c "print(sorted('$victims'.split()))"),)" ] || { tail -20 "$T/kill.err"; fail "killed nodes should fail"; }
[ "$(json_get "$T/kill.json" "sorted(n['wave'] for n in d['nodes'] if n['result']=='failed')")" = "([1, 1, 2, 2, 2],)" ] || fail "victims' waves"
json_get "$T/kill.json" "[n['error'] for n in d['nodes'] if n['result']=='failed']" > "$T/kill.reasons"
grep -q 'connect' "$T/kill.reasons" && grep -Eq 'closed|reset|EOF|write' "$T/kill.reasons" || { cat "$T/kill.reasons"; fail "failure reasons"; }
# The 4 nodes the Ctrl-C rollout finished already run v2: they answer 'unchanged'.
[ "$(json_get "$T/kill.json" "len([n for n in d['nodes'] if n['result'] in ('deployed', 'unchanged')])")" = "($((TOTAL - 5)),)" ] \
  || { json_get "$T/kill.json" "sorted((n['name'], n['result']) for n in d['nodes'] if n['result'] not in ('deployed', 'unchanged'))"; fail "the rest finish"; }
[ "$(json_get "$T/kill.json" "len([n for n in d['nodes'] if n['result']=='unchanged'])")" = "(4,)" ] \
  || fail "the 4 nodes the interrupted rollout finished should be unchanged"
pass "5 nodes killed mid-rollout: reported failed with their reasons, the other $((TOTAL - 5)) deployed or already on v2"
finish
