#!/usr/bin/env bash
# Images in an OCI registry, the way users keep them: Debian's docker-registry (CNCF distribution)
# on loopback with TLS and htpasswd authentication. ferry publish uploads only what is missing and
# skopeo agrees on the digest; push, inspect and test read docker://; signatures survive publish
# and skopeo copy and are verified on require_signature nodes (amd64, and arm64 under qemu); a
# wrong credential, a blob tampered with in the registry's storage, and a registry stopped midway
# are each met with a clear message and leave nothing behind, and the next push resumes.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
command -v skopeo > /dev/null || { echo "skip: skopeo missing" >&2; exit 77; }
setup_fleet
build_apps "$T/app"
mkdir -p "$T/d1" "$T/d2"
echo one > "$T/d1/data.txt"
head -c 24000000 /dev/urandom > "$T/d2/big.bin"   # a layer that takes a while at a capped rate
start_registry main
R=$REG_main
CA=$T/reg-main/ca.pem
CERTS=$T/reg-main/certs
for v in 1 2; do
  $MKIMAGE "$T/img" --ref "v$v" --variant linux/amd64="$T/app/x64,$T/d$v" --variant linux/arm64="$T/app/a64,$T/d$v" --env VERSION=$v > /dev/null
done
"$FERRY" key gen --out "$T/keys" > /dev/null
"$FERRY" sign "$T/img:v1" --key "$T/keys/release.key" --app hello --version 1 > /dev/null
TRUST=$'trust:\n  keys: ['"$T"$'/keys/release.pub]\n  require_signature: true'
start_agent x64 "$TRUST"
FERRYD_BIN=$A64 start_agent a64 "$TRUST"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
X=127.0.0.1:$PORT_x64
A=127.0.0.1:$PORT_a64
snap() { (cd "$T/state-$1" && find blobs apps -path '*/rootfs' -prune -o -print | sort) > "$T/snap-$1.$2"; }
expect_fail() { # expect_fail PATTERN CMD...
  local pat=$1; shift
  set +e; "$@" > "$T/ef.out" 2> "$T/ef.err"; local rc=$?; set -e
  [ $rc -ne 0 ] && grep -q -- "$pat" "$T/ef.err" || { cat "$T/ef.out" "$T/ef.err"; fail "expected '$pat' from: $*"; }
}

# --- publish: only missing blobs; skopeo sees the digest ferry printed
"$FERRY" publish "$T/img:v1" "docker://$R/team/hello:1" --registry-ca "$CA" --json > "$T/pub1.json"
dg=$(json_get "$T/pub1.json" "d['digest']" | tr -d "(),'")
[ "$(json_get "$T/pub1.json" "(d['blobs_uploaded'] > 0, d['signature'])")" = "((True, True),)" ] || { cat "$T/pub1.json"; fail "publish: nothing uploaded or no signature"; }
[ "sha256:$(skopeo inspect --raw --cert-dir "$CERTS" "docker://$R/team/hello:1" | sha256sum | cut -d' ' -f1)" = "$dg" ] || fail "skopeo's digest differs"
"$FERRY" inspect --json "$T/img:v1" > "$T/i-local.json"
"$FERRY" inspect --json "docker://$R/team/hello:1" --registry-ca "$CA" > "$T/i-reg.json"
python3 - "$T/i-local.json" "$T/i-reg.json" "$dg" <<'PY' || fail "ferry inspect of the layout and of the registry disagree"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["digest"] == b["digest"] == sys.argv[3], (a["digest"], b["digest"])
assert [m["digest"] for m in a["manifests"]] == [m["digest"] for m in b["manifests"]]
assert b["signature"]["app"] == "hello" and b["signature"]["version"] == 1
PY
"$FERRY" publish "$T/img:v1" "docker://$R/team/hello:1" --registry-ca "$CA" --json > "$T/pub2.json"
[ "$(json_get "$T/pub2.json" "(d['blobs_uploaded'], d['bytes_uploaded'])")" = "((0, 0),)" ] || { cat "$T/pub2.json"; fail "publish again uploaded blobs"; }
"$FERRY" publish "docker://$R/team/hello:1" "docker://$R/other/hello:1" --registry-ca "$CA" --json > "$T/pub3.json"
[ "$(json_get "$T/pub3.json" "(d['blobs_uploaded'], d['blobs_mounted'] > 0)")" = "((0, True),)" ] || { cat "$T/pub3.json"; fail "cross-repository mount"; }
pass "ferry publish uploads the image and its signature once (again: 0 bytes; another repository: mounted); skopeo and ferry inspect agree on $dg"

# --- push from docker:// to signed nodes (amd64 and arm64 under qemu); the app is the claim's
push_json "$T/p1.json" "docker://$R/team/hello:1" --registry-ca "$CA" --to "$X" --to "$A" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "push docker://"; }
wait_version "$A" hello 1 || fail "arm64 does not run v1 from the registry"
grep -q "fetched .* of layers from $R/team/hello" "$T/p1.json.err" || { cat "$T/p1.json.err"; fail "no fetch reported"; }
pass "push docker://$R/team/hello:1: the signed image deploys on amd64 and arm64 (require_signature)"

