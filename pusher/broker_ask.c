/* A batch of requests (logs, rollback, stop, start, restart, remove) through the fleet's broker;
 * see ask.h. Each node the filter keeps gets a request signed by this pusher, with the node's
 * next request sequence and a short expiry (a request is for now: one that waits on the broker
 * past it is refused by the node, never carried out days later). Its answer comes back as a reply
 * signed by the node, matched by the request's id, and lands in the fy_ask as a direct answer
 * would, so the verbs report the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ask.h"
#include "brokerc.h"
#include "cli.h"
#include "ferry/envelope.h"
#include "ferry/text.h"

struct bask {
  fy_ask_batch *b;
  fy_ask *asks;
  fy_broker_node *nodes;
  char (*ids)[40];
  uint64_t *seqs;            /* the request's sequence, per node */
  int *waiting;
  size_t n;
};

static void on_reply(void *ud, fy_broker_node *nd, const json_t *body) {
  struct bask *k = ud;
  size_t i = (size_t)(nd - k->nodes);
  fy_ask *a = &k->asks[i];
  const char *id = json_string_value(json_object_get(body, "id")), *type = json_string_value(json_object_get(body, "type"));
  const json_t *answer = json_object_get(body, "answer");
  if (!k->waiting[i] || !id || strcmp(id, k->ids[i]) != 0 || !type || !json_is_object(answer)) return;
  k->waiting[i] = 0;
  if (strcmp(type, "error") == 0) {
    int code;
    const char *msg;
    fy_msg_error_fields(answer, &code, &msg);
    a->err = code ? code : FY_EPEER;
    snprintf(a->msg, sizeof a->msg, "%s", msg ? msg : "refused");
    return;
  }
  a->err = FY_OK;
  a->answer = json_deep_copy(answer);
}

static void on_event(void *ud, fy_broker_node *nd, const json_t *ev) {
  struct bask *k = ud;
  size_t i = (size_t)(nd - k->nodes);
  const char *what = fy_msg_str(ev, "event", 16), *kind = fy_msg_str(ev, "kind", 16), *why = fy_msg_str(ev, "reason", 400);
  /* a refusal of this request (its sequence, its expiry, a full queue): the node's word. Events
   * are not signed: only one that names this request's sequence counts. */
  json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
  if (k->waiting[i] && what && kind && strcmp(what, "refused") == 0 && strcmp(kind, "request") == 0 && seq > 0 &&
      (uint64_t)seq == k->seqs[i]) {
    k->waiting[i] = 0;
    k->asks[i].err = fy_err_parse(fy_msg_str(ev, "code", 32));
    if (!k->asks[i].err) k->asks[i].err = FY_EPOLICY;
    fy_text_fmt(k->asks[i].msg, sizeof k->asks[i].msg, "the node refused the request: %s", why ? why : "?");
  }
}

/* A node that goes offline while its answer is awaited: not waited for any longer. */
static void on_change(void *ud, const fy_broker_node *nd) {
  struct bask *k = ud;
  size_t i = (size_t)(nd - k->nodes);
  if (k->waiting[i] && nd->status && !json_is_true(json_object_get(nd->status, "online"))) {
    k->waiting[i] = 0;
    k->asks[i].err = FY_ECONN;
    fy_text_fmt(k->asks[i].msg, sizeof k->asks[i].msg, "it went offline before it answered (the request may still be carried out)");
  }
}

static int all_answered(void *ud) {
  struct bask *k = ud;
  for (size_t i = 0; i < k->n; i++)
    if (k->waiting[i]) return 0;
  return 1;
}

