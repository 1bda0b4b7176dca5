#!/usr/bin/env bash
# ferryd --import, as a user at a site without network runs it: `ferry bundle` on the laptop, the
# file carried over, `ferryd --config … --import site.tar` on the device while its ferryd runs. The
# running agent checks the bundle as it checks a push (require_signature, trust keys, no
# downgrade, digests). Each refusal shows its reason and leaves the node as it was: the same
# release running, no new release written. A host ferryd and an arm64 ferryd under qemu-aarch64.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)
setup_fleet
build_apps "$T/app"
IMG=$T/img
for v in 1 2 3; do
  mkdir -p "$T/d$v" && echo "data v$v" > "$T/d$v/data.txt"
  $MKIMAGE "$IMG" --ref v$v --variant linux/amd64="$T/app/x64,$T/d$v" --variant linux/arm64="$T/app/a64,$T/d$v" \
    --env VERSION=$v > /dev/null
done
"$FERRY" key gen --out "$T/keys" > /dev/null
for v in 1 2; do "$FERRY" sign "$IMG:v$v" --key "$T/keys/release.key" --app hello --version $v > /dev/null; done
for v in 1 2 3; do "$FERRY" bundle "$IMG:v$v" -o "$T/site$v.tar" > /dev/null 2>&1; done
"$FERRY" bundle "$IMG:v2" -o "$T/a64only.tar" --platform linux/arm64 > /dev/null 2>&1

TRUST=$'trust:\n  keys: ['"$T"$'/keys/release.pub]\n  require_signature: true\n  allow_downgrade: false'
start_agent dev "$TRUST"
X=127.0.0.1:$PORT_dev
releases() { ls "$T/state-$1/apps/hello/releases" 2>/dev/null | wc -l; }

# import NAME FILE [ARGS...]: runs ferryd --import against NAME's config; status in IMPORT_RC.
import() {
  local name=$1 file=$2 bin=$FERRYD launcher=(); shift 2
  [ "$name" = pi ] && { bin=$A64; launcher=(qemu-aarch64); }
  set +e
  timeout 300 "${launcher[@]}" "$bin" --config "$T/$name.yaml" --import "$file" "$@" > "$T/import.out" 2> "$T/import.err"
  IMPORT_RC=$?
  set -e
}

# --- a signed bundle installs, then is unchanged, then v2 upgrades it
import dev "$T/site1.tar"
[ $IMPORT_RC -eq 0 ] && grep -q '^hello: deployed release ' "$T/import.out" || { cat "$T/import.out" "$T/import.err"; fail "import of a signed bundle"; }
grep -q 'site1.tar:hello:v1 -> app hello (signed)' "$T/import.err" || { cat "$T/import.err"; fail "import names the image, the app and the signature"; }
wait_version "$X" hello 1 || fail "v1 is not running after the import"
"$FERRY" status --identity "$T/me" --to "$X" > "$T/st.out"
grep -q 'hello' "$T/st.out" || { cat "$T/st.out"; fail "status does not list the imported app"; }
import dev "$T/site1.tar:hello:v1"
[ $IMPORT_RC -eq 0 ] && grep -q '^hello: unchanged release ' "$T/import.out" || { cat "$T/import.out" "$T/import.err"; fail "a second import of the same bundle (FILE:REF)"; }
import dev "oci-archive:$T/site2.tar:hello:v2"
[ $IMPORT_RC -eq 0 ] && grep -q '^hello: deployed release ' "$T/import.out" || { cat "$T/import.out" "$T/import.err"; fail "import of v2"; }
wait_version "$X" hello 2 || fail "v2 is not running after its import"
grep -q 'local (pid [0-9]*, uid 0)' "$T/dev.log" || fail "the agent's log does not name the local peer"
pass "ferryd --import: a signed bundle installs (app name from the signature), the same bundle again (FILE:REF) is unchanged, v2 upgrades it (oci-archive:FILE:REF); ferry status shows it"

# --- refusals: each leaves v2 running and no new release
n=$(releases dev)
refused() { # WHAT PATTERN FILE [ARGS...]
  local what=$1 pat=$2; shift 2
  import dev "$@"
  [ $IMPORT_RC -ne 0 ] || fail "$what: the import succeeded"
  grep -q -- "$pat" "$T/import.err" || { cat "$T/import.out" "$T/import.err"; fail "$what: no '$pat' in the error"; }
  [ "$(releases dev)" = "$n" ] || fail "$what: a release was written"
  runs_version "$X" hello 2 || fail "$what: v2 no longer runs"
}
refused "a downgrade" 'lower than' "$T/site1.tar"
refused "an unsigned bundle" 'not signed and trust.require_signature is on' "$T/site3.tar" --app hello
python3 - "$T/site2.tar" "$T/badjson.tar" <<'PY'
import sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
data = bytearray(open(src, "rb").read())
with tarfile.open(src) as t:
    m = next(m for m in t.getmembers() if m.name.startswith("blobs/") and data[m.offset_data:m.offset_data + 1] == b"{")
    data[m.offset_data + m.size - 2] ^= 0x01
