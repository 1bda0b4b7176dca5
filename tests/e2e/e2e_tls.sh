#!/usr/bin/env bash
# The purpose-built agents: TLS 1.3 between peers on mbedTLS 3.6 (the static musl builds), 1.2
# with peers on Debian's 2.28 (the host build) both ways, the negative suite in both versions,
# host names resolved by the musl agent from /etc/hosts without NSS, and `file` saying each
# static agent is statically linked for its architecture.
source "$(dirname "$0")/lib.sh"
A64=$(cross_bin aarch64 ferryd)    # mbedTLS 3.6, musl, under qemu-aarch64
F36=$(cross_bin amd64 ferry)       # the static x86-64 pusher: mbedTLS 3.6, musl
for p in aarch64 armhf amd64; do cross_bin "$p" ferryd > /dev/null; done

# 1. Each static agent is one statically linked file for its architecture.
check_file() { # PRESET WHAT
  local f="$FERRY_CROSS_ROOT/$1/bin/ferryd" d
  d=$(file -b "$f")
  case "$d" in *"$2"*"statically linked"*) ;; *) fail "$f: $d (want $2, statically linked)" ;; esac
  ! grep -q "GLIBC_" < <(strings "$f") || fail "$f carries glibc symbol versions"
  pass "$1 ferryd: $(cut -d, -f1-2 <<< "$d"), statically linked, no glibc"
}
check_file aarch64 "ARM aarch64"
check_file armhf "ARM, EABI5"
check_file amd64 "x86-64"

setup_fleet
FERRYD_BIN=$A64 start_agent new '' qemu-aarch64
start_agent old ''
NEW=$PORT_new
OLD=$PORT_old

tls_of() { # PUSHER PORT [VAR=VALUE...] -> the "tls" of status --json
  local pusher=$1 port=$2
  shift 2
  env "$@" "$pusher" status --identity "$T/me" --json --to "127.0.0.1:$port" > "$T/st.json" || { cat "$T/st.json"; return 1; }
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][0]["tls"])' "$T/st.json"
}

# 2. Versions: 3.6 with 3.6 agrees on TLS 1.3; with 2.28 on either side, on 1.2.
[ "$(tls_of "$F36" "$NEW")" = TLSv1.3 ] || fail "3.6 pusher, 3.6 agent: not TLS 1.3"
wait_log "$T/new.log" "TLS up, pusher 'laptop', TLSv1.3 TLS1-3-CHACHA20-POLY1305-SHA256"
pass "3.6 pusher and 3.6 agent: TLS 1.3 with ChaCha20-Poly1305 (the agent's log says so too)"
[ "$(tls_of "$FERRY" "$NEW")" = TLSv1.2 ] || fail "2.28 pusher, 3.6 agent: not TLS 1.2"
wait_log "$T/new.log" "TLS up, pusher 'laptop', TLSv1.2 TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256"
pass "2.28 pusher and 3.6 agent: TLS 1.2"
[ "$(tls_of "$F36" "$OLD")" = TLSv1.2 ] || fail "3.6 pusher, 2.28 agent: not TLS 1.2"
pass "3.6 pusher and 2.28 agent: TLS 1.2"
[ "$(tls_of "$F36" "$NEW" FERRY_TLS_MAX=1.2)" = TLSv1.2 ] || fail "FERRY_TLS_MAX=1.2 did not hold the pusher to 1.2"
pass "FERRY_TLS_MAX=1.2 holds a 3.6 pusher to TLS 1.2"

