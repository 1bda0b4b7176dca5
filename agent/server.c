/* The listener and its connections: TCP on libuv, TLS and frames through fy_session,
 * messages dispatched through a table by frame type. One bad peer costs one
 * connection: every failure here ends in conn_fail for that connection only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "ferry/conv.h"
#include "ferry/msg.h"
#include <stdint.h>

#define READ_BUF 65536

struct fy_agent_conn {
  uv_tcp_t tcp;            /* first: container_of from the stream */
  uv_timer_t timer;
  fy_agent *agent;
  uint64_t id;             /* how anything that outlives a callback refers to this connection */
  fy_session session;
  fy_conv conv;            /* which frame is legal now (ferry/conv.h) */
  int session_ok;
  int open_handles;
  int ending;              /* stop reading; close when writes drain */
  int closing;
  size_t writing;
  unsigned version;        /* negotiated; 0 before hello */
  int held;                /* agent-side work in progress: no idle timeout */
  int read_paused;         /* a handler paused the frames: the socket is not read meanwhile */
  fy_frame kept;           /* a frame a handler kept for later (fy_conn_defer), payload owned */
  int has_kept;
  struct fy_deploy *deploy;
  char peer[64];           /* "ip:port" */
  fy_agent_conn *prev, *next;
  char rbuf[READ_BUF];
};

static void conn_handle_closed(uv_handle_t *h) {
  fy_agent_conn *c = h->data;
  if (--c->open_handles > 0) return;
  fy_agent *a = c->agent;
  if (c->prev) c->prev->next = c->next;
  else a->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  a->nconns--;
  if (c->session_ok) fy_session_free(&c->session);
  free((void *)c->kept.payload);
  free(c);
}

static void conn_close(fy_agent_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  fy_deploy_conn_closed(c);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void on_written(uv_write_t *req, int status) {
  fy_agent_conn *c = req->data;
  c->writing -= *(size_t *)(req + 1);
  free(req);
  if (status < 0 || (c->ending && c->writing == 0)) conn_close(c);
}

static void flush(fy_agent_conn *c) {
  size_t len;
  const uint8_t *p = c->session_ok ? fy_session_out(&c->session, &len) : NULL;
  if (!p || len == 0 || c->closing) {
    if (c->ending && c->writing == 0) conn_close(c);
    return;
  }
  /* One allocation: the request, its length, then the bytes. */
  uv_write_t *req = malloc(sizeof *req + sizeof(size_t) + len);
  if (!req) {
    conn_close(c);
    return;
  }
  *(size_t *)(req + 1) = len;
  uint8_t *data = (uint8_t *)(req + 1) + sizeof(size_t);
  memcpy(data, p, len);
  fy_session_out_consume(&c->session, len);
  req->data = c;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  /* What the peer has not read counts against its memory ceiling, beside the largest frame the
   * decoder may hold: a peer that asks and never reads loses its connection, not our memory. */
  if (c->writing + len + FY_FRAME_MAX > c->agent->cfg.connection_memory) {
    fy_log("warn", "peer %s: %s: over the per-connection memory ceiling (%llu bytes unread by the peer)", c->peer,
           fy_err_name(FY_ETOOBIG), (unsigned long long)(c->writing + len));
    free(req);
    conn_close(c);
    return;
  }
  if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
    free(req);
    conn_close(c);
    return;
  }
  c->writing += len;
}

/* Ends the connection after telling the peer why (when TLS is up to carry it). */
void fy_conn_fail(fy_agent_conn *c, int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->ending || c->closing) return;
  fy_log("warn", "peer %s: %s: %s (%s)", c->peer, fy_err_name(code), msg,
         c->session_ok && fy_session_ready(&c->session) ? "connection closed" : "refused");
  if (c->session_ok && fy_session_ready(&c->session) && fy_msg_send_error(&c->session, code, msg) != FY_OK) {
    /* no room to say why: just close */
  }
  c->ending = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  flush(c);
}

