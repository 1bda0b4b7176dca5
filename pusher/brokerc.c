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
#include "cli.h"
#include "ferry/clock.h"
#include "ferry/envelope.h"
#include "ferry/fsutil.h"
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
  int subacks_left;          /* SUBACKs still to come; suback once none */
  char sync_topic[320], token[40], prefix[300];
  fy_tls_conf *tls_conf;
  fy_broker_node *nodes;
  size_t n;
  fy_broker_change_cb on_change; /* watching: after the first read */
  fy_broker_event_cb on_event;
  fy_broker_event_cb on_reply;
  void *ud;
  volatile int *stop;
  int full;                   /* also desired states and events */
  uint16_t next_id, acked_id; /* the last QoS 1 publish sent, and the last PUBACK */
  uint64_t sent_ms;           /* when something was last sent (the keepalive counts from it) */
  char where_buf[300];
} bc;

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
    if (c->stop && *c->stop) return FY_ECANCELED;
    uint64_t t = fy_mono_ms();
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
  c->sent_ms = fy_mono_ms();
  int rc = fy_tls_write(c->tls, c->out.data, c->out.len);
  fy_buf_reset(&c->out);
  return rc == FY_OK ? flush(c) : fail(c, rc, "%s: cannot send", c->where);
}

/* AWS IoT Core takes at most 8 filters in a SUBSCRIBE and 50 subscriptions on a connection:
 * within both, a few nodes get their own topics; more, the prefix's wildcards. */
#define SUBSCRIBE_FILTERS_MAX 8
#define SUBSCRIPTIONS_MAX 50

static fy_broker_node *node_of(bc *c, const char *topic, const char *kind) {
  /* PREFIX/nodes/NAME/KIND */
  size_t pl = strlen(c->prefix);
  if (strncmp(topic, c->prefix, pl) != 0 || strncmp(topic + pl, "/nodes/", 7) != 0) return NULL;
  const char *name = topic + pl + 7, *slash = strchr(name, '/');
  if (!slash || slash[0] != '/' || strcmp(slash + 1, kind) != 0) return NULL;
  for (size_t i = 0; i < c->n; i++)
    if (strlen(c->nodes[i].name) == (size_t)(slash - name) && strncmp(c->nodes[i].name, name, (size_t)(slash - name)) == 0)
      return &c->nodes[i];
  return NULL;
}

static int send_out(bc *c);

/* The "cert" of an envelope (already verified): the signer's certificate PEM, malloc'd. */
static char *envelope_cert(const uint8_t *p, size_t n) {
  json_t *j = json_loadb((const char *)p, n, 0, NULL);
  const char *cert = json_string_value(json_object_get(j, "cert"));
  char *out = cert ? strdup(cert) : NULL;
  json_decref(j);
  return out;
}

/* A node's retained desired state: checked as the node would (a pusher of this fleet signed it
 * for that node), except for its expiry; its sequence is what the next one must pass. */
static int got_desired(bc *c, fy_broker_node *nd, const fy_mqtt_packet *p) {
  fy_envelope e;
  char why[300];
  json_decref(nd->desired);
  nd->desired = NULL;
  nd->desired_seq = 0;
  nd->desired_why[0] = '\0';
  if (p->payload_len == 0) return FY_OK;
  int rc = fy_envelope_open(c->tls_conf, (const char *)p->payload, p->payload_len, nd->name, "desired", 0, FY_ENVELOPE_ANY_TIME, &e, why,
                            sizeof why);
  if (rc != FY_OK) {
    fy_text_fmt(nd->desired_why, sizeof nd->desired_why, "%s", why);
    return FY_OK;
  }
  nd->desired_seq = e.seq;
  nd->desired = json_incref(e.body);
  nd->desired_expires = e.expires;
  fy_envelope_free(&e);
  if (c->synced && c->on_change) c->on_change(c->ud, nd);
  return FY_OK;
}

/* A node says the longest gap between the statuses it publishes while online (refresh_s). One
 * that says it is online but is older than that and ten minutes (clocks, delivery) went away
 * without its Will reaching the broker (killed as it renewed the Will, or the broker lost it):
 * it is read as away since its time. */
static void stale_online(json_t *st, int64_t now) {
  json_int_t every = json_integer_value(json_object_get(st, "refresh_s")), t = json_integer_value(json_object_get(st, "time"));
  if (!json_is_true(json_object_get(st, "online")) || every <= 0 || t <= 0 || now - t <= every + 600) return;
  json_object_set_new(st, "online", json_false());
  json_object_set_new(st, "stale", json_true());
}

