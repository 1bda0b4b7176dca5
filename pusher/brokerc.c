/* ferry's blocking client of the fleet's MQTT broker; see brokerc.h. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "brokerc.h"
#include "ferry/envelope.h"
#include "ferry/mqtt.h"
#include "ferry/text.h"

#define PACKET_MAX (4u << 20)

typedef struct bc {
  int fd;
  fy_tls *tls;
  uint64_t deadline_ms;
  const char *where;          /* HOST:PORT, for messages */
  char *err;
  size_t errlen;
  fy_mqtt_decoder dec;
  fy_buf out;
  /* what the read is waiting for */
  int connack, suback, synced;
  char sync_topic[320], token[40], prefix[300];
  fy_tls_conf *tls_conf;
  fy_broker_node *nodes;
  size_t n;
  fy_broker_change_cb on_change; /* watching: after the first read */
  void *ud;
  volatile int *stop;
} bc;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int fail(bc *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(bc *c, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  return rc;
}

/* Waits for fd to be ready for events until the deadline. */
static int wait_fd(bc *c, short events) {
  for (;;) {
    uint64_t t = now_ms();
    if (t >= c->deadline_ms) return fail(c, FY_ETIMEDOUT, "%s: no answer in time", c->where);
    struct pollfd p = {.fd = c->fd, .events = events};
    int r = poll(&p, 1, (int)(c->deadline_ms - t));
    if (r > 0) return FY_OK;
    if (r < 0 && errno != EINTR) return fail(c, FY_ECONN, "%s: %s", c->where, strerror(errno));
    if (c->stop && *c->stop) return FY_ECANCELED;
  }
}

/* Everything TLS has for the socket. */
static int flush(bc *c) {
  size_t len;
  const uint8_t *p;
  while ((p = fy_tls_out(c->tls, &len)) && len) {
    ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
    if (w > 0) {
      fy_tls_out_consume(c->tls, (size_t)w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return fail(c, FY_ECONN, "%s: %s", c->where, strerror(errno));
    int rc = wait_fd(c, POLLOUT);
    if (rc != FY_OK) return rc;
  }
  return FY_OK;
}

/* What the socket has, into TLS (waits for some). */
static int fill(bc *c) {
  uint8_t buf[16384];
  int rc = wait_fd(c, POLLIN);
  if (rc != FY_OK) return rc;
  ssize_t r = recv(c->fd, buf, sizeof buf, 0);
  if (r == 0) return fail(c, FY_ECONN, "%s closed the connection", c->where);
  if (r < 0) return errno == EAGAIN || errno == EINTR ? FY_OK : fail(c, FY_ECONN, "%s: %s", c->where, strerror(errno));
  rc = fy_tls_feed(c->tls, buf, (size_t)r);
  return rc == FY_OK ? FY_OK : fail(c, rc, "%s: TLS: %s", c->where, fy_tls_errmsg(c->tls));
}

static int dial(bc *c, const char *host, int port) {
  char ps[16];
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  snprintf(ps, sizeof ps, "%d", port);
  int g = getaddrinfo(host, ps, &hints, &ai);
  if (g != 0) return fail(c, FY_ECONN, "%s: cannot resolve: %s", c->where, gai_strerror(g));
  int rc = FY_ECONN;
  for (const struct addrinfo *a = ai; a && rc != FY_OK; a = a->ai_next) {
    c->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0) continue;
    if (connect(c->fd, a->ai_addr, a->ai_addrlen) == 0 || (errno == EINPROGRESS && wait_fd(c, POLLOUT) == FY_OK)) {
      int e = 0;
      socklen_t el = sizeof e;
      if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0) {
        rc = FY_OK;
        break;
      }
      fail(c, FY_ECONN, "%s: %s", c->where, strerror(e));
    }
    close(c->fd);
    c->fd = -1;
  }
  freeaddrinfo(ai);
  if (rc != FY_OK && !c->err[0]) fail(c, FY_ECONN, "%s: cannot connect", c->where);
  return rc;
}

static int send_out(bc *c) {
  int rc = fy_tls_write(c->tls, c->out.data, c->out.len);
  fy_buf_reset(&c->out);
  return rc == FY_OK ? flush(c) : fail(c, rc, "%s: cannot send", c->where);
}

static fy_broker_node *node_of(bc *c, const char *topic) {
  /* PREFIX/nodes/NAME/status */
  size_t pl = strlen(c->prefix);
  if (strncmp(topic, c->prefix, pl) != 0 || strncmp(topic + pl, "/nodes/", 7) != 0) return NULL;
  const char *name = topic + pl + 7, *slash = strchr(name, '/');
  if (!slash || strcmp(slash, "/status") != 0) return NULL;
  for (size_t i = 0; i < c->n; i++)
    if (strlen(c->nodes[i].name) == (size_t)(slash - name) && strncmp(c->nodes[i].name, name, (size_t)(slash - name)) == 0)
      return &c->nodes[i];
  return NULL;
}

static int on_packet(void *ud, const fy_mqtt_packet *p) {
  bc *c = ud;
  if (p->type == FY_MQTT_CONNACK) {
    if (p->return_code != 0)
      return fail(c, FY_EPOLICY, "%s refused the connection: %s", c->where, fy_mqtt_connack_reason(p->return_code));
    c->connack = 1;
  } else if (p->type == FY_MQTT_SUBACK) {
    for (size_t i = 0; i < p->ncodes; i++)
      if (p->codes[i] == 0x80) return fail(c, FY_EPOLICY, "%s refused the subscription (its ACL: this pusher may not read %s/#?)", c->where, c->prefix);
    c->suback = 1;
  } else if (p->type == FY_MQTT_PUBLISH) {
    if (strcmp(p->topic, c->sync_topic) == 0) {
      if (p->payload_len == strlen(c->token) && memcmp(p->payload, c->token, p->payload_len) == 0) c->synced = 1;
      return FY_OK;
    }
    fy_broker_node *nd = node_of(c, p->topic);
    if (!nd || p->payload_len == 0) return FY_OK; /* not one of the nodes asked about, or cleared */
    fy_envelope e;
    nd->seen = 1;
    json_decref(nd->status);
    nd->status = NULL;
    /* the signature and its node; freshness is the status's own time (a status lives long) */
    int rc = fy_envelope_open(c->tls_conf, (const char *)p->payload, p->payload_len, nd->name, "status", 0, (int64_t)time(NULL), &e,
                              nd->why, sizeof nd->why);
    nd->verified = rc == FY_OK;
    if (rc == FY_OK) {
      nd->status = json_incref(e.body);
      nd->why[0] = '\0';
    }
    fy_envelope_free(&e);
    if (c->synced && c->on_change) c->on_change(c->ud, nd);
  }
  return FY_OK;
}

/* Reads until cond is set: TLS records into the MQTT decoder. */
static int read_until(bc *c, const int *cond) {
  uint8_t plain[16384];
  while (!*cond) {
    size_t got = 0;
    int rc = fy_tls_read(c->tls, plain, sizeof plain, &got);
    if (rc == FY_OK) {
      if ((rc = fy_mqtt_decoder_feed(&c->dec, plain, got, on_packet, c)) != FY_OK)
        return c->err[0] ? rc : fail(c, rc, "%s: %s", c->where, c->dec.why);
      continue;
    }
    if (rc == FY_EEOF) return fail(c, FY_ECONN, "%s closed the connection", c->where);
    if (rc != FY_EAGAIN) return fail(c, rc, "%s: TLS: %s", c->where, fy_tls_errmsg(c->tls));
    if ((rc = fill(c)) != FY_OK) return rc;
  }
  return FY_OK;
}

/* Watching: reads on, a ping each 30 s of quiet, until stopped. */
static int follow(bc *c) {
  static const int never = 0;
  for (;;) {
    c->deadline_ms = now_ms() + 30000;
    int rc = read_until(c, &never);
    if (rc == FY_ECANCELED) return FY_OK;
    if (rc != FY_ETIMEDOUT) return rc;
    c->err[0] = '\0';
    if ((rc = fy_mqtt_simple_encode(&c->out, FY_MQTT_PINGREQ)) != FY_OK || (rc = send_out(c)) != FY_OK) return rc;
  }
}

static int session(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, fy_broker_change_cb on_change,
                   void *ud, volatile int *stop, char *err, size_t errlen) {
  char where[300];
  bc c = {.fd = -1, .deadline_ms = now_ms() + timeout_ms, .where = where, .err = err, .errlen = errlen, .tls_conf = tls, .nodes = nodes,
          .n = n, .on_change = on_change, .ud = ud, .stop = stop};
  uint8_t rnd[8];
  char id[64];
  int rc;
  err[0] = '\0';
  snprintf(where, sizeof where, "broker %s:%d", f->broker_host, f->broker_port);
  snprintf(c.prefix, sizeof c.prefix, "%s", f->topic_prefix);
  fy_mqtt_decoder_init(&c.dec, PACKET_MAX);
  fy_buf_init(&c.out, PACKET_MAX);
  if (fy_tls_conf_random(tls, rnd, sizeof rnd) != FY_OK) memset(rnd, 0, sizeof rnd);
  /* a client id of its own, so that a second laptop, or a second read, takes nobody's session */
  snprintf(c.token, sizeof c.token, "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  snprintf(id, sizeof id, "ferry-%.32s-%.16s", fy_tls_conf_name(tls), c.token);
  for (char *q = id; *q; q++)
    if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '-')) *q = '-';
  fy_text_fmt(c.sync_topic, sizeof c.sync_topic, "%s/pushers/%s/sync", c.prefix, id);
  if ((rc = dial(&c, f->broker_host, f->broker_port)) != FY_OK) goto out;
  if ((rc = fy_tls_new(&c.tls, tls, f->broker_host)) != FY_OK) {
    fail(&c, rc, "%s: TLS: %s", where, fy_strerror(rc));
    goto out;
  }
  for (;;) { /* the handshake */
    int hs = fy_tls_handshake(c.tls);
    if ((rc = flush(&c)) != FY_OK) goto out;
    if (hs == FY_OK) break;
    if (hs != FY_EAGAIN) {
      rc = fail(&c, hs, "%s: %s", where, fy_tls_errmsg(c.tls));
      goto out;
    }
    if ((rc = fill(&c)) != FY_OK) goto out;
  }
  fy_mqtt_connect m = {.client_id = id, .clean_session = 1, .keepalive_s = 60};
  char filter[320];
  fy_text_fmt(filter, sizeof filter, "%s/nodes/+/status", c.prefix);
  const char *filters[] = {filter, c.sync_topic};
  int qos[] = {0, 0};
  if ((rc = fy_mqtt_connect_encode(&c.out, &m)) != FY_OK || (rc = send_out(&c)) != FY_OK || (rc = read_until(&c, &c.connack)) != FY_OK)
    goto out;
  if ((rc = fy_mqtt_subscribe_encode(&c.out, 1, filters, qos, 2)) != FY_OK || (rc = send_out(&c)) != FY_OK ||
      (rc = read_until(&c, &c.suback)) != FY_OK)
    goto out;
  /* The marker comes back after every retained status the subscription brought. */
  if ((rc = fy_mqtt_publish_encode(&c.out, c.sync_topic, c.token, strlen(c.token), 0, 0, 0, 0)) != FY_OK || (rc = send_out(&c)) != FY_OK)
    goto out;
  if ((rc = read_until(&c, &c.synced)) != FY_OK) {
    /* MQTT 3.1.1 tells nobody when an ACL drops a message: the marker just does not come back */
    if (rc == FY_ETIMEDOUT)
      fail(&c, FY_EPOLICY, "%s: the marker this pusher published on %s never came back: the broker's ACL must let '%s' read and "
           "write %s/#", where, c.sync_topic, fy_tls_conf_name(tls), c.prefix);
    goto out;
  }
  if (on_change) {
    for (size_t i = 0; i < n; i++) on_change(ud, &nodes[i]); /* where each stands now */
    if ((rc = follow(&c)) != FY_OK) goto out;
  }
  if (fy_mqtt_simple_encode(&c.out, FY_MQTT_DISCONNECT) == FY_OK) (void)send_out(&c);
  rc = FY_OK;
out:
  if (rc != FY_OK && !err[0]) fail(&c, rc, "%s: %s", where, fy_strerror(rc));
  fy_tls_free(c.tls);
  if (c.fd >= 0) close(c.fd);
  fy_mqtt_decoder_free(&c.dec);
  fy_buf_free(&c.out, 0);
  return rc;
}

int fy_broker_read_statuses(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, char *err,
                            size_t errlen) {
  return session(f, tls, nodes, n, timeout_ms, NULL, NULL, NULL, err, errlen);
}

int fy_broker_watch(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, fy_broker_change_cb on_change,
                    void *ud, volatile int *stop, char *err, size_t errlen) {
  return session(f, tls, nodes, n, timeout_ms, on_change, ud, stop, err, errlen);
}

void fy_broker_nodes_free(fy_broker_node *nodes, size_t n) {
  for (size_t i = 0; nodes && i < n; i++) {
    json_decref(nodes[i].status);
    nodes[i].status = NULL;
  }
}
