/* The listener and its connections: each connection is a shared stream (net/: TCP, TLS, frames,
 * the conversation, writes, counted close) with what ferryd keeps about its peer; messages are
 * dispatched through a table by frame type. One bad peer costs one connection: every failure
 * here ends that connection only. */
#include <stdarg.h>
#include <stdint.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "broker.h"
#include "ferry/fsutil.h"
#include "ferry/msg.h"
#include "ferry/text.h"
#include "ferry/stream.h"

struct fy_agent_conn {
  fy_stream s;             /* first: the stream's ud points back here */
  fy_agent *agent;
  uint64_t id;             /* how anything that outlives a callback refers to this connection */
  unsigned version;        /* negotiated; 0 before hello */
  int held;                /* agent-side work in progress: no idle timeout */
  fy_frame kept;           /* a frame a handler kept for later (fy_conn_defer), payload owned */
  int has_kept;
  struct fy_deploy *deploy;
  struct fy_exec *exec;    /* ferry exec's process, while it runs */
  int authed;              /* the TLS handshake completed: counts against max_connections */
  int local;               /* on the local socket (ferryd --import): a plain session */
  char peer[64];           /* "ip:port" */
  char ip[48];             /* the source address, for the per-source handshake budget */
  fy_agent_conn *prev, *next;
};

#define END_GRACE_MS 2000 /* how long a peer has to read the error it was sent */
#define LOCAL_MAX 16      /* connections on the local socket at once (ferryd --import) */

static fy_agent_conn *of(fy_stream *s) { return s->ud; }

/* Every handle closed: off the agent's list, its deploy told, freed. */
static void conn_closed(fy_stream *s) {
  fy_agent_conn *c = of(s);
  fy_agent *a = c->agent;
  fy_deploy_conn_closed(c);
  fy_exec_conn_closed(c);
  if (c->prev) c->prev->next = c->next;
  else a->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  a->nconns--;
  free((void *)c->kept.payload);
  free(c);
}

/* Ends the connection after telling the peer why (when TLS is up to carry it). */
void fy_conn_fail(fy_agent_conn *c, int code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->s.ending || c->s.closing) return;
  fy_log("warn", "peer %s: %s: %s (%s)", c->peer, fy_err_name(code), msg,
         c->s.session_ok && fy_session_ready(&c->s.session) ? "connection closed" : "refused");
  fy_stream_end(&c->s, code, msg, END_GRACE_MS);
}

int fy_conn_refuse(fy_agent_conn *c, int code, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fy_conn_fail(c, code, "%s", msg);
  return FY_ECANCELED;
}

/* What a send's failure means for the connection. */
static int sent(fy_agent_conn *c, int rc) {
  if (rc == FY_EPROTO) fy_log("error", "peer %s: %s", c->peer, c->s.conv.why); /* a bug on this side */
  if (rc == FY_ETOOBIG) { /* a peer that asks and never reads loses its connection, not our memory */
    fy_log("warn", "peer %s: %s: over the per-connection memory ceiling (%zu bytes unread by the peer)", c->peer,
           fy_err_name(FY_ETOOBIG), c->s.writing);
    fy_stream_close(&c->s);
  }
  return rc;
}

int fy_conn_send_json(fy_agent_conn *c, uint8_t type, const json_t *obj) {
  return c->s.closing || c->s.ending ? FY_ECONN : sent(c, fy_stream_send_json(&c->s, type, obj));
}

int fy_conn_send(fy_agent_conn *c, uint8_t type, const void *p, size_t n) {
  return c->s.closing || c->s.ending ? FY_ECONN : sent(c, fy_stream_send(&c->s, type, p, n));
}

void fy_conn_hold(fy_agent_conn *c, int hold) {
  c->held = hold;
  if (c->s.closing || c->s.ending) return;
  fy_stream_timer(&c->s, hold ? 0 : c->agent->cfg.idle_timeout_ms, 0);
}