int fy_conn_send_json(fy_agent_conn *c, uint8_t type, const json_t *obj) {
  if (c->closing || c->ending) return FY_ECONN;
  if (fy_conv_send(&c->conv, type) != FY_OK) { /* a bug on this side: say so, end the connection */
    fy_log("error", "peer %s: %s", c->peer, c->conv.why);
    return FY_EPROTO;
  }
  int rc = fy_msg_send(&c->session, type, obj);
  if (rc == FY_OK) flush(c);
  return rc;
}

static void on_timeout(uv_timer_t *t);

void fy_conn_hold(fy_agent_conn *c, int hold) {
  c->held = hold;
  if (c->closing || c->ending) return;
  if (hold) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_timeout, c->agent->cfg.idle_timeout_ms, 0);
}

const char *fy_conn_peer(const fy_agent_conn *c) { return c->peer; }
const char *fy_conn_pusher(const fy_agent_conn *c) {
  return c->session_ok && c->session.tls ? fy_tls_peer_name(c->session.tls) : "";
}
void fy_conn_abort(fy_agent_conn *c) { conn_close(c); }
fy_agent *fy_conn_agent(fy_agent_conn *c) { return c->agent; }

uint64_t fy_conn_id(const fy_agent_conn *c) { return c->id; }
unsigned fy_conn_version(const fy_agent_conn *c) { return c->version; }

fy_agent_conn *fy_conn_find(fy_agent *a, uint64_t id) {
  if (id == 0) return NULL;
  for (fy_agent_conn *p = a->conns; p; p = p->next)
    if (p->id == id) return !p->closing && !p->ending ? p : NULL;
  return NULL;
}
struct fy_deploy **fy_conn_deploy(fy_agent_conn *c) { return &c->deploy; }

/* --- message handlers ------------------------------------------------------------------- */

typedef int (*handler_fn)(fy_agent_conn *c, const fy_frame *f);

static int on_hello(fy_agent_conn *c, const fy_frame *f) {
  json_t *hello;
  char err[256];
  int rc;
  if ((rc = fy_msg_parse(f, &hello, err, sizeof err)) != FY_OK) {
    fy_conn_fail(c, rc, "%s", err);
    return FY_ECANCELED;
  }
  rc = fy_msg_negotiate(hello, &c->version);
  json_decref(hello);
  if (rc != FY_OK) {
    fy_conn_fail(c, rc, rc == FY_EVERSION ? "this agent speaks protocol versions %u to %u" : "malformed hello",
              FY_PROTO_VERSION_MIN, FY_PROTO_VERSION);
    return FY_ECANCELED;
  }
  fy_agent *a = c->agent;
  uint64_t up = (uv_now(a->loop) - a->started_ms) / 1000;
  json_t *facts = fy_facts_json(&a->cfg, &a->facts, a->name, up);
  if (facts) json_object_set_new(facts, "apps", fy_apps_json(a));
  if (facts) json_object_set_new(facts, "agent_digest", json_string(a->self_digest));
  if (facts) json_object_set_new(facts, "proto", json_integer(c->version)); /* the version both speak */
  rc = facts ? fy_conn_send_json(c, FY_FT_FACTS, facts) : FY_ENOMEM;
  if (rc == FY_OK) fy_upgrade_answered(a);
  json_decref(facts);
  if (rc != FY_OK) {
    fy_conn_fail(c, rc, "cannot answer hello");
    return FY_ECANCELED;
  }
  return FY_OK;
}

/* What a pusher may send; the conversation (ferry/conv.h) has already said whether it may send
 * it now. */
static const handler_fn handlers[FY_FT__MAX + 1] = {
    [FY_FT_HELLO] = on_hello,
    [FY_FT_PLAN] = fy_deploy_on_plan,
    [FY_FT_BLOB_BEGIN] = fy_deploy_on_blob_begin,
    [FY_FT_BLOB] = fy_deploy_on_blob,
    [FY_FT_COMMIT] = fy_deploy_on_commit,
    [FY_FT_REQUEST] = fy_request_on_request,
};

