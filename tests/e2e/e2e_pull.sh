#!/usr/bin/env bash
# Devices pull their bytes from an OCI registry: 20 host ferryd and 2 arm64 ferryd under
# qemu-aarch64, one fleet file with `registry:`. The laptop sends each node a plan of a few KiB
# (counted by the kernel at the socket, with iptables byte counters on each agent's port) and the
# registry's access log shows every node's own blob GETs; every digest verifies (the nodes run
# the release). A pull-through mirror (a second docker-registry) serves the nodes that name it in
# registry_mirrors. A gzip image is refused before any node is touched; a node that cannot reach
# the registry fails with the registry's error (and, with --fallback-stream, is streamed to); a
# wrong pull credential is refused with nothing written.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
setup_fleet
build_apps "$T/app"
mkdir -p "$T/d1" "$T/d2"
head -c 3000000 /dev/urandom > "$T/d1/data.bin"
echo v2 > "$T/d2/v.txt"
start_registry main
R=$REGHOST_main
htpasswd -Bb "$T/reg-main/htpasswd" puller pw-pull 2> /dev/null   # the fleet's read-only credential
python3 -c 'import base64,json,sys; json.dump({"auths": {sys.argv[2]: {"auth": base64.b64encode(b"puller:pw-pull").decode()}}}, open(sys.argv[1], "w"))' \
  "$T/pull-auth.json" "$R"
# the mirror: a pull-through cache (no credential asked of the devices) of an origin that holds the
# same images (distribution 2.8's proxy cannot answer an upstream's Basic challenge, only tokens)
REG_NOAUTH=1 start_registry origin
REGISTRY_UPSTREAM_CA=$T/reg-origin/ca.pem REG_NOAUTH=1 start_registry mirror "$(printf 'proxy:\n  remoteurl: https://%s' "$REGHOST_origin")"
M=$REGHOST_mirror
cat "$T/reg-main/ca.pem" "$T/reg-mirror/ca.pem" > "$T/registry-cas.pem"

$MKIMAGE "$T/img" --ref 1 --variant linux/amd64="$T/app/x64,$T/d1" --variant linux/arm64="$T/app/a64,$T/d1" --env VERSION=1 > /dev/null
$MKIMAGE "$T/img" --ref 2 --variant linux/amd64="$T/app/x64,$T/d1,$T/d2" --variant linux/arm64="$T/app/a64,$T/d1,$T/d2" --env VERSION=2 > /dev/null
"$FERRY" publish "$T/img:1" "docker://$R/fleet/app:1" --registry-ca "$T/reg-main/ca.pem" > /dev/null
"$FERRY" publish "$T/img:2" "docker://$R/fleet/app:2" --registry-ca "$T/reg-main/ca.pem" > /dev/null
for v in 1 2; do "$FERRY" publish "$T/img:$v" "docker://$REGHOST_origin/fleet/app:$v" --registry-ca "$T/reg-origin/ca.pem" > /dev/null; done

AGENT_CFG="registry_ca: $T/registry-cas.pem"
WRAP=$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]'
NODES=()
for i in $(seq 1 20); do
  extra=$AGENT_CFG
  [ "$i" -le 2 ] && extra+=$'\n'"registry_mirrors: [https://$M]"
  start_agent "h$i" "$extra"
  NODES+=("h$i")
done
FERRYD_BIN=$A64 start_agent a1 "$AGENT_CFG"$'\n'"registry_mirrors: [https://$M]$WRAP" qemu-aarch64 -cpu cortex-a72
FERRYD_BIN=$A64 start_agent a2 "$AGENT_CFG$WRAP" qemu-aarch64 -cpu cortex-a72
NODES+=(a1 a2)
{
  echo "registry: docker://$R/fleet/app"
  echo "registry_auth: $T/pull-auth.json"
  echo "nodes:"
  for n in "${NODES[@]}"; do v="PORT_$n"; echo "  - {name: $n, address: 127.0.0.1:${!v}}"; done
} > "$T/fleet.yaml"

# Bytes from the pusher to each agent, counted by the kernel (iptables, a chain of the test's own).
CHAIN="FERRY$$"
COUNT=0
if iptables -N "$CHAIN" 2>/dev/null && iptables -I OUTPUT -j "$CHAIN" 2>/dev/null; then
  COUNT=1
  CLEANUP_CMDS+=("iptables -D OUTPUT -j $CHAIN" "iptables -F $CHAIN" "iptables -X $CHAIN")
  for n in "${NODES[@]}"; do v="PORT_$n"; iptables -A "$CHAIN" -p tcp -d 127.0.0.1 --dport "${!v}"; done