static int on_packet(void *ud, const fy_mqtt_packet *p) {
  bc *c = ud;
  if (p->type == FY_MQTT_CONNACK) {
    if (p->return_code != 0)
      return fail(c, FY_EPOLICY, "%s refused the connection: %s", c->where, fy_mqtt_connack_reason(p->return_code));
    c->connack = 1;
  } else if (p->type == FY_MQTT_PUBACK) {
    c->acked_id = p->packet_id;
  } else if (p->type == FY_MQTT_SUBACK) {
    for (size_t i = 0; i < p->ncodes; i++)
      if (p->codes[i] == 0x80) return fail(c, FY_EPOLICY, "%s refused the subscription (its ACL: this pusher may not read %s/#?)", c->where, c->prefix);
    if (c->subacks_left > 0) c->subacks_left--;
    c->suback = c->subacks_left == 0;
  } else if (p->type == FY_MQTT_PUBLISH) {
    if (strcmp(p->topic, c->sync_topic) == 0) {
      if (p->payload_len == strlen(c->token) && memcmp(p->payload, c->token, p->payload_len) == 0) c->synced = 1;
      return FY_OK;
    }
    if (p->qos == 1 && (fy_mqtt_puback_encode(&c->out, p->packet_id) != FY_OK || send_out(c) != FY_OK)) return FY_ECONN;
    fy_broker_node *nd;
    if (c->full && (nd = node_of(c, p->topic, "desired")) != NULL) return got_desired(c, nd, p);
    if (c->full && (nd = node_of(c, p->topic, "replies")) != NULL) {
      /* signed by the node it comes from, as its status is */
      fy_envelope e;
      char why[300];
      if (c->on_reply && fy_envelope_open(c->tls_conf, (const char *)p->payload, p->payload_len, nd->name, "reply", 0,
                                          (int64_t)time(NULL), &e, why, sizeof why) == FY_OK) {
        json_object_set_new(e.body, "seq", json_integer((json_int_t)e.seq));
        c->on_reply(c->ud, nd, e.body);
        fy_envelope_free(&e);
      }
      return FY_OK;
    }
    if (c->full && (nd = node_of(c, p->topic, "events")) != NULL) {
      json_t *ev = p->payload_len <= 65536 ? json_loadb((const char *)p->payload, p->payload_len, 0, NULL) : NULL;
      if (json_is_object(ev) && c->on_event) c->on_event(c->ud, nd, ev);
      json_decref(ev);
      return FY_OK;
    }
    nd = node_of(c, p->topic, "status");
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
      stale_online(nd->status, (int64_t)time(NULL));
      nd->why[0] = '\0';
      free(nd->cert_pem); /* the node's certificate: what is sealed to it is sealed to its key */
      nd->cert_pem = envelope_cert(p->payload, p->payload_len);
    }
    fy_envelope_free(&e);
    if (c->synced && c->on_change) c->on_change(c->ud, nd);
  }
  return FY_OK;
}

/* One step: what TLS has into the MQTT decoder, or else more bytes from the socket (waiting
 * until the deadline). */
static int read_step(bc *c) {
  uint8_t plain[16384];
  size_t got = 0;
  int rc = fy_tls_read(c->tls, plain, sizeof plain, &got);
  if (rc == FY_OK) {
    if ((rc = fy_mqtt_decoder_feed(&c->dec, plain, got, on_packet, c)) != FY_OK)
      return c->err[0] ? rc : fail(c, rc, "%s: %s", c->where, c->dec.why);
    return FY_OK;
  }
  if (rc == FY_EEOF) return fail(c, FY_ECONN, "%s closed the connection", c->where);
  if (rc != FY_EAGAIN) return fail(c, rc, "%s: TLS: %s", c->where, fy_tls_errmsg(c->tls));
  return fill(c);
}

/* Reads until cond is set. */
static int read_until(bc *c, const int *cond) {
  int rc = FY_OK;
  while (!*cond && (rc = read_step(c)) == FY_OK) {
  }
  return rc;
}

struct fy_bsess {
  bc c;
  const fy_fleet *f;
  uint64_t timeout_ms;
  char id[64];
};

