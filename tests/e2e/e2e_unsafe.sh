#!/usr/bin/env bash
# Every bad input of the deploy issue, through the real pusher (or a misbehaving peer where
# ferry itself would refuse earlier): the previous release keeps running, nothing is written
# outside state_dir, and the pusher shows the device's error.
source "$(dirname "$0")/lib.sh"
setup_fleet
build_apps "$T/app"
mkdir -p "$T/outside"
echo keep > "$T/outside/file"
start_agent node $'limits:\n  max_release_bytes: 4MiB\n  zstd_window_log_max: 21'
N="node@127.0.0.1:$PORT_node"
$MKIMAGE "$T/good" --ref v1 --variant linux/amd64="$T/app/x64" --env VERSION=good > /dev/null
push_json "$T/good.json" "$T/good:v1" --to "$N" --app hello --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/good.json.err"; fail "good release"; }
GOOD=$(json_get "$T/good.json" "d['nodes'][0]['release']")

# Hostile layers, made with Python's tarfile (not ferry's code).
python3 - "$T" <<'PY'
import io, os, sys, tarfile
T = sys.argv[1]
def mk(name, entries):
    with tarfile.open(os.path.join(T, name + ".tar"), "w", format=tarfile.GNU_FORMAT) as t:
        for e in entries:
            info = tarfile.TarInfo(e[0]); info.type = e[1]; data = e[3] if len(e) > 3 else b""
            if e[2]: info.linkname = e[2]
            info.size = len(data) if e[1] == tarfile.REGTYPE else 0
            if e[1] in (tarfile.CHRTYPE, tarfile.BLKTYPE): info.devmajor, info.devminor = 8, 0
            t.addfile(info, io.BytesIO(data))
R, S, L, D = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE
mk("dotdot", [("../../../../../../../../%s/outside/pwned" % T.lstrip("/"), R, None, b"x")])
mk("absolute", [(T + "/outside/pwned", R, None, b"x")])
mk("symlink-write", [("evil", S, T + "/outside"), ("evil/pwned", R, None, b"x")])
mk("symlink-climb", [("a/evil", S, "../../../../../../../../../.." + T + "/outside")])
mk("hardlink-out", [("evil", L, "../../../../../../../../" + T.lstrip("/") + "/outside/file")])
mk("device", [("dev/sda", tarfile.BLKTYPE, None)])
mk("merged-usr", [("usr/lib", D, None), ("lib", S, "usr/lib"), ("lib/x.so", R, None, b"so")])
mk("symlink-loop", [("a", S, "b"), ("b", S, "a"), ("a/pwned", R, None, b"x")])
mk("whiteout-climb", [("../../../../../../../../" + T.lstrip("/") + "/outside/.wh.file", R, None, b"")])
F = tarfile.FIFOTYPE
mk("fifo-app", [("app", F, None)])
mk("fifo-passwd", [("etc", D, None), ("etc/passwd", F, None)])
mk("zero-app", [("app", S, "/dev/zero")])
mk("hardlink-symlink", [("a/b/c", D, None), ("a/b/c/inside", S, "../../../etc"), ("moved", L, "a/b/c/inside")])
mk("symlink-chain", [("x/y", D, None), ("x/y/l1", S, "../../l2"), ("l2", S, "../../../../../etc"), ("etc", S, "x/y/l1")])
mk("deep", [("/".join(["d"] * 300) + "/f", R, None, b"x")])
mk("deep-ok", [("/".join(["d"] * 120) + "/f", R, None, b"x")])
mk("too-big", [("f%d" % i, R, None, bytes(1 << 20)) for i in range(5)])  # compresses small, unpacks to 5 MiB
# Bombs of bytes that are not file data (64 MiB of zeros each, a few KiB as zstd): a directory
# entry that "carries" data, and zeros after the archive's end.
def header(name, typ, size):
    h = bytearray(512)
    h[0:len(name)] = name.encode(); h[100:108] = b"0000755\0"; h[108:116] = b"0000000\0"; h[116:124] = b"0000000\0"
    h[124:136] = ("%011o" % size).encode() + b"\0"; h[136:148] = b"00000000000\0"; h[156] = ord(typ)
    h[257:265] = b"ustar\x0000"; h[148:156] = b"        "
    h[148:156] = ("%06o" % sum(h)).encode() + b"\0 "
    return bytes(h)
with open(os.path.join(T, "bomb-dir.tar"), "wb") as f:
    f.write(header("d/", "5", 64 << 20)); f.write(bytes(64 << 20)); f.write(bytes(1024))
with open(os.path.join(T, "bomb-trailing.tar"), "wb") as f:
    f.write(header("f", "0", 1)); f.write(b"x" + bytes(511)); f.write(bytes(1024)); f.write(bytes(64 << 20))
PY
# A zstd frame that needs a 2^23 window (the node allows 2^21; zstd -3 from a pipe uses 2^21).
head -c 3000000 /dev/urandom > "$T/rand.bin"
mkdir -p "$T/bigwin" && cp "$T/rand.bin" "$T/bigwin/r" && (cd "$T/bigwin" && tar cf "$T/bigwin.tar" r)
zstd -q --zstd=wlog=23 -c < "$T/bigwin.tar" > "$T/bigwin.tar.zst"

