#!/usr/bin/env bash
# The README's first command. On a fresh Debian 12 machine it:
#   1. installs what is missing and builds ferry for x64 and the static arm64 ferryd;
#   2. creates a dev fleet CA in $FERRY_HOME (default ~/.ferry);
#   3. starts a local emulated Raspberry Pi 4 (arm64 ferryd under qemu-aarch64 -cpu cortex-a72,
#      labelled rpi4) and a native x64 node, with `ferry sim up`;
#   4. builds examples/hello-svc for linux/amd64, linux/arm64 and linux/arm/v7 with `ferry build`
#      and runs each variant with `ferry test` (the arm ones under qemu-user);
#   5. pushes it to both nodes; 6. shows status and each node's log line naming its architecture;
#   7. tells you how to stop it all.
# Safe to run twice.  scripts/demo.sh down  stops the boards.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
export FERRY_HOME=${FERRY_HOME:-$HOME/.ferry}
PORT=${FERRY_DEMO_PORT:-7433}
FERRY=$SRC/build/host/bin/ferry

if [ "${1:-up}" = down ]; then
  [ -x "$FERRY" ] && "$FERRY" sim down --all
  exit 0
fi

bash scripts/setup.sh
for p in host aarch64; do
  echo "== building preset $p"
  cmake --preset "$p" > /dev/null
  cmake --build --preset "$p" -j "$(nproc)" > /dev/null
done

echo
echo "== starting the boards (ferry sim up)"
"$FERRY" sim down --all > /dev/null
"$FERRY" sim up pi4 --board rpi4 --port "$PORT"
"$FERRY" sim up x64 --board generic-amd64 --port $((PORT + 1))
NODES=(--to "pi4@127.0.0.1:$PORT" --to "x64@127.0.0.1:$((PORT + 1))")

echo
echo "== ferry build -f examples/hello-svc/ferry.yaml -o $FERRY_HOME/images/hello-svc"
"$FERRY" build -f examples/hello-svc/ferry.yaml -o "$FERRY_HOME/images/hello-svc"
echo
echo "== ferry test $FERRY_HOME/images/hello-svc:1.0.0"
"$FERRY" test "$FERRY_HOME/images/hello-svc:1.0.0"
echo
echo "== ferry push $FERRY_HOME/images/hello-svc:1.0.0 ${NODES[*]}"
"$FERRY" push "$FERRY_HOME/images/hello-svc:1.0.0" "${NODES[@]}"
echo
echo "== ferry status"
"$FERRY" status "${NODES[@]}"
echo
echo "== each node's log names its own architecture"
"$FERRY" logs --to "pi4@127.0.0.1:$PORT" --app hello-svc --tail 1
"$FERRY" logs --to "x64@127.0.0.1:$((PORT + 1))" --app hello-svc --tail 1
echo
echo "The boards keep running in the background ($FERRY sim ls). Try:"
echo "  $FERRY status --to pi4@127.0.0.1:$PORT --json"
echo "  $FERRY inspect $FERRY_HOME/images/hello-svc:1.0.0"
echo "  $FERRY doctor"
echo "Stop them with: scripts/demo.sh down   (or: $FERRY sim down --all)"
