#!/usr/bin/env bash
# The README's first command: sets everything up, builds ferry for x64 and arm64, creates a dev
# fleet CA, starts a local emulated Raspberry Pi 4 (the static arm64 ferryd under
# qemu-aarch64 -cpu cortex-a72) on loopback, and shows it with `ferry status`.
#   scripts/demo.sh          start (or restart) the emulated board and show it
#   scripts/demo.sh down     stop it
# Safe to run twice. State lives in $FERRY_HOME (default ~/.ferry).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
export FERRY_HOME=${FERRY_HOME:-$HOME/.ferry}
SIM=$FERRY_HOME/sim/pi-demo
PORT=${FERRY_DEMO_PORT:-7433}

stop_board() {
  if [ -f "$SIM/pid" ] && kill -0 "$(cat "$SIM/pid")" 2>/dev/null; then
    kill -TERM "$(cat "$SIM/pid")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$SIM/pid")" 2>/dev/null || break; sleep 0.05; done
    echo "stopped the emulated board pi-demo"
  fi
  rm -f "$SIM/pid"
}

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
[ -f "$SIM/identity/cert.pem" ] || "$FERRY" cert issue --ca "$FERRY_HOME/ca" --name pi-demo --role agent --out "$SIM/identity"
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
echo
echo "== ferry status --to pi-demo@127.0.0.1:$PORT"
"$FERRY" status --to "pi-demo@127.0.0.1:$PORT"
echo
echo "The board keeps running in the background. Try:"
echo "  $FERRY status --to pi-demo@127.0.0.1:$PORT --json"
echo "Stop it with: scripts/demo.sh down"
