#!/usr/bin/env bash
# Images from where users keep them, named as skopeo names them: oci:DIR:REF (a REF holding ':'),
# oci-archive:FILE and docker-archive:FILE, the archives made by skopeo itself. Pushed to a host
# ferryd and an arm64 ferryd under qemu-aarch64; inspected and tested. The app name comes from the
# repository or the file, never the tag; a layout with several tags needs a REF; nothing is
# written into the user's input; and each hostile input (a FIFO, a cut archive, a blob that is not
# what its name says, several images in one docker-archive) is refused with its reason and
# leaves the node as it was.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
command -v skopeo > /dev/null || { echo "skip: skopeo missing (scripts/setup.sh installs it)" >&2; exit 77; }
setup_fleet
build_apps "$T/app"
mkdir -p "$T/d1" "$T/d2"
echo one > "$T/d1/data.txt"
echo two > "$T/d2/data.txt"
start_agent x64
FERRYD_BIN=$A64 start_agent a64 $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64 -cpu cortex-a72
X=127.0.0.1:$PORT_x64
A=127.0.0.1:$PORT_a64

tree_sum() { (cd "$1" && find . -printf '%p %s %m\n' | sort && find . -type f -exec sha256sum {} + | sort) | sha256sum; }
apps_of() { # apps_of TARGET -> "name release-state" lines
  "$FERRY" status --identity "$T/me" --to "$1" --json > "$T/st.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [print(a["name"], a["state"]) for a in d["nodes"][0].get("apps", [])]' "$T/st.json" | sort
}
expect_fail() { # expect_fail PATTERN CMD...: exit status 1 and PATTERN in stderr
  local pat=$1; shift
  set +e; "$@" > "$T/ef.out" 2> "$T/ef.err"; local rc=$?; set -e
  [ $rc -ne 0 ] && grep -q -- "$pat" "$T/ef.err" || { cat "$T/ef.out" "$T/ef.err"; fail "expected '$pat' from: $*"; }
}

# A two-platform layout with two tags (as skopeo copy … oci:DIR:TAG writes them).
for v in 1 2; do
  $MKIMAGE "$T/multi" --ref "1.0.$v" --variant linux/amd64="$T/app/x64,$T/d$v" --variant linux/arm64="$T/app/a64,$T/d$v" \
    --env VERSION=$v > /dev/null
done
multi_sum=$(tree_sum "$T/multi")

# --- oci:DIR:REF with a ':' in REF, as skopeo writes it; the app is the repository's last part
skopeo copy -q --all "oci:$T/multi:1.0.1" "oci:$T/repo:example.com/team/probe:1.0"
push_json "$T/p1.json" "oci:$T/repo:example.com/team/probe:1.0" --to "$X" --to "$A" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p1.json" "$T/p1.json.err"; fail "push oci:DIR:REF with a colon"; }
[ "$(apps_of "$X")" = "probe running" ] || { apps_of "$X"; fail "app name from an oci: REF is not 'probe'"; }
[ "$(apps_of "$A")" = "probe running" ] || fail "arm64: app name from an oci: REF is not 'probe'"
wait_version "$A" probe 1 || fail "the arm64 node does not run 1.0.1"
pass "push oci:DIR:example.com/team/probe:1.0 (REF with ':') to amd64 and arm64 under qemu; app 'probe'"

# --- x:1.0.0 then x:1.0.1 is one app, not two side by side
push_json "$T/p2.json" "$T/multi:1.0.1" --to "$X" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p2.json.err"; fail "push multi:1.0.1"; }
push_json "$T/p3.json" "$T/multi:1.0.2" --to "$X" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p3.json.err"; fail "push multi:1.0.2"; }
[ "$(apps_of "$X" | grep -c '^multi ')" = 1 ] || { apps_of "$X"; fail "two tags of one layout became two apps"; }
pass "LAYOUT:1.0.1 then LAYOUT:1.0.2 upgrade one app named after the layout, never the tag"

# --- several tags and no REF: refused, naming them; the node untouched
before=$(apps_of "$X")
expect_fail "holds 2 images (1.0.1, 1.0.2): choose one as $T/multi:REF" "$FERRY" push --identity "$T/me" "$T/multi" --to "$X"
[ "$(apps_of "$X")" = "$before" ] || fail "a refused push changed the node"
expect_fail "holds 2 images" "$FERRY" inspect "$T/multi"
expect_fail "holds 2 images" "$FERRY" test "$T/multi"
pass "a layout with several tags and no REF is refused by push, inspect and test, listing the REFs"

