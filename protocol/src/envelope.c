/* Signed messages from a pusher to one node; see envelope.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "ferry/envelope.h"
#include "ferry/text.h"

json_t *fy_envelope_sign(fy_sign_key *key, const char *cert_pem, const char *kind, const char *node, uint64_t seq, int64_t issued,
                         int64_t expires, const json_t *body, char *err, size_t errlen) {
  char sig[FY_SIG_B64_MAX + 1];
  json_t *p = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:O}", "v", 1, "kind", kind, "node", node, "seq", (json_int_t)seq, "issued",
                        (json_int_t)issued, "expires", (json_int_t)expires, "body", body ? body : json_null());
  char *text = p ? json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(p);
  size_t tl = text ? strlen(text) : 0, cap = 4 * ((tl + 2) / 3) + 1, olen = 0;
  unsigned char *b64 = text ? malloc(cap) : NULL;
  json_t *env = NULL;
  if (!b64 || tl > FY_ENVELOPE_MAX / 2) {
    fy_text_fmt(err, errlen, "%s", b64 ? "the message is too large" : "out of memory (or text that is not UTF-8)");
  } else if (fy_sign_data(key, text, tl, sig, sizeof sig) != FY_OK) {
    fy_text_fmt(err, errlen, "signing failed (is the key the identity's key.pem?)");
  } else if (mbedtls_base64_encode(b64, cap, &olen, (const unsigned char *)text, tl) != 0 ||
             !(env = json_pack("{s:s%, s:s, s:s}", "payload", (char *)b64, olen, "sig", sig, "cert", cert_pem))) {
    fy_text_fmt(err, errlen, "out of memory");
  }
  free(b64);
  free(text);
  return env;
}

static int get_int(const json_t *o, const char *k, json_int_t *v) {
  const json_t *x = json_object_get(o, k);
  if (!json_is_integer(x) || json_integer_value(x) < 0) return 0;
  *v = json_integer_value(x);
  return 1;
}

int fy_envelope_open(const fy_tls_conf *fleet, const char *json, size_t len, const char *own_name, const char *kind,
                     uint64_t last_seq, int64_t now, fy_envelope *out, char *err, size_t errlen) {
  char pub[1024], why[300];
  memset(out, 0, sizeof *out);
  if (len > FY_ENVELOPE_MAX) return fy_text_fail(err, errlen, FY_EPROTO, "a message of %zu bytes (at most %u)", len, FY_ENVELOPE_MAX);
  json_t *env = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL), *p = NULL;
  const char *b64 = json_string_value(json_object_get(env, "payload")), *sig = json_string_value(json_object_get(env, "sig"));
  const char *cert = json_string_value(json_object_get(env, "cert"));
  unsigned char *payload = NULL;
  size_t plen = 0;
  fy_sign_key *k = NULL;
  int rc = FY_EPROTO;
  if (!json_is_object(env) || !b64 || !sig || !cert) {
    fy_text_fmt(err, errlen, "not a signed message (payload, sig, cert)");
    goto out;
  }
  size_t bl = strlen(b64);
  if (!(payload = malloc(bl / 4 * 3 + 4)) || mbedtls_base64_decode(payload, bl / 4 * 3 + 4, &plen, (const unsigned char *)b64, bl) != 0) {
    fy_text_fmt(err, errlen, "its payload is not base64");
    goto out;
  }
  /* Who signed, then what: nothing of the payload is believed before the signature verifies. A
   * node's status, and its reply to a request, is signed by that node; everything else by a
   * pusher. */
  int status = strcmp(kind, "status") == 0 || strcmp(kind, "reply") == 0;
  if ((rc = fy_tls_conf_check_cert(fleet, cert, strlen(cert), status ? FY_TLS_AGENT : FY_TLS_PUSHER, out->signer, sizeof out->signer,
                                   pub, sizeof pub, why, sizeof why)) != FY_OK) {
    fy_text_fmt(err, errlen, "not from a %s of this fleet: %s", status ? "node" : "pusher", why);
    goto out;
  }
  if (fy_sign_key_parse(pub, strlen(pub), 0, &k, why, sizeof why) != FY_OK || fy_sign_verify(k, payload, plen, sig) != FY_OK) {
    rc = FY_ESIGNATURE;
    fy_text_fmt(err, errlen, "the signature of %s does not verify (forged, or changed on the way)", out->signer);
    goto out;
  }
  p = json_loadb((const char *)payload, plen, JSON_REJECT_DUPLICATES, NULL);
  json_int_t v = 0, seq = 0, issued = 0, expires = 0;
  const char *pk = json_string_value(json_object_get(p, "kind")), *node = json_string_value(json_object_get(p, "node"));
  rc = FY_EPROTO;
  if (!json_is_object(p) || !get_int(p, "v", &v) || v != 1 || !pk || !node || !get_int(p, "seq", &seq) ||
      !get_int(p, "issued", &issued) || !get_int(p, "expires", &expires) || !json_object_get(p, "body")) {
    fy_text_fmt(err, errlen, "a signed payload ferry does not read (version 1: kind, node, seq, issued, expires, body)");
    goto out;
  }
  if (strcmp(pk, kind) != 0) {
    fy_text_fmt(err, errlen, "a %.15s message where a %s was expected", pk, kind);
    goto out;
  }
  /* signed and readable: its sequence goes with any refusal below (out->body stays NULL) */
  out->seq = (uint64_t)seq;
  if (strcmp(node, own_name) != 0) {
    rc = FY_ENAME;
    fy_text_fmt(err, errlen, "for another node, %.63s", node);
  } else if (status && strcmp(out->signer, node) != 0) {
    rc = FY_ENAME;
    fy_text_fmt(err, errlen, "the %s of %.63s signed by %.63s", kind, node, out->signer);
  } else if ((uint64_t)seq <= last_seq) {
    rc = FY_EDOWNGRADE;
    fy_text_fmt(err, errlen, "replayed or out of order: sequence %lld, this node is at %llu", (long long)seq, (unsigned long long)last_seq);
  } else if (now != FY_ENVELOPE_ANY_TIME && expires <= now) {
    rc = FY_EEXPIRED;
    fy_text_fmt(err, errlen, "expired %lld s ago (sequence %lld)", (long long)(now - expires), (long long)seq);
  } else if (now != FY_ENVELOPE_ANY_TIME && issued > now + FY_ENVELOPE_SKEW_S) {
    rc = FY_EINVAL;
    fy_text_fmt(err, errlen, "issued %lld s in the future (is this node's clock right?)", (long long)(issued - now));
  } else {
    snprintf(out->kind, sizeof out->kind, "%s", pk);
    snprintf(out->node, sizeof out->node, "%s", node);
    out->seq = (uint64_t)seq;
    out->issued = issued;
    out->expires = expires;
    out->body = json_incref(json_object_get(p, "body"));
    rc = FY_OK;
  }
out:
  fy_sign_key_free(k);
  free(payload);
  json_decref(p);
  json_decref(env);
  return rc;
}

void fy_envelope_free(fy_envelope *e) {
  json_decref(e->body);
  e->body = NULL;
}
