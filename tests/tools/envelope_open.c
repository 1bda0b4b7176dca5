/* envelope_open IDENTITY KIND NODE < MESSAGE: checks a signed message (envelope.h) with the fleet
 * identity in IDENTITY (its CA and revocation list) the way its reader does, and prints its body;
 * or "refused CODE: reason" and exit 1. The tests read each node's status from the broker with
 * it, as a pusher's broker path (not in this version) will. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ferry/envelope.h"
#include "ferry/fsutil.h"

int main(int argc, char **argv) {
  static char msg[FY_ENVELOPE_MAX + 1];
  char err[400];
  fy_tls_conf *conf = NULL;
  if (argc != 4) {
    fprintf(stderr, "usage: envelope_open IDENTITY KIND NODE < MESSAGE\n");
    return 2;
  }
  if (fy_identity_load(argv[1], FY_TLS_PUSHER, &conf, err, sizeof err) != FY_OK) {
    fprintf(stderr, "envelope_open: %s\n", err);
    return 2;
  }
  size_t n = fread(msg, 1, FY_ENVELOPE_MAX, stdin);
  fy_envelope e;
  int rc = fy_envelope_open(conf, msg, n, argv[3], argv[2], 0, (int64_t)time(NULL), &e, err, sizeof err);
  if (rc != FY_OK) {
    printf("refused %s: %s\n", fy_err_name(rc), err);
    fy_tls_conf_free(conf);
    return 1;
  }
  char *s = json_dumps(e.body, JSON_COMPACT | JSON_SORT_KEYS);
  printf("%s\n", s ? s : "null");
  free(s);
  fy_envelope_free(&e);
  fy_tls_conf_free(conf);
  return 0;
}