# --- oci-archive made by skopeo: inspect, test, push (app from the file name)
skopeo copy -q --all "oci:$T/multi:1.0.2" "oci-archive:$T/site.tar"
"$FERRY" inspect "oci-archive:$T/site.tar" > "$T/ia.out"
grep -q 'Platform:  linux/arm64' "$T/ia.out" && grep -q 'Platform:  linux/amd64' "$T/ia.out" || { cat "$T/ia.out"; fail "inspect oci-archive"; }
"$FERRY" test "oci-archive:$T/site.tar" --platform linux/amd64 -- /app --once > "$T/ta.out" 2>&1 || { cat "$T/ta.out"; fail "test oci-archive"; }
push_json "$T/p4.json" "oci-archive:$T/site.tar" --to "$X" --to "$A" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p4.json" "$T/p4.json.err"; fail "push oci-archive"; }
apps_of "$A" | grep -q '^site running' || { apps_of "$A"; fail "oci-archive app name is not the file name"; }
wait_version "$A" site 2 || fail "site does not run on arm64"
# with a REF inside the archive, the repository names the app
skopeo copy -q --all "oci:$T/multi:1.0.1" "oci-archive:$T/named.tar:registry.local/tools/gauge:7"
push_json "$T/p5.json" "oci-archive:$T/named.tar:registry.local/tools/gauge:7" --to "$X" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p5.json.err"; fail "push oci-archive:FILE:REF"; }
apps_of "$X" | grep -q '^gauge running' || { apps_of "$X"; fail "oci-archive:FILE:REF app name"; }
pass "oci-archive: from skopeo (with and without a REF) is inspected, tested and pushed to amd64 and arm64"

# --- docker-archive made by skopeo (docker archives carry gzip or plain layers; ferry makes zstd)
$MKIMAGE "$T/gz" --ref 1 --compress gzip --variant linux/amd64="$T/app/x64,$T/d1" --env VERSION=d > /dev/null
skopeo copy -q "oci:$T/gz:1" "docker-archive:$T/hello-svc.tar:example.com/hello-svc:1"
"$FERRY" test "docker-archive:$T/hello-svc.tar" -- /app --once > "$T/td.out" 2>&1 || { cat "$T/td.out"; fail "test docker-archive"; }
push_json "$T/p6.json" "docker-archive:$T/hello-svc.tar" --to "$X" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p6.json" "$T/p6.json.err"; fail "push docker-archive"; }
apps_of "$X" | grep -q '^hello-svc running' || { apps_of "$X"; fail "docker-archive app name"; }
wait_version "$X" hello-svc d || fail "hello-svc does not run"
# pushed again: the layers come from the cache, nothing is sent again
push_json "$T/p7.json" "docker-archive:$T/hello-svc.tar" --to "$X" --settle 1
grep -q '"result": *"unchanged"' "$T/p7.json" || { cat "$T/p7.json"; fail "a second docker-archive push is not 'unchanged'"; }
pass "docker-archive: from skopeo is tested and pushed (layers compressed to zstd once, then unchanged)"

# --- nothing was written into any input
[ "$(tree_sum "$T/multi")" = "$multi_sum" ] || fail "ferry wrote into the layout"
gz_sum=$(tree_sum "$T/gz")
push_json "$T/p8.json" "$T/gz:1" --to "$X" --app gzapp --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/p8.json.err"; fail "push gzip layout"; }
[ "$(tree_sum "$T/gz")" = "$gz_sum" ] || fail "recompressing wrote into the layout"
# A read-only layout (a bind mount, which root cannot write either) pushes the same.
mkdir -p "$T/ro"
if mount --bind "$T/gz" "$T/ro" 2>/dev/null && mount -o remount,bind,ro "$T/ro" 2>/dev/null; then
  MOUNTS+=("$T/ro")
  rm -rf "$FERRY_HOME/cache"
  push_json "$T/p9.json" "$T/ro:1" --to "$X" --app gzapp --force --settle 1
  [ $PUSH_RC -eq 0 ] || { cat "$T/p9.json.err"; fail "push from a read-only gzip layout"; }
  ro=" (also from a read-only mount)"
else
  ro=""
fi
pass "no verb writes into the input: layouts and archives are byte-for-byte unchanged$ro"

# --- referrer artifacts (a cosign signature tagged sha256-<hex>.sig) are skipped, not deployed
cp -a "$T/repo" "$T/withsig"
python3 - "$T/withsig" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
def put(b):
    h = hashlib.sha256(b).hexdigest(); open(os.path.join(d, "blobs/sha256", h), "wb").write(b); return h, len(b)
