#include <string.h>

#include "ferry/session.h"

int fy_session_init(fy_session *s, fy_tls_conf *conf, const char *expected_peer,
                    size_t max_payload, fy_frame_cb on_frame, void *ud) {
  memset(s, 0, sizeof *s);
  fy_frame_decoder_init(&s->dec, max_payload);
  s->on_frame = on_frame;
  s->ud = ud;
  if (!conf) { /* plain: a local socket, where the file system decides who may connect */
    fy_buf_init(&s->plain_out, FY_TLS_OUT_MAX);
    return FY_OK;
  }
  return fy_tls_new(&s->tls, conf, expected_peer);
}

int fy_session_init_raw(fy_session *s, fy_tls_conf *conf, const char *expected_peer, fy_bytes_cb on_bytes, void *ud) {
  if (!conf || !on_bytes) return FY_EINVAL;
  int rc = fy_session_init(s, conf, expected_peer, 0, NULL, ud);
  s->on_bytes = on_bytes;
  return rc;
}

int fy_session_send_raw(fy_session *s, const void *p, size_t n) {
  if (!s->tls || !s->on_bytes) return FY_EINVAL;
  if (n > fy_tls_write_room(s->tls)) return FY_EBUSY;
  return fy_tls_write(s->tls, p, n);
}

void fy_session_free(fy_session *s) {
  if (s == NULL) return;
  fy_tls_free(s->tls);
  s->tls = NULL;
  fy_buf_free(&s->plain_out, 1);
  fy_frame_decoder_free(&s->dec);
}

/* Decrypts and decodes until TLS has no whole record left or a callback pauses. */
static int drain(fy_session *s) {
  uint8_t plain[16384];
  for (;;) {
    size_t got;
    int rc = fy_tls_read(s->tls, plain, sizeof plain, &got);
    if (rc == FY_EAGAIN) return FY_OK;
    if (rc != FY_OK) return rc;
    if (s->on_bytes) {
      if ((rc = s->on_bytes(s->ud, plain, got)) != FY_OK) return rc;
      continue;
    }
    rc = fy_frame_decoder_feed(&s->dec, plain, got, s->on_frame, s->ud);
    if (rc == FY_FRAME_PAUSE) {
      s->paused = 1;
      return FY_OK;
    }
    if (rc != FY_OK) return rc;
  }
}

/* A plain session hands the bytes to the decoder, which holds what comes during a pause. */
static int recv_plain(fy_session *s, const uint8_t *p, size_t n) {
  if (n == 0) return FY_OK;
  int rc = fy_frame_decoder_feed(&s->dec, p, n, s->on_frame, s->ud);
  if (rc == FY_FRAME_PAUSE) {
    s->paused = 1;
    return FY_OK;
  }
  return rc;
}

int fy_session_recv(fy_session *s, const uint8_t *p, size_t n) {
  int rc;
  if (!s->tls) return recv_plain(s, p, n);
  if (n > 0 && (rc = fy_tls_feed(s->tls, p, n)) != FY_OK) return rc;
  if (!fy_tls_established(s->tls)) {
    rc = fy_tls_handshake(s->tls);
    if (rc == FY_EAGAIN) return FY_OK;
    if (rc != FY_OK) return rc;
  }
  return s->paused ? FY_OK : drain(s);
}

int fy_session_resume(fy_session *s) {
  if (!s->paused) return FY_OK;
  s->paused = 0;
  int rc = fy_frame_decoder_resume(&s->dec, s->on_frame, s->ud);
  if (rc == FY_FRAME_PAUSE) {
    s->paused = 1;
    return FY_OK;
  }
  return rc != FY_OK || !s->tls ? rc : drain(s);
}

int fy_session_became_ready(fy_session *s) {
  if (s->ready_reported || !fy_session_ready(s)) return 0;
  s->ready_reported = 1;
  return 1;
}

size_t fy_session_send_room(const fy_session *s) {
  size_t room = s->tls ? fy_tls_write_room(s->tls) : s->plain_out.max - s->plain_out.len;
  return room > FY_FRAME_HEADER ? room - FY_FRAME_HEADER : 0;
}

int fy_session_send(fy_session *s, uint8_t type, uint8_t flags, const void *payload, size_t len) {
  uint8_t h[FY_FRAME_HEADER];
  int rc = fy_frame_header(h, type, flags, len, FY_FRAME_MAX);
  if (rc != FY_OK) return rc;
  if (len > fy_session_send_room(s)) return FY_EBUSY;
  if (!s->tls) return fy_frame_append(&s->plain_out, type, flags, payload, len, FY_FRAME_MAX);
  if ((rc = fy_tls_write(s->tls, h, sizeof h)) != FY_OK) return rc;
  return len ? fy_tls_write(s->tls, payload, len) : FY_OK;
}

const uint8_t *fy_session_out(const fy_session *s, size_t *len) {
  if (s->tls) return fy_tls_out(s->tls, len);
  *len = s->plain_out.len;
  return s->plain_out.data;
}

void fy_session_out_consume(fy_session *s, size_t n) {
  if (s->tls) fy_tls_out_consume(s->tls, n);
  else fy_buf_consume(&s->plain_out, n);
}
