#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

#define CONN_READ_BUF 65536
#define CONN_LOW_WATER (256u * 1024u)

struct wreq {
  uv_write_t req;
  fy_conn *c;
  size_t len;
  uint8_t data[];
};

static void handle_closed(uv_handle_t *h) {
  fy_conn *c = h->data;
  if (--c->open_handles > 0) return;
  if (c->session_ok) fy_session_free(&c->session);
  c->session_ok = 0;
  c->ops->on_done(c, c->err, c->msg[0] ? c->msg : NULL);
}

void fy_conn_close(fy_conn *c, int err, const char *msg) {
  if (c->closing) return;
  c->closing = 1;
  c->err = err;
  if (msg) snprintf(c->msg, sizeof c->msg, "%s", msg);
  else if (err != FY_OK) snprintf(c->msg, sizeof c->msg, "%s", fy_strerror(err));
  if (c->open_handles > 1 && c->tcp.data != c) uv_cancel((uv_req_t *)&c->gai); /* lookup in flight */
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, handle_closed);
  if (c->tcp.data == c && !uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
}

static void on_timeout(uv_timer_t *t) {
  fy_conn *c = t->data;
  char m[160];
  snprintf(m, sizeof m, "no answer within %llu ms%s", (unsigned long long)c->timeout_ms,
           c->session_ok && fy_session_ready(&c->session) ? "" : " (connect or TLS handshake)");
  fy_conn_close(c, FY_ETIMEDOUT, m);
}

static void on_written(uv_write_t *req, int status) {
  struct wreq *w = (struct wreq *)req;
  fy_conn *c = w->c;
  c->writing -= w->len;
  free(w);
  if (status < 0) {
    char m[160];
    snprintf(m, sizeof m, "write failed: %s", uv_strerror(status));
    fy_conn_close(c, FY_ECONN, m);
    return;
  }
  if (!c->closing && c->writing < CONN_LOW_WATER && c->ops->on_writable) c->ops->on_writable(c);
}

static int flush(fy_conn *c) {
  size_t len;
  const uint8_t *p = fy_session_out(&c->session, &len);
  if (len == 0 || c->closing) return FY_OK;
  struct wreq *w = malloc(sizeof *w + len);
  if (!w) return FY_ENOMEM;
  memcpy(w->data, p, len);
  w->c = c;
  w->len = len;
  fy_session_out_consume(&c->session, len);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc < 0) {
    free(w);
    return FY_ECONN;
  }
  c->writing += len;
  return FY_OK;
}

static int session_frame(void *ud, const fy_frame *f) {
  fy_conn *c = ud;
  if (fy_conv_recv(&c->conv, f->type) != FY_OK) {
    char m[200];
    snprintf(m, sizeof m, "%s", c->conv.why);
    fy_conn_close(c, FY_EPROTO, m);
    return FY_ECANCELED;
  }
  if (f->type == FY_FT_ERROR) {
    json_t *j = NULL;
    char err[200];
    int code;
    const char *m;
    if (fy_msg_parse(f, &j, err, sizeof err) != FY_OK) return FY_EPROTO;
    fy_msg_error_fields(j, &code, &m);
    char text[512];
    snprintf(text, sizeof text, "agent: %s (%s)", m, fy_err_name(code));
    json_decref(j);
    /* An error frame from the agent ends the conversation with the agent's own code. */
    fy_conn_close(c, code, text);
    return FY_ECANCELED;
  }
  return c->ops->on_frame(c, f);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static __thread char rbuf[CONN_READ_BUF];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  fy_conn *c = s->data;
  if (c->closing) return;
  if (nread < 0) {
    if (!fy_session_ready(&c->session))
      fy_conn_close(c, FY_ECONN, nread == UV_EOF ? "the agent closed the connection during the TLS "
                                                   "handshake" : uv_strerror((int)nread));
    else
      fy_conn_close(c, FY_EEOF, nread == UV_EOF ? "the agent closed the connection" : uv_strerror((int)nread));
    return;
  }
  if (nread == 0) return;
  uv_timer_again(&c->timer);
  int rc = fy_session_recv(&c->session, (const uint8_t *)buf->base, (size_t)nread);
  if (rc == FY_ECANCELED) return; /* closed from a callback */
  if (rc != FY_OK) {
    const char *m = fy_tls_errmsg(c->session.tls);
    char text[512];
    if (rc == FY_EEOF) m = "the agent closed the connection";
    else if (!m[0]) {
      snprintf(text, sizeof text, "%s", fy_strerror(rc));
      m = text;
    }
    fy_conn_close(c, rc, m);
    return;
  }
  if (fy_session_became_ready(&c->session) && c->ops->on_ready) c->ops->on_ready(c);
  if (!c->closing && flush(c) != FY_OK) fy_conn_close(c, FY_ECONN, "write failed");
}