open(dst, "wb").write(data)
PY
refused "a bundle with a manifest or config tampered with" 'does not match its digest: the bundle is damaged' "$T/badjson.tar"
refused "a bundle for another platform" 'no variant for this node' "$T/a64only.tar"
head -c 3000 "$T/site2.tar" > "$T/cut.tar"
refused "a bundle cut short" 'not a complete tar archive' "$T/cut.tar"
mkfifo "$T/fifo.tar"
refused "a FIFO instead of a file" 'not a regular file' "$T/fifo.tar"
refused "a registry name" 'takes a bundle file' "docker://127.0.0.1:1/x:1"
refused "an app name ferryd refuses" 'app' "$T/site2.tar" --app 'Bad/Name'
pass "refused, with the reason, and v2 still running with no release written: a downgrade, unsigned, a tampered manifest or config, another platform, a cut file, a FIFO, a registry name, a bad --app"

# --- only root (or the agent's own user) may use the local socket
mkdir -p "$T/pub" && cp "$T/dev.yaml" "$T/site2.tar" "$T/pub/" && chmod 711 "$T" && chmod -R a+rX "$T/pub"
set +e
setpriv --reuid=65534 --regid=65534 --clear-groups "$FERRYD" --config "$T/pub/dev.yaml" --import "$T/pub/site2.tar" > "$T/import.out" 2> "$T/import.err"
rc=$?
set -e
[ $rc -ne 0 ] && grep -q 'run ferryd --import as root' "$T/import.err" || { cat "$T/import.err"; fail "an unprivileged user's import"; }
runs_version "$X" hello 2 || fail "v2 no longer runs after an unprivileged import"
chmod 700 "$T"
pass "an unprivileged user cannot import (the socket is root's), and is told to run it as root"

# --- no ferryd running
mkdir -p "$T/state-idle"
sed "s|$T/state-dev|$T/state-idle|" "$T/dev.yaml" > "$T/idle.yaml"
import idle "$T/site2.tar"
[ $IMPORT_RC -ne 0 ] && grep -q 'ferryd is not running' "$T/import.err" || { cat "$T/import.err"; fail "import without a running ferryd"; }
pass "without a running ferryd, --import says so"
# --- a partial layer left on the node with wrong bytes (a transfer cut off with other bytes):
#     refused by its digest, discarded, and sent again from the start
start_agent dev2 ""
layer=$(python3 - "$T/site2.tar" <<'PY'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":")[1]).read()
ix = json.loads(t.extractfile("index.json").read())
top = next(m for m in ix["manifests"] if not m.get("annotations", {}).get("org.opencontainers.image.ref.name", "").startswith("sha256-"))
sub = json.loads(blob(top["digest"]))
m = next(x for x in sub["manifests"] if x["platform"]["architecture"] == "amd64")
man = json.loads(blob(m["digest"]))
print(max(man["layers"], key=lambda l: l["size"])["digest"].split(":")[1])
PY
)
mkdir -p "$T/state-dev2/blobs/sha256"
head -c 4096 /dev/urandom > "$T/state-dev2/blobs/sha256/$layer.partial"
import dev2 "$T/site2.tar"
[ $IMPORT_RC -eq 0 ] && grep -q '^hello: deployed release ' "$T/import.out" && grep -q 'sending it again from the start' "$T/import.err" ||
  { cat "$T/import.out" "$T/import.err"; fail "an import over a bad partial layer"; }
pass "a partial layer on the node with wrong bytes: the digest refuses it, the import sends the layer again from the start and installs"


# --- the arm64 agent under qemu, importing with its own (arm64) binary
FERRYD_BIN=$A64 start_agent pi "$TRUST"$'\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
# every layer of the bundle tampered with (JSON left intact): the agent finds it as the bytes come
python3 - "$T/site2.tar" "$T/tampered.tar" <<'PY'
import sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
data = bytearray(open(src, "rb").read())
with tarfile.open(src) as t:
    for m in t.getmembers():
        if m.name.startswith("blobs/") and m.size > 1000 and data[m.offset_data:m.offset_data + 1] != b"{":
            data[m.offset_data + m.size // 2] ^= 0xFF
open(dst, "wb").write(data)
PY
import pi "$T/tampered.tar"
[ $IMPORT_RC -ne 0 ] && grep -q 'do not match the digest' "$T/import.err" || { cat "$T/import.out" "$T/import.err"; fail "a tampered layer on the arm64 agent"; }
[ ! -e "$T/state-pi/apps/hello/current" ] || fail "a tampered bundle left a current release"
for b in "$T/state-pi/blobs/sha256/"*; do
  case $b in *.partial|*'*') continue ;; esac
  [ "$(sha256sum < "$b" | cut -d' ' -f1)" = "$(basename "$b")" ] || fail "a blob that does not match its name was stored: $b"
done
import pi "$T/site2.tar"
[ $IMPORT_RC -eq 0 ] && grep -q '^hello: deployed release ' "$T/import.out" || { cat "$T/import.out" "$T/import.err"; fail "import on the arm64 agent"; }
wait_version "127.0.0.1:$PORT_pi" hello 2 || fail "v2 is not running on the arm64 agent"
import pi "$T/a64only.tar"
[ $IMPORT_RC -eq 0 ] && grep -q '^hello: unchanged release ' "$T/import.out" || { cat "$T/import.out" "$T/import.err"; fail "the arm64-only bundle on the arm64 agent"; }
pass "the arm64 ferryd under qemu refuses a bundle whose layers were tampered with (nothing stored, nothing running), imports the good one's arm64 variant, and the arm64-only bundle is the same release"
finish