const char *fy_conn_peer(const fy_agent_conn *c) { return c->peer; }
const char *fy_conn_pusher(const fy_agent_conn *c) {
  if (c->local) return "local:import";
  return c->s.session_ok && c->s.session.tls ? fy_tls_peer_name(c->s.session.tls) : "";
}
void fy_conn_abort(fy_agent_conn *c) { fy_stream_close(&c->s); }
fy_agent *fy_conn_agent(fy_agent_conn *c) { return c->agent; }
uint64_t fy_conn_id(const fy_agent_conn *c) { return c->id; }
unsigned fy_conn_version(const fy_agent_conn *c) { return c->version; }
/* The idle clock measures the peer: it does not run while this side works on a frame. */
static void idle_clock(fy_agent_conn *c, int rc) {
  if (c->s.closing || c->s.ending || c->held) return;
  fy_stream_timer(&c->s, rc == FY_FRAME_PAUSE ? 0 : c->agent->cfg.idle_timeout_ms, 0);
}

void fy_conn_resume(fy_agent_conn *c) {
  idle_clock(c, FY_OK);
  fy_stream_resume(&c->s);
}

fy_agent_conn *fy_conn_find(fy_agent *a, uint64_t id) {
  if (id == 0) return NULL;
  for (fy_agent_conn *p = a->conns; p; p = p->next)
    if (p->id == id) return !p->s.closing && !p->s.ending ? p : NULL;
  return NULL;
}
size_t fy_conn_unsent(const fy_agent_conn *c) { return c->s.writing; }
struct fy_exec **fy_conn_exec(fy_agent_conn *c) { return &c->exec; }
struct fy_deploy **fy_conn_deploy(fy_agent_conn *c) { return &c->deploy; }

void fy_conn_forget_deploy(fy_agent *a, const struct fy_deploy *d) {
  for (fy_agent_conn *p = a->conns; p; p = p->next) /* closing ones too: their close callback reads it */
    if (p->deploy == d) p->deploy = NULL;
}

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
  /* A newer revocation list from the fleet CA is kept (STATE/crl.pem); the pusher that brought
   * it must not be on it. */
  const char *crl = fy_msg_str(hello, "crl", FY_CRL_PEM_MAX);
  if (rc == FY_OK && crl && fy_agent_take_crl(c->agent, crl, err, sizeof err) != FY_OK)
    fy_log("warn", "peer %s: %s", c->peer, err);
  json_decref(hello);
  if (rc == FY_OK && c->s.session_ok && c->s.session.tls && fy_tls_peer_revoked(c->s.session.tls)) {
    fy_conn_fail(c, FY_ECERT, "the pusher's certificate has been revoked (it is on the fleet's revocation list)");
    return FY_ECANCELED;
  }
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
  if (facts) json_object_set_new(facts, "recovering", json_boolean(a->recovering));
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
    [FY_FT_INPUT] = fy_exec_on_input,
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
  if (c->s.closing || c->s.ending) return;
  if (c->has_kept) {
    fy_frame f = c->kept;
    c->has_kept = 0;
    c->kept.payload = NULL;
    int rc = dispatch(c, &f); /* the conversation took it when it arrived */
    if (f.payload != c->kept.payload) free((void *)f.payload); /* unless kept again */
    if (rc != FY_OK) return;                                   /* kept again, or the connection failed */
  }
  fy_conn_resume(c);
}

/* --- stream callbacks -------------------------------------------------------------------- */

static int admit(fy_agent_conn *c);

static int on_frame(fy_stream *s, const fy_frame *f) {
  fy_agent_conn *c = of(s);
  if (!admit(c)) return FY_ECANCELED;
  /* Idle means no complete frame: a peer that trickles bytes does not keep a connection. */
  int rc = dispatch(c, f);
  idle_clock(c, rc);
  return rc;
}

/* An authenticated peer takes a slot of limits.max_connections, or is refused; decided before
 * its first frame is handled (frames sent along with the handshake's Finished come first). */
static int admit(fy_agent_conn *c) {
  if (c->authed) return 1;
  int authed = 0;
  if (c->local) { /* local peers have a budget of their own (LOCAL_MAX), not the pushers' slots */
    c->authed = 1;
    fy_log("info", "peer %s: connected on the local socket", c->peer);
    return 1;
  }
  for (fy_agent_conn *o = c->agent->conns; o; o = o->next) authed += o != c && !o->local && o->authed && !o->s.closing && !o->s.ending;
  if (authed >= c->agent->cfg.max_connections) {
    c->agent->refused++;
    fy_conn_fail(c, FY_EBUSY, "too many connections (limits.max_connections %d)", c->agent->cfg.max_connections);
    return 0;
  }
  c->authed = 1;
  fy_log("info", "peer %s: TLS up, pusher '%s', %s %s", c->peer, fy_tls_peer_name(c->s.session.tls),
         fy_tls_version(c->s.session.tls), fy_tls_suite(c->s.session.tls));
  return 1;
}

