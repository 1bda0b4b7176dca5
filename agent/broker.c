/* The node's connection to the fleet's MQTT broker; see broker.h.
 *
 * One attempt at a time: resolve, TCP, TLS (the shared stream, raw: MQTT instead of frames),
 * CONNECT, CONNACK, SUBSCRIBE, the retained status. Any failure closes that attempt; its close
 * callback schedules the next one after a jittered, doubling backoff (1 s to 60 s). The apps run
 * on through any of it: nothing here touches them. */
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "broker.h"
#include "localc.h"
#include "ferry/digest.h"
#include "ferry/envelope.h"
#include "ferry/fsutil.h"
#include "ferry/mqtt.h"
#include "ferry/seal.h"
#include "ferry/stream.h"
#include "ferry/text.h"
#include "ferry/version.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define CONNECT_TIMEOUT_MS 30000  /* resolve, TCP, TLS and CONNACK together */
#define PACKET_MAX (4u << 20)     /* the largest packet accepted from the broker */
#define OUT_MAX (4u << 20)        /* one packet being built */
#define WRITE_CAP (1u << 20)      /* bytes the broker has not read yet: past it, the connection goes */
#define STABLE_MS 60000           /* a connection up this long resets the backoff */
#define LOG_PER_MINUTE 20         /* lines about refused or unexpected messages, at most */
/* A status says how fresh it is by its time; its signature lasts long (a node away for months
 * leaves the Will it signed before it went), and the status is signed again hourly. */
#define STATUS_TTL_S (400 * 86400)
/* The online status is published again at the first tick after this: the status says the
 * longest gap (refresh_s, this and a keepalive), and a pusher reads one much older as a node that
 * went away without a Will (killed in the second its Will was being renewed). */
#define STATUS_REFRESH_S 1800
/* MQTT 3.1.1 cannot change a Will once connected, so the node reconnects to sign a new one: when
 * what it would say (the applied state, its results) changed, and hourly, so that the LAST SEEN
 * of a node that went away is within an hour of the moment. */
#define WILL_RENEW_S 3600

typedef struct bconn {
  fy_stream s;                    /* first: the stream's ud is this */
  struct fy_broker *b;
  uv_connect_t connect;
  int connack;                    /* CONNACK accepted */
  const char *stage;              /* what it waits for: for the timeout's message */
  uint64_t connected_ms;          /* when CONNACK came */
} bconn;

struct fy_broker {
  fy_agent *a;
  fy_tls_conf *tls;
  bconn *c;                       /* the attempt or connection, NULL between them */
  uv_getaddrinfo_t gai;
  int resolving;
  uv_timer_t retry, tick;
  int refs;                       /* the timers, the lookup and the connection still open; freed at 0 */
  fy_mqtt_decoder dec;
  fy_buf out;
  uint64_t backoff_ms;
  uint16_t next_id;
  int ping_outstanding;
  int stopping;
  char *last_status;              /* what the retained status last said (time left out) */
  char *will_body;                /* what this connection's Last Will says (its time left out) */
  uint64_t will_at_ms;            /* when it was signed (the loop's monotonic clock) */
  const char *renewing;           /* why the connection is being closed to renew the Will, or NULL */
  int64_t last_status_at;         /* when it was published */
  char t_status[320], t_desired[320], t_requests[320], t_events[320], t_replies[320];
  uint64_t desired_seq, request_seq; /* the newest accepted (replays and reordering are refused) */
  char *key_pem;                  /* the node's key.pem, to open what is sealed to it (wiped at the end) */
  size_t key_len;
  char *cert_pem;                 /* its cert.pem, carried in what it signs */
  fy_sign_key *sk;                /* the same key, to sign its status */
  uint64_t status_seq;            /* milliseconds since the epoch, kept increasing */
  char reason[300];               /* why the last attempt ended, for the retry line */
  struct addrinfo *ai, *ai_cur;   /* the broker's addresses, tried in turn */
  int next_address;               /* the attempt failed at TCP: try the next address at once */
  uint64_t log_window_ms;         /* the log's rate limit for what the broker sends */
  unsigned logged, suppressed;
  /* applying desired state: one at a time, on a thread of its own, through the local socket */
  struct apply_job *job;          /* the one running, NULL when none */
  json_t *pending;                /* the newest verified desired state waiting for it: {seq, apps} */
  uint64_t applied_seq;           /* the newest desired state whose every app got a result */
  char desired_hash[FY_DIGEST_STR]; /* the accepted one's payload: another with its sequence is refused */
  char request_hash[FY_DIGEST_STR]; /* the same for the newest request (a second delivery of it is no news) */
  uint64_t apply_retry_ms, apply_backoff_ms; /* a state whose apply could not reach ferryd: when again */
  json_t *results;                /* per app of that state: {result, release, reason} */
  /* requests: one at a time too, on a thread of their own, the others waiting in order */
  struct req_job *rjob;
  json_t *rqueue;                 /* [{seq, id, op, app, request}], at most REQUESTS_MAX */
  json_t *unsent;                 /* signed replies that found the connection down */
};

#define REQUESTS_MAX 16           /* requests waiting for their turn */
#define REPLY_LOG_MAX (256u * 1024u) /* a log's bytes in a reply (the end of it): a broker message stays small */
#define REPLY_OUTPUT_MAX (128u * 1024u) /* an exec's stdout, and its stderr, in a reply (the start of each) */

typedef struct req_job {
  fy_broker *b;
  uint64_t seq;
  char id[64], op[16], app[FY_APP_NAME_MAX];
  int64_t expires;                /* the request's own: it is not carried out, nor run on, past it */
  json_t *request;
  char state_dir[FY_CFG_PATH];
  int rc;
  char err[700];
  json_t *answer;
  uint8_t type;
  fy_buf out[2];                  /* exec: the command's stdout and stderr, REPLY_OUTPUT_MAX each */
  int truncated;
  uv_thread_t thread;
  uv_async_t done;
} req_job;

#define APPLY_APPS_MAX 32         /* apps one desired state may name */

typedef struct apply_app {
  char app[FY_APP_NAME_MAX];
  json_t *plan;                   /* opened from the sealed secret plan/APP; wiped after */
  int rc;                         /* FY_OK: ferryd gave a result */
  fy_localc_deploy d;
  char err[700];
} apply_app;

typedef struct apply_job {
  fy_broker *b;
  uint64_t seq;
  volatile int superseded;        /* a newer state came: the apps not committed yet are given up */
  apply_app apps[APPLY_APPS_MAX];
  size_t n;
  char state_dir[FY_CFG_PATH];
  uv_thread_t thread;
  uv_async_t done;
} apply_job;

static void attempt(fy_broker *b);
static void apply_start(fy_broker *b);

static void unref(fy_broker *b) {
  if (--b->refs > 0) return;
  fy_tls_conf_free(b->tls);
  fy_mqtt_decoder_free(&b->dec);
  fy_buf_free(&b->out, 1);
  free(b->last_status);
  free(b->will_body);
  json_decref(b->pending);
  json_decref(b->results);
  json_decref(b->rqueue);
  json_decref(b->unsent);
  if (b->key_pem) explicit_bzero(b->key_pem, b->key_len);
  free(b->key_pem);
  free(b->cert_pem);
  fy_sign_key_free(b->sk);
  free(b);
}

static uint16_t packet_id(fy_broker *b) {
  if (++b->next_id == 0) b->next_id = 1;
  return b->next_id;
}

