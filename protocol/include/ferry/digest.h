/* Content digests: "sha256:" + 64 lower-case hex digits (OCI image spec, descriptor.md). */
#ifndef FERRY_DIGEST_H
#define FERRY_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"

#define FY_DIGEST_STR 72 /* "sha256:" + 64 + NUL, rounded */
#define FY_DIGEST_HEX 65

typedef struct fy_digest {
  uint8_t bytes[32];
} fy_digest;

/* Parses "sha256:<64 lower-case hex>". FY_EINVAL for any other algorithm or shape. */
int fy_digest_parse(const char *s, fy_digest *out) FY_WUR;
/* "sha256:..." into buf (FY_DIGEST_STR bytes). Returns buf. */
char *fy_digest_format(const fy_digest *d, char *buf);
/* The 64 hex digits alone (a blob's file name). */
char *fy_digest_hex(const fy_digest *d, char buf[FY_DIGEST_HEX]);
int fy_digest_equal(const fy_digest *a, const fy_digest *b);

/* Incremental SHA-256. init cannot fail; the context holds no heap memory. */
typedef struct fy_sha256 {
  uint64_t opaque[32]; /* large enough for mbedtls_sha256_context on every target */
} fy_sha256;
void fy_sha256_init(fy_sha256 *h);
void fy_sha256_update(fy_sha256 *h, const void *p, size_t n);
void fy_sha256_final(fy_sha256 *h, fy_digest *out);
void fy_sha256_once(const void *p, size_t n, fy_digest *out);

#endif