# --- the signature survives skopeo copy of both tags
skopeo copy -q --all --src-cert-dir "$CERTS" --dest-cert-dir "$CERTS" "docker://$R/team/hello:1" "docker://$R/copied/hello:1"
skopeo copy -q --src-cert-dir "$CERTS" --dest-cert-dir "$CERTS" "docker://$R/team/hello:sha256-${dg#sha256:}.sig" \
  "docker://$R/copied/hello:sha256-${dg#sha256:}.sig"
"$FERRY" inspect "docker://$R/copied/hello:1" --registry-ca "$CA" | grep -q '^Signed:    app hello, version 1' || fail "the copy is not signed"
skopeo copy -q --all --src-cert-dir "$CERTS" "docker://$R/copied/hello:1" "oci:$T/fromreg:1"
skopeo copy -q --src-cert-dir "$CERTS" "docker://$R/copied/hello:sha256-${dg#sha256:}.sig" "oci:$T/fromreg:sha256-${dg#sha256:}.sig"
"$FERRY" inspect "oci:$T/fromreg:1" | grep -q '^Signed:    app hello, version 1' || fail "the layout copy is not signed"
push_json "$T/p2.json" "oci:$T/fromreg:1" --to "$X" --settle 1 --force
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json" "$T/p2.json.err"; fail "push of the skopeo copy to a require_signature node"; }
pass "skopeo copy of the image and its sha256-<hex>.sig tag keeps the signature (registry to registry, registry to layout); the node verifies it"

# --- a bundle for a site without network: signed, read by skopeo, pushed from the file
"$FERRY" bundle "docker://$R/team/hello:1" "$T/img:v2" -o "$T/site.tar" --registry-ca "$CA" > "$T/bundle.out" 2> "$T/bundle.err"
grep -q 'bundled 2 image(s)' "$T/bundle.out" && grep -q 'hello:1: with its signature' "$T/bundle.err" || { cat "$T/bundle.out" "$T/bundle.err"; fail "ferry bundle"; }
[ "$(skopeo inspect --raw "oci-archive:$T/site.tar:hello:1" | sha256sum | cut -d' ' -f1)" = "${dg#sha256:}" ] || fail "skopeo reads another digest from the bundle"
"$FERRY" inspect "oci-archive:$T/site.tar:hello:1" | grep -q '^Signed:    app hello, version 1' || fail "the bundle lost the signature"
push_json "$T/pb.json" "oci-archive:$T/site.tar:hello:1" --to "$A" --settle 1 --force
[ $PUSH_RC -eq 0 ] || { cat "$T/pb.json" "$T/pb.json.err"; fail "push from the bundle to a require_signature arm64 node"; }
"$FERRY" bundle "$T/img:v1" -o "$T/a64.tar" --platform linux/arm64 > /dev/null 2>&1
[ "$(tar tf "$T/a64.tar" | wc -l)" -lt "$(tar tf "$T/site.tar" | wc -l)" ] || fail "--platform did not leave the amd64 variant out"
pass "ferry bundle: an oci-archive with the signature that skopeo reads (same digest) and a require_signature arm64 node accepts; --platform makes it smaller"

# --- unsigned, from the registry: the app is the repository's name; refused by a signed node
"$FERRY" publish "$T/img:v2" "docker://$R/team/probe:2" --registry-ca "$CA" > /dev/null
start_agent open ''
push_json "$T/p3.json" "docker://$R/team/probe:2" --registry-ca "$CA" --to "127.0.0.1:$PORT_open" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p3.json.err"; fail "push unsigned docker://"; }
"$FERRY" status --identity "$T/me" --to "127.0.0.1:$PORT_open" --json > "$T/s3.json"
[ "$(json_get "$T/s3.json" "[a['name'] for a in d['nodes'][0]['apps']]")" = "(['probe'],)" ] || { cat "$T/s3.json"; fail "app name from the repository"; }
snap x64 before
expect_fail "not signed" "$FERRY" push --identity "$T/me" "docker://$R/team/probe:2" --registry-ca "$CA" --to "$X" --app hello
snap x64 after
cmp -s "$T/snap-x64.before" "$T/snap-x64.after" || fail "the refused push changed the node"
pass "an unsigned registry image is named after its repository ('probe'), and refused by a require_signature node with nothing written"

# --- credentials and trust
cp "$REGISTRY_AUTH_FILE" "$T/good-auth.json"
python3 -c 'import base64,json,sys; d=json.load(open(sys.argv[1])); [v.update(auth=base64.b64encode(b"ferry:wrong").decode()) for v in d["auths"].values()]; json.dump(d, open(sys.argv[2], "w"))' \
  "$T/good-auth.json" "$T/bad-auth.json"