still_good() { # case-name
  "$FERRY" status --identity "$T/me" --json --to "$N" > "$T/st.json"
  local h="[a for a in d['nodes'][0]['apps'] if a['name'] == 'hello'][0]"
  [ "$(json_get "$T/st.json" "$h['release'], $h['state']")" = \
    "($(echo "$GOOD" | sed 's/^(//; s/,)$//'), 'running')" ] || { cat "$T/st.json"; fail "$1: the good release is not running"; }
  [ "$(cat "$T/outside/file")" = keep ] && [ ! -e "$T/outside/pwned" ] || fail "$1: something was written outside state_dir"
  [ -z "$(find "$T/state-node/apps/hello/releases" -maxdepth 1 -name '*.partial')" ] || fail "$1: a partial release was left"
}

expect_refused() { # case tarfile code message-part [mkimage args...]
  local name=$1 layer=$2 code=$3 msg=$4
  shift 4
  rm -rf "$T/img-$name"
  $MKIMAGE "$T/img-$name" --variant linux/amd64="$T/app/x64,$layer" "$@" > /dev/null
  push_json "$T/$name.json" "$T/img-$name" --to "$N" --app hello --settle 1
  [ $PUSH_RC -eq 1 ] || fail "$name: push exit $PUSH_RC"
  [ "$(json_get "$T/$name.json" "d['nodes'][0]['result'], d['nodes'][0]['code']")" = "('failed', '$code')" ] \
    || { cat "$T/$name.json"; fail "$name: result"; }
  json_get "$T/$name.json" "d['nodes'][0]['error']" | grep -q -- "$msg" || { cat "$T/$name.json"; fail "$name: message"; }
  still_good "$name"
  pass "$name: refused ($code: $msg), the previous release keeps running, nothing written outside"
}

expect_refused dotdot "$T/dotdot.tar" EUNSAFE "'..' component"
expect_refused absolute "$T/absolute.tar" EUNSAFE "absolute name"
# Contained rather than refused, as containerd does it: deployed as another app, everything
# lands inside that release's root and nothing outside.
expect_contained() { # case tarfile check-inside-rootfs
  local name=$1 layer=$2 check=$3 root
  rm -rf "$T/img-$name"
  $MKIMAGE "$T/img-$name" --variant linux/amd64="$T/app/x64,$layer" > /dev/null
  push_json "$T/$name.json" "$T/img-$name" --to "$N" --app "c-$name" --settle 1
  [ $PUSH_RC -eq 0 ] || { cat "$T/$name.json" "$T/$name.json.err"; fail "$name: push exit $PUSH_RC"; }
  root=$T/state-node/apps/c-$name/current/rootfs
  ( cd "$root" && eval "$check" ) || { find "$root" -maxdepth 6 | head -30; fail "$name: not where it belongs inside the root"; }
  still_good "$name"
  pass "$name: contained inside the release root ($check), the previous release keeps running, nothing written outside"
}
expect_contained symlink-write "$T/symlink-write.tar" 'test -f ".$T/outside/pwned" && test -L evil'
expect_contained symlink-climb "$T/symlink-climb.tar" '[ "$(readlink a/evil)" = "../../../../../../../../../..$T/outside" ]'
expect_contained merged-usr "$T/merged-usr.tar" 'test -f usr/lib/x.so && test -L lib'
expect_contained device "$T/device.tar" '! test -e dev/sda'
grep -q "app c-device: 1 device node(s) in the layers skipped" "$T/node.log" || fail "the skipped device node is not in the log"
expect_refused hardlink-out "$T/hardlink-out.tar" EUNSAFE "'..' component"
expect_refused symlink-loop "$T/symlink-loop.tar" EUNSAFE "symlinks loop"
expect_refused whiteout-climb "$T/whiteout-climb.tar" EUNSAFE "'..' component"
expect_refused zstd-window "$T/bigwin.tar.zst" ETOOBIG "window over 2^21"
# Files ferryd reads in a new release before it stops the old one: a FIFO, a FIFO where
# /etc/passwd should be, a link to /dev/zero. None may hang it; the old release keeps running.
expect_refused fifo-app "$T/fifo-app.tar" EEXEC "cannot execute /app: not a regular file (the running release was not stopped)"
expect_refused fifo-passwd "$T/fifo-passwd.tar" EEXEC "cannot read the image's /etc/passwd: not a regular file" --user svc
expect_refused zero-app "$T/zero-app.tar" EEXEC "cannot execute /app: No such file or directory"
kill -9 "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
start_agent node $'limits:\n  max_release_bytes: 4MiB\n  zstd_window_log_max: 21'
N="node@127.0.0.1:$PORT_node"
wait_log "$T/node.log" "info ready: [0-9]* app(s) recovered"
still_good kill-9-restart
[ "$(json_get "$T/st.json" "d['nodes'][0]['recovering']")" = "(False,)" ] || { cat "$T/st.json"; fail "status should say recovering: false once ready"; }
pass "after a kill -9 the node listens first, recovers its app ('ready'), and the good release runs"
expect_refused hardlink-symlink "$T/hardlink-symlink.tar" EUNSAFE "hardlink to a symlink"
# A chain of in-root links that together climb, as /etc: the User lookup resolves it inside the
# root (a loop here), never reaching the host's /etc/passwd (which lists root).
expect_refused symlink-chain "$T/symlink-chain.tar" EEXEC "cannot read the image's /etc/passwd" --user root
for i in 1 2 3; do expect_refused deep "$T/deep.tar" ETOOBIG "levels deep"; done
# As deep as a layer may go (120 levels): deployed, then replaced twice; the GC removes it all.
for i in 1 2 3; do
  rm -rf "$T/img-deep-ok" && $MKIMAGE "$T/img-deep-ok" --variant linux/amd64="$T/app/x64,$T/deep-ok.tar" --env VERSION=deep$i > /dev/null
  push_json "$T/deep-ok$i.json" "$T/img-deep-ok" --to "$N" --app deep --settle 1
  [ $PUSH_RC -eq 0 ] || { cat "$T/deep-ok$i.json"; fail "a 120-level release, push $i"; }
