#!/usr/bin/env bash
# Signed releases with rollback protection, as a user runs them: `ferry key gen`,
# `ferry sign`, agents whose config trusts the key, a host ferryd and an arm64 ferryd under
# qemu-aarch64. Each refusal (unsigned, unknown key, tampered with, expired, lower version) shows
# its error and leaves the node as it was: the same app running, no blob or release written.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
setup_fleet
build_apps "$T/app"
mkdir -p "$T/d1" "$T/d2" "$T/d3" "$T/d4"
for v in 1 2 3 4; do echo "data v$v" > "$T/d$v/data.txt"; done
IMG=$T/img
for v in 1 2 3 4; do
  extra=()
  [ $v = 3 ] && extra=(--env FAIL_WITH=3)
  $MKIMAGE "$IMG" --ref v$v --variant linux/amd64="$T/app/x64,$T/d$v" --variant linux/arm64="$T/app/a64,$T/d$v" \
    --env VERSION=$v "${extra[@]}" > /dev/null
done
cp -a "$IMG" "$T/unsigned"

# --- keys
"$FERRY" key gen --out "$T/keys" > "$T/keygen.out"
grep -q 'created release key sha256:' "$T/keygen.out" || { cat "$T/keygen.out"; fail "key gen output"; }
[ "$(stat -c %a "$T/keys/release.key")" = 600 ] || fail "the private key is not mode 0600"
head -1 "$T/keys/release.pub" | grep -q 'BEGIN PUBLIC KEY' || fail "release.pub is not a PEM public key"
set +e; "$FERRY" key gen --out "$T/keys" 2> "$T/keygen2.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q 'exists' "$T/keygen2.err" || fail "key gen over an existing key must refuse"
pass "ferry key gen: a P-256 key pair, private key 0600, never overwritten by accident"
"$FERRY" key gen --out "$T/other" > /dev/null

# --- signing
for v in 1 2 3 4; do "$FERRY" sign "$IMG:v$v" --key "$T/keys/release.key" --app hello --version $v > "$T/sign$v.out"; done
grep -q "signed $IMG:v2 (sha256:.*): app hello, version 2, expires .*, key sha256:" "$T/sign2.out" || { cat "$T/sign2.out"; fail "sign output"; }
"$FERRY" inspect "$IMG:v2" > "$T/inspect.out"
grep -q '^Signed:    app hello, version 2, expires' "$T/inspect.out" || { cat "$T/inspect.out"; fail "inspect: signature"; }
"$FERRY" inspect "$T/unsigned:v2" | grep -q '^Signed:    no' || fail "inspect: unsigned"
python3 - "$IMG" <<'PY' || fail "the signature is not an artifact tagged sha256-<hex>.sig tied to v2"
import json, os, sys
d = sys.argv[1]
blob = lambda dg: open(os.path.join(d, "blobs/sha256", dg.split(":")[1]), "rb").read()
ix = json.load(open(d + "/index.json"))
by = {m.get("annotations", {}).get("org.opencontainers.image.ref.name"): m for m in ix["manifests"]}
v2 = by["v2"]
assert "dev.ferry.signature" not in v2.get("annotations", {}), "annotations are the old format"
e = by["sha256-%s.sig" % v2["digest"].split(":")[1]]
m = json.loads(blob(e["digest"]))
assert m["artifactType"] == "application/vnd.dev.ferry.signature.v1+json", m
assert m["subject"]["digest"] == v2["digest"] and m["subject"]["size"] == v2["size"], m["subject"]
layer = m["layers"][0]
claim = json.loads(blob(layer["digest"]))
assert claim["app"] == "hello" and claim["version"] == 2 and claim["digest"] == v2["digest"], claim
assert layer["annotations"]["dev.ferry.signature"] and layer["annotations"]["dev.ferry.signature.key"].startswith("sha256:")
PY
pass "ferry sign: the claim {app, digest, version, expires} and its signature are an OCI artifact tagged sha256-<hex>.sig with subject = the ref's image"
for bad in "--version 0" "--version x" "--expires 2001-01-01T00:00:00Z" "--expires soon"; do
  set +e; "$FERRY" sign "$IMG:v2" --key "$T/keys/release.key" --app hello $bad 2> "$T/bad.err"; rc=$?; set -e
  [ $rc = 2 ] && grep -q -- "${bad%% *}" "$T/bad.err" || { cat "$T/bad.err"; fail "sign $bad: rc $rc"; }