int fy_broker_ask_run(fy_cli_common *cc, fy_ask_batch *b, fy_ask *asks) {
  char err[700];
  fy_bfleet f = {0};
  size_t n = cc->ntargets;
  struct bask k = {.b = b, .asks = asks, .n = n};
  int rc;
  b->asks = asks; /* as fy_ask_batch_start does: fy_ask_batch_free frees the facts and answers */
  b->targets = cc->targets;
  b->n = n;
  memset(asks, 0, n * sizeof *asks);
  for (size_t i = 0; i < n; i++) asks[i].conn.target = cc->targets[i];
  k.ids = calloc(n ? n : 1, sizeof *k.ids);
  k.waiting = calloc(n ? n : 1, sizeof *k.waiting);
  k.seqs = calloc(n ? n : 1, sizeof *k.seqs);
  if (!k.ids || !k.waiting || !k.seqs) {
    rc = FY_ENOMEM;
    goto out;
  }
  if ((rc = fy_bfleet_open(cc, &f, err, sizeof err)) != FY_OK) goto out;
  k.nodes = f.nodes;
  fy_bsess_on(f.s, on_change, on_event, &k, NULL);
  fy_bsess_on_reply(f.s, on_reply);
  uint8_t rnd[6];
  if (fy_tls_conf_random(f.tls, rnd, sizeof rnd) != FY_OK) memset(rnd, 0, sizeof rnd);
  int64_t now = (int64_t)time(NULL), ttl = (int64_t)(cc->timeout_ms / 1000) + 60;
  for (size_t i = 0; i < n; i++) {
    fy_broker_node *nd = &k.nodes[i];
    fy_ask *a = &asks[i];
    a->batch = b;
    a->index = i;
    snprintf(a->peer, sizeof a->peer, "%s", nd->name);
    a->err = FY_ECONN;
    if (!nd->seen) {
      snprintf(a->msg, sizeof a->msg, "never seen on the broker");
      continue;
    }
    if (!nd->verified) {
      snprintf(a->msg, sizeof a->msg, "its status on the broker does not verify: %s", nd->why);
      continue;
    }
    a->facts = json_incref(nd->status);
    if (b->filter && !b->filter(b, a)) {
      a->skipped = 1;
      continue;
    }
    if (!json_is_true(json_object_get(nd->status, "online"))) {
      char ago[32];
      json_int_t t = json_integer_value(json_object_get(nd->status, "time"));
      if (!t) t = json_integer_value(json_object_get(nd->status, "since"));
      a->err = FY_ECONN;
      fy_text_fmt(a->msg, sizeof a->msg, "offline (last seen %s ago): a request is for a node that is online",
                  t > 0 && now >= t ? fy_human_duration((uint64_t)(now - t), ago, sizeof ago) : "?");
      continue;
    }
    json_int_t last = json_integer_value(json_object_get(json_object_get(nd->status, "requests"), "seq"));
    if (!json_object_get(nd->status, "requests")) {
      a->err = FY_EUNSUPPORTED;
      snprintf(a->msg, sizeof a->msg, "its agent does not take requests through the broker (ferry upgrade-agent)");
      continue;
    }
    snprintf(k.ids[i], sizeof k.ids[i], "%02x%02x%02x%02x%02x%02x-%zu", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], i);
    json_t *body = json_pack("{s:s, s:O}", "id", k.ids[i], "request", b->request);
    k.seqs[i] = (uint64_t)(last > 0 ? last : 0) + 1;
    json_t *env = body ? fy_envelope_sign(f.sk, f.cert_pem, "request", nd->name, k.seqs[i], now, now + ttl, body, err, sizeof err) : NULL;
    json_decref(body);
    char *text = env ? json_dumps(env, JSON_COMPACT) : NULL;
    json_decref(env);
    char topic[600];
    fy_text_fmt(topic, sizeof topic, "%s/nodes/%s/requests", cc->fleet.topic_prefix, nd->name);
    rc = text ? fy_bsess_publish(f.s, topic, text, strlen(text), 0, cc->timeout_ms) : FY_ENOMEM;
    free(text);
    if (rc != FY_OK) {
      a->err = rc;
      fy_text_fmt(a->msg, sizeof a->msg, "%s", err);
      continue;
    }
    k.waiting[i] = 1;
  }
  rc = fy_bsess_wait(f.s, cc->timeout_ms, all_answered, &k);
  for (size_t i = 0; i < n; i++)
    if (k.waiting[i]) {
      asks[i].err = rc == FY_ETIMEDOUT || rc == FY_OK ? FY_ETIMEDOUT : rc;
      fy_text_fmt(asks[i].msg, sizeof asks[i].msg, "%s", rc == FY_ETIMEDOUT ? "no reply through the broker in time (--timeout)" : err);
    }
  rc = FY_OK;
out:
  fy_bfleet_close(&f);
  free(k.ids);
  free(k.waiting);
  free(k.seqs);
  return rc;
}
