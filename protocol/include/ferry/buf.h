/* Bounded byte buffers and a bounds-checked read cursor.
 *
 * fy_buf grows on demand up to a ceiling set at init; growing past it fails with FY_ETOOBIG
 * instead of allocating. fy_rd never reads past its end: every getter checks what remains and
 * returns FY_EPROTO when the input is short. */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"

typedef struct fy_buf {
  uint8_t *data;
  size_t len;  /* bytes in use, starting at data[0] */
  size_t cap;  /* bytes allocated */
  size_t max;  /* hard ceiling for len */
} fy_buf;

/* Cannot fail; allocates nothing. */
void fy_buf_init(fy_buf *b, size_t max);
/* NULL-safe. Zeroes the bytes before freeing when wipe is nonzero (key material). */
void fy_buf_free(fy_buf *b, int wipe);
/* Makes room for `more` bytes. FY_ETOOBIG past the ceiling (overflow-checked), FY_ENOMEM. */
int fy_buf_reserve(fy_buf *b, size_t more) FY_WUR;
int fy_buf_append(fy_buf *b, const void *p, size_t n) FY_WUR;
int fy_buf_append_str(fy_buf *b, const char *s) FY_WUR;
int fy_buf_put_u8(fy_buf *b, uint8_t v) FY_WUR;
int fy_buf_put_u16(fy_buf *b, uint16_t v) FY_WUR; /* big-endian */
int fy_buf_put_u32(fy_buf *b, uint32_t v) FY_WUR; /* big-endian */
int fy_buf_put_u64(fy_buf *b, uint64_t v) FY_WUR; /* big-endian */
/* Drops the first n bytes (n <= len). */
void fy_buf_consume(fy_buf *b, size_t n);
static inline void fy_buf_reset(fy_buf *b) { b->len = 0; }

typedef struct fy_rd {
  const uint8_t *p;
  size_t len;
  size_t off;
} fy_rd;

void fy_rd_init(fy_rd *r, const void *p, size_t len);
static inline size_t fy_rd_left(const fy_rd *r) { return r->len - r->off; }
int fy_rd_u8(fy_rd *r, uint8_t *v) FY_WUR;
int fy_rd_u16(fy_rd *r, uint16_t *v) FY_WUR;
int fy_rd_u32(fy_rd *r, uint32_t *v) FY_WUR;
int fy_rd_u64(fy_rd *r, uint64_t *v) FY_WUR;
/* Points *out at the next n bytes inside the input (no copy). */
int fy_rd_bytes(fy_rd *r, const uint8_t **out, size_t n) FY_WUR;

/* Big-endian helpers for fixed headers. */
static inline uint32_t fy_load_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void fy_store_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

#endif