static void on_connect(uv_connect_t *req, int status) {
  fy_conn *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    char m[512];
    snprintf(m, sizeof m, "cannot connect to %s: %s", c->target.address, uv_strerror(status));
    fy_conn_close(c, FY_ECONN, m);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  const char *expect = c->target.name[0] ? c->target.name : NULL;
  fy_conv_init(&c->conv, FY_SIDE_PUSHER);
  if (fy_session_init(&c->session, c->tls, expect, FY_FRAME_MAX, session_frame, c) != FY_OK) {
    fy_conn_close(c, FY_ENOMEM, NULL);
    return;
  }
  c->session_ok = 1;
  int rc = fy_session_recv(&c->session, NULL, 0); /* emits the ClientHello */
  if (rc != FY_OK || flush(c) != FY_OK) {
    fy_conn_close(c, FY_ETLS, fy_tls_errmsg(c->session.tls));
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  fy_conn *c = req->data;
  c->open_handles--; /* the lookup counted as one */
  if (c->closing) {
    uv_freeaddrinfo(ai);
    if (c->open_handles == 0) {
      c->ops->on_done(c, c->err, c->msg[0] ? c->msg : NULL);
    }
    return;
  }
  if (status < 0) {
    char m[512];
    snprintf(m, sizeof m, "cannot resolve %s: %s", c->target.host, uv_strerror(status));
    uv_freeaddrinfo(ai);
    fy_conn_close(c, FY_ECONN, m);
    return;
  }
  uv_tcp_init(c->loop, &c->tcp);
  c->tcp.data = c;
  c->open_handles++;
  c->connect.data = c;
  int rc = uv_tcp_connect(&c->connect, &c->tcp, ai->ai_addr, on_connect);
  uv_freeaddrinfo(ai);
  if (rc < 0) {
    char m[512];
    snprintf(m, sizeof m, "cannot connect to %s: %s", c->target.address, uv_strerror(rc));
    fy_conn_close(c, FY_ECONN, m);
  }
}

void fy_conn_start(fy_conn *c, uv_loop_t *loop, const fy_target *t, fy_tls_conf *tls,
                   const fy_conn_ops *ops, void *ud, uint64_t timeout_ms) {
  struct addrinfo hints;
  memset(c, 0, sizeof *c);
  c->loop = loop;
  c->target = *t;
  c->ops = ops;
  c->ud = ud;
  c->tls = tls;
  c->timeout_ms = timeout_ms;
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->open_handles = 1;
  uv_timer_start(&c->timer, on_timeout, timeout_ms, timeout_ms);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->gai.data = c;
  c->open_handles++;
  int rc = uv_getaddrinfo(loop, &c->gai, on_resolved, t->host, t->port, &hints);
  if (rc < 0) {
    c->open_handles--;
    char m[512];
    snprintf(m, sizeof m, "cannot resolve %s: %s", t->host, uv_strerror(rc));
    fy_conn_close(c, FY_ECONN, m);
  }
}

/* The conversation moves on only for a frame that was queued. */
static int conv_check(fy_conn *c, uint8_t type, fy_conv *next) {
  *next = c->conv;
  if (fy_conv_send(next, type) == FY_OK) return FY_OK;
  snprintf(c->msg, sizeof c->msg, "%s", next->why);
  return FY_EPROTO;
}

int fy_conn_send(fy_conn *c, uint8_t type, const void *p, size_t n) {
  fy_conv next;
  if (c->closing || !c->session_ok) return FY_ECONN;
  int rc = conv_check(c, type, &next);
  if (rc == FY_OK) rc = fy_session_send(&c->session, type, 0, p, n);
  if (rc != FY_OK) return rc;
  c->conv = next;
  return flush(c);
}

int fy_conn_send_json(fy_conn *c, uint8_t type, const json_t *obj) {
  fy_conv next;
  if (c->closing || !c->session_ok) return FY_ECONN;
  int rc = conv_check(c, type, &next);
  if (rc == FY_OK) rc = fy_msg_send(&c->session, type, obj);
  if (rc != FY_OK) return rc;
  c->conv = next;
  return flush(c);
}
