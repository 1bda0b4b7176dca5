#!/usr/bin/env bash
# Every bad input of the foundation issue against a running ferryd: each gets a clear error to
# the peer or in the log, and the agent keeps serving other clients (checked after each one).
# Clients that nobody here wrote do the misbehaving: bash's /dev/tcp and openssl s_client.
source "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || fail "openssl not installed (scripts/setup.sh)"

setup_fleet
start_agent node-1 $'labels: {site: lab}\nlimits: {handshake_timeout: 1s, idle_timeout: 2s}'
P=$PORT_node_1
LOG=$T/node-1.log
AGENT_PID=${PIDS[0]}

still_serving() {
  kill -0 "$AGENT_PID" || fail "ferryd died after: $1"
  "$FERRY" status --identity "$T/me" --json --to "node-1@127.0.0.1:$P" > "$T/s.json" || fail "status after: $1"
  [ "$(json_get "$T/s.json" "d['nodes'][0]['platform']")" = "('linux/amd64',)" ] || fail "status content after: $1"
  pass "$1: clear error, ferryd still serves"
}

# 1. random bytes
head -c 8192 /dev/urandom > "$T/random.bin"
# The connection stays open until the agent has said why it drops it (a subshell: the agent may
# close it while the bytes are still going out, and SIGPIPE must end only the subshell).
( exec 3<>/dev/tcp/127.0.0.1/$P; cat "$T/random.bin" >&3; wait_log "$LOG" 'ETLS.*not a TLS peer' ) || true
wait_log "$LOG" 'ETLS.*not a TLS peer'
still_serving "random bytes"

# 2. plaintext (an HTTP request)
( exec 3<>/dev/tcp/127.0.0.1/$P; printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&3; wait_log "$LOG" 'ETLS.*not a TLS peer' 2 ) || true
wait_log "$LOG" 'ETLS.*not a TLS peer' 2
still_serving "plaintext"

# 3. a TLS client with no certificate (openssl s_client, TLS 1.2)
openssl s_client -connect 127.0.0.1:$P -tls1_2 -CAfile "$T/ca/ca.pem" </dev/null > "$T/nocert.out" 2>&1 || true
wait_log "$LOG" 'the pusher sent no certificate'
grep -qiE 'alert|handshake failure|errno' "$T/nocert.out" || { cat "$T/nocert.out"; fail "the no-cert client saw no alert"; }
still_serving "a TLS client with no certificate"

# 4. a client certificate from another CA: openssl and ferry itself
"$FERRY" ca init "$T/ca2" >/dev/null
"$FERRY" cert issue --ca "$T/ca2" --name mallory --role pusher --out "$T/mallory" >/dev/null
openssl s_client -connect 127.0.0.1:$P -tls1_2 -cert "$T/mallory/cert.pem" -key "$T/mallory/key.pem" \
  </dev/null > "$T/otherca.out" 2>&1 || true
wait_log "$LOG" 'not signed by the fleet CA'
set +e
"$FERRY" status --identity "$T/mallory" --to 127.0.0.1:$P > /dev/null 2> "$T/otherca.err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q 'not signed by the fleet CA' "$T/otherca.err" || { cat "$T/otherca.err"; fail "other-CA pusher"; }
still_serving "a client certificate from another CA"

# 5. an agent's identity used to connect as a pusher (a stolen device cannot push)
"$FERRY" cert issue --ca "$T/ca" --name stolen-pi --role agent --out "$T/stolen" >/dev/null
set +e
"$FERRY" status --identity "$T/stolen" --to 127.0.0.1:$P > /dev/null 2> "$T/role.err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q 'refused our certificate: wrong role' "$T/role.err" || { cat "$T/role.err"; fail "agent identity as pusher"; }
wait_log "$LOG" "EROLE.*lacks the pusher role"
still_serving "an agent's identity used as a pusher"

# 6. a frame header announcing a length over the ceiling, inside a good TLS session
# (-quiet implies -ign_eof: s_client reads until the agent closes, whatever happens to its stdin.)
printf 'FY\001\000\377\377\377\377' | openssl s_client -quiet -connect 127.0.0.1:$P -tls1_2 \
  -cert "$T/me/cert.pem" -key "$T/me/key.pem" -CAfile "$T/ca/ca.pem" > "$T/big.out" 2> "$T/big.err" || true
grep -q '"name":"ETOOBIG"' "$T/big.out" || { cat "$T/big.out" "$T/big.err"; fail "no ETOOBIG error frame to the peer"; }
wait_log "$LOG" 'ETOOBIG: frame length over the ceiling'
still_serving "a frame header over the ceiling"

