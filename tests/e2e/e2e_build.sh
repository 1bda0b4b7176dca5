#!/usr/bin/env bash
# Build and field-test, as a user would: `ferry build` of examples/hello-svc for three platforms
# (reproducible), read by skopeo (a client nobody here wrote); `ferry test` under qemu-user;
# `ferry inspect`; a push of the built image; board-tuned variants; buildah's multi-arch output
# recompressed by skopeo accepted by inspect, test and push; and each bad input with its error.
source "$(dirname "$0")/lib.sh"
command -v skopeo >/dev/null || fail "skopeo not installed (scripts/setup.sh)"
setup_fleet
cp -r "$FERRY_SRC/examples/hello-svc" "$T/src"
rm -rf "$T/src/.ferry-build"

"$FERRY" build -f "$T/src/ferry.yaml" -o "$T/img" > "$T/b1.out" 2>&1 || { cat "$T/b1.out"; fail "build"; }
grep -q '^\[linux/arm64\] DONE' "$T/b1.out" && grep -q '^\[linux/arm/v7\] DONE' "$T/b1.out" || { cat "$T/b1.out"; fail "progress lines"; }
D1=$(grep -o 'index sha256:[0-9a-f]*' "$T/b1.out")
rm -rf "$T/src/.ferry-build"
"$FERRY" build -f "$T/src/ferry.yaml" -o "$T/img2" > "$T/b2.out" 2>&1 || fail "second build"
D2=$(grep -o 'index sha256:[0-9a-f]*' "$T/b2.out")
[ -n "$D1" ] && [ "$D1" = "$D2" ] || fail "two builds of the same source differ: $D1 vs $D2"
pass "ferry build makes linux/amd64, linux/arm64, linux/arm/v7; two builds give identical digests ($D1)"

skopeo inspect --raw "oci:$T/img:1.0.0" > "$T/raw.json" || fail "skopeo inspect"
[ "$(json_get "$T/raw.json" "sorted(m['platform']['architecture'] + m['platform'].get('variant', '') for m in d['manifests'])")" = \
  "(['amd64', 'arm64', 'armv7'],)" ] || { cat "$T/raw.json"; fail "skopeo sees other platforms"; }
skopeo copy -q --all "oci:$T/img:1.0.0" "oci:$T/copy:1.0.0" || fail "skopeo copy --all"
pass "skopeo inspect --raw and skopeo copy --all accept what ferry build writes"

"$FERRY" test "$T/img:1.0.0" > "$T/t.out" 2>&1 || { cat "$T/t.out"; fail "ferry test"; }
grep -q 'self-test ok on aarch64' "$T/t.out" && grep -q 'self-test ok on armv7l' "$T/t.out" && grep -q 'self-test ok on x86_64' "$T/t.out" \
  || { cat "$T/t.out"; fail "test output"; }
"$FERRY" test "$T/img:1.0.0" --json --platform arm64 > "$T/t.json"
[ "$(json_get "$T/t.json" "[(v['platform'], v['result'], v['runner']) for v in d['variants']]")" = "([('linux/arm64', 'pass', 'qemu-aarch64')],)" ] \
  || { cat "$T/t.json"; fail "ferry test --json --platform arm64 (aarch64 naming)"; }
pass "ferry test runs each variant: natively, and under qemu-aarch64 / qemu-arm without root or binfmt_misc"

"$FERRY" inspect "$T/img:1.0.0" --json > "$T/i.json"
[ "$(json_get "$T/i.json" "[(m['platform'], m['config']['entrypoint'], len(m['layers'])) for m in d['manifests']]")" = \
  "([('linux/amd64', ['/app/hello-svc'], 1), ('linux/arm64', ['/app/hello-svc'], 1), ('linux/arm/v7', ['/app/hello-svc'], 1)],)" ] \
  || { cat "$T/i.json"; fail "inspect"; }
pass "ferry inspect shows each platform, its layers and its entrypoint"

start_agent node ''
push_json "$T/p.json" "$T/img:1.0.0" --to "node@127.0.0.1:$PORT_node" --settle 1
[ $PUSH_RC -eq 0 ] && [ "$(json_get "$T/p.json" "d['nodes'][0]['app'], d['nodes'][0]['result']")" = "('hello-svc', 'deployed')" ] \
  || { cat "$T/p.json" "$T/p.json.err"; fail "push of the built image"; }
pass "the built image deploys (app name from the image title)"