/* Builds one packet into b->out (by the encoder given) and sends it. */
static void drop(fy_broker *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends what b->out holds. A broker that does not read (TLS's output full, or past WRITE_CAP)
 * loses the connection: nothing is kept for it. */
static int send_out(fy_broker *b) {
  int rc = b->c ? fy_stream_send_bytes(&b->c->s, b->out.data, b->out.len) : FY_ECONN;
  fy_buf_reset(&b->out);
  if (rc != FY_OK && rc != FY_ECONN && b->c) drop(b, "the broker does not read what this node sends (%s)", fy_strerror(rc));
  return rc;
}

/* The end of an attempt or connection: closed now; the close callback schedules the next. */
static void drop(fy_broker *b, const char *fmt, ...) {
  va_list ap;
  if (!b->c) return;
  va_start(ap, fmt);
  vsnprintf(b->reason, sizeof b->reason, fmt, ap);
  va_end(ap);
  fy_stream_close(&b->c->s);
}

/* The retained status: the node's facts and apps, online or not, and when. */
static json_t *status_json(fy_broker *b, int online) {
  fy_agent *a = b->a;
  /* The facts also while offline (the Will): a pusher picks the variant of a node that is away. */
  json_t *j = fy_facts_json(&a->cfg, &a->facts, a->name, 0);
  if (!j) return NULL;
  json_object_del(j, "uptime_s");
  json_object_del(j, "free_bytes");
  if (online) {
    /* the time alone is not news: an app's age would change the status at every tick */
    json_t *apps = fy_apps_json(a), *v;
    size_t i;
    json_array_foreach(apps, i, v) json_object_del(v, "age_s");
    json_object_set_new(j, "apps", apps);
    json_object_set_new(j, "refresh_s", json_integer(STATUS_REFRESH_S + (json_int_t)(a->cfg.broker_keepalive_ms / 1000)));
  } else {
    json_object_del(j, "apps"); /* away, nothing runs that anyone can see: the results below say what it applied */
  }
  /* how far the node is with the desired state: the newest accepted, the newest applied, and
   * what each app of that one became */
  json_object_set_new(j, "desired", json_pack("{s:I, s:I, s:O?, s:b}", "seq", (json_int_t)b->desired_seq, "applied",
                                               (json_int_t)b->applied_seq, "results", b->results, "applying", b->job != NULL));
  /* the newest request accepted: a pusher's next one must be above it */
  json_object_set_new(j, "requests", json_pack("{s:I}", "seq", (json_int_t)b->request_seq));
  json_object_set_new(j, "name", json_string(a->name));
  json_object_set_new(j, "online", json_boolean(online));
  return j;
}

/* The status as the node signs it (envelope.h, kind "status"): a pusher checks that this node's
 * identity signed it. A newer one has a higher sequence (the time in milliseconds). */
static json_t *signed_status(fy_broker *b, json_t *body) {
  char err[200];
  uint64_t now_ms = (uint64_t)time(NULL) * 1000 + uv_now(b->a->loop) % 1000;
  b->status_seq = now_ms > b->status_seq ? now_ms : b->status_seq + 1;
  json_t *e = b->sk && body ? fy_envelope_sign(b->sk, b->cert_pem, "status", b->a->name, b->status_seq, (int64_t)time(NULL),
                                               (int64_t)time(NULL) + STATUS_TTL_S, body, err, sizeof err)
                            : NULL;
  if (!e) fy_log("warn", "broker: cannot sign the status: %s", b->sk ? err : "no key");
  return e;
}

static int publish_json(fy_broker *b, const char *topic, json_t *j, int qos, int retain) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  int rc = s ? fy_mqtt_publish_encode(&b->out, topic, s, strlen(s), qos, retain, 0, qos ? packet_id(b) : 0) : FY_ENOMEM;
  free(s);
  return rc == FY_OK ? send_out(b) : rc;
}

/* Publishes the status when it says something new (the time alone is not news). */
static void publish_status(fy_broker *b, int force) {
  json_t *j = status_json(b, 1);
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  if (s && (force || !b->last_status || strcmp(s, b->last_status) != 0 || (int64_t)time(NULL) - b->last_status_at >= STATUS_REFRESH_S)) {
    json_object_set_new(j, "time", json_integer((json_int_t)time(NULL)));
    json_t *e = signed_status(b, j);
    int rc = publish_json(b, b->t_status, e, 1, 1);
    json_decref(e);
    if (rc == FY_OK) {
      free(b->last_status);
      b->last_status_at = (int64_t)time(NULL);
      b->last_status = s;
      s = NULL;
    }
  }
  free(s);
  json_decref(j);
}

/* What the Will would say now that matters once the node is away: its facts and how far it is
 * with the desired state (not the request sequence: no request goes to a node that is away). */
static char *will_json(fy_broker *b) {
  json_t *j = status_json(b, 0);
  if (j) json_object_del(j, "requests");
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(j);
  return s;
}

/* Closes a connection whose Will says what is no longer so, to sign a new one at once (on_closed
 * reconnects without a backoff). Not while anything is in flight: an apply or a request, or a
 * reply still to send. The broker drops a Will on a clean DISCONNECT, so the retained status
 * stays the last one the node published as online until the new connection's comes. */
static int will_renew(fy_broker *b) {
  /* (a state waiting for its retry is no obstacle: nothing of it is in flight) */
  if (b->job || b->rjob || json_array_size(b->unsent) || json_array_size(b->rqueue)) return 0;
  const char *why = NULL;
  char *now = will_json(b);
  if (now && b->will_body && strcmp(now, b->will_body) != 0) why = "the applied state changed";
  else if (uv_now(b->a->loop) - b->will_at_ms >= (uint64_t)WILL_RENEW_S * 1000) why = "hourly";
  free(now);
  if (!why) return 0;
  b->renewing = why;
  if (fy_mqtt_simple_encode(&b->out, FY_MQTT_DISCONNECT) == FY_OK) (void)send_out(b);
  if (b->c) fy_stream_end(&b->c->s, 0, NULL, 1000);
  return 1;
}

static void on_tick(uv_timer_t *t) {
  fy_broker *b = t->data;
  if (!b->c || !b->c->connack) return;
  if (b->ping_outstanding) {
    drop(b, "the broker did not answer a ping within broker.keepalive");
    return;
  }
  apply_start(b); /* a state waiting for its retry */
  if (will_renew(b)) return; /* nothing more on a connection that is closing (no PINGRESP to leave unread) */
  b->ping_outstanding = 1; /* sent or not: unanswered by the next tick, the connection goes */
  if (fy_mqtt_simple_encode(&b->out, FY_MQTT_PINGREQ) == FY_OK) (void)send_out(b);
  if (!b->c) return;
  publish_status(b, 0);
}

/* Lines about what the broker sends are limited: a broker (or a pusher) that floods a node
 * must not fill its disk. */
static int may_log(fy_broker *b) {
  uint64_t now = uv_now(b->a->loop);
  if (now - b->log_window_ms >= 60000) {
    if (b->suppressed) fy_log("warn", "broker: %u more such line(s) in the last minute not logged", b->suppressed);
    b->log_window_ms = now;
    b->logged = b->suppressed = 0;
  }
  if (b->logged < LOG_PER_MINUTE) {
    b->logged++;
    return 1;
  }
  b->suppressed++;
  return 0;
}

/* One event on PREFIX/nodes/NAME/events (QoS 1): what became of a message, and why. */
static void event(fy_broker *b, const char *what, const char *kind, int code, uint64_t seq, const char *reason) {
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "event", what, "kind", kind, "code", code ? fy_err_name(code) : "", "reason",
                        reason, "time", (json_int_t)time(NULL));
  if (j && seq) json_object_set_new(j, "seq", json_integer((json_int_t)seq));
  if (publish_json(b, b->t_events, j, 1, 0) != FY_OK) fy_log("warn", "broker: cannot publish an event");
  json_decref(j);
}

/* A message for this node: opened only when a pusher of this fleet signed it for this node, newer
 * than the last one, and not expired (envelope.h); every refusal is logged and published as an
 * event with its reason. */
/* The newest sequence accepted of each kind, kept in STATE/broker-seq.json across restarts: an
 * older message replayed after a restart is refused as it would be before. */
