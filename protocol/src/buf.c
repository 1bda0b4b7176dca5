#include <stdlib.h>
#include <string.h>

#include "ferry/buf.h"

void fy_buf_init(fy_buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void fy_buf_free(fy_buf *b, int wipe) {
  if (b == NULL) return;
  if (b->data != NULL && wipe) {
    volatile uint8_t *p = b->data;
    for (size_t i = 0; i < b->cap; i++) p[i] = 0;
  }
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int fy_buf_reserve(fy_buf *b, size_t more) {
  if (more > b->max || b->len > b->max - more) return FY_ETOOBIG;
  size_t need = b->len + more;
  if (need <= b->cap) return FY_OK;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < need) ncap = ncap > b->max / 2 ? b->max : ncap * 2;
  uint8_t *p = realloc(b->data, ncap);
  if (p == NULL) return FY_ENOMEM;
  b->data = p;
  b->cap = ncap;
  return FY_OK;
}

int fy_buf_append(fy_buf *b, const void *p, size_t n) {
  int rc = fy_buf_reserve(b, n);
  if (rc != FY_OK) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return FY_OK;
}

int fy_buf_append_str(fy_buf *b, const char *s) { return fy_buf_append(b, s, strlen(s)); }

int fy_buf_put_u8(fy_buf *b, uint8_t v) { return fy_buf_append(b, &v, 1); }

int fy_buf_put_u16(fy_buf *b, uint16_t v) {
  uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  return fy_buf_append(b, t, 2);
}

int fy_buf_put_u32(fy_buf *b, uint32_t v) {
  uint8_t t[4];
  fy_store_u32(t, v);
  return fy_buf_append(b, t, 4);
}

int fy_buf_put_u64(fy_buf *b, uint64_t v) {
  uint8_t t[8];
  fy_store_u32(t, (uint32_t)(v >> 32));
  fy_store_u32(t + 4, (uint32_t)v);
  return fy_buf_append(b, t, 8);
}

void fy_buf_consume(fy_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void fy_rd_init(fy_rd *r, const void *p, size_t len) {
  r->p = p;
  r->len = len;
  r->off = 0;
}

int fy_rd_bytes(fy_rd *r, const uint8_t **out, size_t n) {
  if (n > fy_rd_left(r)) return FY_EPROTO;
  *out = r->p + r->off;
  r->off += n;
  return FY_OK;
}

int fy_rd_u8(fy_rd *r, uint8_t *v) {
  const uint8_t *p;
  int rc = fy_rd_bytes(r, &p, 1);
  if (rc == FY_OK) *v = p[0];
  return rc;
}

int fy_rd_u16(fy_rd *r, uint16_t *v) {
  const uint8_t *p;
  int rc = fy_rd_bytes(r, &p, 2);
  if (rc == FY_OK) *v = (uint16_t)((p[0] << 8) | p[1]);
  return rc;
}

int fy_rd_u32(fy_rd *r, uint32_t *v) {
  const uint8_t *p;
  int rc = fy_rd_bytes(r, &p, 4);
  if (rc == FY_OK) *v = fy_load_u32(p);
  return rc;
}

int fy_rd_u64(fy_rd *r, uint64_t *v) {
  const uint8_t *p;
  int rc = fy_rd_bytes(r, &p, 8);
  if (rc == FY_OK) *v = ((uint64_t)fy_load_u32(p) << 32) | fy_load_u32(p + 4);
  return rc;
}
