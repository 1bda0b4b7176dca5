/* Sealing to one node (seal.h): real ECDH P-256, HKDF-SHA256 and ChaCha20-Poly1305 through
 * mbedTLS, with certificates and keys as the fleet PKI issues them. What must open opens; a
 * value sealed to another node, for another context, tampered with or malformed does not. */
#include <stdlib.h>

#include "check.h"
#include "ferry/seal.h"
#include "ferry/x509.h"

static char ca[8192], ca_key[4096];

typedef struct ident {
  char cert[8192], key[4096];
} ident;

static void issue(const char *name, ident *id) {
  unsigned char serial[16];
  long long na;
  char err[300];
  int rc = fy_x509_issue(ca, strlen(ca), ca_key, strlen(ca_key), name, FY_X509_AGENT, 30, 0, id->cert, sizeof id->cert, id->key,
                         sizeof id->key, serial, &na, err, sizeof err);
  if (rc != FY_OK) fprintf(stderr, "issue %s: %s\n", name, err);
  CHECK_INT(rc, FY_OK);
}

static int opens(const ident *id, const char *context, const json_t *sealed, const char *want) {
  unsigned char *p = NULL;
  size_t n = 0;
  char err[300];
  int rc = fy_unseal(id->key, strlen(id->key), context, sealed, &p, &n, err, sizeof err);
  if (rc == FY_OK && want) CHECK(n == strlen(want) && memcmp(p, want, n) == 0);
  free(p);
  return rc;
}

int main(void) {
  char err[300];
  ident pi1, pi2;
  CHECK_INT(fy_x509_new_ca(30, ca, sizeof ca, ca_key, sizeof ca_key, err, sizeof err), FY_OK);
  issue("pi-1", &pi1);
  issue("pi-2", &pi2);
  const char *secret = "db-password=hunter2";
  json_t *s = NULL, *s2 = NULL;
  CHECK_INT(fy_seal(pi1.cert, strlen(pi1.cert), "pi-1 desired", secret, strlen(secret), &s, err, sizeof err), FY_OK);
  CHECK(s != NULL);
  char *text = json_dumps(s, JSON_COMPACT);
  CHECK(text && strstr(text, "hunter2") == NULL); /* nothing of it readable */
  free(text);
  CHECK_INT(opens(&pi1, "pi-1 desired", s, secret), FY_OK);
  /* another node, another context */
  CHECK_INT(opens(&pi2, "pi-1 desired", s, NULL), FY_ESIGNATURE);
  CHECK_INT(opens(&pi1, "pi-2 desired", s, NULL), FY_ESIGNATURE);
  /* sealing twice: another ephemeral key and nonce, both open */
  CHECK_INT(fy_seal(pi1.cert, strlen(pi1.cert), "pi-1 desired", secret, strlen(secret), &s2, err, sizeof err), FY_OK);
  CHECK(strcmp(json_string_value(json_object_get(s, "ct")), json_string_value(json_object_get(s2, "ct"))) != 0);
  CHECK_INT(opens(&pi1, "pi-1 desired", s2, secret), FY_OK);
  /* the ciphertext of one with the key of the other: the tag fails */
  json_t *mix = json_deep_copy(s);
  json_object_set(mix, "ct", json_object_get(s2, "ct"));
  CHECK_INT(opens(&pi1, "pi-1 desired", mix, NULL), FY_ESIGNATURE);
  json_decref(mix);
  /* a flipped bit */
  json_t *t = json_deep_copy(s);
  char ct[256];
  snprintf(ct, sizeof ct, "%s", json_string_value(json_object_get(t, "ct")));
  ct[3] = ct[3] == 'A' ? 'B' : 'A';
  json_object_set_new(t, "ct", json_string(ct));
  CHECK_INT(opens(&pi1, "pi-1 desired", t, NULL), FY_ESIGNATURE);
  /* an ephemeral key that is not a point of the curve */
  json_object_set_new(t, "ct", json_string(json_string_value(json_object_get(s, "ct"))));
  json_object_set_new(t, "epk", json_string("BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
  CHECK_INT(opens(&pi1, "pi-1 desired", t, NULL), FY_ESIGNATURE);
  json_decref(t);
  /* malformed */
  json_t *bad = json_pack("{s:s}", "alg", "rot13");
  CHECK_INT(opens(&pi1, "pi-1 desired", bad, NULL), FY_EPROTO);
  json_decref(bad);
  CHECK_INT(opens(&pi1, "pi-1 desired", json_object_get(s, "nothing"), NULL), FY_EPROTO);
  /* an empty value seals and opens; a key that is not a key is refused */
  json_t *e = NULL;
  CHECK_INT(fy_seal(pi1.cert, strlen(pi1.cert), "ctx", "", 0, &e, err, sizeof err), FY_OK);
  CHECK_INT(opens(&pi1, "ctx", e, ""), FY_OK);
  json_decref(e);
  CHECK_INT(fy_seal("not a cert", 10, "ctx", "x", 1, &e, err, sizeof err), FY_EINVAL);
  json_decref(s);
  json_decref(s2);
  return check_done("test_seal");
}
