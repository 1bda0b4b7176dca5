#include <string.h>

#include "ferry/frame.h"

const char *fy_frame_type_name(unsigned type) {
  switch (type) {
#define FY__FT_NAME(name, val, str) case val: return str;
    FY_FRAME_TYPES(FY__FT_NAME)
#undef FY__FT_NAME
  default: return "unknown";
  }
}

int fy_frame_header(uint8_t out[FY_FRAME_HEADER], uint8_t type, uint8_t flags, size_t len,
                    size_t max_payload) {
  if (len > max_payload || len > FY_FRAME_MAX) return FY_ETOOBIG;
  out[0] = 'F';
  out[1] = 'Y';
  out[2] = type;
  out[3] = flags;
  fy_store_u32(out + 4, (uint32_t)len);
  return FY_OK;
}

int fy_frame_append(fy_buf *b, uint8_t type, uint8_t flags, const void *payload, size_t len,
                    size_t max_payload) {
  uint8_t h[FY_FRAME_HEADER];
  int rc = fy_frame_header(h, type, flags, len, max_payload);
  if (rc != FY_OK) return rc;
  if ((rc = fy_buf_reserve(b, FY_FRAME_HEADER + len)) != FY_OK) return rc;
  rc = fy_buf_append(b, h, sizeof h);
  if (rc == FY_OK) rc = fy_buf_append(b, payload, len);
  return rc;
}

void fy_frame_decoder_init(fy_frame_decoder *d, size_t max_payload) {
  memset(d, 0, sizeof *d);
  d->max_payload = max_payload > FY_FRAME_MAX ? FY_FRAME_MAX : max_payload;
  fy_buf_init(&d->payload, d->max_payload);
  fy_buf_init(&d->held, FY_FRAME_MAX);
}

static void uncharge(fy_frame_decoder *d) {
  if (d->budget && d->charged) d->budget->used -= d->charged;
  d->charged = 0;
}

void fy_frame_decoder_free(fy_frame_decoder *d) {
  if (d == NULL) return;
  uncharge(d);
  fy_buf_free(&d->payload, 1);
  fy_buf_free(&d->held, 1);
}

static int emit(fy_frame_decoder *d, const uint8_t *payload, fy_frame_cb cb, void *ud) {
  fy_frame f = {.type = d->hdr[2], .flags = d->hdr[3], .len = d->want, .payload = payload};
  d->hdr_got = 0;
  d->want = 0;
  fy_buf_reset(&d->payload);
  int rc = cb(ud, &f);
  if (d->charged) { /* the memory goes back with the charge: a buffer kept at 1 MiB would not count */
    fy_buf_free(&d->payload, 0);
    fy_buf_init(&d->payload, d->max_payload);
  }
  uncharge(d); /* after the handler: the payload was in the buffer until it returned */
  return rc;
}

int fy_frame_decoder_feed(fy_frame_decoder *d, const uint8_t *p, size_t n, fy_frame_cb cb,
                          void *ud) {
  int rc = FY_OK;
  if (d->failed) return d->failed;
  if (d->paused) {
    if ((rc = fy_buf_append(&d->held, p, n)) != FY_OK) goto fail;
    return FY_FRAME_PAUSE;
  }
  while (n > 0) {
    if (d->hdr_got < FY_FRAME_HEADER) {
      size_t take = FY_FRAME_HEADER - d->hdr_got;
      if (take > n) take = n;
      memcpy(d->hdr + d->hdr_got, p, take);
      d->hdr_got += take;
      p += take;
      n -= take;
      /* Reject garbage as early as its first bytes show it. */
      if (d->hdr_got >= 1 && d->hdr[0] != 'F') { rc = FY_EPROTO; goto fail; }
      if (d->hdr_got >= 2 && d->hdr[1] != 'Y') { rc = FY_EPROTO; goto fail; }
      if (d->hdr_got < FY_FRAME_HEADER) break;
      d->want = fy_load_u32(d->hdr + 4);
      if (d->want > d->max_payload) { rc = FY_ETOOBIG; goto fail; }
      if (d->want == 0) {
        if ((rc = emit(d, NULL, cb, ud)) != FY_OK) goto stop;
        continue;
      }
    }
    if (n == 0) break;
    size_t have = d->payload.len;
    size_t take = d->want - have;
    if (take > n) take = n;
    if (have == 0 && take == d->want) {
      /* Whole payload in the caller's buffer: no copy. */
      p += take;
      n -= take;
      if ((rc = emit(d, p - take, cb, ud)) != FY_OK) goto stop;
      continue;
    }
    if (have == 0 && d->budget) { /* this frame must be buffered: it is charged whole, up front */
      if (d->want > d->budget->cap - d->budget->used || d->budget->used > d->budget->cap) { rc = FY_EBUSY; goto fail; }
      d->budget->used += d->want;
      d->charged = d->want;
    }
    if ((rc = fy_buf_append(&d->payload, p, take)) != FY_OK) goto fail;
    p += take;
    n -= take;
    if (d->payload.len == d->want) {
      if ((rc = emit(d, d->payload.data, cb, ud)) != FY_OK) goto stop;
    }
  }
  return FY_OK;
stop:
  if (rc != FY_FRAME_PAUSE) goto fail;
  d->paused = 1;
  if (n > 0 && (rc = fy_buf_append(&d->held, p, n)) != FY_OK) goto fail;
  return FY_FRAME_PAUSE;
fail:
  d->failed = rc;
  return rc;
}

int fy_frame_decoder_resume(fy_frame_decoder *d, fy_frame_cb cb, void *ud) {
  if (d->failed) return d->failed;
  d->paused = 0;
  /* What was held is fed from a buffer of its own: a new pause holds its rest afresh. */
  fy_buf held = d->held;
  fy_buf_init(&d->held, FY_FRAME_MAX);
  int rc = held.len ? fy_frame_decoder_feed(d, held.data, held.len, cb, ud) : FY_OK;
  fy_buf_free(&held, 1);
  return rc;
}