fi
socket_bytes() { iptables -L "$CHAIN" -v -x -n | awk -v p="dpt:$1" '$0 ~ p" *$" || $0 ~ p"$" { print $2 }' | head -1; }

# --- the fleet pulls from the registry
: > "$T/reg-main.log.before"
push_json "$T/p1.json" "docker://$R/fleet/app:1" --registry-ca "$T/reg-main/ca.pem" --fleet "$T/fleet.yaml" --settle 1 --timeout 300
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json.err"; fail "the fleet push through the registry"; }
[ "$(json_get "$T/p1.json" "sorted(set(n['result'] for n in d['nodes']))")" = "(['deployed'],)" ] || { cat "$T/p1.json"; fail "not every node deployed"; }
[ "$(json_get "$T/p1.json" "sum(n['bytes_sent'] for n in d['nodes'])")" = "(0,)" ] || fail "the pusher streamed blob bytes"
grep -q "devices pull the layers from $R/fleet/app; devices pull with the read-only credential of" "$T/p1.json.err" || { cat "$T/p1.json.err"; fail "no word of the pull credential"; }
wait_version "127.0.0.1:$PORT_a2" app 1 || fail "arm64 (a2) does not run v1"
wait_version "127.0.0.1:$PORT_h20" app 1 || fail "h20 does not run v1"
if [ $COUNT = 1 ]; then
  worst=0
  for n in "${NODES[@]}"; do v="PORT_$n"; b=$(socket_bytes "${!v}"); [ "${b:-0}" -gt "$worst" ] && worst=$b; done
  [ "$worst" -gt 0 ] && [ "$worst" -lt 65536 ] || fail "the pusher sent a node $worst bytes (counted at the socket; want under 64 KiB)"
  counted="the pusher sent each node at most $worst bytes (kernel counters)"
else
  counted="(iptables unavailable: socket counting skipped)"
fi
layer=$(python3 -c 'import json,sys; m=[v for v in json.load(open(sys.argv[1]))["manifests"] if v["platform"]=="linux/amd64"][0]; print(max(m["layers"], key=lambda l: l["size"])["digest"])' \
  <("$FERRY" inspect --json "$T/img:1"))
gets=$(grep -c "GET /v2/fleet/app/blobs/$layer .*ferryd" "$T/reg-main.log" || true)
[ "$gets" -eq 19 ] || fail "the registry served the 3 MB layer $gets times to the nodes, not once to each of the 19 without a mirror"
mgets=$(grep -c "GET /v2/fleet/app/blobs/$layer .*ferryd" "$T/reg-mirror.log" || true)
[ "$mgets" -eq 3 ] || fail "the mirror served the 3 MB layer $mgets times, not to h1, h2 and a1"
grep -q "through its mirrors" "$T/h1.log" || fail "h1 did not pull through its mirror"
pass "22 nodes (20 amd64, 2 arm64 under qemu) pulled v1 from the registry; $counted; the registry's log shows each node's own GET of the shared 3 MB layer (19 direct, 3 through the pull-through mirror)"

# --- the next release: only what changed is pulled
push_json "$T/p2.json" "docker://$R/fleet/app:2" --registry-ca "$T/reg-main/ca.pem" --fleet "$T/fleet.yaml" --settle 1 --timeout 300
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json.err"; fail "v2 through the registry"; }
gets2=$(grep -c "GET /v2/fleet/app/blobs/$layer .*ferryd" "$T/reg-main.log" || true)
[ "$gets2" -eq "$gets" ] || fail "the unchanged 3 MB layer was pulled again ($gets2 GETs)"
wait_version "127.0.0.1:$PORT_a1" app 2 || fail "a1 does not run v2"
pass "v2: each node pulls only its new layer (the unchanged one is not fetched again)"