/* One connection: TCP, TLS, CONNECT, SUBSCRIBE, and the retained messages up to the marker. */
static int bs_connect(fy_bsess *S) {
  bc *c = &S->c;
  const fy_fleet *f = S->f;
  int rc;
  c->err[0] = '\0';
  c->connack = c->suback = c->synced = 0;
  fy_mqtt_decoder_free(&c->dec);
  fy_mqtt_decoder_init(&c->dec, PACKET_MAX);
  fy_buf_reset(&c->out);
  if ((rc = dial(c, f->broker_host, f->broker_port)) != FY_OK) return rc;
  if ((rc = fy_tls_new(&c->tls, c->tls_conf, f->broker_host)) != FY_OK) return fail(c, rc, "%s: TLS: %s", c->where, fy_strerror(rc));
  for (;;) { /* the handshake */
    int hs = fy_tls_handshake(c->tls);
    if ((rc = flush(c)) != FY_OK) return rc;
    if (hs == FY_OK) break;
    if (hs != FY_EAGAIN) return fail(c, hs, "%s: %s", c->where, fy_tls_errmsg(c->tls));
    if ((rc = fill(c)) != FY_OK) return rc;
  }
  fy_mqtt_connect m = {.client_id = S->id, .clean_session = 1, .keepalive_s = 60};
  /* A few nodes: their own topics, so that a small fleet on a broker holding thousands reads
   * only its own; more: the prefix's wildcards. */
  static const char *const kinds[] = {"status", "desired", "events", "replies"};
  static const int kqos[] = {0, 0, 1, 1};
  size_t nk = c->full ? 4 : 1, per_node = 1 + nk * c->n <= SUBSCRIPTIONS_MAX, nf = 1 + nk * (per_node ? c->n : 1);
  char(*ftext)[320] = calloc(nf, sizeof *ftext);
  const char **filters = calloc(nf, sizeof *filters);
  int *qos = calloc(nf, sizeof *qos);
  if (!ftext || !filters || !qos) rc = fail(c, FY_ENOMEM, "out of memory");
  else {
    filters[0] = c->sync_topic;
    size_t j = 1;
    for (size_t k = 0; k < nk; k++)
      for (size_t i = 0; i < (per_node ? c->n : 1); i++, j++) {
        fy_text_fmt(ftext[j], sizeof ftext[j], "%s/nodes/%s/%s", c->prefix, per_node ? c->nodes[i].name : "+", kinds[k]);
        filters[j] = ftext[j];
        qos[j] = kqos[k];
      }
    if ((rc = fy_mqtt_connect_encode(&c->out, &m)) == FY_OK && (rc = send_out(c)) == FY_OK)
      rc = read_until(c, &c->connack);
    /* as many SUBSCRIBEs as it takes, sent at once, then their SUBACKs */
    c->subacks_left = (int)((nf + SUBSCRIBE_FILTERS_MAX - 1) / SUBSCRIBE_FILTERS_MAX);
    for (size_t at = 0; rc == FY_OK && at < nf; at += SUBSCRIBE_FILTERS_MAX) {
      size_t k = nf - at < SUBSCRIBE_FILTERS_MAX ? nf - at : SUBSCRIBE_FILTERS_MAX;
      rc = fy_mqtt_subscribe_encode(&c->out, (uint16_t)(at / SUBSCRIBE_FILTERS_MAX + 1), filters + at, qos + at, k);
    }
    if (rc == FY_OK && (rc = send_out(c)) == FY_OK) rc = read_until(c, &c->suback);
  }
  free(ftext);
  free(filters);
  free(qos);
  if (rc != FY_OK) return rc;
  /* The marker comes back after every retained message the subscription brought. */
  if ((rc = fy_mqtt_publish_encode(&c->out, c->sync_topic, c->token, strlen(c->token), 0, 0, 0, 0)) != FY_OK ||
      (rc = send_out(c)) != FY_OK)
    return rc;
  if ((rc = read_until(c, &c->synced)) != FY_OK) {
    /* MQTT 3.1.1 tells nobody when an ACL drops a message: the marker just does not come back */
    if (rc == FY_ETIMEDOUT)
      fail(c, FY_EPOLICY, "%s: the marker this pusher published on %s never came back: the broker's ACL must let '%s' read and "
           "write %s/#", c->where, c->sync_topic, fy_tls_conf_name(c->tls_conf), c->prefix);
    return c->err[0] ? FY_EPOLICY : rc;
  }
  return FY_OK;
}