# Board-tuned variants, expressed as containerd understands them.
cat >> "$T/src/ferry.yaml" <<'YAML'
boards: [rpi4, graviton3]
YAML
"$FERRY" build -f "$T/src/ferry.yaml" -o "$T/boards" --platform linux/arm64 > "$T/bb.out" 2>&1 || { cat "$T/bb.out"; fail "board build"; }
grep -q 'configure: cmake, aarch64-linux-gnu, -mcpu=neoverse-v1' "$T/bb.out" || { cat "$T/bb.out"; fail "-mcpu from the board"; }
"$FERRY" inspect "$T/boards:1.0.0" --json > "$T/bi.json"
[ "$(json_get "$T/boards/index.json" "0")" = "(0,)" ]
[ "$(json_get "$T/bi.json" "[(m['platform'], m.get('board')) for m in d['manifests']]")" = \
  "([('linux/arm64', None), ('linux/arm64', 'rpi4'), ('linux/arm64/v8.4', 'graviton3')],)" ] || { cat "$T/bi.json"; fail "board variants"; }
"$FERRY" test "$T/boards:1.0.0" > "$T/bt.out" 2>&1 || { cat "$T/bt.out"; fail "board test"; }
grep -q 'qemu-aarch64 -cpu cortex-a72' "$T/bt.out" && grep -q 'qemu-aarch64 -cpu max' "$T/bt.out" || { cat "$T/bt.out"; fail "-cpu from the board in ferry test"; }
pass "boards: [rpi4, graviton3] build with -mcpu, index as linux/arm64 and linux/arm64/v8.4, test under qemu -cpu"

# An emulated rpi4 gets the rpi4-tuned variant; a generic arm64 node the generic one.
A64=$(cross_bin aarch64 ferryd)
FERRYD_BIN=$A64 start_agent pi4 $'board: rpi4\nruntime:\n  exec_wrapper: [qemu-aarch64, -cpu, cortex-a72, -L, "{rootfs}"]' qemu-aarch64 -cpu cortex-a72
FERRYD_BIN=$A64 start_agent arm $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
push_json "$T/pb.json" "$T/boards:1.0.0" --to "pi4@127.0.0.1:$PORT_pi4" --to "arm@127.0.0.1:$PORT_arm" --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/pb.json" "$T/pb.json.err"; fail "push of board variants"; }
RPI4=$(json_get "$T/bi.json" "d['manifests'][1]['digest'][:19]" | sed "s/^('//; s/',)$//")
GEN=$(json_get "$T/bi.json" "d['manifests'][0]['digest'][:19]" | sed "s/^('//; s/',)$//")
grep -q "manifest $RPI4" "$T/pi4.log" && grep -q "manifest $GEN" "$T/arm.log" || { grep manifest "$T/pi4.log" "$T/arm.log"; fail "board preference"; }
pass "a node reporting board rpi4 receives the rpi4-tuned variant, a generic arm64 node the generic one"

# A recipe's affinity travels in the image and steers a push: only the rpi4 qualifies.
cat >> "$T/src/ferry.yaml" <<'YAML'
affinity:
  required: ["ferry.dev/board in (rpi4, rpi5)"]
YAML
"$FERRY" build -f "$T/src/ferry.yaml" -o "$T/aff" --platform linux/arm64 > "$T/ba.out" 2>&1 || { cat "$T/ba.out"; fail "affinity build"; }
"$FERRY" plan "$T/aff:1.0.0" --identity "$T/me" --to "pi4@127.0.0.1:$PORT_pi4" --to "arm@127.0.0.1:$PORT_arm" --json > "$T/pa.json" 2> "$T/pa.err" \
  || { cat "$T/pa.err"; fail "plan with the recipe's affinity"; }
[ "$(json_get "$T/pa.json" "[(n['name'], n['action'], n['reason']) for n in d['nodes']]")" = \
  "([('pi4', 'deploy', 'exact platform match; tuned for its board rpi4'), ('arm', 'skip', \"didn't match node affinity\")],)" ] \
  || { cat "$T/pa.json"; fail "recipe affinity"; }
pass "a recipe's affinity (carried as dev.ferry.affinity) keeps the push to the rpi4"