static void seq_path(const fy_broker *b, char *out, size_t len) {
  if (fy_path_fmt(out, len, "%s/broker-seq.json", b->a->cfg.state_dir) != FY_OK) out[0] = '\0';
}

static void seq_load(fy_broker *b) {
  char path[FY_CFG_PATH + 32], *text = NULL;
  size_t len;
  seq_path(b, path, sizeof path);
  if (!path[0] || fy_file_read(path, 65536, &text, &len) != FY_OK) return;
  json_t *j = json_loadb(text, len, 0, NULL);
  json_int_t d = json_integer_value(json_object_get(j, "desired")), r = json_integer_value(json_object_get(j, "request"));
  b->desired_seq = d > 0 ? (uint64_t)d : 0;
  b->request_seq = r > 0 ? (uint64_t)r : 0;
  json_int_t ap = json_integer_value(json_object_get(j, "applied"));
  b->applied_seq = ap > 0 && (uint64_t)ap <= b->desired_seq ? (uint64_t)ap : 0;
  const char *dh = json_string_value(json_object_get(j, "desired_hash"));
  if (dh && strlen(dh) < sizeof b->desired_hash) snprintf(b->desired_hash, sizeof b->desired_hash, "%s", dh);
  json_t *res = json_object_get(j, "results");
  if (json_is_object(res) && json_object_size(res) <= APPLY_APPS_MAX) b->results = json_incref(res);
  json_decref(j);
  free(text);
}

static void seq_save(fy_broker *b) {
  char path[FY_CFG_PATH + 32];
  json_t *j = json_pack("{s:I, s:I, s:I, s:O?, s:s}", "desired", (json_int_t)b->desired_seq, "request", (json_int_t)b->request_seq,
                        "applied", (json_int_t)b->applied_seq, "results", b->results, "desired_hash", b->desired_hash);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  seq_path(b, path, sizeof path);
  if (!s || !path[0] || fy_file_write_atomic(path, s, strlen(s), 0600) != FY_OK)
    fy_log("warn", "broker: cannot keep the sequence numbers in %s", path);
  free(s);
  json_decref(j);
}

/* --- applying desired state ------------------------------------------------------------------
 * Each app of a verified desired state is deployed through ferryd's own local socket, as
 * ferryd --import does: the plan (its layers from the registry it names) meets the same deploy
 * code, signature policy, limits, health check and rollback as a pusher's. A thread of its own
 * holds that blocking conversation; the loop serves it meanwhile, and learns the end through an
 * async handle. */

static void apply_start(fy_broker *b);

/* An app the desired state says must not be on this node: a remove request, as ferry rm sends
 * (its volumes kept); an app that is not there is as good as removed. */
static void apply_remove(apply_job *j, apply_app *x) {
  fy_request_msg m = {.op = FY_REQ_REMOVE, .app = x->app};
  json_t *req = fy_request_encode(&m), *ans = NULL;
  uint8_t type = 0;
  char why[300];
  x->d = (fy_localc_deploy){.app = x->app};
  x->rc = req ? fy_localc_ask(j->state_dir, "ferryd broker " FY_VERSION, "remove", x->app, req, &ans, &type, NULL, NULL, 0, x->err,
                              sizeof x->err)
              : FY_ENOMEM;
  json_decref(req);
  fy_result_msg res;
  if (x->rc == FY_OK && type == FY_FT_RESULT && fy_result_decode(ans, &res, why, sizeof why) == FY_OK) {
    x->d.result = res.result;
    x->d.code = res.code;
    snprintf(x->d.message, sizeof x->d.message, "%s", res.message);
  } else if (x->rc == FY_OK && type == FY_FT_ERROR) {
    int code;
    const char *msg;
    fy_msg_error_fields(ans, &code, &msg);
    x->d.result = code == FY_ENOAPP ? FY_RESULT_REMOVED : FY_RESULT_FAILED;
    x->d.code = code == FY_ENOAPP ? 0 : code;
    snprintf(x->d.message, sizeof x->d.message, "%s", code == FY_ENOAPP ? "not on this node" : msg ? msg : "refused");
  } else if (x->rc == FY_OK) {
    x->d.result = FY_RESULT_FAILED;
    snprintf(x->d.message, sizeof x->d.message, "ferryd answered the remove request with something else than a result");
  }
  json_decref(ans);
}

static void apply_thread(void *arg) {
  apply_job *j = arg;
  for (size_t i = 0; i < j->n; i++) {
    apply_app *x = &j->apps[i];
    if (j->superseded) {
      x->rc = FY_ECANCELED;
      snprintf(x->err, sizeof x->err, "given up for a newer one");
      continue;
    }
    if (!x->plan) {
      apply_remove(j, x);
      continue;
    }
    x->d = (fy_localc_deploy){.client = "ferryd broker " FY_VERSION, .app = x->app, .plan = x->plan, .cancel = &j->superseded};
    x->rc = fy_localc_run(j->state_dir, &x->d, x->err, sizeof x->err);
  }
  uv_async_send(&j->done);
}

static void apply_free(uv_handle_t *h) {
  apply_job *j = h->data;
  fy_broker *b = j->b;
  for (size_t i = 0; i < j->n; i++) {
    json_decref(j->apps[i].plan); /* the settings and the pull credential in it go with it */
    free(j->apps[i].d.log_tail);
  }
  free(j);
  unref(b);
}

static void apply_done(uv_async_t *h) {
  apply_job *j = h->data;
  fy_broker *b = j->b;
  uv_thread_join(&j->thread);
  b->job = NULL;
  int all = 1;
  json_t *results = json_object();
  for (size_t i = 0; i < j->n; i++) {
    apply_app *x = &j->apps[i];
    fy_result r = x->rc == FY_OK ? x->d.result : x->rc == FY_ECANCELED ? FY_RESULT_SKIPPED : FY_RESULT_FAILED;
    int code = x->rc == FY_OK ? x->d.code : x->rc;
    const char *reason = x->rc == FY_OK ? x->d.message : x->err;
    /* ferryd's refusal is an answer; a connection lost (ferryd stopping), or "busy" (a request
     * for the app at the same moment), is not: the state is applied again later */
    all &= x->rc != FY_ECONN && x->rc != FY_ETIMEDOUT && x->rc != FY_EBUSY && code != FY_EBUSY && x->rc != FY_ECANCELED && !b->stopping;
    fy_log(r == FY_RESULT_DEPLOYED || r == FY_RESULT_UNCHANGED ? "info" : "warn", "broker: desired state %llu: app %s: %s%s%s%s%s",
           (unsigned long long)j->seq, x->app, fy_result_name(r), x->d.release[0] ? " " : "", x->d.release, reason[0] ? ": " : "",
           reason);
    json_object_set_new(results, x->app, json_pack("{s:s, s:s, s:s, s:s, s:s}", "result", fy_result_name(r), "release", x->d.release,
                                                   "code", code ? fy_err_name(code) : "", "reason", reason, "digest",
                                                   json_string_value(json_object_get(x->plan, "manifest_digest")) ?
                                                     json_string_value(json_object_get(x->plan, "manifest_digest")) : ""));
    if (!b->stopping && b->c && b->c->connack) {
      json_t *ev = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:I}", "event", "result", "kind", "desired", "seq",
                             (json_int_t)j->seq, "app", x->app, "result", fy_result_name(r), "release", x->d.release, "code",
                             code ? fy_err_name(code) : "", "reason", reason, "time", (json_int_t)time(NULL));
      if (publish_json(b, b->t_events, ev, 1, 0) != FY_OK) fy_log("warn", "broker: cannot publish an event");
      json_decref(ev);
    }
  }
  /* A deploy cut short (ferryd stopping) is not applied: the retained state comes again at the
   * next connection, and is applied then. */
  if (all) {
    b->applied_seq = j->seq;
    json_decref(b->results);
    b->results = results;
    seq_save(b);
    b->apply_backoff_ms = 0;
  } else {
    json_decref(results);
    /* ferryd's own socket failed (all its local connections busy, or it is stopping): the same
     * state again later, unless a newer one came meanwhile */
    if (!b->stopping && !b->pending) {
      json_t *plans = json_object();
      for (size_t i = 0; i < j->n; i++) json_object_set_new(plans, j->apps[i].app, j->apps[i].plan ? json_incref(j->apps[i].plan) : json_null());
      b->pending = json_pack("{s:I, s:o}", "seq", (json_int_t)j->seq, "plans", plans);
      b->apply_backoff_ms = b->apply_backoff_ms ? (b->apply_backoff_ms * 2 > 600000 ? 600000 : b->apply_backoff_ms * 2) : 15000;
      b->apply_retry_ms = uv_now(b->a->loop) + b->apply_backoff_ms;
      fy_log("warn", "broker: desired state %llu: trying again in %llu s", (unsigned long long)j->seq,
             (unsigned long long)(b->apply_backoff_ms / 1000));
    }
  }
  uv_close((uv_handle_t *)&j->done, apply_free);
  if (!b->stopping && b->c && b->c->connack) publish_status(b, 0);
  apply_start(b);
}