static void on_ready(fy_stream *s) {
  fy_agent_conn *c = of(s);
  if (!admit(c)) return;
  if (!c->held) fy_stream_timer(s, c->agent->cfg.idle_timeout_ms, 0);
}

static void on_timeout(fy_stream *s) {
  fy_agent_conn *c = of(s);
  int ready = c->authed; /* a TLS peer once its handshake is done, a local one after its first frame */
  fy_conn_fail(c, FY_ETIMEDOUT, "%s %llu ms", ready ? "idle peer: no complete frame for"
                                             : c->local ? "no frame within" : "TLS handshake not completed within",
               (unsigned long long)(ready ? c->agent->cfg.idle_timeout_ms : c->agent->cfg.handshake_timeout_ms));
}

static void on_error(fy_stream *s, int code, const char *msg) {
  fy_agent_conn *c = of(s);
  if (code == FY_EEOF || code == FY_ECONN) { /* the peer went, or the socket failed: nobody to tell */
    if (strstr(msg, "the peer closed the connection") == NULL && strcmp(msg, "connection reset by peer") != 0)
      fy_log("info", "peer %s: read: %s", c->peer, msg);
    fy_stream_close(s);
    return;
  }
  if (strncmp(msg, "over the per-connection memory ceiling", 38) == 0) {
    fy_log("warn", "peer %s: %s: %s", c->peer, fy_err_name(code), msg);
    fy_stream_close(s);
    return;
  }
  fy_conn_fail(c, code, "%s", msg);
}

static const fy_stream_ops conn_ops = {
    .on_frame = on_frame, .on_ready = on_ready, .on_timeout = on_timeout, .on_error = on_error, .on_closed = conn_closed,
};

/* Connections still in the handshake have a budget of their own, overall and per source address:
 * when a new one would exceed it, the oldest unauthenticated one (of that source, or overall) is
 * dropped. Nothing waits in the accept backlog, and idle sockets never take the slots of
 * authenticated peers. */
static void handshake_room(fy_agent *a, fy_agent_conn *nc) {
  fy_agent_conn *oldest = NULL, *oldest_src = NULL;
  int n = 0, nsrc = 0;
  for (fy_agent_conn *o = a->conns; o; o = o->next) { /* newest first: the last match is the oldest */
    if (o == nc || o->authed || o->local || o->s.closing || o->s.ending) continue;
    n++;
    oldest = o;
    if (strcmp(o->ip, nc->ip) == 0) {
      nsrc++;
      oldest_src = o;
    }
  }
  fy_agent_conn *drop = nsrc >= a->cfg.max_handshakes_per_source ? oldest_src : n >= a->cfg.max_handshakes ? oldest : NULL;
  if (!drop) return;
  fy_log("info", "peer %s: dropped before its handshake completed, to make room (%s)", drop->peer,
         drop == oldest_src && nsrc >= a->cfg.max_handshakes_per_source ? "limits.max_handshakes_per_source" : "limits.max_handshakes");
  a->refused++;
  fy_stream_close(&drop->s);
}

static fy_agent_conn *conn_new(fy_agent *a, int local) {
  fy_agent_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (local) fy_stream_init_pipe(&c->s, a->loop, &conn_ops, c);
  else fy_stream_init(&c->s, a->loop, &conn_ops, c);
  c->local = local;
  c->agent = a;
  c->id = ++a->last_conn_id;
  /* What the peer has not read counts against its memory ceiling, beside the largest frame the
   * decoder may hold. */
  c->s.write_cap = a->cfg.connection_memory > FY_FRAME_MAX ? a->cfg.connection_memory - FY_FRAME_MAX : 1;
  c->next = a->conns;
  if (a->conns) a->conns->prev = c;
  a->conns = c;
  a->nconns++;
  return c;
}

/* The frame memory every decoder shares, and the handshake's (or a local peer's first frame's)
 * deadline. */
static int conn_start(fy_agent *a, fy_agent_conn *c) {
  if (fy_stream_start(&c->s, c->local ? NULL : a->tls, NULL, FY_SIDE_AGENT) != FY_OK) {
    fy_stream_close(&c->s);
    return FY_ECONN;
  }
  a->frames.cap = a->cfg.frame_memory;
  c->s.session.dec.budget = &a->frames;
  fy_stream_timer(&c->s, a->cfg.handshake_timeout_ms, 0);
  return FY_OK;
}

