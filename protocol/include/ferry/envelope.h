/* Signed messages through a broker: from a pusher to one node (desired state, requests), and a
 * node's own status (kind "status", signed by that node, which a pusher checks). Trust does not move to the broker: each message is signed by the pusher's fleet
 * identity (ECDSA P-256 over SHA-256 of the exact payload bytes, which travel base64-encoded, so
 * nothing has to be canonicalized again), names its node, carries a per-node sequence number and
 * an expiry, and is opened only by a node that checks all of it:
 *
 *   {"payload": B64({"v":1,"kind":"desired"|"request"|"status"|"reply","node":NAME,"seq":N,"issued":T,"expires":T,"body":{…}}),
 *    "sig": B64(DER), "cert": PEM of the pusher's certificate}
 *
 * Times are seconds since the epoch. Secrets inside the body are sealed to the node (seal.h). */
#ifndef FERRY_ENVELOPE_H
#define FERRY_ENVELOPE_H

#include <jansson.h>
#include <stdint.h>

#include "ferry/error.h"
#include "ferry/sign.h"
#include "ferry/tls.h"

#define FY_ENVELOPE_MAX (4u * 1024u * 1024u) /* an envelope's bytes */
#define FY_ENVELOPE_SKEW_S 300               /* how far in the future `issued` may be (clocks differ) */
#define FY_ENVELOPE_ANY_TIME INT64_MIN       /* as now: the times are not checked (a pusher reading a node's last desired state) */

typedef struct fy_envelope {
  char kind[16];
  char node[64];
  uint64_t seq;
  int64_t issued, expires;
  char signer[256];  /* the pusher's name, from its certificate */
  json_t *body;      /* owned */
} fy_envelope;

/* A new envelope (JSON object) signed with key (the identity's key.pem) and carrying cert_pem
 * (its cert.pem). NULL with a reason in err. */
json_t *fy_envelope_sign(fy_sign_key *key, const char *cert_pem, const char *kind, const char *node, uint64_t seq, int64_t issued,
                         int64_t expires, const json_t *body, char *err, size_t errlen);

/* Opens the envelope in json[0..len) for the node own_name (a status or a reply: the node it
 * describes, which must be its signer),
 * expecting kind. Checked in this order,
 * each with its reason in err:
 *   FY_EPROTO      not an envelope of this version, or not of that kind
 *   FY_ECERT       the signer's certificate is not the fleet's (another CA, expired, revoked)
 *   FY_EROLE       the signer is not a pusher (an agent's or the broker's identity); for a
 *                  status, not a node
 *   FY_ENAME       (a status) signed by another node than the one it describes
 *   FY_ESIGNATURE  the signature does not verify (forged, or the payload changed)
 *   FY_ENAME       for another node
 *   FY_EDOWNGRADE  seq is not above last_seq (replayed, or reordered)
 *   FY_EEXPIRED    expires is not after now
 *   FY_EINVAL      issued more than FY_ENVELOPE_SKEW_S after now
 * On FY_OK *out holds the fields (fy_envelope_free). On the refusals from FY_ENAME on, the
 * message was signed and read: out->seq holds its sequence (for the refusal's event), nothing
 * else. */
int fy_envelope_open(const fy_tls_conf *fleet, const char *json, size_t len, const char *own_name, const char *kind,
                     uint64_t last_seq, int64_t now, fy_envelope *out, char *err, size_t errlen) FY_WUR;
void fy_envelope_free(fy_envelope *e);

#endif
