/* Signed messages for the broker (envelope.h): a pusher's message opens on its node; one for
 * another node, replayed, expired, from the future, signed by an agent's identity or another
 * fleet's pusher, or changed on the way, does not, each with its reason. Real certificates from
 * the fleet PKI, real ECDSA. */
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "ferry/envelope.h"
#include "ferry/x509.h"

typedef struct ident {
  char cert[8192], key[4096];
} ident;

static void issue(const char *ca, const char *ca_key, const char *name, int role, ident *id) {
  unsigned char serial[16];
  long long na;
  char err[300];
  int rc = fy_x509_issue(ca, strlen(ca), ca_key, strlen(ca_key), name, role, 30, 0, id->cert, sizeof id->cert, id->key, sizeof id->key,
                         serial, &na, err, sizeof err);
  if (rc != FY_OK) fprintf(stderr, "issue %s: %s\n", name, err);
  CHECK_INT(rc, FY_OK);
}

static char *signed_by(const ident *id, const char *kind, const char *node, uint64_t seq, int64_t issued, int64_t expires) {
  fy_sign_key *k = NULL;
  char err[300];
  CHECK_INT(fy_sign_key_parse(id->key, strlen(id->key), 1, &k, err, sizeof err), FY_OK);
  json_t *body = json_pack("{s:{s:s}}", "apps", "hello", "sha256:00");
  json_t *e = k ? fy_envelope_sign(k, id->cert, kind, node, seq, issued, expires, body, err, sizeof err) : NULL;
  CHECK(e != NULL);
  char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
  json_decref(e);
  json_decref(body);
  fy_sign_key_free(k);
  return s;
}

static fy_tls_conf *node_conf;
static char why[400];

static int open_as(const char *node, const char *msg, uint64_t last, int64_t now) {
  fy_envelope e;
  int rc = fy_envelope_open(node_conf, msg, strlen(msg), node, "desired", last, now, &e, why, sizeof why);
  if (rc == FY_OK) {
    CHECK(e.seq > last && strcmp(e.signer, "laptop") == 0);
    CHECK(json_is_object(json_object_get(e.body, "apps")));
  }
  fy_envelope_free(&e);
  return rc;
}

int main(void) {
  static char ca[8192], ca_key[4096], ca2[8192], ca2_key[4096];
  char err[300];
  ident pusher, agent, stranger, node;
  CHECK_INT(fy_x509_new_ca(30, ca, sizeof ca, ca_key, sizeof ca_key, err, sizeof err), FY_OK);
  CHECK_INT(fy_x509_new_ca(30, ca2, sizeof ca2, ca2_key, sizeof ca2_key, err, sizeof err), FY_OK);
  issue(ca, ca_key, "laptop", FY_X509_PUSHER, &pusher);
  issue(ca, ca_key, "pi-2", FY_X509_AGENT, &agent);
  issue(ca2, ca2_key, "laptop", FY_X509_PUSHER, &stranger);
  issue(ca, ca_key, "pi-1", FY_X509_AGENT, &node);
  CHECK_INT(fy_tls_conf_new(&node_conf, FY_TLS_AGENT, ca, strlen(ca), node.cert, strlen(node.cert), node.key, strlen(node.key), err,
                            sizeof err),
            FY_OK);
  int64_t now = (int64_t)time(NULL);
  char *good = signed_by(&pusher, "desired", "pi-1", 7, now - 10, now + 30 * 86400);
  CHECK_INT(open_as("pi-1", good, 6, now), FY_OK);
  /* a week later, still within its expiry: it converges */
  CHECK_INT(open_as("pi-1", good, 6, now + 7 * 86400), FY_OK);
  CHECK_INT(open_as("pi-2", good, 6, now), FY_ENAME);
  CHECK_CONTAINS(why, "another node");
  CHECK_INT(open_as("pi-1", good, 7, now), FY_EDOWNGRADE);
  CHECK_CONTAINS(why, "replayed");
  CHECK_INT(open_as("pi-1", good, 6, now + 31 * 86400), FY_EEXPIRED);
  char *future = signed_by(&pusher, "desired", "pi-1", 8, now + 3600, now + 7200);
  CHECK_INT(open_as("pi-1", future, 6, now), FY_EINVAL);
  /* a pusher reading a node's last desired state for its sequence: the times aside, the rest holds */
  CHECK_INT(open_as("pi-1", good, 6, FY_ENVELOPE_ANY_TIME), FY_OK);
  CHECK_INT(open_as("pi-1", future, 6, FY_ENVELOPE_ANY_TIME), FY_OK);
  CHECK_INT(open_as("pi-2", good, 6, FY_ENVELOPE_ANY_TIME), FY_ENAME);
  char *by_agent = signed_by(&agent, "desired", "pi-1", 9, now, now + 3600);
  CHECK_INT(open_as("pi-1", by_agent, 6, now), FY_EROLE);
  CHECK_CONTAINS(why, "not a pusher");
  char *by_stranger = signed_by(&stranger, "desired", "pi-1", 9, now, now + 3600);
  CHECK_INT(open_as("pi-1", by_stranger, 6, now), FY_ECERT);
  char *request = signed_by(&pusher, "request", "pi-1", 9, now, now + 3600);
  CHECK_INT(open_as("pi-1", request, 6, now), FY_EPROTO);
  /* the payload of one message under the signature of another */
  json_t *a = json_loads(good, 0, NULL), *b = json_loads(future, 0, NULL);
  json_object_set(a, "payload", json_object_get(b, "payload"));
  char *swapped = json_dumps(a, JSON_COMPACT);
  CHECK_INT(open_as("pi-1", swapped, 6, now), FY_ESIGNATURE);
  /* an agent's certificate carried with the pusher's signature: the role is the certificate's */
  json_object_set_new(b, "cert", json_string(agent.cert));
  char *recert = json_dumps(b, JSON_COMPACT);
  CHECK_INT(open_as("pi-1", recert, 6, now), FY_EROLE);
  CHECK_INT(open_as("pi-1", "{\"payload\":\"!!\",\"sig\":\"x\",\"cert\":\"y\"}", 0, now), FY_EPROTO);
  CHECK_INT(open_as("pi-1", "[]", 0, now), FY_EPROTO);
  CHECK_INT(open_as("pi-1", "{\"payload\":\"e30=\",\"sig\":\"x\",\"cert\":\"not a certificate\"}", 0, now), FY_ECERT);
  json_decref(a);
  json_decref(b);
  free(good);
  free(future);
  free(by_agent);
  free(by_stranger);
  free(request);
  free(swapped);
  free(recert);
  fy_tls_conf_free(node_conf);
  return check_done("test_envelope");
}
