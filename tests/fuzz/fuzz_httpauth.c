/* libFuzzer target: the WWW-Authenticate challenge parser (a registry's 401). */
#include <stdint.h>
#include <string.h>

#include "ferry/httpauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  char err[256];
  fy_auth_challenge c;
  if (fy_auth_parse((const char *)p, n, &c, err, sizeof err) == FY_OK) {
    /* every value is a terminated string within its field */
    if (strlen(c.realm) >= sizeof c.realm || strlen(c.service) >= sizeof c.service || strlen(c.scope) >= sizeof c.scope) __builtin_trap();
    if (c.scheme != FY_AUTH_BASIC && c.scheme != FY_AUTH_BEARER) __builtin_trap();
  }
  return 0;
}