static void bs_drop(bc *c) {
  fy_tls_free(c->tls);
  c->tls = NULL;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

/* The connection went (a broker restarted): again, every few seconds, until the deadline. The
 * retained statuses and desired states come again with it. */
static int bs_reconnect(fy_bsess *S, uint64_t end) {
  bc *c = &S->c;
  /* a broker gone for good ends the session after --timeout, whatever the caller waits for */
  if (end > fy_mono_ms() + S->timeout_ms) end = fy_mono_ms() + S->timeout_ms;
  char why[sizeof c->where_buf + 300];
  snprintf(why, sizeof why, "%s", c->err);
  fprintf(stderr, "ferry: %s; connecting again\n", why[0] ? why : "the broker's connection was lost");
  for (unsigned attempt = 0;; attempt++) {
    bs_drop(c);
    if (c->stop && *c->stop) return FY_ECANCELED;
    c->deadline_ms = fy_mono_ms() + 10000;
    if (bs_connect(S) == FY_OK) {
      fprintf(stderr, "ferry: connected to the %s again\n", c->where);
      return FY_OK;
    }
    uint64_t pause = attempt < 3 ? 1000u << attempt : 5000, t = fy_mono_ms();
    if (t + pause >= end) return c->err[0] ? FY_ECONN : fail(c, FY_ECONN, "%s: %s", c->where, why);
    struct timespec ts = {(time_t)(pause / 1000), (long)(pause % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      if (c->stop && *c->stop) return FY_ECANCELED;
  }
}

int fy_bsess_open(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, int full, fy_bsess **out,
                  char *err, size_t errlen) {
  fy_bsess *S = calloc(1, sizeof *S);
  *out = NULL;
  err[0] = '\0';
  if (!S) return FY_ENOMEM;
  bc *c = &S->c;
  *c = (bc){.fd = -1, .deadline_ms = fy_mono_ms() + timeout_ms, .where = c->where_buf, .err = err, .errlen = errlen, .tls_conf = tls,
            .nodes = nodes, .n = n, .full = full};
  S->f = f;
  S->timeout_ms = timeout_ms;
  uint8_t rnd[8];
  snprintf(c->where_buf, sizeof c->where_buf, "broker %s:%d", f->broker_host, f->broker_port);
  snprintf(c->prefix, sizeof c->prefix, "%s", f->topic_prefix);
  fy_mqtt_decoder_init(&c->dec, PACKET_MAX);
  fy_buf_init(&c->out, PACKET_MAX);
  if (fy_tls_conf_random(tls, rnd, sizeof rnd) != FY_OK) memset(rnd, 0, sizeof rnd);
  /* a client id of its own, so that a second laptop, or a second read, takes nobody's session */
  snprintf(c->token, sizeof c->token, "%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  snprintf(S->id, sizeof S->id, "ferry-%.32s-%.16s", fy_tls_conf_name(tls), c->token);
  for (char *q = S->id; *q; q++)
    if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '-')) *q = '-';
  fy_text_fmt(c->sync_topic, sizeof c->sync_topic, "%s/pushers/%s/sync", c->prefix, S->id);
  int rc = bs_connect(S);
  if (rc != FY_OK) {
    if (!err[0]) fail(c, rc, "%s: %s", c->where, fy_strerror(rc));
    fy_bsess_close(S, 0);
    return rc;
  }
  c->next_id = 1;
  *out = S;
  return FY_OK;
}

void fy_bsess_on_reply(fy_bsess *S, fy_broker_event_cb on_reply) { S->c.on_reply = on_reply; }

/* The pusher's key and certificate from its identity directory (NULL: $FERRY_HOME/identity). */
static int broker_signer(const char *identity_dir, fy_sign_key **sk, char **cert_pem, char *err, size_t errlen) {
  char kp[4200], home[4096], *key = NULL, why[300];
  size_t kl, cl;
  *sk = NULL;
  *cert_pem = NULL;
  if (!identity_dir) {
    fy_cli_home("identity", home, sizeof home);
    identity_dir = home;
  }
  snprintf(kp, sizeof kp, "%s/key.pem", identity_dir);
  if (fy_file_read(kp, 65536, &key, &kl) != FY_OK || fy_sign_key_parse(key, kl, 1, sk, why, sizeof why) != FY_OK) {
    if (key) explicit_bzero(key, kl);
    free(key);
    return fy_text_fail(err, errlen, FY_ENOENT, "%s: cannot read this pusher's key: what goes through the broker is signed with it", kp);
  }
  explicit_bzero(key, kl);
  free(key);
  snprintf(kp, sizeof kp, "%s/cert.pem", identity_dir);
  if (fy_file_read(kp, 65536, cert_pem, &cl) != FY_OK) {
    fy_sign_key_free(*sk);
    *sk = NULL;
    return fy_text_fail(err, errlen, FY_ENOENT, "%s: cannot read this pusher's certificate", kp);
  }
  return FY_OK;
}

int fy_bfleet_open(fy_cli_common *cc, fy_bfleet *f, char *err, size_t errlen) {
  int rc;
  *f = (fy_bfleet){.n = cc->ntargets};
  if ((rc = broker_signer(cc->identity, &f->sk, &f->cert_pem, err, errlen)) != FY_OK) {
    fy_cli_err("%s", err);
    return rc;
  }
  if (fy_cli_load_broker_tls(cc->identity, &cc->fleet, &f->tls) != FY_OK) return FY_ECERT;
  if (!(f->nodes = calloc(f->n ? f->n : 1, sizeof *f->nodes))) return FY_ENOMEM;
  for (size_t i = 0; i < f->n; i++) snprintf(f->nodes[i].name, sizeof f->nodes[i].name, "%s", cc->targets[i].name);
  if ((rc = fy_bsess_open(&cc->fleet, f->tls, f->nodes, f->n, cc->timeout_ms, 1, &f->s, err, errlen)) != FY_OK) fy_cli_err("%s", err);
  return rc;
}

void fy_bfleet_close(fy_bfleet *f) {
  fy_bsess_close(f->s, 1);
  if (f->nodes) fy_broker_nodes_free(f->nodes, f->n);
  free(f->nodes);
  fy_tls_conf_free(f->tls);
  fy_sign_key_free(f->sk);
  free(f->cert_pem);
  *f = (fy_bfleet){0};
}

void fy_bsess_on(fy_bsess *S, fy_broker_change_cb on_change, fy_broker_event_cb on_event, void *ud, volatile int *stop) {
  S->c.on_change = on_change;
  S->c.on_event = on_event;
  S->c.ud = ud;
  S->c.stop = stop;
}

static int publish_once(fy_bsess *S, const char *topic, const char *payload, size_t len, int retain, uint64_t timeout_ms);

static int lost(int rc) { return rc == FY_ECONN || rc == FY_ETLS || rc == FY_EPROTO || rc == FY_ETIMEDOUT; }

int fy_bsess_publish(fy_bsess *S, const char *topic, const char *payload, size_t len, int retain, uint64_t timeout_ms) {
  uint64_t end = fy_mono_ms() + timeout_ms;
  for (;;) {
    int rc = publish_once(S, topic, payload, len, retain, timeout_ms);
    /* the same signed message again after a reconnection: a node that had it takes it as no news */
    if (!lost(rc) || fy_mono_ms() >= end || (rc = bs_reconnect(S, end)) != FY_OK) return rc;
  }
}

static int publish_once(fy_bsess *S, const char *topic, const char *payload, size_t len, int retain, uint64_t timeout_ms) {
  bc *c = &S->c;
  if (++c->next_id == 0) c->next_id = 1;
  uint16_t id = c->next_id;
  int acked = 0, rc;
  c->deadline_ms = fy_mono_ms() + timeout_ms;
  if ((rc = fy_mqtt_publish_encode(&c->out, topic, payload, len, 1, retain, 0, id)) != FY_OK)
    return fail(c, rc, "%s: cannot encode a message for %s (%zu bytes)", c->where, topic, len);
  if ((rc = send_out(c)) != FY_OK) return rc;
  /* PUBACKs come in order: the one for id says the broker has the message (and a retained one kept) */
  while (!acked) {
    int got = 0;
    c->acked_id = 0;
    while (!got && (rc = read_step(c)) == FY_OK) got = c->acked_id != 0;
    if (rc != FY_OK) return rc;
    acked = c->acked_id == id;
  }
  return FY_OK;
}

int fy_bsess_wait(fy_bsess *S, uint64_t ms, int (*done)(void *ud), void *ud) {
  bc *c = &S->c;
  uint64_t end = fy_mono_ms() + ms;
  while (!done(ud)) {
    uint64_t t = fy_mono_ms();
    if (t >= end) return FY_ETIMEDOUT;
    /* the keepalive counts what this side sends: a ping when nothing was sent for 30 s, however
     * much the nodes publish */
    if (t - c->sent_ms >= 30000) {
      int rc = fy_mqtt_simple_encode(&c->out, FY_MQTT_PINGREQ);
      if (rc != FY_OK || (rc = send_out(c)) != FY_OK) return rc;
      continue;
    }
    uint64_t ping_at = c->sent_ms + 30000;
    c->deadline_ms = end < ping_at ? end : ping_at;
    int rc = read_step(c);
    if (rc == FY_ETIMEDOUT) {
      c->err[0] = '\0';
      continue;
    }
    if (rc == FY_ECANCELED) return rc;
    if (lost(rc) && (rc = bs_reconnect(S, end)) == FY_OK) continue;
    if (rc != FY_OK) return rc;
  }
  return FY_OK;
}

void fy_bsess_close(fy_bsess *S, int goodbye) {
  if (!S) return;
  bc *c = &S->c;
  if (goodbye && c->tls && fy_mqtt_simple_encode(&c->out, FY_MQTT_DISCONNECT) == FY_OK) {
    c->deadline_ms = fy_mono_ms() + 2000;
    (void)send_out(c);
  }
  fy_tls_free(c->tls);
  if (c->fd >= 0) close(c->fd);
  fy_mqtt_decoder_free(&c->dec);
  fy_buf_free(&c->out, 0);
  free(S);
}

int fy_broker_read_statuses(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, int full, char *err,
                            size_t errlen) {
  fy_bsess *S;
  int rc = fy_bsess_open(f, tls, nodes, n, timeout_ms, full, &S, err, errlen);
  fy_bsess_close(S, 1);
  return rc;
}

static int never_done(void *ud) {
  (void)ud;
  return 0;
}

int fy_broker_watch(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, fy_broker_change_cb on_change,
                    void *ud, volatile int *stop, char *err, size_t errlen) {
  fy_bsess *S;
  int rc = fy_bsess_open(f, tls, nodes, n, timeout_ms, 1, &S, err, errlen);
  if (rc != FY_OK) return rc;
  fy_bsess_on(S, on_change, NULL, ud, stop);
  for (size_t i = 0; i < n; i++) on_change(ud, &nodes[i]); /* where each stands now */
  rc = fy_bsess_wait(S, UINT64_MAX / 4, never_done, NULL); /* until stopped */
  if (rc == FY_ECANCELED) rc = FY_OK;
  fy_bsess_close(S, rc == FY_OK);
  return rc;
}

void fy_broker_nodes_free(fy_broker_node *nodes, size_t n) {
  for (size_t i = 0; nodes && i < n; i++) {
    json_decref(nodes[i].status);
    json_decref(nodes[i].desired);
    free(nodes[i].cert_pem);
    nodes[i].status = nodes[i].desired = NULL;
    nodes[i].cert_pem = NULL;
  }
}

const char *fy_broker_convergence(const fy_broker_node *nd, const char *app, int64_t now) {
  const json_t *entry = json_object_get(json_object_get(nd->desired, "apps"), app);
  if (!nd->desired || !entry) return NULL;
  const json_t *d = json_object_get(nd->status, "desired");
  json_int_t applied = json_integer_value(json_object_get(d, "applied"));
  if (applied < 0 || (uint64_t)applied < nd->desired_seq) return nd->desired_expires <= now ? "diverged" : "converging";
  int remove = json_is_true(json_object_get(entry, "remove"));
  const char *want = json_string_value(json_object_get(entry, "digest"));
  const json_t *apps = json_object_get(nd->status, "apps"), *v, *found = NULL;
  size_t i;
  /* online: what runs now (a rollback or rm since then diverges from it); a Will's facts may
   * carry an empty apps list, which says nothing of what ran */
  if (json_is_true(json_object_get(nd->status, "online")) && json_is_array(apps)) {
    json_array_foreach(apps, i, v) {
      const char *n = json_string_value(json_object_get(v, "name"));
      if (n && strcmp(n, app) == 0) found = v;
    }
    if (remove) return found ? "diverged" : "converged";
    const char *has = json_string_value(json_object_get(found, "manifest"));
    return found && (!has || !want || strcmp(has, want) == 0) ? "converged" : "diverged";
  }
  /* offline: what the node said of it when it applied the state */
  const json_t *r = json_object_get(json_object_get(d, "results"), app);
  const char *res = json_string_value(json_object_get(r, "result")), *dg = json_string_value(json_object_get(r, "digest"));
  if (remove) return res && strcmp(res, "removed") == 0 ? "converged" : "diverged";
  if (dg && want && strcmp(dg, want) != 0) return "diverged"; /* it took another state with this sequence */
  return res && (strcmp(res, "deployed") == 0 || strcmp(res, "unchanged") == 0) ? "converged" : "diverged";
}
