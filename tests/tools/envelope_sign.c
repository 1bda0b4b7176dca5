/* envelope_sign KEY.pem CERT.pem KIND NODE SEQ ISSUED EXPIRES [BODY-JSON [NODE-CERT NAME=SECRET]]:
 * prints a signed message (envelope.h) as a pusher would publish it to a broker; with NODE-CERT,
 * body.secrets.NAME is SECRET sealed to that node (seal.h, context "NODE secret NAME"). The tests' stand-in for the pusher's
 * broker path, which this version does not have yet; it signs with the same protocol/ code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/envelope.h"
#include "ferry/fsutil.h"
#include "ferry/seal.h"

int main(int argc, char **argv) {
  char *key = NULL, *cert = NULL, err[300];
  size_t kl, cl;
  fy_sign_key *k = NULL;
  if (argc < 8 || argc == 10 || argc > 11) {
    fprintf(stderr, "usage: envelope_sign KEY CERT KIND NODE SEQ ISSUED EXPIRES [BODY-JSON [NODE-CERT NAME=SECRET]]\n");
    return 2;
  }
  if (fy_file_read(argv[1], 65536, &key, &kl) != FY_OK || fy_file_read(argv[2], 65536, &cert, &cl) != FY_OK ||
      fy_sign_key_parse(key, kl, 1, &k, err, sizeof err) != FY_OK) {
    fprintf(stderr, "envelope_sign: cannot read the key or the certificate\n");
    return 1;
  }
  json_t *body = json_loads(argc >= 9 ? argv[8] : "{}", 0, NULL);
  if (body && argc == 11) {
    char *ncert = NULL, ctx[300];
    size_t nl;
    const char *eq = strchr(argv[10], '=');
    json_t *sealed = NULL;
    if (!eq || fy_file_read(argv[9], 65536, &ncert, &nl) != FY_OK) return 2;
    snprintf(ctx, sizeof ctx, "%s secret %.*s", argv[4], (int)(eq - argv[10]), argv[10]);
    if (fy_seal(ncert, nl, ctx, eq + 1, strlen(eq + 1), &sealed, err, sizeof err) != FY_OK) {
      fprintf(stderr, "envelope_sign: %s\n", err);
      return 1;
    }
    json_t *secrets = json_object();
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(eq - argv[10]), argv[10]);
    json_object_set_new(secrets, name, sealed);
    json_object_set_new(body, "secrets", secrets);
    free(ncert);
  }
  json_t *e = body ? fy_envelope_sign(k, cert, argv[3], argv[4], strtoull(argv[5], NULL, 10), strtoll(argv[6], NULL, 10),
                                      strtoll(argv[7], NULL, 10), body, err, sizeof err)
                   : NULL;
  char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
  if (!s) {
    fprintf(stderr, "envelope_sign: %s\n", body ? err : "the body is not JSON");
    return 1;
  }
  puts(s);
  free(s);
  json_decref(e);
  json_decref(body);
  fy_sign_key_free(k);
  free(key);
  free(cert);
  return 0;
}
