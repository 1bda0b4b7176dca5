/* One ferry connection on a libuv loop (see stream.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/stream.h"

struct wreq {
  uv_write_t req;
  fy_stream *s;
  size_t len;
  uint8_t data[];
};

static void handle_closed(uv_handle_t *h) {
  fy_stream *s = h->data;
  if (--s->open_handles > 0) return;
  if (s->session_ok) fy_session_free(&s->session);
  s->session_ok = 0;
  s->ops->on_closed(s);
}

void fy_stream_close(fy_stream *s) {
  if (s->closing) return;
  s->closing = 1;
  uv_close((uv_handle_t *)&s->timer, handle_closed);
  uv_close((uv_handle_t *)&s->tcp, handle_closed);
}

/* Every failure of the stream reaches the owner once. */
static void failed(fy_stream *s, int code, const char *msg) {
  if (s->closing || s->ending) return;
  s->ops->on_error(s, code, msg);
}

static void on_written(uv_write_t *req, int status) {
  struct wreq *w = (struct wreq *)req;
  fy_stream *s = w->s;
  s->writing -= w->len;
  free(w);
  if (s->closing) return;
  if (status < 0) {
    char m[160];
    snprintf(m, sizeof m, "write failed: %s", uv_strerror(status));
    if (s->ending) fy_stream_close(s);
    else failed(s, FY_ECONN, m);
    return;
  }
  if (s->ending && s->writing == 0) {
    fy_stream_close(s); /* the error frame is out */
    return;
  }
  if (!s->ending && s->low_water && s->writing < s->low_water && s->ops->on_writable) s->ops->on_writable(s);
}

/* Hands what TLS produced to the socket, one write request holding its own copy. */
static int flush(fy_stream *s) {
  size_t len;
  const uint8_t *p = fy_session_out(&s->session, &len);
  if (len == 0 || s->closing) return FY_OK;
  if (s->write_cap && s->writing + len > s->write_cap) return FY_ETOOBIG;
  struct wreq *w = malloc(sizeof *w + len);
  if (!w) return FY_ENOMEM;
  memcpy(w->data, p, len);
  w->s = s;
  w->len = len;
  fy_session_out_consume(&s->session, len);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_written) < 0) {
    free(w);
    return FY_ECONN;
  }
  s->writing += len;
  return FY_OK;
}

static void flush_or_fail(fy_stream *s) {
  int rc = flush(s);
  if (rc == FY_OK) return;
  char m[160];
  if (rc == FY_ETOOBIG)
    snprintf(m, sizeof m, "over the per-connection memory ceiling (%zu bytes unread by the peer)", s->writing);
  else
    snprintf(m, sizeof m, "cannot write: %s", fy_strerror(rc));
  if (s->ending) fy_stream_close(s);
  else failed(s, rc, m);
}

static int stream_frame(void *ud, const fy_frame *f) {
  fy_stream *s = ud;
  if (s->closing || s->ending) return FY_ECANCELED;
  if (fy_conv_recv(&s->conv, f->type) != FY_OK) {
    failed(s, FY_EPROTO, s->conv.why);
    return FY_ECANCELED;
  }
  return s->ops->on_frame(s, f);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  fy_stream *s = h->data;
  (void)suggested;
  *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void on_read(uv_stream_t *t, ssize_t nread, const uv_buf_t *buf);

/* What follows feeding the session, from a read or a resume. */
static void after_recv(fy_stream *s, int rc) {
  if (s->closing) return;
  if (fy_session_became_ready(&s->session) && s->ops->on_ready && !s->ending) s->ops->on_ready(s);
  if (s->closing) return;
  if (rc == FY_EEOF) {
    failed(s, FY_EEOF, "the peer closed the connection");
  } else if (rc != FY_OK && rc != FY_ECANCELED) {
    char m[200];
    const char *why = s->session_ok && s->session.tls ? fy_tls_errmsg(s->session.tls) : "";
    if (rc == FY_ETOOBIG) snprintf(m, sizeof m, "frame length over the ceiling of %u bytes", FY_FRAME_MAX);
    else if (rc == FY_EPROTO) snprintf(m, sizeof m, "malformed frame");
    else if (rc == FY_EBUSY) snprintf(m, sizeof m, "busy: the frames being received from all peers fill the agent's frame memory; try again");
    else snprintf(m, sizeof m, "%s", why[0] ? why : fy_strerror(rc));
    failed(s, rc, m);
  }
  if (s->closing) return;
  if (!s->ending) {
    int paused = fy_session_paused(&s->session);
    if (paused && !s->read_paused) uv_read_stop((uv_stream_t *)&s->tcp);
    else if (!paused && s->read_paused) uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, on_read);
    s->read_paused = paused;
  }
  flush_or_fail(s);
}