done
[ "$(find "$T/state-node/apps/deep/releases" -mindepth 1 -maxdepth 1 | wc -l)" -eq 2 ] || { ls "$T/state-node/apps/deep/releases"; fail "deep releases left behind"; }
pass "300 levels are refused three times and leave nothing; 120-level releases are removed again by the GC (current and previous kept)"
expect_refused bomb-dir "$T/bomb-dir.tar" EPROTO "only files carry data"
expect_refused bomb-trailing "$T/bomb-trailing.tar" EPROTO "after the end of the archive"
expect_refused too-big "$T/too-big.tar" ETOOBIG "past limits.max_release_bytes"

# A blob whose bytes do not match its digest: flip one byte of a layer in the layout.
rm -rf "$T/corrupt" && $MKIMAGE "$T/corrupt" --variant linux/amd64="$T/app/x64,$T/bigwin" --compress none > /dev/null
big=$(ls -S "$T/corrupt/blobs/sha256" | head -1)
printf 'X' | dd of="$T/corrupt/blobs/sha256/$big" bs=1 seek=100 conv=notrunc 2>/dev/null
push_json "$T/corrupt.json" "$T/corrupt" --to "$N" --app hello --settle 1
[ $PUSH_RC -eq 1 ] && json_get "$T/corrupt.json" "d['nodes'][0]['code'], d['nodes'][0]['error']" | grep -q "EDIGEST.*do not match the digest" \
  || { cat "$T/corrupt.json"; fail "corrupt blob"; }
[ ! -e "$T/state-node/blobs/sha256/$big" ] && [ ! -e "$T/state-node/blobs/sha256/$big.partial" ] || fail "corrupt blob kept"
still_good corrupt-blob
pass "a blob whose bytes do not match its digest is refused and discarded"

# A manifest whose digest does not match (ferry checks it too, so a raw peer sends it).
python3 "$FERRY_SRC/tests/tools/rawpeer.py" "$T/me" "127.0.0.1:$PORT_node" bad-manifest-digest "$T/good" v1 linux/amd64 hello > "$T/raw.out"
grep -q '"name": "EDIGEST"' "$T/raw.out" && grep -q 'manifest digest mismatch' "$T/raw.out" || { cat "$T/raw.out"; fail "manifest digest"; }
still_good manifest-digest
pass "a manifest whose digest does not match is refused"

# A connection dropped mid-blob, then a resumed push that completes.
head -c 3000000 /dev/urandom > "$T/bigwin/r"
rm -rf "$T/resume" && $MKIMAGE "$T/resume" --ref v1 --variant linux/amd64="$T/app/x64,$T/bigwin" --compress none --env VERSION=resumed > /dev/null
python3 "$FERRY_SRC/tests/tools/rawpeer.py" "$T/me" "127.0.0.1:$PORT_node" cut-blob "$T/resume" v1 linux/amd64 hello 1000000 > "$T/cut.out"
grep -q '"sent": 1000000' "$T/cut.out" || { cat "$T/cut.out"; fail "cut"; }
wait_log "$T/node.log" "pusher went away during the transfer"
first_size=$(python3 -c "import json;l=[json.loads(x) for x in open('$T/cut.out')];print(l[1]['body']['need'][0]['size'])")
total=$(python3 -c "import json;l=[json.loads(x) for x in open('$T/cut.out')];print(sum(n['size'] for n in l[1]['body']['need']))")
push_json "$T/resume.json" "$T/resume:v1" --to "$N" --app hello --settle 1
[ $PUSH_RC -eq 0 ] || { cat "$T/resume.json" "$T/resume.json.err"; fail "resumed push"; }
[ "$(json_get "$T/resume.json" "d['nodes'][0]['bytes_sent']")" = "($((total - 1000000)),)" ] \
  || { cat "$T/resume.json"; fail "the resumed push should send $((total - 1000000)) bytes"; }
wait_version "$N" hello resumed || fail "resumed release not running"
pass "a connection dropped mid-blob loses nothing: the next push resumes from byte 1000000 and completes"
finish
