#!/usr/bin/env bash
# Memory held by authenticated peers (prints, asserts nothing): 60 peers each send all but the
# last byte of a 1 MiB frame and hold it. limits.frame_memory (16 MiB) caps what the agent
# buffers for all of them; the baseline is the same agent with the cap out of the way (1 GiB).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FERRY_BIN=${FERRY_BIN:-$SRC/build/host/bin} FERRY_SRC=$SRC
source "$SRC/tests/e2e/lib.sh"
setup_fleet
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hold() { # port -> prints how many peers got EBUSY
  python3 - "$1" "$T/me" <<'PY'
import os, socket, ssl, struct, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.check_hostname = False
ctx.load_verify_locations(os.path.join(sys.argv[2], "ca.pem"))
ctx.load_cert_chain(os.path.join(sys.argv[2], "cert.pem"), os.path.join(sys.argv[2], "key.pem"))
peers, busy = [], 0
for _ in range(60):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    s.sendall(b"FY" + bytes([1, 0]) + struct.pack(">I", 1 << 20))
    try:
        for k in range(0, (1 << 20) - 1, 65536):
            s.sendall(bytes(min(65536, (1 << 20) - 1 - k)))
    except OSError:
        busy += 1
    peers.append(s)
time.sleep(1)
print(busy)
sys.stdout.flush()
time.sleep(2)
PY
}
for cap in 16MiB 1GiB; do
  start_agent "m${cap,,}" "limits: {frame_memory: $cap}"
  PID=${PIDS[-1]}
  var="PORT_m${cap,,}"
  R0=$(rss "$PID")
  hold "${!var}" > "$T/busy" &
  H=$!
  until [ -s "$T/busy" ]; do sleep 0.1; done
  R1=$(rss "$PID")
  wait $H
  echo "frame_memory $cap: ferryd RSS ${R0} KiB idle -> ${R1} KiB with 60 peers each holding a nearly complete 1 MiB frame ($(cat "$T/busy") peers refused with EBUSY)"
  rm -f "$T/busy"
done
finish
