# Helpers for the end-to-end tests: real binaries, loopback only, temp state dirs.
# Sourced by each e2e_*.sh. Waits are for readiness lines or answers, never blind sleeps.
set -Eeuo pipefail
# A command that ends a test through set -e says which one it was (the test's own messages are
# for the failures it expects).
trap 'e2e_rc=$?; if [[ $- == *e* ]]; then echo "$(basename "$0"): ${FUNCNAME[0]:-main}, line $LINENO: \"$BASH_COMMAND\" failed (exit $e2e_rc)" >&2; fi' ERR

: "${FERRY_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${FERRY_BIN:=$FERRY_SRC/build/host/bin}"
: "${FERRY_CROSS_ROOT:=$FERRY_SRC/build}"
FERRY="$FERRY_BIN/ferry"
FERRYD="$FERRY_BIN/ferryd"

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-e2e.XXXXXX")
# The pusher's home (its cache of recompressed and unpacked blobs; identities are passed with
# --identity) is the test's own, never the user's ~/.ferry.
export FERRY_HOME=$T/ferry-home
PIDS=()
MOUNTS=()   # unmounted after the agents are gone
# ours PID: PID is still a child of this test's shell. A pid the test killed and reaped may by now
# belong to another test's process (pids wrap at 32,768 here, and e2e_crash alone starts
# hundreds), so nothing is signalled by a pid that is not ours any more.
ours() {
  local s
  s=$(cat "/proc/$1/stat" 2> /dev/null) || return 1
  s=${s##*) }             # after "PID (COMM) ": the state, then the parent's pid
  s=${s#* }
  [ "${s%% *}" = "$$" ]
}
cleanup() {
  local rc=$?
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && ours "$p" && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  # Workloads outlive a ferryd killed with -9 (by design: the next ferryd stops them); the
  # tests leave none behind.
  pkill -9 -f "$T/" 2>/dev/null || true
  for m in "${MOUNTS[@]:-}"; do [ -n "$m" ] && umount "$m" 2>/dev/null || true; done
  for f in "${CLEANUP_FILES[@]:-}"; do [ -n "$f" ] && rm -f "$f"; done # outside $T (a device node in /dev)
  for c in "${CLEANUP_CMDS[@]:-}"; do [ -n "$c" ] && $c 2>/dev/null; done   # e.g. iptables rules of the test's own
  # Under FERRY_VALGRIND the agents' memory errors fail the test (they stopped above, through
  # their shutdown path).
  if [ "${FERRY_VALGRIND:-0}" = 1 ] && [ $rc -ne 77 ]; then
    local vg
    for vg in "$T"/vg-*.log; do
      [ -f "$vg" ] || continue
      if grep -Eq 'Invalid (read|write|free)|uninitialised|Mismatched free|overlap|Jump to the invalid' "$vg"; then
        echo "--- valgrind found memory errors in the agent ($(basename "$vg")):" >&2
        head -n 80 "$vg" >&2
        [ $rc -ne 0 ] || rc=1
      fi
    done
    [ $rc -ne 0 ] || echo "valgrind: no invalid read or write in $(ls "$T"/vg-*.log 2>/dev/null | wc -l) agent process(es)"
  fi
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "--- test failed (rc=$rc); agent logs:" >&2
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 30 "$f" >&2; }; done
  fi
  [ -n "${KEEP_T:-}" ] || rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; PASSED=$((${PASSED:-0} + 1)); }
finish() { echo "$(basename "$0" .sh): ${PASSED:-0} passed, 0 failed"; }

# A binary built by a cross preset, or skip (77) unless the caller demands it.
cross_bin() {
  local preset=$1 name=$2 f="$FERRY_CROSS_ROOT/$1/bin/$2"
  if [ ! -x "$f" ]; then
    if [ "${FERRY_REQUIRE_CROSS:-0}" = 1 ]; then fail "$f missing: build the $preset preset first"; fi
    echo "skip: $f missing (cmake --preset $preset && cmake --build --preset $preset)" >&2
    exit 77
  fi
  echo "$f"
}

# setup_fleet: a CA and a pusher identity in $T.
setup_fleet() {
  "$FERRY" ca init "$T/ca" >/dev/null
  "$FERRY" cert issue --ca "$T/ca" --name laptop --role pusher --out "$T/me" >/dev/null
}

# start_agent NAME [extra-yaml] [launcher...]: starts ferryd on a free loopback port.
# Sets PORT_<NAME> (dashes become underscores) and appends the pid to PIDS.
# AGENT_LISTEN=none: no port (a node reached through its broker: set broker: in extra-yaml);
# PORT_<NAME> is then empty and PID_<NAME> the agent's pid.
# FERRYD_BIN overrides the binary (a cross-built one run under the launcher).
start_agent() {
  local name=$1 extra=${2:-}; shift 2 || shift $#
  local bin=${FERRYD_BIN:-$FERRYD} var="PORT_${name//-/_}" deadline
  deadline=$(deadline_in)
  [ -d "$T/id-$name" ] || "$FERRY" cert issue --ca "$T/ca" --name "$name" --role agent --out "$T/id-$name" >/dev/null
  mkdir -p "$T/state-$name"
  local listen="127.0.0.1:${AGENT_LISTEN_PORT:-0}"
  [ "${AGENT_LISTEN:-}" = none ] && listen=none
  printf 'name: %s\nlisten: %s\nstate_dir: %s\nidentity: %s\n%s\n' \
    "$name" "$listen" "$T/state-$name" "$T/id-$name" "$extra" > "$T/$name.yaml"
  # The log is emptied here, not by the background job's redirection: that one happens whenever
  # the job gets to it, and until then the wait below would read the previous agent's
  # "listening on" line (and its port).
  : > "$T/$name.log"
  # FERRY_VALGRIND=1: host agents (no launcher) run under memcheck; cleanup reads the reports.
  # Children (the exec helper, the re-executed agent) run natively.
  if [ "${FERRY_VALGRIND:-0}" = 1 ] && [ $# -eq 0 ]; then
    set -- valgrind --quiet --trace-children=no --error-limit=no --num-callers=30 --log-file="$T/vg-$name.%p.log"
  fi
  "$@" "$bin" --config "$T/$name.yaml" 2>> "$T/$name.log" &
  PIDS+=($!)
  local pid=$! port
  printf -v "PID_${name//-/_}" '%s' "$pid"
  if [ "$listen" = none ]; then # "ready without a listening port (listen: none) as NAME (…)"
    until log_has "$T/$name.log" 'ready without a listening port'; do
      kill -0 "$pid" 2>/dev/null || { cat "$T/$name.log" >&2; fail "ferryd $name exited during start-up"; }
      past_deadline "$deadline" && fail "ferryd $name did not become ready in ${WAIT_LIMIT} s"
      sleep 0.05
    done
    printf -v "$var" '%s' ""
    return 0
  fi
  # The whole readiness line: "listening on HOST:PORT as NAME (…)" (ferryd writes each line at once).
  until port=$(grep -Eo 'listening on [0-9.]+:[0-9]+ as ' "$T/$name.log" 2>/dev/null | head -1) && [ -n "$port" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$T/$name.log" >&2; fail "ferryd $name exited during start-up"; }
    past_deadline "$deadline" && fail "ferryd $name did not become ready in ${WAIT_LIMIT} s"
    sleep 0.05
  done
  port=${port##*:}; port=${port%% *}
  printf -v "$var" '%s' "$port"
}

# Waits are for a condition, with a deadline; never for a length of time. The deadline only bounds
# a failure: on a busy machine a wait simply takes longer. WAIT_LIMIT (s) is the default.
: "${WAIT_LIMIT:=90}"
deadline_in() { echo $((SECONDS + ${1:-$WAIT_LIMIT})); }
past_deadline() { [ "$SECONDS" -ge "$1" ]; }

# try_for SECONDS CMD...: runs CMD until it succeeds (0) or SECONDS pass (1).
try_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    past_deadline "$deadline" && return 1
    sleep 0.05
  done
}

# wait_for SECONDS WHAT CMD...: like try_for, but a test failure naming WHAT when time runs out.
wait_for() {
  local limit=$1 what=$2; shift 2
  try_for "$limit" "$@" || fail "$what (not within $limit s)"
}

# wait_log FILE PATTERN [COUNT]: waits for COUNT (1) lines matching PATTERN in an agent's log.
log_has() { [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "${3:-1}" ]; }
wait_log() { wait_for "$WAIT_LIMIT" "no line matching '$2' in $1" log_has "$1" "$2" "${3:-1}"; }

# runs_version TARGET APP V: the last "VERSION=" line the app wrote (ferry logs) is VERSION=V.
# The test workload prints it when it starts; wait_version waits for it (a restart or rollback
# starts the process before it has written a line).
runs_version() {
  "$FERRY" logs --identity "$T/me" --to "$1" --app "$2" --tail 20 2>/dev/null | grep -o 'VERSION=[^ ]*' | tail -1 | grep -qx "VERSION=$3"
}
wait_version() { try_for "${WAIT_LIMIT}" runs_version "$@"; }

# json_get FILE PYTHON-EXPR: evaluates an expression over the parsed JSON document `d`.
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(repr(($2,)))" "$1"; }

# build_apps DIR: the test workload as static amd64 and arm64 binaries, in DIR/x64/app and
# DIR/a64/app (each directory is one layer).
build_apps() {
  mkdir -p "$1/x64" "$1/a64"
  gcc -static -O2 -o "$1/x64/app" "$FERRY_SRC/tests/tools/app/hello.c"
  aarch64-linux-gnu-gcc -static -O2 -o "$1/a64/app" "$FERRY_SRC/tests/tools/app/hello.c"
}
MKIMAGE="python3 $FERRY_SRC/tests/tools/mkimage.py"

# push_json OUT ARGS...: ferry push --json, keeping the exit status in PUSH_RC.
push_json() {
  local out=$1; shift
  set +e
  "$FERRY" push --identity "$T/me" --json "$@" > "$out" 2> "$out.err"
  PUSH_RC=$?
  set -e
}

# start_sshd NAME [extra sshd_config lines]: an OpenSSH server on a free loopback port playing a
# device (root login with a key the test generates). Sets SSHD_PORT_<NAME>; writes
# $T/ssh/config for the client and exports FERRY_SSH_COMMAND to use it. Needs root (sshd).
start_sshd() {
  local name=$1 extra=${2:-} var="SSHD_PORT_${1//-/_}" port
  [ "$(id -u)" = 0 ] || { echo "skip: sshd needs root" >&2; exit 77; }
  mkdir -p "$T/ssh" /run/sshd
  [ -f "$T/ssh/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host_key"
  [ -f "$T/ssh/user_key" ] || { ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/user_key"; cp "$T/ssh/user_key.pub" "$T/ssh/authorized_keys"; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'Port %s\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile %s\n%s\n' \
    "$port" "$T/ssh/host_key" "$T/ssh/authorized_keys" "$T/ssh/sshd-$name.pid" "$extra" > "$T/ssh/sshd-$name.conf"
  /usr/sbin/sshd -D -e -f "$T/ssh/sshd-$name.conf" 2> "$T/sshd-$name.log" &
  PIDS+=($!)
  printf 'Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n' \
    "$T/ssh/user_key" "$T/ssh/known_hosts" > "$T/ssh/config"
  export FERRY_SSH_COMMAND="ssh -F $T/ssh/config"
  try_for "$WAIT_LIMIT" ssh -F "$T/ssh/config" -o BatchMode=yes -p "$port" root@127.0.0.1 true 2>/dev/null ||
    { cat "$T/sshd-$name.log" >&2; fail "sshd $name did not start"; }
  printf -v "$var" '%s' "$port"
}

# free_port: a loopback TCP port nobody listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_registry NAME [extra-yaml]: CNCF distribution (Debian's docker-registry) on a loopback port
# with TLS (a CA of the test's own; the certificate names 127.0.0.1 and localhost, and agents
# reach it as localhost) and htpasswd authentication (user ferry; REG_NOAUTH=1: none). Sets
# REG_<NAME> (127.0.0.1:PORT), REGHOST_<NAME> (localhost:PORT); $T/reg-NAME/ca.pem is its CA, $T/reg-NAME/certs what skopeo's --cert-dir wants,
# $T/reg-NAME/data its storage, $T/reg-NAME.log its log (the access log: one line per request).
# Credentials for every registry started go into $REGISTRY_AUTH_FILE. Started again after
# stop_registry, it keeps its port, storage and keys.
start_registry() {
  local name=$1 extra=${2:-} d=$T/reg-$1 var="REG_${1//-/_}" port deadline
  command -v docker-registry > /dev/null || { echo "skip: docker-registry missing (scripts/setup.sh installs it)" >&2; exit 77; }
  mkdir -p "$d/certs" "$d/data"
  if [ ! -f "$d/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
      -subj "/CN=ferry test registry CA $name" 2> /dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/srv.key" -out "$d/srv.csr" -subj /CN=127.0.0.1 2> /dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$d/ext"
    openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -out "$d/srv.pem" -days 2 \
      -extfile "$d/ext" 2> /dev/null
    cp "$d/ca.pem" "$d/certs/ca.crt"
    htpasswd -Bbn ferry "pw-$name" > "$d/htpasswd" 2> /dev/null
    free_port > "$d/port"
    export REGISTRY_AUTH_FILE=$T/registry-auth.json
    python3 - "$REGISTRY_AUTH_FILE" "127.0.0.1:$(cat "$d/port")" "ferry:pw-$name" <<'PY'
import base64, json, os, sys
path, host, cred = sys.argv[1:]
d = json.load(open(path)) if os.path.exists(path) else {"auths": {}}
d["auths"][host] = {"auth": base64.b64encode(cred.encode()).decode()}
d["auths"][host.replace("127.0.0.1", "localhost")] = d["auths"][host]
json.dump(d, open(path, "w"))
PY
  fi
  port=$(cat "$d/port")
  cat > "$d/config.yml" <<YAML
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: "$d/data"
  delete:
    enabled: true
http:
  addr: "127.0.0.1:$port"
  secret: ferry-test
  tls:
    certificate: "$d/srv.pem"
    key: "$d/srv.key"
$( [ "${REG_NOAUTH:-0}" = 1 ] || printf 'auth:\n  htpasswd:\n    realm: ferry-test\n    path: "%s"\n' "$d/htpasswd" )
$extra
YAML
  # A mirror trusts its upstream's CA through Go's SSL_CERT_FILE.
  # (distribution reads REGISTRY_* variables as configuration: REGISTRY_AUTH_FILE would be auth.file)
  env -u REGISTRY_AUTH_FILE SSL_CERT_FILE="${REGISTRY_UPSTREAM_CA:-/etc/ssl/certs/ca-certificates.crt}" docker-registry serve "$d/config.yml" >> "$T/reg-$name.log" 2>&1 &
  PIDS+=($!)
  echo $! > "$d/pid"
  deadline=$(deadline_in)
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$d/ca.pem" "https://127.0.0.1:$port/v2/")" =~ ^(200|401)$ ]]; do
    kill -0 "$(cat "$d/pid")" 2>/dev/null || { tail -5 "$T/reg-$name.log" >&2; fail "registry $name exited during start-up"; }
    past_deadline "$deadline" && fail "registry $name did not answer in ${WAIT_LIMIT} s"
    sleep 0.05
  done
  printf -v "$var" '127.0.0.1:%s' "$port"
  printf -v "REGHOST_${1//-/_}" 'localhost:%s' "$port"
}
stop_registry() {
  local pid
  pid=$(cat "$T/reg-$1/pid")
  ours "$pid" && kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# start_broker [FLEET]: Debian's mosquitto on a loopback port, configured from examples/mosquitto
# (mutual TLS under the test's fleet CA, require_certificate, the certificate's name as the user,
# the shipped ACL for topic prefix ferry/FLEET, default e2e, with the pusher 'laptop'), its broker
# identity named localhost, persistence in $T/broker/persist; BROKER_EXTRA_PUSHERS="a b" lets
# more pusher identities in, BROKER_SERVER_ID=DIR shows DIR/cert.pem (another CA's). Sets BROKER_PORT and
# BROKER_YAML (the agent config's broker: block); $T/broker.log is its log. Started again after
# stop_broker, it keeps its port and its retained messages.
start_broker() {
  local fleet=${1:-e2e} d=$T/broker n
  command -v mosquitto > /dev/null || { echo "skip: mosquitto missing (scripts/setup.sh installs it)" >&2; exit 77; }
  mkdir -p "$d/persist"
  [ -d "$d/id" ] || "$FERRY" cert issue --ca "$T/ca" --name localhost --role broker --out "$d/id" > /dev/null
  [ -f "$d/port" ] || free_port > "$d/port"
  BROKER_PORT=$(cat "$d/port")
  sed "s|ferry/FLEET|ferry/$fleet|" "$FERRY_SRC/examples/mosquitto/acl" > "$d/acl"
  for n in ${BROKER_EXTRA_PUSHERS:-}; do printf '\nuser %s\ntopic readwrite ferry/%s/#\n' "$n" "$fleet" >> "$d/acl"; done
  sed -e "s|^listener 8883|listener $BROKER_PORT 127.0.0.1|" -e "s|/etc/mosquitto/ferry/acl|$d/acl|" \
    -e "s|/etc/mosquitto/ferry|$d/id|g" -e "s|^persistence_location .*|persistence_location $d/persist/|" \
    "$FERRY_SRC/examples/mosquitto/ferry.conf" > "$d/mosquitto.conf"
  # BROKER_SERVER_ID=DIR: the broker shows DIR's cert.pem and key.pem instead (another CA's)
  [ -z "${BROKER_SERVER_ID:-}" ] || sed -i -e "s|^certfile .*|certfile $BROKER_SERVER_ID/cert.pem|" \
    -e "s|^keyfile .*|keyfile $BROKER_SERVER_ID/key.pem|" "$d/mosquitto.conf"
  printf 'user root\nlog_dest stderr\nlog_type all\nlog_timestamp_format %%H:%%M:%%S\n' >> "$d/mosquitto.conf"
  n=$(grep -c ' running$' "$T/broker.log" 2>/dev/null || true)
  mosquitto -c "$d/mosquitto.conf" >> "$T/broker.log" 2>&1 &
  PIDS+=($!)
  echo $! > "$d/pid"
  wait_for "$WAIT_LIMIT" "mosquitto did not start (see $T/broker.log)" log_has "$T/broker.log" ' running$' $((${n:-0} + 1))
  BROKER_YAML=$'broker:\n  url: mqtts://localhost:'"$BROKER_PORT"$'\n  topic_prefix: ferry/'"$fleet"$'\n  keepalive: 5s'
  STATUS_PREFIX=ferry/$fleet
}
# stop_broker [SIGNAL]: TERM (default) is a restart as an admin does one (mosquitto saves its
# sessions and retained messages); KILL is a crash.
stop_broker() {
  local pid
  pid=$(cat "$T/broker/pid")
  ours "$pid" && kill "-${1:-TERM}" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# broker_sub TOPIC [COUNT] [SECONDS] [IDENTITY]: up to COUNT messages on TOPIC ("topic payload"
# lines) as IDENTITY ($T/me, the pusher 'laptop') receives them, retained ones first; waits at most
# SECONDS (10) for them.
broker_sub() {
  local id=${4:-$T/me}
  mosquitto_sub -h localhost -p "$BROKER_PORT" --cafile "${BROKER_SERVER_ID:-$T/ca}/ca.pem" --cert "$id/cert.pem" --key "$id/key.pem" \
    -t "$1" -C "${2:-1}" -W "${3:-10}" -v 2>/dev/null || true
}
# broker_status NODE: NODE's retained status from the broker, its signature checked as a pusher
# checks it (a node of the fleet, that node itself): the status's JSON, or "refused CODE: why".
broker_status() {
  broker_sub "$STATUS_PREFIX/nodes/$1/status" 1 5 | cut -d' ' -f2- | "$FERRY_BIN/envelope_open" "$T/me" status "$1" || true
}
