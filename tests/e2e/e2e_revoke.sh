#!/usr/bin/env bash
# Revocation, as an operator runs it after losing a laptop or a device: `ferry cert revoke`
# writes the fleet's revocation list (an X.509 CRL signed by the CA, which openssl verifies);
# a pusher carries it to the agents it reaches; they keep the newest, refuse the revoked pusher
# (also after a restart), and pushers refuse a revoked agent. A list from another CA is refused.
source "$(dirname "$0")/lib.sh"
setup_fleet
"$FERRY" cert issue --ca "$T/ca" --name thief --role pusher --out "$T/thief" > /dev/null
start_agent node ''
N="node@127.0.0.1:$PORT_node"
"$FERRY" status --identity "$T/thief" --to "$N" > /dev/null || fail "the thief's identity works before it is revoked"

"$FERRY" cert revoke --ca "$T/ca" --name thief > "$T/rv.out" || { cat "$T/rv.out"; fail "cert revoke"; }
grep -q "revoked 1 certificate(s) of thief; $T/ca/crl.pem lists 1" "$T/rv.out" || { cat "$T/rv.out"; fail "revoke output"; }
openssl crl -in "$T/ca/crl.pem" -CAfile "$T/ca/ca.pem" -noout 2>&1 | grep -q "verify OK" || fail "openssl does not verify the list"
SERIAL=$(openssl x509 -in "$T/thief/cert.pem" -noout -serial | cut -d= -f2)
openssl crl -in "$T/ca/crl.pem" -noout -text | grep -qi "Serial Number: $SERIAL" || fail "the thief's serial is not on the list"
pass "ferry cert revoke --name thief: an X.509 CRL signed by the fleet CA (openssl verifies it) listing the thief's serial"

# Another pusher brings the list; from then on the thief is refused, also after a restart.
cp "$T/ca/crl.pem" "$T/me/crl.pem"
"$FERRY" status --identity "$T/me" --to "$N" > /dev/null || fail "status with the list"
wait_log "$T/node.log" "the fleet's revocation list is now the one from $T/state-node/crl.pem, 1 certificate(s) revoked"
thief_refused() {
  set +e; "$FERRY" status --identity "$T/thief" --to "node@127.0.0.1:$PORT_node" > /dev/null 2> "$T/thief.err"; local rc=$?; set -e
  [ $rc -ne 0 ] && grep -q "the agent refused our certificate: it has been revoked" "$T/thief.err"
}
thief_refused || { cat "$T/thief.err"; fail "the revoked pusher was served"; }
wait_log "$T/node.log" "the pusher's certificate has been revoked"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
start_agent node ''
thief_refused || { cat "$T/thief.err"; fail "the revoked pusher was served after a restart"; }
wait_log "$T/node.log" "the pusher's certificate has been revoked"
"$FERRY" status --identity "$T/me" --to "node@127.0.0.1:$PORT_node" > /dev/null || fail "the other pusher is refused"
pass "the list travels with another pusher's hello; the agent keeps it (STATE/crl.pem) and refuses the revoked pusher, also after a restart"

# A revoked agent is refused by a pusher that has the list.
"$FERRY" cert revoke --ca "$T/ca" --name node > /dev/null
cp "$T/ca/crl.pem" "$T/me/crl.pem"
set +e; "$FERRY" status --identity "$T/me" --to "node@127.0.0.1:$PORT_node" > /dev/null 2> "$T/agent.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "the agent's certificate has been revoked" "$T/agent.err" || { cat "$T/agent.err"; fail "a revoked agent was trusted"; }
pass "a pusher holding the list refuses a revoked agent: '$(grep -o "the agent's certificate has been revoked[^)]*)" "$T/agent.err" | head -1)'"

# A list from another CA never loads.
"$FERRY" ca init "$T/ca2" > /dev/null
"$FERRY" cert issue --ca "$T/ca2" --name x --role pusher --out "$T/x" > /dev/null
"$FERRY" cert revoke --ca "$T/ca2" --name x > /dev/null
cp "$T/ca2/crl.pem" "$T/thief/crl.pem"
set +e; "$FERRY" status --identity "$T/thief" --to "node@127.0.0.1:$PORT_node" > /dev/null 2> "$T/forged.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "crl.pem: the revocation list is not signed by the fleet CA" "$T/forged.err" || { cat "$T/forged.err"; fail "a forged list"; }
pass "a revocation list signed by another CA is refused"
finish
