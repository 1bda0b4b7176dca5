#!/usr/bin/env bash
# The README's first command: sets everything up, builds ferry for x64 and arm64, creates a dev
# fleet CA, starts a local emulated Raspberry Pi 4 (the static arm64 ferryd under
# qemu-aarch64 -cpu cortex-a72) and a native x64 node on loopback, makes a two-platform OCI
# image of a small service, pushes it to both (each runs its own variant), and shows status
# and each node's log line naming its own architecture.
#   scripts/demo.sh          start (or restart) the nodes, deploy, show
#   scripts/demo.sh down     stop them
# Safe to run twice. State lives in $FERRY_HOME (default ~/.ferry).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
export FERRY_HOME=${FERRY_HOME:-$HOME/.ferry}
SIM=$FERRY_HOME/sim/pi-demo
X64=$FERRY_HOME/sim/x64-demo
PORT=${FERRY_DEMO_PORT:-7433}
XPORT=$((PORT + 1))

stop_node() { # dir name
  if [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null; then
    kill -TERM "$(cat "$1/pid")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$1/pid")" 2>/dev/null || break; sleep 0.05; done
    echo "stopped $2"
  fi
  rm -f "$1/pid"
}
stop_board() { stop_node "$SIM" "the emulated board pi-demo"; stop_node "$X64" "the x64 node x64-demo"; }

if [ "${1:-up}" = down ]; then
  stop_board
  exit 0
fi

bash scripts/setup.sh
for p in host aarch64; do
  echo "== building preset $p"
  cmake --preset "$p" > /dev/null
  cmake --build --preset "$p" -j "$(nproc)" > /dev/null
done
FERRY=$SRC/build/host/bin/ferry
AGENT=$SRC/build/aarch64/bin/ferryd

mkdir -p "$FERRY_HOME" "$SIM"
[ -f "$FERRY_HOME/ca/ca.pem" ] || "$FERRY" ca init "$FERRY_HOME/ca"
[ -f "$FERRY_HOME/identity/cert.pem" ] || \
  "$FERRY" cert issue --ca "$FERRY_HOME/ca" --name "$(hostname | tr 'A-Z_' 'a-z-' | cut -c1-40)" --role pusher --out "$FERRY_HOME/identity"
mkdir -p "$X64"
[ -f "$SIM/identity/cert.pem" ] || "$FERRY" cert issue --ca "$FERRY_HOME/ca" --name pi-demo --role agent --out "$SIM/identity"
[ -f "$X64/identity/cert.pem" ] || "$FERRY" cert issue --ca "$FERRY_HOME/ca" --name x64-demo --role agent --out "$X64/identity"
cat > "$X64/ferryd.yaml" <<YAML
name: x64-demo
listen: 127.0.0.1:$XPORT
state_dir: $X64/state
identity: $X64/identity
labels: {site: laptop}
YAML
cat > "$SIM/ferryd.yaml" <<YAML
# An emulated Raspberry Pi 4: the arm64 ferryd runs under qemu-aarch64 -cpu cortex-a72.
name: pi-demo
listen: 127.0.0.1:$PORT
state_dir: $SIM/state
identity: $SIM/identity
board: rpi4
labels: {site: laptop, emulated: "true"}
runtime:
  exec_wrapper: [qemu-aarch64, -cpu, cortex-a72, -L, "{rootfs}"]
YAML

stop_board
echo "== starting pi-demo: qemu-aarch64 -cpu cortex-a72 $AGENT (log: $SIM/ferryd.log)"
nohup qemu-aarch64 -cpu cortex-a72 "$AGENT" --config "$SIM/ferryd.yaml" > "$SIM/ferryd.log" 2>&1 &
echo $! > "$SIM/pid"
for _ in $(seq 1 200); do
  grep -q 'listening on' "$SIM/ferryd.log" && break
  kill -0 "$(cat "$SIM/pid")" 2>/dev/null || { cat "$SIM/ferryd.log"; exit 1; }
  sleep 0.05
done
grep 'listening on' "$SIM/ferryd.log"
echo "== starting x64-demo: $SRC/build/host/bin/ferryd (log: $X64/ferryd.log)"
nohup "$SRC/build/host/bin/ferryd" --config "$X64/ferryd.yaml" > "$X64/ferryd.log" 2>&1 &
echo $! > "$X64/pid"
for _ in $(seq 1 200); do grep -q 'listening on' "$X64/ferryd.log" && break; sleep 0.05; done
grep 'listening on' "$X64/ferryd.log"
echo
echo "== ferry status"
"$FERRY" status --to "pi-demo@127.0.0.1:$PORT" --to "x64-demo@127.0.0.1:$XPORT"

# A small service for linux/amd64 and linux/arm64, as a multi-platform OCI image. (The image is
# made by tests/tools/mkimage.py until `ferry build` lands: see the build issue.)
echo
echo "== building the example for linux/amd64 and linux/arm64, as one OCI image"
APPS=$FERRY_HOME/demo-app
mkdir -p "$APPS/x64" "$APPS/a64"
gcc -static -O2 -o "$APPS/x64/app" tests/tools/app/hello.c
aarch64-linux-gnu-gcc -static -O2 -o "$APPS/a64/app" tests/tools/app/hello.c
rm -rf "$APPS/image"
python3 tests/tools/mkimage.py "$APPS/image" --ref demo --variant linux/amd64="$APPS/x64" --variant linux/arm64="$APPS/a64" \
  --env GREETING=hello-from-ferry --env VERSION=demo > /dev/null
echo
echo "== ferry push $APPS/image:demo --to pi-demo@127.0.0.1:$PORT --to x64-demo@127.0.0.1:$XPORT"
"$FERRY" push "$APPS/image:demo" --app hello --to "pi-demo@127.0.0.1:$PORT" --to "x64-demo@127.0.0.1:$XPORT"
echo
echo "== ferry status"
"$FERRY" status --to "pi-demo@127.0.0.1:$PORT" --to "x64-demo@127.0.0.1:$XPORT"
echo
echo "== each node's log names its own architecture"
"$FERRY" logs --to "pi-demo@127.0.0.1:$PORT" --app hello --tail 1
"$FERRY" logs --to "x64-demo@127.0.0.1:$XPORT" --app hello --tail 1
echo
echo "Both nodes keep running in the background. Try:"
echo "  $FERRY status --to pi-demo@127.0.0.1:$PORT --json"
echo "  $FERRY logs --to pi-demo@127.0.0.1:$PORT --app hello"
echo "Stop them with: scripts/demo.sh down"