# 7. a peer that connects and sends nothing: timed out (handshake_timeout 1s)
exec 3<>/dev/tcp/127.0.0.1/$P
wait_log "$LOG" 'ETIMEDOUT: TLS handshake not completed'
still_serving "a silent peer (timed out)"
exec 3>&-

# 7b. a peer that completes TLS, then idles: timed out (idle_timeout 2s) with an error frame
openssl s_client -quiet -connect 127.0.0.1:$P -tls1_2 -cert "$T/me/cert.pem" \
  -key "$T/me/key.pem" -CAfile "$T/ca/ca.pem" < /dev/null > "$T/idle.out" 2>/dev/null &
IDLE=$!
wait_log "$LOG" 'ETIMEDOUT: idle peer'
still_serving "an idle TLS peer (timed out)"
wait $IDLE || true
grep -q '"name":"ETIMEDOUT"' "$T/idle.out" || fail "the idle peer was not told why"

# TLS policy (a head start on the hardening issue's negative suite): below 1.2, a non-AEAD
# suite and a renegotiation attempt are refused; ChaCha20-Poly1305 is what a default client gets.
openssl s_client -connect 127.0.0.1:$P -tls1_1 -cert "$T/me/cert.pem" -key "$T/me/key.pem" -CAfile "$T/ca/ca.pem" </dev/null > "$T/v11.out" 2>&1 || true
grep -q 'Cipher is (NONE)' "$T/v11.out" || { cat "$T/v11.out"; fail "TLS 1.1 accepted"; }
wait_log "$LOG" 'not within min/max boundaries'
openssl s_client -connect 127.0.0.1:$P -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256 -cert "$T/me/cert.pem" -key "$T/me/key.pem" \
  -CAfile "$T/ca/ca.pem" </dev/null > "$T/cbc.out" 2>&1 || true
grep -q 'Cipher is (NONE)' "$T/cbc.out" || { cat "$T/cbc.out"; fail "a non-AEAD suite accepted"; }
wait_log "$LOG" 'no ciphersuites in common'
# "R" asks for a renegotiation once the handshake is done; stdin stays open until the answer.
( wait_log "$T/reneg.out" 'Cipher is'; echo R; wait_log "$T/reneg.out" 'no renegotiation\|RENEGOTIATING' ) | openssl s_client -connect 127.0.0.1:$P -tls1_2 -cert "$T/me/cert.pem" -key "$T/me/key.pem" \
  -CAfile "$T/ca/ca.pem" > "$T/reneg.out" 2>&1 || true
grep -q 'ECDHE-ECDSA-CHACHA20-POLY1305' "$T/reneg.out" || { cat "$T/reneg.out"; fail "ChaCha20-Poly1305 is not first"; }
grep -q 'no renegotiation' "$T/reneg.out" || { cat "$T/reneg.out"; fail "renegotiation not refused"; }
still_serving "TLS 1.1, a non-AEAD suite and renegotiation refused; ChaCha20-Poly1305 first"

# 8. a malformed config file: refused with file, line and what was expected
printf 'name: node-2\nlisten: 127.0.0.1:0\nstate_dir: %s/s2\nidentity: %s/id-node-1\nruntime:\n  isolation: jail\n' "$T" "$T" > "$T/bad.yaml"
set +e
"$FERRYD" --config "$T/bad.yaml" 2> "$T/bad.err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "bad.yaml:6: runtime.isolation: expected auto, chroot or none, got 'jail'" "$T/bad.err" \
  || { cat "$T/bad.err"; fail "malformed config"; }
printf 'name: node-2\nlisten: 127.0.0.1:0\ncolour: blue\n' > "$T/bad2.yaml"
set +e; "$FERRYD" --config "$T/bad2.yaml" 2> "$T/bad2.err"; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "bad2.yaml:3: unknown key 'colour'" "$T/bad2.err" || { cat "$T/bad2.err"; fail "unknown key"; }
[ ! -e "$T/s2" ] || fail "a refused config still created its state_dir"
still_serving "a malformed config file (the other agent is untouched)"

# Names mismatched between config and certificate are refused at start.
printf 'name: node-3\nlisten: 127.0.0.1:0\nstate_dir: %s/s3\nidentity: %s/id-node-1\n' "$T" "$T" > "$T/name.yaml"
set +e; "$FERRYD" --config "$T/name.yaml" 2> "$T/name.err"; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "does not match the identity's certificate, which is for 'node-1'" "$T/name.err" || fail "name mismatch"
pass "config name must match the certificate"
finish