layer = put(b'{"critical":{"identity":{"docker-reference":"x"}}}')
cfg = put(b'{}')
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cfg[0], "size": cfg[1]},
                  "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": "sha256:" + layer[0], "size": layer[1]}]}).encode()
m = put(man)
ix = json.load(open(os.path.join(d, "index.json")))
target = ix["manifests"][0]["digest"].split(":")[1]
ix["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + m[0], "size": m[1],
                        "annotations": {"org.opencontainers.image.ref.name": "sha256-%s.sig" % target}})
json.dump(ix, open(os.path.join(d, "index.json"), "w"))
PY
"$FERRY" inspect "$T/withsig" > "$T/iw.out" || { cat "$T/iw.out"; fail "inspect with a signature artifact"; }
[ "$(grep -c '^  Platform:' "$T/iw.out")" = 2 ] || { cat "$T/iw.out"; fail "inspect lists the artifact as an image"; }
"$FERRY" test "$T/withsig" --platform linux/amd64 -- /app --once > "$T/tw.out" 2>&1 || { cat "$T/tw.out"; fail "test with a signature artifact"; }
pass "inspect and test skip a cosign signature artifact beside the image (as push does)"

# --- hostile and wrong inputs: a clear error each, the node as it was, no partial in the cache
before=$(apps_of "$X")
mkfifo "$T/fifo.tar"
expect_fail "not a regular file" timeout 20 "$FERRY" push --identity "$T/me" "oci-archive:$T/fifo.tar" --to "$X"
head -c 100000 "$T/site.tar" > "$T/cut.tar"
expect_fail "not a complete tar archive" "$FERRY" push --identity "$T/me" "oci-archive:$T/cut.tar" --to "$X"
expect_fail "no oci-layout" "$FERRY" inspect "oci-archive:$T/hello-svc.tar"
expect_fail "no manifest.json: not a docker-archive" "$FERRY" inspect "docker-archive:$T/site.tar"
# a blob whose bytes are not what its name says
mkdir -p "$T/evil" && tar -C "$T/evil" -xf "$T/site.tar"
victim=$(cd "$T/evil/blobs/sha256" && ls -S | head -1)
printf 'tampered' | dd of="$T/evil/blobs/sha256/$victim" bs=1 seek=1000 conv=notrunc 2>/dev/null
tar -C "$T/evil" -cf "$T/evil.tar" oci-layout index.json blobs
rm -rf "$FERRY_HOME/cache"
expect_fail "blob sha256:$victim does not match its digest" "$FERRY" push --identity "$T/me" "oci-archive:$T/evil.tar" --to "$X"
[ ! -e "$FERRY_HOME/cache/blobs/sha256/$victim" ] || fail "the tampered blob was kept in the cache"
[ -z "$(find "$FERRY_HOME/cache" -name '.sink-*')" ] || fail "a temporary was left in the cache"
# two images in one docker-archive
skopeo copy -q "oci:$T/gz:1" "docker-archive:$T/two.tar:example.com/a:1"
python3 - "$T/two.tar" "$T/twoimg.tar" <<'PY'
import io, json, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t, tarfile.open(dst, "w") as o:
    for m in t.getmembers():
        data = t.extractfile(m).read() if m.isfile() else None
        if m.name == "manifest.json":
            man = json.loads(data); man.append(dict(man[0], RepoTags=["example.com/b:1"])); data = json.dumps(man).encode(); m.size = len(data)
        o.addfile(m, io.BytesIO(data) if data is not None else None)
PY
expect_fail "lists several images" "$FERRY" push --identity "$T/me" "docker-archive:$T/twoimg.tar" --to "$X"
expect_fail "choose one as" "$FERRY" push --identity "$T/me" "oci:$T/multi" --to "$X"
expect_fail "no image tagged 'nope'.*1.0.1, 1.0.2" "$FERRY" push --identity "$T/me" "oci:$T/multi:nope" --to "$X"
expect_fail "skopeo copy --all containers-storage:" "$FERRY" inspect "containers-storage:localhost/x:1"
expect_fail "a file, not an OCI image layout; an archive is named oci-archive:" "$FERRY" inspect "$T/site.tar"
"$FERRY" key gen --out "$T/keys" > /dev/null
expect_fail "only an OCI layout can be signed in place" "$FERRY" sign "oci-archive:$T/site.tar" --key "$T/keys/release.key" --version 1
[ "$(apps_of "$X")" = "$before" ] || fail "a refused input changed the node"
pass "a FIFO, a cut archive, the wrong archive kind, a tampered blob, two images in a docker-archive, a missing REF, other transports: each refused with its reason, the node untouched"

finish