# 3. The negative suite against the 3.6 agent, in TLS 1.3 and in 1.2 (a 2.28 pusher, and a 3.6
# one held to 1.2). The agent serves on after each.
"$FERRY" cert issue --ca "$T/ca" --name stolen-pi --role agent --out "$T/stolen" > /dev/null
"$FERRY" ca init "$T/ca2" > /dev/null
"$FERRY" cert issue --ca "$T/ca2" --name mallory --role pusher --out "$T/mallory" > /dev/null
refused() { # LABEL IDENTITY WANT [VAR=VALUE...] (runs $PUSHER against the new agent)
  local label=$1 id=$2 want=$3 rc
  shift 3
  set +e
  env "$@" "$PUSHER" status --identity "$id" --to "127.0.0.1:$NEW" > /dev/null 2> "$T/neg.err"
  rc=$?
  set -e
  [ $rc -eq 1 ] && grep -q -- "$want" "$T/neg.err" || { cat "$T/neg.err"; fail "$label: want exit 1 and '$want'"; }
  kill -0 "${PIDS[0]}" || fail "the agent died after: $label"
}
roles=0
for v in "1.3:$F36:" "1.2:$FERRY:" "1.2:$F36:FERRY_TLS_MAX=1.2"; do
  IFS=: read -r ver PUSHER cap <<< "$v"
  envs=(); [ -n "$cap" ] && envs=("$cap")
  refused "TLS $ver wrong role" "$T/stolen" "refused our certificate: wrong role" "${envs[@]}"
  roles=$((roles + 1))
  wait_log "$T/new.log" "EROLE.*lacks the pusher role" $roles
  refused "TLS $ver other CA" "$T/mallory" "not signed by the fleet CA" "${envs[@]}"
  [ "$(tls_of "$PUSHER" "$NEW" "${envs[@]}")" = "TLSv$ver" ] || fail "TLS $ver: the agent stopped serving"
  pass "TLS $ver ($(basename "$(dirname "$(dirname "$PUSHER")")") pusher${cap:+, $cap}): an agent's identity is refused for its role, another CA's agent is not trusted, the agent serves on"
done

# A TLS 1.3 client without a certificate (openssl) gets nothing, and the agent says why.
openssl s_client -connect 127.0.0.1:$NEW -tls1_3 -CAfile "$T/ca/ca.pem" < /dev/null > "$T/nocert.out" 2>&1 || true
wait_log "$T/new.log" "pusher sent no certificate"
[ "$(tls_of "$F36" "$NEW")" = TLSv1.3 ] || fail "after a certificate-less TLS 1.3 client"
pass "a TLS 1.3 client without a certificate: 'the pusher sent no certificate' in the log, the agent serves on"

# 4. Host names: the musl agent resolves localhost, and a name in /etc/hosts (bind-mounted in a
# private mount namespace), with no NSS modules.
start_named() { # NAME HOST [hosts-file]
  local name=$1 host=$2 hosts=${3:-}
  [ -d "$T/id-$name" ] || "$FERRY" cert issue --ca "$T/ca" --name "$name" --role agent --out "$T/id-$name" > /dev/null
  mkdir -p "$T/state-$name"
  printf 'name: %s\nlisten: %s:0\nstate_dir: %s\nidentity: %s\n' "$name" "$host" "$T/state-$name" "$T/id-$name" > "$T/$name.yaml"
  : > "$T/$name.log"
  if [ -n "$hosts" ]; then
    unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$hosts" \
      qemu-aarch64 "$A64" --config "$T/$name.yaml" 2>> "$T/$name.log" &
  else
    qemu-aarch64 "$A64" --config "$T/$name.yaml" 2>> "$T/$name.log" &
  fi
  PIDS+=($!)
  wait_log "$T/$name.log" "listening on $host:[0-9]* as $name"
  NAMED_PORT=$(grep -Eo "listening on $host:[0-9]+" "$T/$name.log" | head -1 | sed 's/.*://')
}
start_named byname localhost
wait_log "$T/byname.log" "listen: localhost resolves to 127.0.0.1"
[ "$(tls_of "$F36" "$NAMED_PORT")" = TLSv1.3 ] || fail "the agent listening on localhost does not answer"
pass "listen: localhost:0 resolves to 127.0.0.1 and serves"
printf '127.0.0.1 localhost\n127.0.0.1 pi-7.fleet.test pi-7\n' > "$T/hosts"
start_named byhosts pi-7.fleet.test "$T/hosts"
wait_log "$T/byhosts.log" "listen: pi-7.fleet.test resolves to 127.0.0.1"
[ "$(tls_of "$F36" "$NAMED_PORT")" = TLSv1.3 ] || fail "the agent listening on an /etc/hosts name does not answer"
pass "listen: a name from /etc/hosts (pi-7.fleet.test) resolves to 127.0.0.1 on the musl agent"
# An unknown name is a clear error at start.
printf 'name: byname\nlisten: no-such-host.invalid:0\nstate_dir: %s\nidentity: %s\n' "$T/state-nowhere" "$T/id-byname" > "$T/nowhere.yaml"
set +e
qemu-aarch64 "$A64" --config "$T/nowhere.yaml" > "$T/nowhere.log" 2>&1
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "listen: 'no-such-host.invalid' is neither an IP address nor a name this device resolves" "$T/nowhere.log" \
  || { cat "$T/nowhere.log"; fail "an unknown listen name"; }
pass "an unknown listen name stops ferryd with: $(grep -o "listen: .*" "$T/nowhere.log" | head -1)"
finish
