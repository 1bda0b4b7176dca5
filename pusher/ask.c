#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ask.h"
#include "ferry/version.h"
#include "cli.h"
#include "ferry/platform.h"

static void start_more(fy_ask_batch *b);

static void on_ready(fy_conn *c) {
  fy_ask *a = c->ud;
  json_t *h = fy_msg_hello("ferry " FY_VERSION, a->batch->op, a->batch->app);
  int rc = h ? fy_conn_send_json(c, FY_FT_HELLO, h) : FY_ENOMEM;
  json_decref(h);
  if (rc != FY_OK) fy_conn_close(c, rc, "cannot send hello");
}

/* The fields every report uses; a malformed answer is the agent's error, not ours. */
static int check_facts(const json_t *j, char *err, size_t errlen) {
  fy_platform p;
  const char *plat = fy_msg_str(j, "platform", 64);
  if (!fy_msg_str(j, "name", 256)) {
    snprintf(err, errlen, "facts without a name");
    return FY_EPROTO;
  }
  if (!plat || fy_platform_parse(plat, &p) != FY_OK) {
    snprintf(err, errlen, "facts with a missing or malformed platform");
    return FY_EPROTO;
  }
  if (!json_is_object(json_object_get(j, "labels"))) {
    snprintf(err, errlen, "facts without labels");
    return FY_EPROTO;
  }
  return FY_OK;
}

static int on_frame(fy_conn *c, const fy_frame *f) {
  fy_ask *a = c->ud;
  fy_ask_batch *b = a->batch;
  json_t *j;
  char err[300];
  if (f->type == FY_FT_OUTPUT && a->facts && b->on_output && f->len >= 1) {
    if (!a->following) fy_stream_timer(&c->s, 0, 0); /* a followed log may be quiet for hours */
    a->following = 1;
    b->on_output(b, a, f->payload[0], (const char *)f->payload + 1, f->len - 1);
    return FY_OK;
  }
  int rc = fy_msg_parse(f, &j, err, sizeof err);
  if (rc == FY_OK && !a->facts && f->type != FY_FT_FACTS) {
    snprintf(err, sizeof err, "unexpected %s message before the facts", fy_frame_type_name(f->type));
    json_decref(j);
    rc = FY_EPROTO;
  }
  if (rc == FY_OK && !a->facts && (rc = check_facts(j, err, sizeof err)) != FY_OK) json_decref(j);
  if (rc != FY_OK) {
    fy_conn_close(c, rc, err);
    return FY_ECANCELED;
  }
  if (a->facts) { /* the answer */
    a->answer = j;
    fy_conn_close(c, FY_OK, NULL);
    return FY_ECANCELED;
  }
  a->facts = j;
  snprintf(a->peer, sizeof a->peer, "%s", fy_tls_peer_name(c->s.session.tls));
  snprintf(a->tls, sizeof a->tls, "%.15s", fy_tls_version(c->s.session.tls));
  if (b->filter && !b->filter(b, a)) {
    a->skipped = 1;
    fy_conn_close(c, FY_OK, NULL);
    return FY_ECANCELED;
  }
  if (!b->request) {
    fy_conn_close(c, FY_OK, NULL);
    return FY_ECANCELED;
  }
  rc = fy_conn_send_json(c, FY_FT_REQUEST, b->request);
  if (rc != FY_OK) {
    fy_conn_close(c, rc, "cannot send the request");
    return FY_ECANCELED;
  }
  return FY_OK;
}

static void on_done(fy_conn *c, int err, const char *msg) {
  fy_ask *a = c->ud;
  fy_ask_batch *b = a->batch;
  int complete = a->skipped || (a->facts && (!b->request || a->answer));
  a->err = complete ? FY_OK : (err ? err : FY_EPROTO);
  if (!complete) snprintf(a->msg, sizeof a->msg, "%s", msg ? msg : fy_strerror(a->err));
  b->running--;
  b->done++;
  if (b->on_node) b->on_node(b, a);
  start_more(b);
  if (b->done == b->n && b->on_all) b->on_all(b);
}

static const fy_conn_ops ask_ops = {.on_ready = on_ready, .on_frame = on_frame, .on_done = on_done};

static void start_more(fy_ask_batch *b) {
  size_t cap = b->max_inflight ? b->max_inflight : 64;
  while (b->next < b->n && b->running < cap) {
    fy_ask *a = &b->asks[b->next];
    a->batch = b;
    a->index = b->next;
    b->running++;
    fy_conn_start(&a->conn, b->loop, &b->targets[b->next], b->tls, &ask_ops, a, b->timeout_ms);
    b->next++;
  }
}

void fy_ask_batch_start(fy_ask_batch *b, fy_ask *asks, const fy_target *targets, size_t n) {
  b->asks = asks;
  b->targets = targets;
  b->n = n;
  b->next = b->running = b->done = 0;
  memset(asks, 0, n * sizeof *asks);
  if (n == 0) {
    if (b->on_all) b->on_all(b);
    return;
  }
  start_more(b);
}

void fy_ask_batch_free(fy_ask_batch *b) {
  for (size_t i = 0; b->asks && i < b->n; i++) {
    json_decref(b->asks[i].facts);
    json_decref(b->asks[i].answer);
    b->asks[i].facts = b->asks[i].answer = NULL;
  }
}

const char *fy_ask_name(const fy_ask *a) {
  if (a->peer[0]) return a->peer;
  return a->conn.target.name[0] ? a->conn.target.name : a->conn.target.address;
}
