#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "ferry/mbedtls_compat.h"

#include "ferry/digest.h"

_Static_assert(sizeof(mbedtls_sha256_context) <= sizeof(fy_sha256), "fy_sha256 too small");

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int fy_digest_parse(const char *s, fy_digest *out) {
  if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64) return FY_EINVAL;
  for (int i = 0; i < 32; i++) {
    int hi = hexval(s[7 + 2 * i]), lo = hexval(s[8 + 2 * i]);
    if (hi < 0 || lo < 0) return FY_EINVAL;
    out->bytes[i] = (uint8_t)(hi << 4 | lo);
  }
  return FY_OK;
}

char *fy_digest_hex(const fy_digest *d, char buf[FY_DIGEST_HEX]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    buf[2 * i] = hx[d->bytes[i] >> 4];
    buf[2 * i + 1] = hx[d->bytes[i] & 15];
  }
  buf[64] = '\0';
  return buf;
}

char *fy_digest_format(const fy_digest *d, char *buf) {
  memcpy(buf, "sha256:", 7);
  fy_digest_hex(d, buf + 7);
  return buf;
}

int fy_digest_equal(const fy_digest *a, const fy_digest *b) { return memcmp(a->bytes, b->bytes, 32) == 0; }

void fy_sha256_init(fy_sha256 *h) {
  mbedtls_sha256_context *c = (mbedtls_sha256_context *)h;
  mbedtls_sha256_init(c);
  (void)fy_mbed_sha256_starts(c);
}

void fy_sha256_update(fy_sha256 *h, const void *p, size_t n) {
  (void)fy_mbed_sha256_update((mbedtls_sha256_context *)h, p, n);
}

void fy_sha256_final(fy_sha256 *h, fy_digest *out) {
  mbedtls_sha256_context *c = (mbedtls_sha256_context *)h;
  (void)fy_mbed_sha256_finish(c, out->bytes);
  mbedtls_sha256_free(c);
}

void fy_sha256_once(const void *p, size_t n, fy_digest *out) {
  fy_sha256 h;
  fy_sha256_init(&h);
  fy_sha256_update(&h, p, n);
  fy_sha256_final(&h, out);
}