static int dispatch(fy_agent_conn *c, const fy_frame *f) {
  handler_fn fn = f->type <= FY_FT__MAX ? handlers[f->type] : NULL;
  if (!fn) {
    fy_conn_fail(c, FY_EPROTO, "unexpected %s message (type %u)", fy_frame_type_name(f->type), f->type);
    return FY_ECANCELED;
  }
  return fn(c, f);
}

int fy_conn_defer(fy_agent_conn *c, const fy_frame *f) {
  uint8_t *p = f->len ? malloc(f->len) : NULL;
  if (f->len && !p) {
    fy_conn_fail(c, FY_ENOMEM, "out of memory");
    return FY_ECANCELED;
  }
  if (f->len) memcpy(p, f->payload, f->len);
  free((void *)c->kept.payload);
  c->kept = *f;
  c->kept.payload = p;
  c->has_kept = 1;
  return FY_FRAME_PAUSE;
}

void fy_conn_redispatch(fy_agent_conn *c) {
  if (c->closing || c->ending) return;
  if (c->has_kept) {
    fy_frame f = c->kept;
    c->has_kept = 0;
    c->kept.payload = NULL;
    int rc = dispatch(c, &f); /* the conversation took it when it arrived */
    if (f.payload != c->kept.payload) free((void *)f.payload); /* unless kept again */
    if (rc != FY_OK) return; /* kept again, or the connection failed */
  }
  fy_conn_resume(c);
}

static int on_frame(void *ud, const fy_frame *f) {
  fy_agent_conn *c = ud;
  if (c->ending) return FY_ECANCELED;
  if (fy_conv_recv(&c->conv, f->type) != FY_OK) {
    fy_conn_fail(c, FY_EPROTO, "%s", c->conv.why);
    return FY_ECANCELED;
  }
  /* Idle means no complete frame: a peer that trickles bytes does not keep a connection. */
  if (!c->held && !c->closing && !c->ending) uv_timer_start(&c->timer, on_timeout, c->agent->cfg.idle_timeout_ms, 0);
  return dispatch(c, f);
}