# buildah's multi-arch output, recompressed to zstd by skopeo.
if command -v buildah >/dev/null; then
  mkdir -p "$T/bah"
  build_apps "$T/apps"
  cp "$T/apps/x64/app" "$T/bah/app-amd64"; cp "$T/apps/a64/app" "$T/bah/app-arm64"
  printf 'FROM scratch\nARG TARGETARCH\nCOPY app-${TARGETARCH} /app\nENTRYPOINT ["/app"]\n' > "$T/bah/Dockerfile"
  export STORAGE_DRIVER=vfs
  tag="localhost/ferry-e2e-$$"
  ( cd "$T/bah" && buildah --storage-driver vfs build -q --isolation chroot --platform linux/amd64,linux/arm64 --manifest "$tag" . ) > "$T/bah.log" 2>&1 \
    || { cat "$T/bah.log"; fail "buildah build"; }
  buildah --storage-driver vfs manifest push -q --all "$tag" "oci:$T/bah/out:latest" >> "$T/bah.log" 2>&1 || { cat "$T/bah.log"; fail "buildah manifest push"; }
  buildah --storage-driver vfs manifest rm "$tag" > /dev/null 2>&1 || true
  skopeo copy -q --all --dest-compress-format zstd "oci:$T/bah/out:latest" "oci:$T/bahz:latest" || fail "skopeo zstd copy"
  "$FERRY" inspect "$T/bahz:latest" --json > "$T/bahi.json" || fail "inspect buildah output"
  [ "$(json_get "$T/bahi.json" "sorted(m['platform'] for m in d['manifests'])")" = "(['linux/amd64', 'linux/arm64'],)" ] || { cat "$T/bahi.json"; fail "buildah platforms"; }
  "$FERRY" test "$T/bahz:latest" -- /app --once > "$T/baht.out" 2>&1 || { cat "$T/baht.out"; fail "test buildah output"; }
  push_json "$T/bahp.json" "$T/bahz:latest" --to "node@127.0.0.1:$PORT_node" --app buildah --settle 1
  [ $PUSH_RC -eq 0 ] || { cat "$T/bahp.json" "$T/bahp.json.err"; fail "push buildah output"; }
  pass "buildah multi-arch output (+ skopeo zstd) is accepted by ferry inspect, test and push"
else
  fail "buildah not installed (scripts/setup.sh)"
fi

# --- bad input
printf 'name: x\nversion: 1\nbuild: {command: "true"}\ncolour: blue\n' > "$T/bad1.yaml"
set +e; "$FERRY" build -f "$T/bad1.yaml" -o "$T/o1" 2> "$T/e1"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "bad1.yaml:4: unknown key 'colour'" "$T/e1" || { cat "$T/e1"; fail "recipe error"; }
[ ! -e "$T/o1/index.json" ] || fail "an image was written for a bad recipe"
pass "a recipe error is reported with file and line"

# The run section's runtime keys travel in the image config as Docker and OCI tools name them.
sed 's/^run:$/run:\n  user: "1000:1000"\n  stop_signal: SIGINT\n  stop_timeout: 20s\n  capabilities: {add: [NET_ADMIN], drop: [NET_RAW]}\n  resources: {memory: 64MiB, cpus: 0.5, pids: 100}/; s/^  health: {port: 8080}$/  health: {cmd: [\/app\/hello-svc, --self-test]}/' \
  "$T/src/ferry.yaml" > "$T/src/runkeys.yaml"
"$FERRY" build -f "$T/src/runkeys.yaml" -o "$T/rk" --platform linux/amd64 > "$T/rk.out" 2>&1 || { cat "$T/src/runkeys.yaml" "$T/rk.out"; fail "build with run keys"; }
skopeo inspect --config --raw "oci:$T/rk:1.0.0" > "$T/rk.json" || fail "skopeo inspect --config --raw"
[ "$(json_get "$T/rk.json" "d['config']['User'], d['config']['StopSignal'], d['config']['Healthcheck']['Test'], d['config']['Labels']['dev.ferry.stop_timeout_ms'], json.loads(d['config']['Labels']['dev.ferry.capabilities']), json.loads(d['config']['Labels']['dev.ferry.resources'])")" = \
  "('1000:1000', 'SIGINT', ['CMD', '/app/hello-svc', '--self-test'], '20000', {'add': ['NET_ADMIN'], 'drop': ['NET_RAW']}, {'memory': 67108864, 'cpu_milli': 500, 'pids': 100})" ] \
  || { cat "$T/rk.json"; fail "the run keys in the image config"; }
