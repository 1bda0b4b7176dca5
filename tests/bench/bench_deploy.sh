#!/usr/bin/env bash
# Deploy figures for docs/figures.md (prints, asserts nothing):
#  - full deploy of a two-layer image, 256 MiB uncompressed (half text-like, half incompressible)
#    to a fresh host ferryd on loopback, against the baseline the issue names: OpenSSH on
#    loopback carrying the same compressed layers through sha256sum and zstd -d | tar -x;
#  - ferryd's peak RSS during that deploy;
#  - a redeploy after one small layer changed (bytes sent against the first deploy);
#  - the arm64 ferryd's throughput under qemu-aarch64.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=${FERRY_BIN:-$SRC/build/host/bin} FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
MIB=${BENCH_MIB:-256}
setup_fleet
build_apps "$T/app"

echo "== making a $MIB MiB image (half text-like, half incompressible) + one small layer"
mkdir -p "$T/text" "$T/rand" "$T/small1" "$T/small2"
python3 - "$T/text/words.txt" $((MIB / 2)) <<'PY'
import random, sys
random.seed(7)
words = [("".join(random.choice("etaoinshrdlucmfwypvbgkjqxz") for _ in range(random.randint(2, 9)))) for _ in range(5000)]
target = int(sys.argv[2]) << 20
with open(sys.argv[1], "w") as f:
    n = 0
    while n < target:
        line = " ".join(random.choice(words) for _ in range(12)) + "\n"
        f.write(line); n += len(line)
PY
head -c $((MIB / 2 * 1048576)) /dev/urandom > "$T/rand/blob.bin"
echo "small v1" > "$T/small1/version.txt"
echo "small v2" > "$T/small2/version.txt"
$MKIMAGE "$T/img" --ref v1 --variant linux/amd64="$T/text,$T/rand,$T/app/x64,$T/small1" > /dev/null
$MKIMAGE "$T/img" --ref v2 --variant linux/amd64="$T/text,$T/rand,$T/app/x64,$T/small2" > /dev/null
LAYERS=$(python3 - "$T/img" <<'PY'
import json, sys, os
d = sys.argv[1]
ix = json.load(open(d + "/index.json"))
v1 = [m for m in ix["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "v1"][0]
nested = json.load(open(d + "/blobs/sha256/" + v1["digest"][7:]))
man = json.load(open(d + "/blobs/sha256/" + nested["manifests"][0]["digest"][7:]))
print(" ".join(d + "/blobs/sha256/" + l["digest"][7:] for l in man["layers"]))
PY
)
COMPRESSED=$(du -cb $LAYERS | tail -1 | cut -f1)
echo "compressed layers: $COMPRESSED bytes"

start_agent bench ''
PID=${PIDS[-1]}
secs() { python3 -c "import time; print(time.time())"; }
t0=$(secs)
"$FERRY" push --identity "$T/me" --json "$T/img:v1" --to "127.0.0.1:$PORT_bench" --app bench --settle 0 > "$T/p1.json"
t1=$(secs)
FERRY_S=$(python3 -c "print(round($t1 - $t0, 2))")
HWM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
SENT1=$(json_get "$T/p1.json" "d['nodes'][0]['bytes_sent']" | tr -dc 0-9)

echo "== the OpenSSH baseline"
mkdir -p "$T/ssh" "$T/sshdest" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host" && ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/user"
cp "$T/ssh/user.pub" "$T/ssh/authorized_keys"
SSHPORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
cat > "$T/ssh/sshd_config" <<CFG
Port $SSHPORT
ListenAddress 127.0.0.1
HostKey $T/ssh/host
AuthorizedKeysFile $T/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
PidFile $T/ssh/pid
CFG
/usr/sbin/sshd -D -f "$T/ssh/sshd_config" -E "$T/ssh/log" &
PIDS+=($!)
wait_for 60 "sshd to answer" ssh -q -p "$SSHPORT" -i "$T/ssh/user" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@127.0.0.1 true
t0=$(secs)
for l in $LAYERS; do
  ssh -q -p "$SSHPORT" -i "$T/ssh/user" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@127.0.0.1 \
    "tee >(sha256sum > $T/sshdest/sum.\$\$) | zstd -dc | tar -x -C $T/sshdest" < "$l"
done
t1=$(secs)
SSH_S=$(python3 -c "print(round($t1 - $t0, 2))")

echo "== redeploy after one small layer changed"
"$FERRY" push --identity "$T/me" --json "$T/img:v2" --to "127.0.0.1:$PORT_bench" --app bench --settle 0 > "$T/p2.json"
SENT2=$(json_get "$T/p2.json" "d['nodes'][0]['bytes_sent']" | tr -dc 0-9)

echo "== the arm64 ferryd under qemu-aarch64"
A64=$(cross_bin aarch64 ferryd)
FERRYD_BIN=$A64 start_agent emu $'runtime:\n  exec_wrapper: [qemu-aarch64, -L, "{rootfs}"]' qemu-aarch64
$MKIMAGE "$T/img" --ref emu --variant linux/arm64="$T/text,$T/rand,$T/app/a64,$T/small1" > /dev/null
t0=$(secs)
"$FERRY" push --identity "$T/me" --json "$T/img:emu" --to "127.0.0.1:$PORT_emu" --app bench --settle 0 > "$T/p3.json"
t1=$(secs)
SENT3=$(json_get "$T/p3.json" "d['nodes'][0]['bytes_sent']" | tr -dc 0-9)
EMU_S=$(python3 -c "print(round($t1 - $t0, 2))")

echo
echo "== figures"
printf 'full deploy, %d MiB image (%s compressed bytes): ferry %s s, OpenSSH + sha256sum + zstd -d | tar -x %s s (ferry/ssh = %s)\n' \
  "$MIB" "$COMPRESSED" "$FERRY_S" "$SSH_S" "$(python3 -c "print(round($FERRY_S / $SSH_S, 2))")"
printf 'ferryd peak RSS during the deploy (VmHWM): %d KiB (goal <= 32 MiB)\n' "$HWM"
printf 'redeploy after one small layer changed: %s bytes sent, %s%% of the first deploy (%s bytes; goal < 2%%)\n' \
  "$SENT2" "$(python3 -c "print(round(100.0 * $SENT2 / $SENT1, 4))")" "$SENT1"
printf 'arm64 ferryd under qemu-aarch64: %s bytes in %s s = %s MiB/s (verify + unpack + start included)\n' \
  "$SENT3" "$EMU_S" "$(python3 -c "print(round($SENT3 / 1048576 / $EMU_S, 1))")"