/* --- socket callbacks ------------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t) {
  fy_agent_conn *c = t->data;
  if (c->ending) {
    conn_close(c); /* the peer does not read what we wrote */
    return;
  }
  int ready = c->session_ok && fy_session_ready(&c->session);
  fy_conn_fail(c, FY_ETIMEDOUT, "%s %llu ms", ready ? "idle peer: no complete frame for" : "TLS handshake not completed within",
            (unsigned long long)(ready ? c->agent->cfg.idle_timeout_ms : c->agent->cfg.handshake_timeout_ms));
  /* Give the peer a short grace to read the error, then close regardless. */
  uv_timer_start(&c->timer, on_timeout, 2000, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  fy_agent_conn *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void after_recv(fy_agent_conn *c, int rc);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

void fy_conn_resume(fy_agent_conn *c) {
  if (c->closing || c->ending) return;
  after_recv(c, fy_session_resume(&c->session));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  fy_agent_conn *c = s->data;
  if (c->closing || c->ending) return;
  if (nread < 0) {
    if (nread != UV_EOF && nread != UV_ECONNRESET)
      fy_log("info", "peer %s: read: %s", c->peer, uv_strerror((int)nread));
    conn_close(c);
    return;
  }
  if (nread == 0) return;
  after_recv(c, fy_session_recv(&c->session, (const uint8_t *)buf->base, (size_t)nread));
}

/* What follows feeding the session, from a read or a resume. */
static void after_recv(fy_agent_conn *c, int rc) {
  if (c->closing) return;
  if (fy_session_became_ready(&c->session)) {
    fy_log("info", "peer %s: TLS up, pusher '%s', %s", c->peer, fy_tls_peer_name(c->session.tls),
           fy_tls_suite(c->session.tls));
    uv_timer_start(&c->timer, on_timeout, c->agent->cfg.idle_timeout_ms, 0);
  }
  if (rc == FY_EEOF) {
    conn_close(c);
    return;
  }
  if (rc != FY_OK && rc != FY_ECANCELED) {
    if (rc == FY_ETOOBIG)
      fy_conn_fail(c, rc, "frame length over the ceiling of %u bytes", FY_FRAME_MAX);
    else if (rc == FY_EPROTO)
      fy_conn_fail(c, rc, "malformed frame");
    else {
      const char *why = fy_tls_errmsg(c->session.tls);
      fy_conn_fail(c, rc, "%s", why[0] ? why : fy_strerror(rc));
    }
  }
  if (c->closing) return;
  if (!c->ending) {
    int paused = fy_session_paused(&c->session);
    if (paused && !c->read_paused) uv_read_stop((uv_stream_t *)&c->tcp);
    else if (!paused && c->read_paused) uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    c->read_paused = paused;
  }
  flush(c);
}

static void on_connection(uv_stream_t *server, int status) {
  fy_agent *a = container_of(server, fy_agent, listener);
  if (status < 0) {
    fy_log("warn", "accept: %s", uv_strerror(status));
    return;
  }
  fy_agent_conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->agent = a;
  c->id = ++a->last_conn_id;
  uv_tcp_init(a->loop, &c->tcp);
  uv_timer_init(a->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  c->next = a->conns;
  if (a->conns) a->conns->prev = c;
  a->conns = c;
  a->nconns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  char ip[48] = "?";
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
      snprintf(c->peer, sizeof c->peer, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
      snprintf(c->peer, sizeof c->peer, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
  }
  if (a->stopping || a->nconns > a->cfg.max_connections) {
    fy_log("warn", "peer %s: refused: %s", c->peer, a->stopping ? "shutting down" : "too many connections");
    a->refused++;
    conn_close(c);
    return;
  }
  a->accepted++;
  fy_conv_init(&c->conv, FY_SIDE_AGENT);
  if (fy_session_init(&c->session, a->tls, NULL, FY_FRAME_MAX, on_frame, c) != FY_OK) {
    conn_close(c);
    return;
  }
  c->session_ok = 1;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_timer_start(&c->timer, on_timeout, a->cfg.handshake_timeout_ms, 0);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

int fy_server_start(fy_agent *a, char *err, size_t errlen) {
  struct sockaddr_storage addr;
  int rc;
  if (uv_ip4_addr(a->cfg.listen_host, a->cfg.listen_port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(a->cfg.listen_host, a->cfg.listen_port, (struct sockaddr_in6 *)&addr) != 0) {
    snprintf(err, errlen, "listen: '%s' is not an IP address", a->cfg.listen_host);
    return FY_ECONFIG;
  }
  uv_tcp_init(a->loop, &a->listener);
  a->listener.data = a;
  if ((rc = uv_tcp_bind(&a->listener, (struct sockaddr *)&addr, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&a->listener, 128, on_connection)) != 0) {
    snprintf(err, errlen, "listen on %s:%d: %s", a->cfg.listen_host, a->cfg.listen_port, uv_strerror(rc));
    return FY_ECONN;
  }
  struct sockaddr_storage bound;
  int bl = sizeof bound;
  uv_tcp_getsockname(&a->listener, (struct sockaddr *)&bound, &bl);
  int port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                               : ((struct sockaddr_in *)&bound)->sin_port);
  char plat[FY_PLATFORM_STR];
  /* The readiness line tests and scripts wait for; keep its shape. */
  fy_log("info", "listening on %s:%d as %s (%s, board %s)", a->cfg.listen_host, port, a->name,
         fy_platform_format(&a->facts.platform, plat, sizeof plat),
         a->facts.have_board ? a->facts.board.name : "unknown");
  return FY_OK;
}

void fy_server_stop(fy_agent *a) {
  a->stopping = 1;
  if (!uv_is_closing((uv_handle_t *)&a->listener)) uv_close((uv_handle_t *)&a->listener, NULL);
  for (fy_agent_conn *c = a->conns; c; c = c->next) conn_close(c);
}