# --- refused before any node is touched: a gzip image, a layer the registry lacks
$MKIMAGE "$T/gz" --ref 1 --compress gzip --variant linux/amd64="$T/app/x64" > /dev/null
skopeo copy -q --all --dest-cert-dir "$T/reg-main/certs" "oci:$T/gz:1" "docker://$R/fleet/gz:1"
snap() { (cd "$T/state-h3" && find blobs apps -path '*/rootfs' -prune -o -print | sort) > "$T/snap.$1"; }
snap a
set +e; "$FERRY" push --identity "$T/me" "docker://$R/fleet/gz:1" --registry-ca "$T/reg-main/ca.pem" --via "docker://$R/fleet/gz" \
  --to "127.0.0.1:$PORT_h3" > "$T/gz.out" 2> "$T/gz.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "gzip layers, and devices pull zstd only: publish it with zstd layers first (ferry publish" "$T/gz.err" || { cat "$T/gz.err"; fail "gzip via"; }
set +e; "$FERRY" push --identity "$T/me" "$T/img:2" --via "docker://$R/fleet/empty" --registry-ca "$T/reg-main/ca.pem" \
  --to "127.0.0.1:$PORT_h3" --force > "$T/miss.out" 2> "$T/miss.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "lacks layer sha256:.*ferry publish IMAGE docker://$R/fleet/empty:TAG first" "$T/miss.err" || { cat "$T/miss.err"; fail "missing layer"; }
snap b
cmp -s "$T/snap.a" "$T/snap.b" || fail "a refused push touched the node"
pass "a gzip image in the registry and a repository without the layers are refused before any node is touched, naming ferry publish"

# --- a node that cannot reach the registry fails with the registry's error; --fallback-stream streams
mkdir -p "$T/d3" && head -c 100000 /dev/urandom > "$T/d3/new.bin"   # a layer no node has
$MKIMAGE "$T/img" --ref 3 --variant linux/amd64="$T/app/x64,$T/d3" --env VERSION=3 > /dev/null
"$FERRY" publish "$T/img:3" "docker://$R/fleet/app:3" --registry-ca "$T/reg-main/ca.pem" > /dev/null
start_agent blind "registry_ca: $T/reg-mirror/ca.pem"     # trusts only the mirror's CA
push_json "$T/p3.json" "docker://$R/fleet/app:3" --registry-ca "$T/reg-main/ca.pem" --via "docker://$R/fleet/app" \
  --to "127.0.0.1:$PORT_blind" --settle 1
[ $PUSH_RC -ne 0 ] || fail "a node that cannot verify the registry deployed"
json_get "$T/p3.json" "d['nodes'][0]['error']" | grep -q "pulling from $R: .*certificate is not signed by a CA this node trusts" || { cat "$T/p3.json"; fail "the registry's error"; }
[ "$(json_get "$T/p3.json" "d['nodes'][0]['bytes_sent']")" = "(0,)" ] || fail "it fell back to streaming silently"
push_json "$T/p4.json" "docker://$R/fleet/app:3" --registry-ca "$T/reg-main/ca.pem" --via "docker://$R/fleet/app" \
  --to "127.0.0.1:$PORT_blind" --settle 1 --fallback-stream
[ $PUSH_RC -eq 0 ] || { cat "$T/p4.json" "$T/p4.json.err"; fail "--fallback-stream"; }
[ "$(json_get "$T/p4.json" "d['nodes'][0]['bytes_sent'] > 0")" = "(True,)" ] || fail "--fallback-stream sent nothing"
grep -q "the pusher streams the rest" "$T/blind.log" || fail "the agent did not say it fell back"
pass "a node that cannot reach the registry fails with the registry's error (nothing streamed); --fallback-stream streams to it"

# --- a wrong pull credential: refused by the registry, nothing written
python3 -c 'import base64,json,sys; json.dump({"auths": {sys.argv[2]: {"auth": base64.b64encode(b"puller:wrong").decode()}}}, open(sys.argv[1], "w"))' \
  "$T/bad-auth.json" "$R"
snap c
push_json "$T/p5.json" "docker://$R/fleet/app:3" --registry-ca "$T/reg-main/ca.pem" --via "docker://$R/fleet/app" --pull-auth "$T/bad-auth.json" \
  --to "127.0.0.1:$PORT_h3" --settle 1
[ $PUSH_RC -ne 0 ] || fail "a wrong pull credential deployed"
json_get "$T/p5.json" "d['nodes'][0]['error']" | grep -q "refused the pull (HTTP 401" || { cat "$T/p5.json"; fail "the registry's refusal"; }
snap d
diff "$T/snap.c" "$T/snap.d" | grep -v '^[0-9]' | grep -v 'partial' | grep -q . && fail "a refused pull left files on the node"
wait_version "127.0.0.1:$PORT_h3" app 2 || fail "h3 does not run v2 any more"
pass "a wrong pull credential: the node reports the registry's 401, keeps v2, and no blob is written"

finish