static void on_read(uv_stream_t *t, ssize_t nread, const uv_buf_t *buf) {
  fy_stream *s = t->data;
  if (s->closing || s->ending) return;
  if (nread < 0) {
    int ready = s->session_ok && fy_session_ready(&s->session);
    char m[160];
    if (nread == UV_EOF) snprintf(m, sizeof m, "the peer closed the connection%s", ready ? "" : " during the TLS handshake");
    else snprintf(m, sizeof m, "%s", uv_strerror((int)nread));
    failed(s, ready ? FY_EEOF : FY_ECONN, m);
    return;
  }
  if (nread == 0) return;
  if (s->timer_again_on_read) uv_timer_again(&s->timer);
  after_recv(s, fy_session_recv(&s->session, (const uint8_t *)buf->base, (size_t)nread));
}

void fy_stream_resume(fy_stream *s) {
  if (s->closing || s->ending || !s->session_ok) return;
  after_recv(s, fy_session_resume(&s->session));
}

static void timer_cb(uv_timer_t *t) {
  fy_stream *s = t->data;
  if (s->closing) return;
  if (s->ending) { /* the peer did not read its error in time */
    fy_stream_close(s);
    return;
  }
  s->ops->on_timeout(s);
}

void fy_stream_timer(fy_stream *s, uint64_t ms, int repeat) {
  if (s->closing) return;
  if (ms == 0) {
    uv_timer_stop(&s->timer);
    uv_timer_set_repeat(&s->timer, 0); /* reads (timer_again_on_read) do not start it again */
  }
  else uv_timer_start(&s->timer, timer_cb, ms, repeat ? ms : 0);
}

static void init(fy_stream *s, uv_loop_t *loop, const fy_stream_ops *ops, void *ud, int pipe) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->ops = ops;
  s->ud = ud;
  if (pipe) uv_pipe_init(loop, &s->pipe, 0);
  else uv_tcp_init(loop, &s->tcp);
  uv_timer_init(loop, &s->timer);
  s->tcp.data = s->timer.data = s;
  s->open_handles = 2;
}

void fy_stream_init(fy_stream *s, uv_loop_t *loop, const fy_stream_ops *ops, void *ud) { init(s, loop, ops, ud, 0); }
void fy_stream_init_pipe(fy_stream *s, uv_loop_t *loop, const fy_stream_ops *ops, void *ud) { init(s, loop, ops, ud, 1); }

static int stream_bytes(void *ud, const uint8_t *p, size_t n) {
  fy_stream *s = ud;
  if (s->closing || s->ending) return FY_ECANCELED;
  return s->ops->on_bytes(s, p, n);
}

int fy_stream_start(fy_stream *s, fy_tls_conf *tls, const char *expected_peer, fy_side side) {
  fy_conv_init(&s->conv, side);
  int rc = s->ops->on_bytes ? fy_session_init_raw(&s->session, tls, expected_peer, stream_bytes, s)
                            : fy_session_init(&s->session, tls, expected_peer, FY_FRAME_MAX, stream_frame, s);
  if (rc != FY_OK) return rc;
  s->session_ok = 1;
  if (s->tcp.type == UV_TCP) uv_tcp_nodelay(&s->tcp, 1);
  if (side == FY_SIDE_PUSHER) { /* the client speaks first: its ClientHello */
    rc = fy_session_recv(&s->session, NULL, 0);
    if (rc == FY_OK) rc = flush(s);
    if (rc != FY_OK) return rc;
  }
  return uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, on_read) == 0 ? FY_OK : FY_ECONN;
}

/* The conversation moves on only for a frame that was queued. */
static int send_checked(fy_stream *s, uint8_t type, const void *p, size_t n, const json_t *obj) {
  if (s->closing || s->ending || !s->session_ok) return FY_ECONN;
  fy_conv next = s->conv;
  if (fy_conv_send(&next, type) != FY_OK) {
    s->conv = next; /* keeps the reason in why; the phase did not move */
    return FY_EPROTO;
  }
  int rc = obj ? fy_msg_send(&s->session, type, obj) : fy_session_send(&s->session, type, 0, p, n);
  if (rc != FY_OK) return rc;
  s->conv = next;
  return flush(s);
}

int fy_stream_send(fy_stream *s, uint8_t type, const void *p, size_t n) { return send_checked(s, type, p, n, NULL); }
int fy_stream_send_bytes(fy_stream *s, const void *p, size_t n) {
  if (s->closing || s->ending || !s->session_ok) return FY_ECONN;
  int rc = fy_session_send_raw(&s->session, p, n);
  return rc == FY_OK ? flush(s) : rc;
}
int fy_stream_send_json(fy_stream *s, uint8_t type, const json_t *obj) { return send_checked(s, type, NULL, 0, obj); }

void fy_stream_end(fy_stream *s, int code, const char *msg, uint64_t grace_ms) {
  if (s->closing || s->ending) return;
  if (s->session_ok && !s->session.on_bytes && fy_session_ready(&s->session) &&
      fy_msg_send_error(&s->session, code, msg ? msg : "") == FY_OK)
    s->conv.phase = FY_CONV_DONE;
  s->ending = 1;
  uv_read_stop((uv_stream_t *)&s->tcp);
  flush_or_fail(s);
  if (s->closing) return;
  if (s->writing == 0) fy_stream_close(s);
  else uv_timer_start(&s->timer, timer_cb, grace_ms, 0);
}