done
set +e; "$FERRY" sign "$IMG:v2" --key "$T/keys/release.pub" --version 5 2> "$T/bad.err"; rc=$?; set -e
[ $rc = 1 ] && grep -q 'not a PEM private key' "$T/bad.err" || { cat "$T/bad.err"; fail "signing with the public key"; }
$MKIMAGE "$T/gz" --ref v1 --variant linux/amd64="$T/app/x64" --compress gzip > /dev/null
set +e; "$FERRY" sign "$T/gz:v1" --key "$T/keys/release.key" --version 1 2> "$T/bad.err"; rc=$?; set -e
[ $rc = 1 ] && grep -q 'gzip layers.*skopeo copy --all --dest-compress-format zstd oci:' "$T/bad.err" || { cat "$T/bad.err"; fail "gzip image"; }
pass "sign refuses a bad version, a past or malformed expiry, a public key and gzip layers, each with a clear error"

# Images for the refusals
cp -a "$T/unsigned" "$T/foreign"; "$FERRY" sign "$T/foreign:v4" --key "$T/other/release.key" --app hello --version 9 > /dev/null
cp -a "$IMG" "$T/tampered"
python3 - "$T/tampered" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
p = d + "/index.json"
blob = lambda dg: open(os.path.join(d, "blobs/sha256", dg.split(":")[1]), "rb").read()
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(os.path.join(d, "blobs/sha256", h), "wb").write(b)
    return "sha256:" + h, len(b)
ix = json.load(open(p))
by = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in ix["manifests"]}
sig = lambda ref: by["sha256-%s.sig" % by[ref]["digest"].split(":")[1]]
# v4's signature tag now holds v1's signature: what is sent is not what was signed.
sig("v4")["digest"], sig("v4")["size"] = sig("v1")["digest"], sig("v1")["size"]
# v3's claim is edited to a higher version: the signature no longer verifies.
m = json.loads(blob(sig("v3")["digest"]))
c = json.loads(blob(m["layers"][0]["digest"])); c["version"] = 99
m["layers"][0]["digest"], m["layers"][0]["size"] = put(json.dumps(c, separators=(",", ":")).encode())
sig("v3")["digest"], sig("v3")["size"] = put(json.dumps(m).encode())
json.dump(ix, open(p, "w"))
PY
cp -a "$T/unsigned" "$T/expiring"; "$FERRY" sign "$T/expiring:v4" --key "$T/keys/release.key" --app hello --version 9 --expires 1s > /dev/null

TRUST=$'trust:\n  keys: ['"$T"$'/keys/release.pub]\n  require_signature: true\n  allow_downgrade: false'
start_agent x64 "$TRUST"
FERRYD_BIN=$A64 start_agent pi-arm64 "$TRUST"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
X="x64@127.0.0.1:$PORT_x64"
P="pi-arm64@127.0.0.1:$PORT_pi_arm64"

push_json "$T/p2.json" "$IMG:v2" --to "$X" --to "$P" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; fail "signed v2"; }
"$FERRY" status --identity "$T/me" --json --to "$X" --to "$P" > "$T/s2.json"
[ "$(json_get "$T/s2.json" "[(a['name'], a['state'], a.get('version')) for n in d['nodes'] for a in n['apps']]")" = \
  "([('hello', 'running', 2), ('hello', 'running', 2)],)" ] || { cat "$T/s2.json"; fail "status after v2"; }
[ "$(cat "$T/state-x64/apps/hello/version")" = 2 ] || fail "the version counter is not 2"
pass "a signed v2 deploys to amd64 and to arm64 under qemu (app name from the signature); the counter reads 2"