pass "run.user, stop_signal, stop_timeout, capabilities, resources and an exec-form health command land in the image config (User, StopSignal, Healthcheck, labels)"
for bad in 'capabilities: {add: [CAP_FLY]}|unknown capability .CAP_FLY.' 'resources: {memory: 1KiB}|resources.memory: a size of at least 4MiB' \
           'stop_signal: SIGFOO|run.stop_signal: a signal such as SIGTERM' 'resources: {swap: 1}|unknown key .swap.'; do
  sed "s/^run:$/run:\n  ${bad%%|*}/" "$T/src/ferry.yaml" > "$T/src/badrun.yaml"
  set +e; "$FERRY" build -f "$T/src/badrun.yaml" -o "$T/obr" --platform linux/amd64 > "$T/ebr" 2>&1; rc=$?; set -e
  [ $rc -ne 0 ] && grep -q "badrun.yaml:[0-9]*: .*${bad##*|}" "$T/ebr" || { cat "$T/ebr"; fail "bad run key: ${bad%%|*}"; }
done
pass "a bad capability, memory size, stop signal or resource key is refused with the file and line"

printf 'name: x\nversion: 1\nplatforms: [linux/amd64, "linux/arm 64"]\nbuild: {command: "true"}\n' > "$T/bad2.yaml"
set +e; "$FERRY" build -f "$T/bad2.yaml" -o "$T/o2" 2> "$T/e2"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "bad2.yaml:3: 'linux/arm 64' is not a platform name" "$T/e2" || { cat "$T/e2"; fail "unknown platform"; }
set +e; "$FERRY" build -f "$T/src/ferry.yaml" -o "$T/o2" --platform sparc/x/y/z 2> "$T/e2b"; rc=$?; set -e
[ $rc -eq 2 ] && grep -q "is not a platform name" "$T/e2b" || fail "--platform bogus"
pass "an unknown platform name is refused (recipe and --platform)"

printf 'name: x\nversion: 1\nplatforms: [linux/amd64]\nbuild: {command: "echo compiling; echo error: frobnicate.c:3: syntax error >&2; exit 3"}\n' > "$T/bad3.yaml"
set +e; "$FERRY" build -f "$T/bad3.yaml" -o "$T/o3" > "$T/e3" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "the build failed (exit 3)" "$T/e3" && grep -q "| error: frobnicate.c:3: syntax error" "$T/e3" || { cat "$T/e3"; fail "failing build"; }
pass "a failing build command fails the build and its output is shown"

printf 'name: x\nversion: 1\nplatforms: [linux/arm64]\nbuild: {command: "mkdir -p $DESTDIR/bin && cp %s $DESTDIR/bin/app"}\n' "$T/apps/x64/app" > "$T/bad4.yaml"
set +e; "$FERRY" build -f "$T/bad4.yaml" -o "$T/o4" > "$T/e4" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "/bin/app is an x86-64 ELF, but the variant is linux/arm64" "$T/e4" || { cat "$T/e4"; fail "wrong-arch binary"; }
pass "a wrong-arch binary slipped into a variant fails the build, naming the file and what it is"

mkdir -p "$T/noqemu"
for t in sh rm mkdir; do ln -sf "$(command -v $t)" "$T/noqemu/$t"; done
set +e; PATH="$T/noqemu" "$FERRY" test "$T/img:1.0.0" --platform linux/arm64 > "$T/e5" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "qemu-aarch64 is not installed: apt-get install qemu-user (see 'ferry doctor')" "$T/e5" || { cat "$T/e5"; fail "missing qemu"; }
pass "a platform whose qemu-user is missing is answered with doctor's hint"

cp -r "$T/img" "$T/broken"
cfgblob=$(json_get "$T/i.json" "d['manifests'][1]['layers'][0]['digest']" | sed "s/^('sha256://; s/',)$//")
rm "$T/broken/blobs/sha256/$cfgblob"
set +e; "$FERRY" test "$T/broken:1.0.0" --platform linux/arm64 > "$T/e6" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "$cfgblob" "$T/e6" || { cat "$T/e6"; fail "missing blob (test)"; }
rm "$T/broken/blobs/sha256/$(json_get "$T/i.json" "d['manifests'][0]['config']['digest']" | sed "s/^('sha256://; s/',)$//")"
set +e; "$FERRY" inspect "$T/broken:1.0.0" > "$T/e7" 2>&1; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "is missing from the layout" "$T/e7" || { cat "$T/e7"; fail "missing blob (inspect)"; }
pass "a layout with a missing blob is refused, naming the blob"

"$FERRY" doctor --json > "$T/doc.json" || { cat "$T/doc.json"; fail "doctor reports problems on the test machine"; }
[ "$(json_get "$T/doc.json" "d['problems'], len(d['checks']) >= 7")" = "(0, True)" ] || fail "doctor json"
pass "ferry doctor checks compilers, sysroots, qemu-user and binfmt_misc per platform"
finish
