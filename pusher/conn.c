/* One pusher-to-agent connection (see conn.h): the name lookup and the connect are ours, the
 * rest is the shared stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

#define CONN_LOW_WATER (256u * 1024u)

static fy_conn *of(fy_stream *s) { return (fy_conn *)s->ud; }

static void done_if_over(fy_conn *c) {
  if (c->stream_closed && !c->resolving) c->ops->on_done(c, c->err, c->msg[0] ? c->msg : NULL);
}

static void stream_closed(fy_stream *s) {
  fy_conn *c = of(s);
  c->stream_closed = 1;
  done_if_over(c);
}

void fy_conn_close(fy_conn *c, int err, const char *msg) {
  if (c->closing) return;
  c->closing = 1;
  c->err = err;
  if (msg) snprintf(c->msg, sizeof c->msg, "%s", msg);
  else if (err != FY_OK) snprintf(c->msg, sizeof c->msg, "%s", fy_strerror(err));
  if (c->resolving) uv_cancel((uv_req_t *)&c->gai); /* its callback still comes */
  fy_stream_close(&c->s);
}

static void on_timeout(fy_stream *s) {
  fy_conn *c = of(s);
  char m[160];
  snprintf(m, sizeof m, "no answer within %llu ms%s", (unsigned long long)c->timeout_ms,
           s->session_ok && fy_session_ready(&s->session) ? "" : " (connect or TLS handshake)");
  fy_conn_close(c, FY_ETIMEDOUT, m);
}

static void on_error(fy_stream *s, int code, const char *msg) {
  fy_conn *c = of(s);
  /* the agent's side of it, in the pusher's words */
  if (code == FY_EEOF && strcmp(msg, "the peer closed the connection") == 0) msg = "the agent closed the connection";
  else if (code == FY_ECONN && strstr(msg, "during the TLS handshake")) msg = "the agent closed the connection during the TLS handshake";
  fy_conn_close(c, code, msg);
}

static int on_frame(fy_stream *s, const fy_frame *f) {
  fy_conn *c = of(s);
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

static void on_ready(fy_stream *s) {
  fy_conn *c = of(s);
  if (c->ops->on_ready) c->ops->on_ready(c);
}

static void on_writable(fy_stream *s) {
  fy_conn *c = of(s);
  if (c->ops->on_writable) c->ops->on_writable(c);
}

static const fy_stream_ops stream_ops = {
    .on_frame = on_frame, .on_ready = on_ready, .on_writable = on_writable,
    .on_timeout = on_timeout, .on_error = on_error, .on_closed = stream_closed,
};

static void on_connect(uv_connect_t *req, int status) {
  fy_conn *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    char m[512];
    snprintf(m, sizeof m, "cannot connect to %s: %s", c->target.address, uv_strerror(status));
    fy_conn_close(c, FY_ECONN, m);
    return;
  }
  const char *expect = c->target.name[0] ? c->target.name : NULL;
  int rc = fy_stream_start(&c->s, c->tls, expect, FY_SIDE_PUSHER);
  if (rc != FY_OK) fy_conn_close(c, rc == FY_ENOMEM ? FY_ENOMEM : FY_ETLS, c->s.session_ok ? fy_tls_errmsg(c->s.session.tls) : NULL);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  fy_conn *c = req->data;
  c->resolving = 0;
  if (c->closing) {
    uv_freeaddrinfo(ai);
    done_if_over(c);
    return;
  }
  if (status < 0) {
    char m[512];
    snprintf(m, sizeof m, "cannot resolve %s: %s", c->target.host, uv_strerror(status));
    uv_freeaddrinfo(ai);
    fy_conn_close(c, FY_ECONN, m);
    return;
  }
  c->connect.data = c;
  int rc = uv_tcp_connect(&c->connect, &c->s.tcp, ai->ai_addr, on_connect);
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
  fy_stream_init(&c->s, loop, &stream_ops, c);
  c->s.low_water = CONN_LOW_WATER;
  c->s.timer_again_on_read = 1;
  fy_stream_timer(&c->s, timeout_ms, 1);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (!t->host[0]) { /* a fleet node without an address: reached only through the broker */
    fy_conn_close(c, FY_ECONN, "it has no address (listen: none): it is reached only through the broker (push, plan, status, the app verbs and exec without input)");
    return;
  }
  c->gai.data = c;
  c->resolving = 1;
  int rc = uv_getaddrinfo(loop, &c->gai, on_resolved, t->host, t->port, &hints);
  if (rc < 0) {
    c->resolving = 0;
    char m[512];
    snprintf(m, sizeof m, "cannot resolve %s: %s", t->host, uv_strerror(rc));
    fy_conn_close(c, FY_ECONN, m);
  }
}

int fy_conn_send(fy_conn *c, uint8_t type, const void *p, size_t n) {
  if (c->closing) return FY_ECONN;
  int rc = fy_stream_send(&c->s, type, p, n);
  if (rc == FY_EPROTO) snprintf(c->msg, sizeof c->msg, "%s", c->s.conv.why);
  return rc;
}

int fy_conn_send_json(fy_conn *c, uint8_t type, const json_t *obj) {
  if (c->closing) return FY_ECONN;
  /* Every hello carries the fleet's revocation list when this identity has one (IDENTITY/crl.pem):
   * agents keep the newest they are shown and refuse the pushers it lists. */
  const char *crl = type == FY_FT_HELLO && c->tls ? fy_tls_conf_crl_pem(c->tls) : NULL;
  if (crl) json_object_set_new((json_t *)obj, "crl", json_string(crl));
  int rc = fy_stream_send_json(&c->s, type, obj);
  if (rc == FY_EPROTO) snprintf(c->msg, sizeof c->msg, "%s", c->s.conv.why);
  return rc;
}