/* The pending desired state, when nothing is being applied. */
static void apply_start(fy_broker *b) {
  json_t *p = b->pending;
  if (b->job || !p || b->stopping || uv_now(b->a->loop) < b->apply_retry_ms) return;
  b->pending = NULL;
  apply_job *j = calloc(1, sizeof *j);
  const char *name;
  json_t *plan;
  if (!j) {
    json_decref(p);
    return;
  }
  j->b = b;
  j->seq = (uint64_t)json_integer_value(json_object_get(p, "seq"));
  snprintf(j->state_dir, sizeof j->state_dir, "%s", b->a->cfg.state_dir);
  json_object_foreach(json_object_get(p, "plans"), name, plan) {
    if (j->n >= APPLY_APPS_MAX) break;
    snprintf(j->apps[j->n].app, sizeof j->apps[j->n].app, "%s", name);
    j->apps[j->n++].plan = json_is_object(plan) ? json_incref(plan) : NULL; /* null: to be removed */
  }
  json_decref(p);
  j->done.data = j;
  if (uv_async_init(b->a->loop, &j->done, apply_done) != 0) {
    for (size_t i = 0; i < j->n; i++) json_decref(j->apps[i].plan);
    free(j);
    return;
  }
  b->refs++;
  b->job = j;
  if (uv_thread_create(&j->thread, apply_thread, j) != 0) {
    fy_log("warn", "broker: cannot start a thread to apply desired state %llu", (unsigned long long)j->seq);
    b->job = NULL;
    j->n = 0;
    uv_close((uv_handle_t *)&j->done, apply_free);
    return;
  }
  fy_log("info", "broker: applying desired state %llu (%zu app(s))", (unsigned long long)j->seq, j->n);
  publish_status(b, 0);
}

/* The sealed plans of a desired state: body.apps names each app, body.secrets["plan/APP"] is
 * its plan sealed to this node. Fills *plans (APP -> plan); FY_EPROTO with the reason otherwise. */
static int desired_plans(fy_broker *b, const json_t *body, json_t *opened, json_t **plans, char *why, size_t whylen) {
  const json_t *apps = json_object_get(body, "apps");
  const char *app;
  const json_t *v;
  *plans = json_object();
  if (!*plans) return FY_ENOMEM;
  if (!json_is_object(apps) || json_object_size(apps) > APPLY_APPS_MAX) {
    fy_text_fmt(why, whylen, "apps: expected an object of at most %d apps", APPLY_APPS_MAX);
    return FY_EPROTO;
  }
  (void)b;
  /* every app checked before any is applied: a state is taken whole or not at all */
  json_object_foreach((json_t *)apps, app, v) {
    char key[FY_APP_NAME_MAX + 8];
    if (!fy_app_valid_name(app)) {
      fy_text_fmt(why, whylen, "'%.64s' is not an app name (1-63 of a-z, 0-9, '-', '.', '_')", app);
      return FY_EPROTO;
    }
    snprintf(key, sizeof key, "plan/%s", app);
    json_t *plan = json_object_get(opened, key);
    const char *pa = json_string_value(json_object_get(plan, "app")), *want = json_string_value(json_object_get(v, "digest"));
    const char *has = json_string_value(json_object_get(plan, "manifest_digest"));
    fy_plan_msg pm;
    char pwhy[300];
    if (json_is_object(v) && json_is_true(json_object_get(v, "remove"))) { /* it must not be here */
      json_object_set_new(*plans, app, json_null());
      continue;
    }
    if (!json_is_object(v) || !want) {
      fy_text_fmt(why, whylen, "app %s: expected {digest, platform} or {remove: true}", app);
      return FY_EPROTO;
    }
    if (!json_is_object(plan) || !pa || strcmp(pa, app) != 0) {
      fy_text_fmt(why, whylen, "app %s: no sealed plan for it (secret plan/%s)", app, app);
      return FY_EPROTO;
    }
    if (fy_plan_decode(plan, &pm, pwhy, sizeof pwhy) != FY_OK) {
      fy_text_fmt(why, whylen, "app %s: its plan: %s", app, pwhy);
      return FY_EPROTO;
    }
    if (!has || strcmp(has, want) != 0) {
      fy_text_fmt(why, whylen, "app %s: its sealed plan is for %.80s, the desired state names %.80s", app, has ? has : "?", want);
      return FY_EPROTO;
    }
    json_object_set(*plans, app, plan);
  }
  return FY_OK;
}

/* --- requests ----------------------------------------------------------------------------------
 * A verified request (logs, rollback, stop, start, restart, remove) goes through the local socket
 * as a pusher's would, on a thread; the answer, whatever it is (a result, a log, ferryd's
 * refusal), goes back signed by this node on PREFIX/nodes/NAME/replies with the request's id. */

static void req_next(fy_broker *b);

/* exec: what the command writes, up to REPLY_OUTPUT_MAX of each stream */
static void req_output(void *ud, int stream, const uint8_t *p, size_t n) {
  req_job *j = ud;
  fy_buf *b = &j->out[stream == FY_OUT_STDERR];
  size_t room = b->len < REPLY_OUTPUT_MAX ? REPLY_OUTPUT_MAX - b->len : 0;
  if (n > room) j->truncated = 1;
  if (room && fy_buf_append(b, p, n < room ? n : room) != FY_OK) j->truncated = 1;
}

static void req_thread(void *arg) {
  req_job *j = arg;
  int64_t left = j->expires - (int64_t)time(NULL);
  if (left <= 0) {
    j->rc = fy_text_fail(j->err, sizeof j->err, FY_EEXPIRED, "the request expired while it waited for its turn");
  } else {
    /* an exec's command is ended at the request's expiry: a request holds the queue no longer */
    j->rc = fy_localc_ask(j->state_dir, "ferryd broker " FY_VERSION, j->op, j->app, j->request, &j->answer, &j->type, req_output, j,
                          left > 86400 ? 86400 * 1000 : (int)left * 1000, j->err, sizeof j->err);
  }
  uv_async_send(&j->done);
}

static void req_free(uv_handle_t *h) {
  req_job *j = h->data;
  fy_broker *b = j->b;
  fy_buf_free(&j->out[0], 1);
  fy_buf_free(&j->out[1], 1);
  json_decref(j->request);
  json_decref(j->answer);
  free(j);
  unref(b);
}

/* A reply is signed at once; when the broker connection is down it waits (at most
 * REQUESTS_MAX of them) and goes out after the next CONNACK. */