static void on_connection(uv_stream_t *server, int status) {
  fy_agent *a = container_of(server, fy_agent, listener);
  if (status < 0) {
    fy_log("warn", "accept: %s", uv_strerror(status));
    return;
  }
  fy_agent_conn *c = conn_new(a, 0);
  if (!c) return;
  if (uv_accept(server, (uv_stream_t *)&c->s.tcp) != 0) {
    fy_stream_close(&c->s);
    return;
  }
  /* A held connection (logs -f, exec) has no idle timeout: keepalive finds a peer that vanished
   * without a FIN (a laptop that slept, a cut cable) and frees its slot. */
  (void)uv_tcp_keepalive(&c->s.tcp, 1, 60);
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  char ip[48] = "?";
  if (uv_tcp_getpeername(&c->s.tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
      snprintf(c->peer, sizeof c->peer, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
      snprintf(c->peer, sizeof c->peer, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
  }
  snprintf(c->ip, sizeof c->ip, "%s", ip);
  if (a->stopping) {
    fy_log("warn", "peer %s: refused: shutting down", c->peer);
    a->refused++;
    fy_stream_close(&c->s);
    return;
  }
  handshake_room(a, c);
  a->accepted++;
  (void)conn_start(a, c);
}

/* The local socket (STATE_DIR/ferryd.sock, mode 0600 in a 0700 directory): ferryd --import on
 * the device itself speaks the same conversation there, without TLS. Only root or the agent's
 * own user gets in (the peer's credentials, beside the file's mode); everything a plan goes
 * through (the signature policy, the limits) is the same as for a pusher. */
static void on_local_connection(uv_stream_t *server, int status) {
  fy_agent *a = container_of((uv_pipe_t *)server, fy_agent, local_listener);
  if (status < 0) {
    fy_log("warn", "accept on the local socket: %s", uv_strerror(status));
    return;
  }
  fy_agent_conn *c = conn_new(a, 1);
  if (!c) return;
  snprintf(c->peer, sizeof c->peer, "local");
  snprintf(c->ip, sizeof c->ip, "local");
  if (uv_accept(server, (uv_stream_t *)&c->s.pipe) != 0) {
    fy_stream_close(&c->s);
    return;
  }
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t cl = sizeof cred;
  if (uv_fileno((uv_handle_t *)&c->s.pipe, &fd) != 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
    fy_log("warn", "local socket: cannot read the peer's credentials; refused");
    fy_stream_close(&c->s);
    return;
  }
  snprintf(c->peer, sizeof c->peer, "local (pid %ld, uid %ld)", (long)cred.pid, (long)cred.uid);
  if (cred.uid != 0 && cred.uid != geteuid()) {
    fy_log("warn", "peer %s: refused: only root or the agent's user may use the local socket", c->peer);
    a->refused++;
    fy_stream_close(&c->s);
    return;
  }
  int nlocal = 0;
  for (fy_agent_conn *o = a->conns; o; o = o->next) nlocal += o != c && o->local && !o->s.closing;
  if (a->stopping || nlocal >= LOCAL_MAX) {
    if (!a->stopping) fy_log("warn", "peer %s: refused: %d local connections are open already", c->peer, nlocal);
    a->refused += !a->stopping;
    fy_stream_close(&c->s);
    return;
  }
  a->accepted++;
  (void)conn_start(a, c);
}

/* Not fatal: without it only ferryd --import is missing, and the log says why. */
static void local_start(fy_agent *a) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  if (fy_path_fmt(path, sizeof path, "%s/ferryd.sock", a->cfg.state_dir) != FY_OK) {
    fy_log("warn", "no local socket: the path %s/ferryd.sock is longer than a socket's %zu bytes (ferryd --import needs it)",
           a->cfg.state_dir, sizeof path - 1);
    return;
  }
  /* A socket someone answers on is another ferryd's on this state directory: left alone. */
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int taken = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
  if (probe >= 0) close(probe);
  if (taken) {
    fy_log("warn", "no local socket: another ferryd answers on %s (two agents on one state_dir?)", path);
    return;
  }
  uv_pipe_init(a->loop, &a->local_listener, 0);
  a->local_listener.data = a;
  a->local_open = 1;
  (void)unlink(path); /* one left by an agent that was killed */
  mode_t old = umask(0177);
  int rc = uv_pipe_bind(&a->local_listener, path);
  umask(old);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&a->local_listener, 8, on_local_connection);
  if (rc != 0) fy_log("warn", "no local socket at %s: %s (ferryd --import needs it)", path, uv_strerror(rc));
}

int fy_server_start(fy_agent *a, char *err, size_t errlen) {
  struct sockaddr_storage addr;
  char plat[FY_PLATFORM_STR];
  int rc;
  if (a->cfg.listen_none) { /* reached only through the broker (and the local socket): main says it is ready once that started */
    local_start(a);
    return FY_OK;
  }
  if (uv_ip4_addr(a->cfg.listen_host, a->cfg.listen_port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(a->cfg.listen_host, a->cfg.listen_port, (struct sockaddr_in6 *)&addr) != 0) {
    /* A host name: /etc/hosts, then DNS, through the C library's resolver (the static agents
     * are built on musl, whose resolver needs no NSS modules from the device). Once, at start. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", a->cfg.listen_port);
    int g = getaddrinfo(a->cfg.listen_host, port, &hints, &ai);
    if (g != 0 || !ai || ai->ai_addrlen > sizeof addr) {
      snprintf(err, errlen, "listen: '%s' is neither an IP address nor a name this device resolves (%s)",
               a->cfg.listen_host, g != 0 ? gai_strerror(g) : "no address");
      if (ai) freeaddrinfo(ai);
      return FY_ECONFIG;
    }
    /* IPv4 first when the name has both (musl may sort ::1 before 127.0.0.1 for localhost). */
    const struct addrinfo *pick = ai;
    for (const struct addrinfo *q = ai; q; q = q->ai_next)
      if (q->ai_family == AF_INET && q->ai_addrlen <= sizeof addr) { pick = q; break; }
    memcpy(&addr, pick->ai_addr, pick->ai_addrlen);
    char ip[64] = "";
    (void)uv_ip_name(pick->ai_addr, ip, sizeof ip);
    fy_log("info", "listen: %s resolves to %s", a->cfg.listen_host, ip);
    freeaddrinfo(ai);
  }
  uv_tcp_init(a->loop, &a->listener);
  a->listener_open = 1;
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
  local_start(a);
  /* The readiness line tests and scripts wait for; keep its shape. */
  fy_log("info", "listening on %s:%d as %s (%s, board %s)", a->cfg.listen_host, port, a->name,
         fy_platform_format(&a->facts.platform, plat, sizeof plat),
         a->facts.have_board ? a->facts.board.name : "unknown");
  return FY_OK;
}

void fy_server_stop(fy_agent *a) {
  a->stopping = 1;
  if (a->listener_open && !uv_is_closing((uv_handle_t *)&a->listener)) uv_close((uv_handle_t *)&a->listener, NULL);
  if (a->local_open && !uv_is_closing((uv_handle_t *)&a->local_listener)) uv_close((uv_handle_t *)&a->local_listener, NULL);
  for (fy_agent_conn *c = a->conns; c; c = c->next) fy_stream_close(&c->s);
}

int fy_agent_take_crl(fy_agent *a, const char *pem, char *err, size_t errlen) {
  int changed = 0;
  size_t n = 0;
  char why[256];
  if (fy_tls_conf_set_crl(a->tls, pem, strlen(pem), &changed, &n, why, sizeof why) != FY_OK) {
    snprintf(err, errlen, "revocation list refused: %s", why);
    return FY_ECERT;
  }
  if (!changed) return FY_OK;
  char path[4200];
  if (fy_path_fmt(path, sizeof path, "%s/crl.pem", a->cfg.state_dir) != FY_OK) return FY_OK;
  if (fy_file_write_atomic(path, pem, strlen(pem), 0644) != FY_OK) fy_log("warn", "cannot keep %s", path);
  fy_log("info", "the fleet's revocation list is now the one from %s, %zu certificate(s) revoked", path, n);
  fy_broker_set_crl(a, pem);
  for (fy_agent_conn *c = a->conns; c; c = c->next) /* pushers connected before: the list applies to them too */
    if (c->authed && c->s.session_ok && c->s.session.tls && !c->s.closing && !c->s.ending && fy_tls_peer_revoked(c->s.session.tls))
      fy_conn_fail(c, FY_ECERT, "the pusher's certificate has been revoked (it is on the fleet's revocation list)");
  return FY_OK;
}
