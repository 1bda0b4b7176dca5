/* The WWW-Authenticate challenge of an OCI registry (RFC 7235 §4.1; the distribution token spec):
 *
 *   Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull"
 *   Basic realm="Registry Realm"
 *
 * A header may carry several challenges separated by commas; the first Bearer one wins, else
 * the first Basic one. Parameter values are tokens or quoted strings (with \-escapes); every
 * value is bounded, and a header that does not follow the grammar is refused rather than
 * guessed at. Pure: bytes in, a struct out. */
#ifndef FERRY_HTTPAUTH_H
#define FERRY_HTTPAUTH_H

#include <stddef.h>

#include "ferry/error.h"

#define FY_AUTH_HEADER_MAX 4096
#define FY_AUTH_VALUE_MAX 1024

typedef enum { FY_AUTH_NONE = 0, FY_AUTH_BASIC, FY_AUTH_BEARER } fy_auth_scheme;

typedef struct fy_auth_challenge {
  fy_auth_scheme scheme;
  char realm[FY_AUTH_VALUE_MAX];    /* Bearer: the token endpoint (https://…, or http:// on loopback) */
  char service[FY_AUTH_VALUE_MAX];
  char scope[FY_AUTH_VALUE_MAX];    /* what the registry asked for; may be "" */
  char error[64];                   /* error="insufficient_scope" and the like, "" when absent */
} fy_auth_challenge;

/* FY_OK with the chosen challenge; FY_EUNSUPPORTED when only other schemes are offered (Digest,
 * Negotiate…), naming them in err; FY_ESYNTAX for a malformed header; FY_ETOOBIG past the
 * ceilings. n bytes of s (no NUL needed). */
int fy_auth_parse(const char *s, size_t n, fy_auth_challenge *out, char *err, size_t errlen) FY_WUR;

#endif