static void reply(fy_broker *b, uint64_t seq, const char *id, const char *op, const char *app, const char *type, json_t *answer) {
  char err[200];
  int64_t now = (int64_t)time(NULL);
  json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:O}", "id", id, "op", op, "app", app, "type", type, "answer", answer);
  json_t *e = body && b->sk ? fy_envelope_sign(b->sk, b->cert_pem, "reply", b->a->name, seq, now, now + 3600, body, err, sizeof err) : NULL;
  json_decref(body);
  if (!e) {
    fy_log("warn", "broker: cannot sign the reply to request %s", id);
    return;
  }
  if (b->c && b->c->connack && publish_json(b, b->t_replies, e, 1, 0) == FY_OK) {
    json_decref(e);
    return;
  }
  if (!b->unsent && !(b->unsent = json_array())) return;
  if (json_array_size(b->unsent) >= REQUESTS_MAX) json_array_remove(b->unsent, 0);
  json_array_append_new(b->unsent, e);
}

static void send_unsent(fy_broker *b) {
  while (json_array_size(b->unsent) && b->c && b->c->connack) {
    if (publish_json(b, b->t_replies, json_array_get(b->unsent, 0), 1, 0) != FY_OK) return;
    json_array_remove(b->unsent, 0);
  }
}

static void req_done(uv_async_t *h) {
  req_job *j = h->data;
  fy_broker *b = j->b;
  uv_thread_join(&j->thread);
  b->rjob = NULL;
  json_t *answer = j->answer;
  const char *type = j->type == FY_FT_RESULT ? "result" : j->type == FY_FT_REPLY ? "reply" : "error";
  json_t *made = NULL;
  if (j->rc != FY_OK || !answer) /* no answer from ferryd: the reason as an error */
    answer = made = json_pack("{s:s, s:s}", "code", fy_err_name(j->rc ? j->rc : FY_EPROTO), "message", j->err[0] ? j->err : "no answer");
  /* an exec's output travels in the reply (base64: any bytes) */
  for (int k = 0; k < 2 && j->rc == FY_OK && strcmp(j->op, "exec") == 0; k++) {
    char *b64 = fy_settings_b64(j->out[k].data ? (const void *)j->out[k].data : "", j->out[k].len);
    if (b64) json_object_set_new(answer, k ? "stderr" : "stdout", json_string(b64));
    free(b64);
    if (j->truncated) json_object_set_new(answer, "output_truncated", json_true());
  }
  /* a log's end only: the reply stays a small broker message */
  const char *log = json_string_value(json_object_get(answer, "log"));
  if (log && strlen(log) > REPLY_LOG_MAX) {
    const char *tail = log + strlen(log) - REPLY_LOG_MAX, *nl = strchr(tail, '\n');
    json_object_set_new(answer, "log", json_string(nl ? nl + 1 : tail));
    json_object_set_new(answer, "truncated", json_true());
  }
  fy_log("info", "broker: request %llu (%s %s, id %s): %s", (unsigned long long)j->seq, j->op, j->app, j->id,
         strcmp(type, "error") == 0 ? fy_msg_str(answer, "message", 300) ? fy_msg_str(answer, "message", 300) : "error"
                                    : fy_msg_str(answer, "result", 32) ? fy_msg_str(answer, "result", 32) : type);
  if (!b->stopping) {
    if (b->c && b->c->connack) publish_status(b, 0);
    reply(b, j->seq, j->id, j->op, j->app, j->rc != FY_OK ? "error" : type, answer);
  }
  json_decref(made);
  uv_close((uv_handle_t *)&j->done, req_free);
  req_next(b);
}

static void req_next(fy_broker *b) {
  if (b->rjob || b->stopping || json_array_size(b->rqueue) == 0) return;
  json_t *r = json_incref(json_array_get(b->rqueue, 0));
  json_array_remove(b->rqueue, 0);
  req_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_decref(r);
    return;
  }
  j->b = b;
  j->seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
  j->expires = (int64_t)json_integer_value(json_object_get(r, "expires"));
  snprintf(j->id, sizeof j->id, "%s", json_string_value(json_object_get(r, "id")));
  snprintf(j->op, sizeof j->op, "%s", json_string_value(json_object_get(r, "op")));
  snprintf(j->app, sizeof j->app, "%s", json_string_value(json_object_get(r, "app")));
  j->request = json_incref(json_object_get(r, "request"));
  snprintf(j->state_dir, sizeof j->state_dir, "%s", b->a->cfg.state_dir);
  fy_buf_init(&j->out[0], REPLY_OUTPUT_MAX);
  fy_buf_init(&j->out[1], REPLY_OUTPUT_MAX);
  json_decref(r);
  j->done.data = j;
  if (uv_async_init(b->a->loop, &j->done, req_done) != 0) {
    json_decref(j->request);
    free(j);
    return;
  }
  b->refs++;
  b->rjob = j;
  if (uv_thread_create(&j->thread, req_thread, j) != 0) {
    b->rjob = NULL;
    uv_close((uv_handle_t *)&j->done, req_free);
  }
}

/* A verified request's body: {"id", "request": the request message as the wire has it}. Queued,
 * or refused with the reason. */
static int req_accept(fy_broker *b, const json_t *body, uint64_t seq, int64_t expires, char *why, size_t whylen) {
  const char *id = json_string_value(json_object_get(body, "id"));
  const json_t *req = json_object_get(body, "request");
  fy_request_msg m;
  char rwhy[300];
  if (!id || !id[0] || strlen(id) >= 64) return fy_text_fail(why, whylen, FY_EPROTO, "a request without an id (1-63 characters)");
  if (fy_request_decode(req, &m, rwhy, sizeof rwhy) != FY_OK) return fy_text_fail(why, whylen, FY_EPROTO, "the request: %s", rwhy);
  if (m.op == FY_REQ_EXEC && (m.input || m.tty))
    return fy_text_fail(why, whylen, FY_EUNSUPPORTED, "exec -i or -t does not go through the broker (a command without input does)");
  if (m.follow) return fy_text_fail(why, whylen, FY_EUNSUPPORTED, "logs --follow does not go through the broker");
  if (!b->rqueue && !(b->rqueue = json_array())) return FY_ENOMEM;
  if (json_array_size(b->rqueue) >= REQUESTS_MAX)
    return fy_text_fail(why, whylen, FY_EBUSY, "%d requests are waiting already", REQUESTS_MAX);
  json_array_append_new(b->rqueue, json_pack("{s:I, s:I, s:s, s:s, s:s, s:O}", "seq", (json_int_t)seq, "expires", (json_int_t)expires,
                                             "id", id, "op", fy_request_op_name(m.op), "app", m.app, "request", req));
  req_next(b);
  return FY_OK;
}

/* Opens every value of secrets, sealed to this node under "NODE secret NAME"; with desired, the
 * apps' plans ("plan/APP") go into plans_opened. Plain text is wiped once used. */
static int open_secrets(fy_broker *b, const json_t *secrets, int desired, json_t *plans_opened, size_t *opened, char *why, size_t whylen) {
  const char *sname;
  const json_t *sv;
  int rc = FY_OK;
  if (secrets && (!json_is_object(secrets) || json_object_size(secrets) > 64)) {
    fy_text_fmt(why, whylen, "secrets: expected an object of at most 64 sealed values");
    return FY_EPROTO;
  }
  json_object_foreach((json_t *)secrets, sname, sv) {
    char ctx[FY_SEAL_CONTEXT_MAX + 1], swhy[200];
    unsigned char *plain = NULL;
    size_t pn = 0;
    int cl = snprintf(ctx, sizeof ctx, "%s secret %s", b->a->name, sname);
    if (cl < 0 || (size_t)cl >= sizeof ctx) {
      fy_text_fmt(why, whylen, "the secret name %.64s... is too long", sname);
      return FY_EPROTO;
    }
    rc = b->key_pem ? fy_unseal(b->key_pem, b->key_len, ctx, sv, &plain, &pn, swhy, sizeof swhy) : FY_EINVAL;
    if (rc != FY_OK) fy_text_fmt(why, whylen, "the secret %.64s does not open: %s", sname, b->key_pem ? swhy : "no key");
    else (*opened)++;
    if (rc == FY_OK && desired && strncmp(sname, "plan/", 5) == 0) { /* an app's plan: kept for the apply */
      json_t *plan = json_loadb((const char *)plain, pn, 0, NULL);
      if (!json_is_object(plan)) {
        fy_text_fmt(why, whylen, "the sealed %.64s is not a JSON object", sname);
        rc = FY_EPROTO;
      }
      json_object_set_new(plans_opened, sname, plan);
    }
    if (plain) explicit_bzero(plain, pn);
    free(plain);
    if (rc != FY_OK) return rc;
  }
  return FY_OK;
}