# snapshot: what is on each node now
# (the pid file is the running process's, not what a push writes: a restart rewrites it)
snap() { (cd "$T/state-$1" && find blobs apps -path '*/rootfs' -prune -o -path 'apps/*/pid' -prune -o -print | sort; cat apps/hello/version) > "$T/snap-$1.$2"; }
refused() { # refused NAME CODE PATTERN LAYOUT TARGET [push args...]
  local name=$1 code=$2 pat=$3 layout=$4 target=$5 node=${5%%@*}; shift 5
  snap "$node" before
  push_json "$T/r-$name.json" "$layout" --to "$target" --settle 1 "$@"
  [ $PUSH_RC -ne 0 ] || { cat "$T/r-$name.json"; fail "$name: the push succeeded"; }
  [ "$(json_get "$T/r-$name.json" "(d['nodes'][0]['result'], d['nodes'][0]['code'])")" = "(('failed', '$code'),)" ] \
    || { cat "$T/r-$name.json"; fail "$name: expected failed/$code"; }
  json_get "$T/r-$name.json" "d['nodes'][0]['error']" | grep -q -- "$pat" || { cat "$T/r-$name.json"; fail "$name: error text"; }
  snap "$node" after
  cmp -s "$T/snap-$node.before" "$T/snap-$node.after" || { diff "$T/snap-$node.before" "$T/snap-$node.after"; fail "$name: the node's state changed"; }
  wait_version "$target" hello $RUNNING || fail "$name: v$RUNNING is not running"
  pass "$name: refused ($code: $(json_get "$T/r-$name.json" "d['nodes'][0]['error']" | cut -c3-90)…), nothing written, v$RUNNING still runs"
}
RUNNING=2
refused unsigned EUNSIGNED 'not signed and trust.require_signature is on' "$T/unsigned:v4" "$X" --app hello
refused unsigned-arm64 EUNSIGNED 'not signed' "$T/unsigned:v4" "$P" --app hello
refused unknown-key EUNTRUSTED 'not in trust.keys' "$T/foreign:v4" "$X"
refused tampered-claim ESIGNATURE 'tampered with: the signature does not verify' "$T/tampered:v3" "$X"
refused tampered-image ESIGNATURE 'tampered with: the signature covers sha256:' "$T/tampered:v4" "$X"
# a clock condition: the time the claim names has passed
"$FERRY" inspect --json "$T/expiring:v4" > "$T/exp.json"
expires_at=$(python3 -c 'import datetime, json, sys
t = json.load(open(sys.argv[1]))["signature"]["expires"].replace("Z", "+00:00")
print(int(datetime.datetime.fromisoformat(t).timestamp()))' "$T/exp.json")
[ -n "$expires_at" ] || fail "no expiry in the expiring image's signature"
expired() { [ "$(date +%s)" -gt "$expires_at" ]; }
wait_for 30 "the 1 s signature to expire" expired
refused expired EEXPIRED 'the signature expired at' "$T/expiring:v4" "$X"
refused downgrade EDOWNGRADE 'version 1 is lower than the installed version 2 of hello' "$IMG:v1" "$X"
refused downgrade-arm64 EDOWNGRADE 'version 1 is lower' "$IMG:v1" "$P"
set +e; "$FERRY" push --identity "$T/me" "$IMG:v4" --to "$X" --app other 2> "$T/app.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "signed for app 'hello', not 'other'" "$T/app.err" || { cat "$T/app.err"; fail "--app against the signature"; }
pass "the pusher refuses --app that the signature does not name, before connecting"

# --- a health rollback is not a downgrade; the counter stays where the switch put it
push_json "$T/p3.json" "$IMG:v3" --to "$X" --settle 2
[ "$(json_get "$T/p3.json" "d['nodes'][0]['result']")" = "('rolled-back',)" ] || { cat "$T/p3.json"; fail "v3 should roll back"; }
wait_version "$X" hello 2 || fail "v2 is not back"
[ "$(cat "$T/state-x64/apps/hello/version")" = 3 ] || fail "counter after v3: $(cat "$T/state-x64/apps/hello/version")"
pass "signed v3 fails its health check: ferryd rolls back to v2 by itself (not a downgrade); the counter keeps 3"
refused downgrade-after-rollback EDOWNGRADE 'version 2 is lower than the installed version 3' "$IMG:v2" "$X"

push_json "$T/p4.json" "$IMG:v4" --to "$X" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p4.json"; fail "v4"; }
RUNNING=4
set +e; "$FERRY" rollback --identity "$T/me" --to "$X" --app hello > "$T/rb.out" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q 'EDOWNGRADE\|a rollback would be a downgrade' "$T/rb.out" || { cat "$T/rb.out"; fail "manual rollback should be refused"; }
grep -q 'allow_downgrade is off' "$T/rb.out" || { cat "$T/rb.out"; fail "rollback error text"; }
wait_version "$X" hello 4 || fail "v4 should still run"
pass "ferry rollback to an older signed release is refused while allow_downgrade is off (v4 keeps running)"

# --- the counter is durable: kill -9, restart, still refused
XPID=$(pgrep -f "ferryd --config $T/x64.yaml" | head -1)
kill -9 "$XPID"
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
wait_for 30 "the killed agent to be gone" gone "$XPID"
"$FERRYD" --config "$T/x64.yaml" --check-state > /dev/null || fail "check-state after kill"
start_agent x64 "$TRUST"
X="x64@127.0.0.1:$PORT_x64"
wait_version "$X" hello 4 || fail "v4 did not come back after the restart" # recovery first, then the snapshot
refused downgrade-after-restart EDOWNGRADE 'version 3 is lower than the installed version 4' "$IMG:v3" "$X"

# --- policy variants: allow_downgrade, signatures optional
start_agent lenient $'trust:\n  keys: ['"$T"$'/keys/release.pub]\n  require_signature: false\n  allow_downgrade: true'
L="lenient@127.0.0.1:$PORT_lenient"
for v in 2 1; do push_json "$T/l$v.json" "$IMG:v$v" --to "$L" --settle 1; [ $PUSH_RC -eq 0 ] || { cat "$T/l$v.json"; fail "lenient v$v"; }; done
"$FERRY" rollback --identity "$T/me" --to "$L" --app hello > /dev/null || fail "lenient rollback"
push_json "$T/lu.json" "$T/unsigned:v4" --to "$L" --settle 1 --app hello
[ $PUSH_RC -eq 0 ] || { cat "$T/lu.json"; fail "lenient unsigned"; }
RUNNING=4
refused lenient-tampered ESIGNATURE 'tampered with' "$T/tampered:v3" "$L"
refused lenient-unknown-key EUNTRUSTED 'not in trust.keys' "$T/foreign:v4" "$L"
pass "allow_downgrade: true lets v1 follow v2 and ferry rollback go back; require_signature: false takes unsigned, never a bad signature"

# --- versions past 2^31, on the 32-bit arm agent and the arm64 one under qemu: the counter keeps
# them, a lower version is refused, and a corrupt counter fails closed with how to repair it
ARM=$(cross_bin armhf ferryd)
mkdir -p "$T/app/a32"
arm-linux-gnueabihf-gcc -static -O2 -o "$T/app/a32/app" "$FERRY_SRC/tests/tools/app/hello.c"
for v in big small; do
  $MKIMAGE "$T/v64" --ref $v --variant linux/arm64="$T/app/a64,$T/d1" --variant linux/arm/v7="$T/app/a32,$T/d1" --env VERSION=$v > /dev/null
done
"$FERRY" sign "$T/v64:big" --key "$T/keys/release.key" --app hello --version 3000000000 > "$T/s-big.out"
grep -q "version 3000000000," "$T/s-big.out" || { cat "$T/s-big.out"; fail "sign 3000000000"; }
"$FERRY" sign "$T/v64:small" --key "$T/keys/release.key" --app hello --version 1 > /dev/null
set +e; "$FERRY" sign "$T/v64:small" --key "$T/keys/release.key" --app hello --version 9223372036854775808 2> "$T/s-over.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q -- "--version: expected a whole number from 1 to 9223372036854775807 (2^63-1)" "$T/s-over.err" || { cat "$T/s-over.err"; fail "sign past 2^63-1"; }
FERRYD_BIN=$ARM start_agent pi-armhf "$TRUST"$'\nruntime:\n  exec_wrapper: [qemu-arm, -L, "{rootfs}"]' qemu-arm
FERRYD_BIN=$A64 start_agent pi-arm64b "$TRUST"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
for n in pi-armhf pi-arm64b; do
  var="PORT_${n//-/_}"; N="$n@127.0.0.1:${!var}"
  push_json "$T/b-$n.json" "$T/v64:big" --to "$N" --settle 1
  [ $PUSH_RC -eq 0 ] || { cat "$T/b-$n.json"; fail "$n: version 3000000000"; }
  [ "$(cat "$T/state-$n/apps/hello/version")" = 3000000000 ] || fail "$n: the counter does not say 3000000000"
  push_json "$T/s-$n.json" "$T/v64:small" --to "$N" --settle 1
  [ $PUSH_RC -eq 1 ] && json_get "$T/s-$n.json" "d['nodes'][0]['code'], d['nodes'][0]['error']" | grep -q "EDOWNGRADE.*version 1 is lower than the installed version 3000000000" \
    || { cat "$T/s-$n.json"; fail "$n: version 1 after 3000000000"; }
  echo "3000000000x" > "$T/state-$n/apps/hello/version"
  push_json "$T/c-$n.json" "$T/v64:big" --to "$N" --settle 1
  [ $PUSH_RC -eq 1 ] && json_get "$T/c-$n.json" "d['nodes'][0]['error']" | grep -q "version counter .* is corrupt .*refused until it is repaired" \
    || { cat "$T/c-$n.json"; fail "$n: a corrupt counter"; }
  "$FERRY" status --identity "$T/me" --json --to "$N" > "$T/st-$n.json"
  [ "$(json_get "$T/st-$n.json" "d['nodes'][0]['apps'][0]['version']")" = "(3000000000,)" ] || { cat "$T/st-$n.json"; fail "$n: status version"; }
done
pass "signed version 3000000000 on the armhf and arm64 agents (qemu): kept, version 1 refused as a downgrade, a corrupt counter refused with how to repair it, status shows 3000000000"

# --- config errors
printf 'name: x\nidentity: %s\ntrust:\n  require_signature: true\n' "$T/id-x64" > "$T/c1.yaml"
set +e; "$FERRYD" --config "$T/c1.yaml" --check-config 2> "$T/c1.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q 'c1.yaml:4: trust.require_signature is true but trust.keys lists no key' "$T/c1.err" || { cat "$T/c1.err"; fail "require without keys"; }
printf 'name: x64\nidentity: %s\ntrust:\n  keys: [%s]\n' "$T/id-x64" "$T/id-x64/cert.pem" > "$T/c2.yaml"
set +e; "$FERRYD" --config "$T/c2.yaml" --check-config 2> "$T/c2.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q 'trust.keys: .*cert.pem: not a PEM public key' "$T/c2.err" || { cat "$T/c2.err"; fail "a certificate as key"; }
printf 'name: x\nidentity: %s\ntrust:\n  require_signature: maybe\n  keys: [a]\n' "$T/id-x64" > "$T/c3.yaml"
set +e; "$FERRYD" --config "$T/c3.yaml" --check-config 2> "$T/c3.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q 'c3.yaml:4: trust.require_signature: expected true or false' "$T/c3.err" || { cat "$T/c3.err"; fail "bad bool"; }
pass "config errors: required signatures without a key, a file that is not a public key, a bad boolean"
finish