rm -rf "$FERRY_HOME/cache"
REGISTRY_AUTH_FILE=$T/bad-auth.json expect_fail "refused the credentials configured for $R (user 'ferry')" \
  "$FERRY" push --identity "$T/me" "docker://$R/team/probe:2" --registry-ca "$CA" --to "127.0.0.1:$PORT_open" --force
REGISTRY_AUTH_FILE=$T/none.json expect_fail "asks for credentials and none are configured for $R" \
  "$FERRY" inspect "docker://$R/team/probe:2" --registry-ca "$CA"
expect_fail "certificate" "$FERRY" inspect "docker://$R/team/probe:2"
expect_fail "MANIFEST_UNKNOWN" "$FERRY" inspect "docker://$R/team/probe:nope" --registry-ca "$CA"
[ -z "$(find "$FERRY_HOME/cache" -type f 2>/dev/null | head -1)" ] || { find "$FERRY_HOME/cache" -type f; fail "a refused pull left files in the cache"; }
"$FERRY" inspect "docker://$R/team/probe:2" --tls-verify=false > /dev/null || fail "--tls-verify=false"
pass "a wrong password, no credentials, an unknown CA and an unknown tag: each refused with the registry's reason, nothing cached"

# --- a blob tampered with in the registry's storage
"$FERRY" publish "$T/img:v2" "docker://$R/evil/probe:2" --registry-ca "$CA" > /dev/null
layer=$(python3 -c 'import json,sys; print(max(json.load(open(sys.argv[1]))["manifests"][0]["layers"], key=lambda l: l["size"])["digest"])' <("$FERRY" inspect --json "$T/img:v2"))
hex=${layer#sha256:}
data="$T/reg-main/data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
[ -f "$data" ] || fail "no blob data at $data"
printf 'tampered' | dd of="$data" bs=1 seek=4096 conv=notrunc 2>/dev/null
rm -rf "$FERRY_HOME/cache"
snap open before
expect_fail "does not match its digest (the registry's copy is corrupt or was tampered with)" \
  "$FERRY" push --identity "$T/me" "docker://$R/evil/probe:2" --registry-ca "$CA" --to "127.0.0.1:$PORT_open" --force
snap open after
cmp -s "$T/snap-open.before" "$T/snap-open.after" || fail "the tampered pull changed the node"
[ ! -e "$FERRY_HOME/cache/blobs/sha256/$hex" ] && [ ! -e "$FERRY_HOME/cache/blobs/sha256/$hex.partial" ] || fail "the tampered blob stayed in the cache"
cp "$T/img/blobs/sha256/$hex" "$data"   # repaired (the registry stores each blob once, for every repository)
pass "a layer tampered with in the registry's storage is refused as it streams: nothing cached, nothing sent, the node as it was"

# --- the registry stopped in the middle of a pull, then started again: the next push resumes
rm -rf "$FERRY_HOME/cache"
"$FERRY" publish "$T/img:v2" "docker://$R/slow/probe:2" --registry-ca "$CA" > /dev/null
partial="$FERRY_HOME/cache/blobs/sha256/$hex.partial"
FERRY_REGISTRY_RATE=2000000 "$FERRY" push --identity "$T/me" "docker://$R/slow/probe:2" --registry-ca "$CA" --to "127.0.0.1:$PORT_open" --force \
  > "$T/cut.out" 2> "$T/cut.err" &
pushpid=$!
has_partial() { [ -f "$partial" ] && [ "$(stat -c %s "$partial")" -gt 2000000 ]; }
wait_for 60 "a partial download in the cache" has_partial
stop_registry main
set +e; wait $pushpid; rc=$?; set -e
[ $rc -ne 0 ] || fail "the push succeeded with the registry gone"
grep -q "$R" "$T/cut.err" || { cat "$T/cut.err"; fail "no registry error"; }
cut_at=$(stat -c %s "$partial")
start_registry main
push_json "$T/resume.json" "docker://$R/slow/probe:2" --registry-ca "$CA" --to "127.0.0.1:$PORT_open" --force --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/resume.json.err"; fail "the push after the registry came back"; }
fetched=$(grep -o 'fetched [0-9.]* [KMG]*i*B' "$T/resume.json.err" | head -1)
size=$(stat -c %s "$FERRY_HOME/cache/blobs/sha256/$hex")
python3 - "$fetched" "$size" "$cut_at" <<'PY' || { cat "$T/resume.json.err"; fail "the second pull did not resume ($fetched of $size, cut at $cut_at)"; }
import sys
txt, size, cut = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
num, unit = txt.split()[1], txt.split()[2]
got = float(num) * {"B": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
assert got < size - cut * 0.9, (got, size, cut)
PY
pass "the registry killed mid-pull ($cut_at bytes in): the push fails naming it; once it is back the next push resumes ($fetched) and deploys"

finish