static void on_message(fy_broker *b, const char *kind, const uint8_t *p, size_t n) {
  fy_envelope e;
  char why[400];
  int desired = strcmp(kind, "desired") == 0;
  uint64_t *last = desired ? &b->desired_seq : &b->request_seq;
  if (n == 0) return; /* a retained message cleared */
  char hash[FY_DIGEST_STR] = "";
  {
    fy_digest d;
    fy_sha256 h;
    fy_sha256_init(&h);
    fy_sha256_update(&h, p, n);
    fy_sha256_final(&h, &d);
    fy_digest_format(&d, hash);
  }
  /* The very bytes this node accepted (and, for a desired state, applied) are no news, even
   * once they have expired: the retained desired state comes again at every connection. */
  if (desired ? b->desired_hash[0] && strcmp(hash, b->desired_hash) == 0 && b->applied_seq >= b->desired_seq
              : b->request_hash[0] && strcmp(hash, b->request_hash) == 0)
    return;
  /* Otherwise the one this node has is not news either (unless it was never applied: ferryd
   * stopped while applying it), and not a replay; only an older one is. */
  int rc = fy_envelope_open(b->a->tls, (const char *)p, n, b->a->name, kind, *last ? *last - 1 : 0, (int64_t)time(NULL), &e, why,
                            sizeof why);
  if (rc == FY_OK && e.seq == *last && desired && b->desired_hash[0] && strcmp(hash, b->desired_hash) != 0) {
    /* two pushers that took the same sequence: the first one here stands; the other is told */
    fy_text_fmt(why, sizeof why, "another desired state with sequence %llu was taken already (two pushers at once?): push again",
                (unsigned long long)e.seq);
    if (may_log(b)) fy_log("warn", "broker: desired message %llu refused: %s", (unsigned long long)e.seq, why);
    event(b, "refused", kind, FY_EDOWNGRADE, e.seq, why);
    fy_envelope_free(&e);
    return;
  }
  if (rc == FY_OK && e.seq == *last && !desired && strcmp(hash, b->request_hash) != 0) {
    /* two pushers' requests with the same sequence: the first one here is carried out */
    fy_text_fmt(why, sizeof why, "another request took sequence %llu (two pushers at once?): send it again", (unsigned long long)e.seq);
    if (may_log(b)) fy_log("warn", "broker: request %llu refused: %s", (unsigned long long)e.seq, why);
    event(b, "refused", kind, FY_EDOWNGRADE, e.seq, why);
    fy_envelope_free(&e);
    return;
  }
  if (rc == FY_OK && e.seq == *last && (!desired || b->applied_seq >= e.seq || (b->job && b->job->seq == e.seq))) {
    fy_envelope_free(&e);
    return;
  }
  if (rc == FY_EDOWNGRADE) /* the node's own figure, not the one passed to let the current state through */
    fy_text_fmt(why, sizeof why, "replayed or out of order: an older sequence than this node's %llu", (unsigned long long)*last);
  if (rc != FY_OK) {
    if (may_log(b)) fy_log("warn", "broker: %s message refused: %s: %s", kind, fy_err_name(rc), why);
    event(b, "refused", kind, rc, e.seq, why); /* its sequence when it was signed and read, else 0 */
    return;
  }
  /* Secrets (and anything else sealed) travel sealed to this node: each must open. */
  size_t opened = 0;
  json_t *plans_opened = json_object(), *plans = NULL;
  rc = open_secrets(b, json_object_get(e.body, "secrets"), desired, plans_opened, &opened, why, sizeof why);
  if (rc == FY_OK && desired && json_object_get(e.body, "apps")) rc = desired_plans(b, e.body, plans_opened, &plans, why, sizeof why);
  json_decref(plans_opened);
  if (rc != FY_OK) {
    if (may_log(b)) fy_log("warn", "broker: %s message %llu refused: %s: %s", kind, (unsigned long long)e.seq, fy_err_name(rc), why);
    event(b, "refused", kind, rc, e.seq, why);
    json_decref(plans);
    fy_envelope_free(&e);
    return;
  }
  if (e.seq > *last || (desired && strcmp(hash, b->desired_hash) != 0)) {
    *last = e.seq;
    if (desired) snprintf(b->desired_hash, sizeof b->desired_hash, "%s", hash);
    else snprintf(b->request_hash, sizeof b->request_hash, "%s", hash);
    seq_save(b);
  }
  if (desired && plans) {
    fy_log("info", "broker: desired state %llu from %s verified (expires in %lld s): %zu app(s)", (unsigned long long)e.seq, e.signer,
           (long long)(e.expires - (int64_t)time(NULL)), json_object_size(plans));
    fy_text_fmt(why, sizeof why, "verified, %zu secret(s) open; applying %zu app(s)", opened, json_object_size(plans));
    event(b, "verified", kind, 0, e.seq, why);
    json_decref(b->pending); /* a newer state replaces one that did not start yet */
    b->apply_retry_ms = b->apply_backoff_ms = 0;
    if (b->job && b->job->seq < e.seq && !b->job->superseded) {
      /* and one that is still getting its layers (a slow or stalled registry) is given up */
      b->job->superseded = 1;
      fy_log("info", "broker: desired state %llu supersedes desired state %llu: its apps that have not committed yet are given up",
             (unsigned long long)e.seq, (unsigned long long)b->job->seq);
    }
    b->pending = json_pack("{s:I, s:o}", "seq", (json_int_t)e.seq, "plans", plans);
    apply_start(b);
  } else if (!desired) {
    json_decref(plans);
    rc = req_accept(b, e.body, e.seq, e.expires, why, sizeof why);
    if (rc != FY_OK) {
      if (may_log(b)) fy_log("warn", "broker: request %llu refused: %s: %s", (unsigned long long)e.seq, fy_err_name(rc), why);
      event(b, "refused", kind, rc, e.seq, why);
    } else {
      event(b, "verified", kind, 0, e.seq, "verified; queued");
      publish_status(b, 0); /* its sequence: another pusher's next request goes above it */
    }
  } else {
    json_decref(plans);
    const char *what = "it names no app";
    fy_log("info", "broker: %s message %llu from %s verified (expires in %lld s); not applied: %s", kind, (unsigned long long)e.seq,
           e.signer, (long long)(e.expires - (int64_t)time(NULL)), what);
    fy_text_fmt(why, sizeof why, "verified%s%zu secret(s) open; not applied: %s", opened ? ", " : "; ", opened, what);
    event(b, "verified", kind, 0, e.seq, why);
  }
  fy_envelope_free(&e);
}

static int on_packet(void *ud, const fy_mqtt_packet *p) {
  fy_broker *b = ud;
  fy_agent *a = b->a;
  if ((p->type == FY_MQTT_CONNACK) == (b->c->connack != 0)) { /* CONNACK first, and once (3.2) */
    snprintf(b->reason, sizeof b->reason, "the broker broke the protocol: %s", b->c->connack ? "a second CONNACK" : "a packet before CONNACK");
    return FY_EPROTO;
  }
  switch (p->type) {
  case FY_MQTT_CONNACK: {
    if (p->return_code != 0) {
      snprintf(b->reason, sizeof b->reason, "the broker refused the connection: %s", fy_mqtt_connack_reason(p->return_code));
      return FY_ECANCELED;
    }
    b->c->connack = 1;
    b->c->connected_ms = uv_now(a->loop);
    fy_stream_timer(&b->c->s, 0, 0); /* connected: from now on the pings tell */
    if (b->renewing)
      fy_log("info", "broker: reconnected to renew the Last Will (%s)", b->renewing);
    else
      fy_log("info", "broker: connected to %s:%d as %s (%s, %s, session %s)", a->cfg.broker_host, a->cfg.broker_port, a->name,
             fy_tls_version(b->c->s.session.tls), fy_tls_suite(b->c->s.session.tls), p->session_present ? "resumed" : "new");
    b->renewing = NULL;
    const char *filters[] = {b->t_desired, b->t_requests};
    int qos[] = {1, 1};
    int rc = fy_mqtt_subscribe_encode(&b->out, packet_id(b), filters, qos, 2);
    if (rc == FY_OK) rc = send_out(b);
    if (rc != FY_OK) return rc;
    publish_status(b, 1);
    send_unsent(b);
    uv_timer_start(&b->tick, on_tick, a->cfg.broker_keepalive_ms, a->cfg.broker_keepalive_ms);
    return FY_OK;
  }
  case FY_MQTT_SUBACK:
    for (size_t i = 0; i < p->ncodes; i++)
      if (p->codes[i] == 0x80) {
        fy_text_fmt(b->reason, sizeof b->reason, "the broker refused the subscription to %s (its ACL?)", i ? b->t_requests : b->t_desired);
        return FY_ECANCELED;
      }
    return FY_OK;
  case FY_MQTT_PUBLISH: {
    int desired = strcmp(p->topic, b->t_desired) == 0, request = strcmp(p->topic, b->t_requests) == 0;
    if (desired || request) on_message(b, desired ? "desired" : "request", p->payload, p->payload_len);
    else if (may_log(b)) fy_log("warn", "broker: a message on %s, which this node did not subscribe to (ignored)", p->topic);
    if (p->qos == 1) {
      int rc = fy_mqtt_puback_encode(&b->out, p->packet_id);
      if (rc == FY_OK) rc = send_out(b);
      return rc;
    }
    return FY_OK;
  }
  case FY_MQTT_PINGRESP:
    b->ping_outstanding = 0;
    return FY_OK;
  default: /* PUBACK of the status, UNSUBACK */
    return FY_OK;
  }
}

static int on_bytes(fy_stream *s, const uint8_t *p, size_t n) {
  bconn *c = (bconn *)s;
  fy_broker *b = c->b;
  int rc = fy_mqtt_decoder_feed(&b->dec, p, n, on_packet, b);
  if (rc != FY_OK && !b->reason[0]) snprintf(b->reason, sizeof b->reason, "the broker's bytes: %s", b->dec.why);
  if (rc != FY_OK) fy_stream_close(s);
  return rc == FY_OK ? FY_OK : FY_ECANCELED;
}

/* TLS is up: CONNECT, with the Last Will that says the node went away. */
static void on_ready(fy_stream *s) {
  bconn *c = (bconn *)s;
  fy_broker *b = c->b;
  json_t *will = status_json(b, 0), *sw = NULL;
  free(b->will_body);
  b->will_body = will_json(b);
  b->will_at_ms = uv_now(b->a->loop);
  if (will) json_object_set_new(will, "since", json_integer((json_int_t)time(NULL))); /* signed now, said later */
  sw = signed_status(b, will);
  char *ws = sw ? json_dumps(sw, JSON_COMPACT) : NULL;
  json_decref(will);
  json_decref(sw);
  uint64_t ka = b->a->cfg.broker_keepalive_ms / 1000;
  fy_mqtt_connect m = {.client_id = b->a->name, .clean_session = 0, .keepalive_s = (uint16_t)(ka > 65535 ? 65535 : ka),
                       .will_topic = b->t_status, .will_payload = ws, .will_len = ws ? strlen(ws) : 0, .will_qos = 1, .will_retain = 1};
  int rc = ws ? fy_mqtt_connect_encode(&b->out, &m) : FY_ENOMEM;
  free(ws);
  c->stage = "CONNACK";
  if (rc == FY_OK) rc = send_out(b);
  if (rc != FY_OK) drop(b, "cannot send CONNECT: %s", fy_strerror(rc));
}

static void on_timeout(fy_stream *s) {
  bconn *c = (bconn *)s;
  /* an address that swallows the SYN (a broken IPv6 route): the next one at once */
  if (c->stage && strcmp(c->stage, "TCP connection") == 0) c->b->next_address = 1;
  drop(c->b, "no %s within %d s", c->stage ? c->stage : "answer", CONNECT_TIMEOUT_MS / 1000);
}

static void on_error(fy_stream *s, int code, const char *msg) {
  bconn *c = (bconn *)s;
  (void)code;
  if (!c->b->reason[0]) snprintf(c->b->reason, sizeof c->b->reason, "%s", msg);
  fy_stream_close(s);
}

static void retry_cb(uv_timer_t *t) { attempt(t->data); }

static void schedule(fy_broker *b) {
  uint32_t r = 0;
  if (b->ai) uv_freeaddrinfo(b->ai);
  b->ai = b->ai_cur = NULL;
  if (fy_tls_conf_random(b->tls, &r, sizeof r) != FY_OK) r = (uint32_t)time(NULL);
  /* jitter: between half and all of the backoff, so that a fleet that lost its broker at once
   * does not come back at once */
  uint64_t wait = b->backoff_ms / 2 + r % (b->backoff_ms / 2 + 1);
  b->renewing = NULL; /* a renewal whose reconnection failed: an outage like any other now */
  fy_log("info", "broker: %s; next attempt in %llu ms", b->reason[0] ? b->reason : "disconnected", (unsigned long long)wait);
  b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
  uv_timer_start(&b->retry, retry_cb, wait, 0);
}

static void connect_next(fy_broker *b);

static void on_closed(fy_stream *s) {
  bconn *c = (bconn *)s;
  fy_broker *b = c->b;
  /* Only a connection that stayed up resets the backoff: one the broker drops right after
   * CONNACK (a SUBACK refusal, a protocol error) must not bring the node back every second. */
  if (c->connack && uv_now(b->a->loop) - c->connected_ms >= STABLE_MS) b->backoff_ms = BACKOFF_MIN_MS;
  int renewal = c->connack != 0; /* with b->renewing: will_renew closed it (an attempt after it failed otherwise) */
  if (b->c == c) b->c = NULL;
  free(c);
  if (b->stopping) {
    if (b->ai) uv_freeaddrinfo(b->ai);
    b->ai = NULL;
    unref(b);
    return;
  }
  uv_timer_stop(&b->tick);
  b->refs--; /* the connection's; the timers keep b */
  if (b->next_address && b->ai_cur && b->ai_cur->ai_next) { /* the next address of the name, at once */
    b->ai_cur = b->ai_cur->ai_next;
    connect_next(b);
    return;
  }
  if (b->renewing && renewal) { /* closed by will_renew: the new Will at once */
    if (b->ai) uv_freeaddrinfo(b->ai);
    b->ai = b->ai_cur = NULL;
    uv_timer_start(&b->retry, retry_cb, 0, 0);
    return;
  }
  schedule(b);
}

static const fy_stream_ops ops = {
    .on_bytes = on_bytes, .on_ready = on_ready, .on_timeout = on_timeout, .on_error = on_error, .on_closed = on_closed};

static void on_connect(uv_connect_t *req, int status) {
  bconn *c = req->data;
  fy_broker *b = c->b;
  if (c->s.closing) return;
  if (status < 0) {
    b->next_address = 1;
    drop(b, "cannot connect: %s", uv_strerror(status));
    return;
  }
  c->stage = "TLS handshake";
  if (fy_stream_start(&c->s, b->tls, b->a->cfg.broker_host, FY_SIDE_PUSHER) != FY_OK)
    drop(b, "cannot start TLS");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  fy_broker *b = req->data;
  b->resolving = 0;
  if (b->stopping) {
    uv_freeaddrinfo(ai);
    unref(b);
    return;
  }
  b->refs--; /* the lookup's */
  if (status < 0) {
    uv_freeaddrinfo(ai);
    snprintf(b->reason, sizeof b->reason, "cannot resolve the broker's name: %s", uv_strerror(status));
    schedule(b);
    return;
  }
  b->ai = b->ai_cur = ai;
  connect_next(b);
}

/* One TCP connection to b->ai_cur; the overall deadline covers TCP, TLS and CONNACK. */
static void connect_next(fy_broker *b) {
  bconn *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(b->reason, sizeof b->reason, "out of memory");
    schedule(b);
    return;
  }
  c->b = b;
  c->stage = "TCP connection";
  b->c = c;
  b->next_address = 0;
  b->refs++; /* until its close callback */
  fy_stream_init(&c->s, b->a->loop, &ops, c);
  c->s.write_cap = WRITE_CAP; /* a broker that does not read loses the connection, not our memory */
  fy_stream_timer(&c->s, CONNECT_TIMEOUT_MS, 0);
  c->connect.data = c;
  int rc = uv_tcp_connect(&c->connect, &c->s.tcp, b->ai_cur->ai_addr, on_connect);
  if (rc < 0) {
    b->next_address = 1;
    drop(b, "cannot connect: %s", uv_strerror(rc));
  }
}

static void attempt(fy_broker *b) {
  char port[16];
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  if (b->stopping || b->c || b->resolving) return;
  b->reason[0] = '\0';
  fy_mqtt_decoder_free(&b->dec);
  fy_mqtt_decoder_init(&b->dec, PACKET_MAX);
  b->ping_outstanding = 0;
  snprintf(port, sizeof port, "%d", b->a->cfg.broker_port);
  b->gai.data = b;
  b->resolving = 1;
  b->refs++;
  int rc = uv_getaddrinfo(b->a->loop, &b->gai, on_resolved, b->a->cfg.broker_host, port, &hints);
  if (rc < 0) {
    b->resolving = 0;
    b->refs--;
    snprintf(b->reason, sizeof b->reason, "cannot resolve the broker's name: %s", uv_strerror(rc));
    schedule(b);
  }
}

int fy_broker_start(fy_agent *a, char *err, size_t errlen) {
  if (!a->cfg.have_broker) return FY_OK;
  fy_broker *b = calloc(1, sizeof *b);
  if (!b) return FY_ENOMEM;
  char why[400];
  int rc = fy_identity_load(a->cfg.identity, FY_TLS_BROKER, &b->tls, why, sizeof why);
  if (rc != FY_OK) {
    fy_text_fmt(err, errlen, "%s: %s", a->cfg.identity, why);
    free(b);
    return rc;
  }
  if (a->cfg.broker_ca[0]) {
    char *pem = NULL;
    size_t n = 0;
    rc = fy_file_read(a->cfg.broker_ca, 1u << 20, &pem, &n);
    if (rc != FY_OK) fy_text_fmt(err, errlen, "broker.ca: cannot read %s: %s", a->cfg.broker_ca, fy_strerror(rc));
    else if ((rc = fy_tls_conf_set_broker_ca(b->tls, pem, n, why, sizeof why)) != FY_OK)
      fy_text_fmt(err, errlen, "broker.ca: %s: %s", a->cfg.broker_ca, why);
    free(pem);
    if (rc != FY_OK) {
      fy_tls_conf_free(b->tls);
      free(b);
      return rc;
    }
  }
  a->broker = b;
  /* the fleet's newest revocation list, as the listener has it: a revoked broker is refused too */
  const char *crl = fy_tls_conf_crl_pem(a->tls);
  if (crl) fy_broker_set_crl(a, crl);
  char kp[FY_CFG_PATH + 16];
  if (fy_path_fmt(kp, sizeof kp, "%s/key.pem", a->cfg.identity) != FY_OK || fy_file_read(kp, 65536, &b->key_pem, &b->key_len) != FY_OK)
    fy_log("warn", "broker: cannot read %s/key.pem: sealed values cannot be opened", a->cfg.identity);
  if (b->key_pem && fy_sign_key_parse(b->key_pem, b->key_len, 1, &b->sk, why, sizeof why) != FY_OK)
    fy_log("warn", "broker: %s/key.pem: %s: the status cannot be signed", a->cfg.identity, why);
  size_t cl;
  if (fy_path_fmt(kp, sizeof kp, "%s/cert.pem", a->cfg.identity) != FY_OK || fy_file_read(kp, 65536, &b->cert_pem, &cl) != FY_OK)
    fy_log("warn", "broker: cannot read %s/cert.pem: the status cannot be signed", a->cfg.identity);
  const char *pre = a->cfg.topic_prefix;
  fy_text_fmt(b->t_status, sizeof b->t_status, "%s/nodes/%s/status", pre, a->name);
  fy_text_fmt(b->t_desired, sizeof b->t_desired, "%s/nodes/%s/desired", pre, a->name);
  fy_text_fmt(b->t_requests, sizeof b->t_requests, "%s/nodes/%s/requests", pre, a->name);
  fy_text_fmt(b->t_events, sizeof b->t_events, "%s/nodes/%s/events", pre, a->name);
  fy_text_fmt(b->t_replies, sizeof b->t_replies, "%s/nodes/%s/replies", pre, a->name);
  b->a = a;
  b->backoff_ms = BACKOFF_MIN_MS;
  seq_load(b);
  fy_buf_init(&b->out, OUT_MAX);
  fy_mqtt_decoder_init(&b->dec, PACKET_MAX);
  uv_timer_init(a->loop, &b->retry);
  uv_timer_init(a->loop, &b->tick);
  b->retry.data = b->tick.data = b;
  b->refs = 2;
  attempt(b);
  return FY_OK;
}

static void timer_closed(uv_handle_t *h) { unref(h->data); }

void fy_broker_set_crl(fy_agent *a, const char *pem) {
  fy_broker *b = a->broker;
  char why[256];
  int changed = 0;
  size_t n = 0;
  if (!b || fy_tls_conf_set_crl(b->tls, pem, strlen(pem), &changed, &n, why, sizeof why) != FY_OK) return;
  /* a connection to a broker revoked just now goes; the next attempt meets the list */
  if (changed && b->c && b->c->s.session_ok && b->c->s.session.tls && fy_tls_peer_revoked(b->c->s.session.tls))
    drop(b, "the broker's certificate has been revoked");
}

void fy_broker_stop(fy_agent *a) {
  fy_broker *b = a->broker;
  if (!b || b->stopping) return;
  b->stopping = 1;
  a->broker = NULL;
  if (b->resolving) uv_cancel((uv_req_t *)&b->gai);
  if (b->c && b->c->connack) {
    /* A clean goodbye: the status says offline (the broker drops the Will on DISCONNECT). */
    json_t *j = status_json(b, 0), *e;
    if (j) json_object_set_new(j, "time", json_integer((json_int_t)time(NULL)));
    e = signed_status(b, j);
    (void)publish_json(b, b->t_status, e, 0, 1);
    json_decref(e);
    json_decref(j);
    if (fy_mqtt_simple_encode(&b->out, FY_MQTT_DISCONNECT) == FY_OK) (void)send_out(b);
    fy_stream_end(&b->c->s, 0, NULL, 1000);
  } else if (b->c) {
    fy_stream_close(&b->c->s);
  }
  uv_close((uv_handle_t *)&b->retry, timer_closed);
  uv_close((uv_handle_t *)&b->tick, timer_closed);
}
