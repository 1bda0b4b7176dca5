/* The rollout engine. One loop drives every connection:
 *
 *   discover (status hello to every target, 64 at a time)
 *     -> decide: selector, affinity.required, platform, --replicas (preferred weight, then
 *        spread), canary and waves
 *     -> waves: each wave's nodes pushed together; the next wave starts when it is done
 *     -> halt when the failure budget is reached (a failed canary always halts): no new node
 *        starts, in-flight ones finish
 *     -> revert (--revert-on-halt): a rollback request to every node that took the release, a
 *        remove request where it was a first install;
 *     -> or, when every wave went well: a remove request to each targeted node that runs the app
 *        but is not among the --replicas chosen (a Deployment scaling down).
 *
 * Ctrl-C: the first stops new nodes from starting and lets in-flight ones finish; the second
 * closes them (a node that has not received the commit keeps what it runs). */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ask.h"
#include "brokerc.h"
#include "ferry/clock.h"
#include "ferry/envelope.h"
#include "ferry/fsutil.h"
#include "ferry/seal.h"
#include "registry.h"
#include "via.h"
#include "rollout.h"
#include "settings.h"
#include "ferry/work.h"
#include "ferry/wire.h"
#include "ferry/text.h"

#define BROKER_APPLY_MS (15u * 60u * 1000u) /* how long a wave waits for an online node to apply its desired state */

enum { X_NONE, X_UNREACHABLE, X_SELECTOR, X_AFFINITY, X_PLATFORM, X_SPACE, X_REPLICAS, X_COUNT };

struct rnode {
  size_t ti;                 /* index in cc->targets */
  json_t *labels;            /* merged; NULL when unreachable */
  int excluded;              /* X_* */
  char why[600];             /* the variant and why, or why not */
  char variant[FY_PLATFORM_STR], digest[FY_DIGEST_STR];
  int score;
  int wave;                  /* -1: not scheduled */
  int started;
  fy_pnode push;
  int installed;             /* its facts list the app with a release */
  int unchanged;             /* its facts say it runs this variant with these options */
  int remove_after;          /* outside --replicas and runs the app: removed after a good rollout */
  int reverted, removed;
  char revert_msg[300];
  /* through the broker */
  uint64_t bseq;             /* the desired state published for it (0: none yet) */
  uint64_t until_ms;         /* how long its wave waits for it */
  json_t *old_desired;       /* its desired state before this rollout (for a revert) */
  int reverting;
  int was_online;            /* its status said online when last seen (a wave waits longer for one that comes back) */
  char want[FY_DIGEST_STR];  /* the manifest the desired state published to it names */
};

/* A request after the waves to some of the nodes: rollbacks and removals (revert, replicas). */
struct followup {
  struct rollout *r;
  fy_request_op op;
  size_t *nodes, n;
  fy_ask *asks;
  fy_target *targets;
  fy_ask_batch b;
  json_t *req;
};

struct rollout {
  fy_rollout_opts *o;
  fy_cli_common *cc;
  uv_loop_t loop;
  struct rnode *nodes;
  size_t n;
  fy_ask *asks;
  size_t *order;             /* scheduled nodes, wave by wave */
  size_t nsched;
  size_t wave_start[FY_MAX_TARGETS + 2];
  int nwaves, cur;
  size_t running;
  long failures, max_failures;
  int halted, interrupted, tty;
  char halt_reason[300];
  uv_signal_t sigint, sigterm;
  uv_timer_t progress;
  int lines_drawn;
  uint64_t started_ms;
  fy_chunks chunks;
  fy_affinity image_affinity;
  char offered[512];
  char summary[1200];
  struct followup fu[2];     /* rollbacks, removals */
  int fu_pending;
  int loop_ok;
  /* through the broker */
  fy_bfleet bf;              /* the session, a node per target, and the key that signs each desired state */
  char berr[700];
  size_t waiting;            /* nodes of the wave still without a result */
  struct rnode *const *wave_nodes;
};

/* Nodes reach what was asked for when they deployed, or run it already. */
static int res_ok(fy_result r) { return r == FY_RESULT_DEPLOYED || r == FY_RESULT_UNCHANGED; }

/* The app's entry in a node's facts when it runs a release of it; NULL otherwise. */
static const json_t *facts_app(const json_t *facts, const char *app) {
  const json_t *apps = json_object_get(facts, "apps"), *e;
  size_t i;
  json_array_foreach(apps, i, e) {
    const char *name = fy_msg_str(e, "name", FY_APP_NAME_MAX - 1), *rel = fy_msg_str(e, "release", FY_RELEASE_ID_MAX - 1);
    if (name && rel && rel[0] && strcmp(name, app) == 0) return e;
  }
  return NULL;
}

int fy_count_parse(const char *s, long min, fy_count *c) {
  size_t n = strlen(s);
  long v;
  memset(c, 0, sizeof *c);
  if (n > 1 && n < 8 && s[n - 1] == '%') {
    char tmp[8];
    memcpy(tmp, s, n - 1);
    tmp[n - 1] = '\0';
    if (fy_parse_long(tmp, 1, 100, &v) != FY_OK) return FY_EINVAL;
    *c = (fy_count){v, 1, 1};
    return FY_OK;
  }
  if (fy_parse_long(s, min, FY_MAX_TARGETS, &v) != FY_OK) return FY_EINVAL;
  *c = (fy_count){v, 0, 1};
  return FY_OK;
}

static long count_of(const fy_count *c, size_t total, long dflt) {
  if (!c->set) return dflt;
  if (!c->percent) return c->n;
  long v = (long)((total * (size_t)c->n + 99) / 100);
  return v < 1 ? 1 : v;
}

static const char *rname(const struct rollout *r, const struct rnode *x) {
  const fy_ask *a = &r->asks[x->ti];
  if (x->started && x->push.name[0]) return x->push.name;
  return fy_ask_name(a);
}

static void event(const struct rollout *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void event(const struct rollout *r, const char *fmt, ...) {
  if (r->tty) return;
  va_list ap;
  fputs("ferry: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* ---- deciding ---- */

static void explain_variant(struct rnode *x, const json_t *facts, const fy_variant *v) {
  const char *plat = fy_msg_str(facts, "platform", 64), *board = fy_msg_str(facts, "board", 31);
  fy_platform_format(&v->cfg.platform, x->variant, sizeof x->variant);
  fy_digest_format(&v->desc.digest, x->digest);
  int exact = plat && strcmp(plat, x->variant) == 0;
  int tuned = board && v->desc.board[0] && strcmp(board, v->desc.board) == 0;
  snprintf(x->why, sizeof x->why, "%s%s%s%s", exact ? "exact platform match" : "nearest platform the node runs (node is ",
           exact ? "" : plat ? plat : "?", exact ? "" : ")", tuned ? "; tuned for its board" : "");
  if (tuned) {
    size_t l = strlen(x->why);
    snprintf(x->why + l, sizeof x->why - l, " %s", board);
  }
}

/* What the node runs, best first, from its facts (0 when they do not decode). */
static int accepts_of(const json_t *facts, fy_platform *acc, size_t max) {
  fy_facts_msg fm;
  char err[300];
  if (fy_facts_decode(facts, &fm, err, sizeof err) != FY_OK) return 0;
  size_t n = fm.naccepts < max ? fm.naccepts : max;
  memcpy(acc, fm.accepts, n * sizeof acc[0]);
  return (int)n;
}

/* Which nodes can take the release, and the reason for each one left out. */
static void filter_nodes(struct rollout *r) {
  fy_cli_common *cc = r->cc;
  for (size_t i = 0; i < r->n; i++) {
    struct rnode *x = &r->nodes[i];
    fy_ask *a = &r->asks[i];
    x->ti = i;
    x->wave = -1;
    if (!a->facts) {
      x->excluded = X_UNREACHABLE;
      snprintf(x->why, sizeof x->why, "%s", a->msg);
      continue;
    }
    x->labels = fy_cli_node_labels(cc, i, a->facts);
    const json_t *fa = facts_app(a->facts, r->o->push.app);
    x->installed = fa != NULL;
    if (r->bf.nodes) { /* an offline node's status lists no apps: its desired state says whether it has this one */
      const json_t *e = json_object_get(json_object_get(r->bf.nodes[i].desired, "apps"), r->o->push.app);
      x->installed |= e && !json_is_true(json_object_get(e, "remove"));
    }
    if (!fy_selector_match(&cc->selector, x->labels)) {
      x->excluded = X_SELECTOR;
      snprintf(x->why, sizeof x->why, "didn't match node selector");
      continue;
    }
    if (!fy_affinity_required_match(&cc->fleet.affinity, x->labels) || !fy_affinity_required_match(&r->image_affinity, x->labels)) {
      x->excluded = X_AFFINITY;
      snprintf(x->why, sizeof x->why, "didn't match node affinity");
      continue;
    }
    fy_platform acc[FY_PLATFORM_ACCEPT_MAX];
    int nacc = accepts_of(a->facts, acc, FY_PLATFORM_ACCEPT_MAX);
    fy_variant v;
    char err[1200];
    if (nacc == 0 || fy_layout_choose(r->o->push.layout, acc, (size_t)nacc, fy_msg_str(a->facts, "board", 31), &v, err, sizeof err) != FY_OK) {
      x->excluded = X_PLATFORM;
      fy_text_fmt(x->why, sizeof x->why, "%s", nacc ? err : "the agent reported no platform");
      continue;
    }
    explain_variant(x, a->facts, &v);
    if (fa && !r->o->push.force && !r->o->push.agent_upgrade) { /* what the agent will answer "unchanged" to */
      fy_plan_msg pm = {0};
      char od[FY_DIGEST_STR];
      fy_push_plan_options(&r->o->push, &v, &pm);
      pm.settings = r->o->settings ? r->o->settings[x->ti] : NULL;
      fy_plan_options_digest(&pm, od);
      const char *m = fy_msg_str(fa, "manifest", FY_DIGEST_STR), *op = fy_msg_str(fa, "options", FY_DIGEST_STR);
      x->unchanged = m && op && strcmp(m, x->digest) == 0 && strcmp(op, od) == 0;
      if (x->unchanged) {
        size_t l = strlen(x->why);
        fy_text_fmt(x->why + l, sizeof x->why - l, "; runs it already (release %s)", fy_msg_str(fa, "release", 63));
        fy_variant_free(&v);
        x->score = fy_affinity_score(&cc->fleet.affinity, x->labels) + fy_affinity_score(&r->image_affinity, x->labels);
        continue; /* it needs no space: nothing is sent */
      }
    }
    /* What the node will ask for at the least (its own check, with every blob already there):
     * half the layers again, for the unpacked release. Less free than that cannot work. */
    const json_t *fb = json_object_get(a->facts, "free_bytes");
    uint64_t free_b = json_is_integer(fb) ? (uint64_t)json_integer_value(fb) : 0, need = v.m.layers_size / 2;
    fy_variant_free(&v);
    if (json_is_integer(fb) && need > free_b) {
      char h1[32], h2[32];
      x->excluded = X_SPACE;
      fy_text_fmt(x->why, sizeof x->why, "not enough free space: %s free, the release needs at least %s",
                  fy_human_bytes(free_b, h1, sizeof h1), fy_human_bytes(need, h2, sizeof h2));
      continue;
    }
    x->score = fy_affinity_score(&cc->fleet.affinity, x->labels) + fy_affinity_score(&r->image_affinity, x->labels);
  }
}

/* Picks `want` of the available nodes: highest preferred score first; among equals the spread
 * domain with the fewest picks so far; then inventory order. */
static int replica_online(const struct rollout *r, size_t i) {
  return !r->bf.nodes || json_is_true(json_object_get(r->bf.nodes[i].status, "online"));
}

static void pick_replicas(struct rollout *r, long want) {
  const char *key = r->o->spread_by ? r->o->spread_by : "topology.kubernetes.io/zone";
  char *picked = calloc(r->n + 1, 1);
  size_t *dom = calloc(r->n + 1, sizeof *dom), *in_dom = calloc(r->n + 1, sizeof *in_dom), ndom = 1;
  const char **names = calloc(r->n + 1, sizeof *names);
  if (!picked || !dom || !in_dom || !names) goto out;
  /* Each node's spread domain as a small number (0: no such label), then one count per domain:
   * a pick costs one pass over the nodes. */
  for (size_t i = 0; i < r->n; i++) {
    const char *d = fy_msg_str(r->nodes[i].labels, key, 64);
    size_t k = 1;
    while (d && k < ndom && strcmp(names[k], d) != 0) k++;
    if (d && k == ndom) names[ndom++] = d;
    dom[i] = d ? k : 0;
  }
  for (long k = 0; k < want; k++) {
    long best = -1;
    for (size_t i = 0; i < r->n; i++) {
      struct rnode *x = &r->nodes[i];
      if (x->excluded || picked[i]) continue;
      /* through the broker, the nodes that are online first: a replica away would run nothing */
      int on = replica_online(r, i), bon = best >= 0 ? replica_online(r, (size_t)best) : 0;
      if (best < 0 || on > bon ||
          (on == bon && (x->score > r->nodes[best].score ||
                         (x->score == r->nodes[best].score && in_dom[dom[i]] < in_dom[dom[best]]))))
        best = (long)i;
    }
    if (best < 0) break;
    picked[best] = 1;
    in_dom[dom[best]]++;
  }
  for (size_t i = 0; i < r->n; i++) {
    struct rnode *x = &r->nodes[i];
    if (x->excluded || picked[i]) continue;
    x->excluded = X_REPLICAS;
    x->remove_after = x->installed && !r->o->push.agent_upgrade;
    snprintf(x->why, sizeof x->why, "not among the %ld best for --replicas %ld (preferred score %d)%s", want, want, x->score,
             x->remove_after ? "; runs the app: removed once the rollout went well" : "");
  }
out:
  free(picked);
  free(dom);
  free(in_dom);
  free(names);
}

static int by_score(const void *pa, const void *pb, void *ud) {
  const struct rollout *r = ud;
  size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
  if (r->nodes[a].score != r->nodes[b].score) return r->nodes[b].score - r->nodes[a].score;
  return a < b ? -1 : a > b;
}

static void summarize(struct rollout *r) {
  static const char *const what[X_COUNT][2] = {
      [X_UNREACHABLE] = {"is unreachable", "are unreachable"},
      [X_SELECTOR] = {"didn't match node selector", "didn't match node selector"},
      [X_AFFINITY] = {"didn't match node affinity", "didn't match node affinity"},
      [X_PLATFORM] = {"has no matching platform", "have no matching platform"},
      [X_SPACE] = {"doesn't have enough free space", "don't have enough free space"}};
  size_t count[X_COUNT] = {0}, avail = 0;
  for (size_t i = 0; i < r->n; i++) {
    count[r->nodes[i].excluded]++;
    avail += r->nodes[i].excluded == X_NONE || r->nodes[i].excluded == X_REPLICAS;
  }
  size_t off = (size_t)snprintf(r->summary, sizeof r->summary, "%zu/%zu nodes available", avail, r->n);
  int first = 1;
  for (int k = X_UNREACHABLE; k <= X_SPACE && off < sizeof r->summary; k++) {
    if (!count[k]) continue;
    off += (size_t)snprintf(r->summary + off, sizeof r->summary - off, "%s %zu %s%s%s%s", first ? ":" : ",", count[k],
                            what[k][count[k] != 1], k == X_PLATFORM ? " (image offers " : "", k == X_PLATFORM ? r->offered : "",
                            k == X_PLATFORM ? ")" : "");
    first = 0;
  }
  if (count[X_REPLICAS] && off < sizeof r->summary)
    snprintf(r->summary + off, sizeof r->summary - off, "; %ld chosen for --replicas %ld by preferred affinity, then spread over %s",
             r->o->replicas < (long)avail ? r->o->replicas : (long)avail, r->o->replicas,
             r->o->spread_by ? r->o->spread_by : "topology.kubernetes.io/zone");
}

/* The canary is --canary nodes of each distinct manifest chosen (P%: that share of each
 * manifest's nodes, rounded up), so that every variant is proven before the waves: an amd64
 * canary says nothing about the arm64 build. Moves them to the front of order (best score first
 * within each manifest); returns how many. */
static size_t pick_canary(struct rollout *r) {
  size_t *rest = calloc(r->nsched + 1, sizeof *rest), ncan = 0, nrest = 0;
  char *taken = calloc(r->nsched + 1, 1);
  if (!rest || !taken) {
    free(rest);
    free(taken);
    return 0;
  }
  for (size_t k = 0; k < r->nsched; k++) {
    const char *dg = r->nodes[r->order[k]].digest;
    int seen = 0;
    for (size_t q = 0; q < k && !seen; q++) seen = strcmp(r->nodes[r->order[q]].digest, dg) == 0;
    if (seen) continue; /* that manifest's canary is chosen already */
    size_t total = 0, picked = 0;
    for (size_t q = k; q < r->nsched; q++) total += strcmp(r->nodes[r->order[q]].digest, dg) == 0;
    long want = count_of(&r->o->canary, total, 0);
    for (size_t q = k; q < r->nsched && (long)picked < want; q++) {
      if (taken[q] || strcmp(r->nodes[r->order[q]].digest, dg) != 0) continue;
      taken[q] = 1;
      rest[nrest++] = r->order[q]; /* the canary, gathered in front below */
      picked++;
    }
  }
  ncan = nrest;
  for (size_t k = 0; k < r->nsched; k++)
    if (!taken[k]) rest[nrest++] = r->order[k];
  memcpy(r->order, rest, r->nsched * sizeof *rest);
  free(rest);
  free(taken);
  return ncan;
}

/* Canary first and alone, then waves of --max-parallel. Nodes that run the release already are
 * in the waves too (the agent answers "unchanged" and they cost one round trip). */
static void schedule(struct rollout *r) {
  r->nsched = 0;
  for (size_t i = 0; i < r->n; i++)
    if (r->nodes[i].excluded == X_NONE) r->order[r->nsched++] = i;
  qsort_r(r->order, r->nsched, sizeof *r->order, by_score, r);
  long width = count_of(&r->o->max_parallel, r->nsched, (long)r->nsched);
  if (width < 1) width = 1;
  size_t at = 0;
  r->nwaves = 0;
  size_t canary = count_of(&r->o->canary, r->nsched, 0) > 0 && r->nsched > 0 ? pick_canary(r) : 0;
  if (canary > 0) {
    r->wave_start[r->nwaves++] = 0;
    at = canary;
  }
  while (at < r->nsched) {
    r->wave_start[r->nwaves++] = at;
    at += (size_t)width;
    if (at > r->nsched) at = r->nsched;
  }
  r->wave_start[r->nwaves] = r->nsched;
  for (int w = 0; w < r->nwaves; w++)
    for (size_t k = r->wave_start[w]; k < r->wave_start[w + 1]; k++) r->nodes[r->order[k]].wave = w;
  r->max_failures = count_of(&r->o->max_failures, r->nsched, 0);
}

/* ---- fetching and recompressing, before the waves ----
 * The layers of an image in a registry are fetched into the cache, and gzip layers (as docker
 * and buildah write them) are recompressed to zstd, once per variant that
 * a scheduled node will get, on a worker through the loop, one variant after the other (two
 * variants may share a layer, and its cached rewrite is written once). The nodes then find the
 * rewrite in the pusher's cache. A failure here is left to the node's own push to report. */

struct rezstd {
  struct rollout *r;
  size_t k;                  /* next index into r->order */
  fy_variant v;
  int rc, converted, total;
  uint64_t fetched, fetched_total;
  char err[1200];
};

static void rezstd_next(struct rezstd *z);

static void rezstd_work(void *ud) {
  struct rezstd *z = ud;
  z->rc = fy_layout_prepare(z->r->o->push.layout, &z->v, &z->converted, &z->fetched, z->err, sizeof z->err);
}

static void rezstd_done(void *ud) {
  struct rezstd *z = ud;
  if (z->rc == FY_OK && z->converted > 0) z->total += z->converted;
  z->fetched_total += z->fetched;
  fy_variant_free(&z->v);
  rezstd_next(z);
}

/* The variant the k-th scheduled node gets, when it is the first node of its variant (the same
 * digest) in the schedule: 1 with *v filled (the caller frees it), else 0. */
static int scheduled_variant(struct rollout *r, size_t k, fy_variant *v, char *err, size_t errlen) {
  size_t i = r->order[k];
  for (size_t q = 0; q < k; q++)
    if (strcmp(r->nodes[r->order[q]].digest, r->nodes[i].digest) == 0) return 0;
  fy_ask *a = &r->asks[i];
  fy_platform acc[FY_PLATFORM_ACCEPT_MAX];
  int nacc = accepts_of(a->facts, acc, FY_PLATFORM_ACCEPT_MAX);
  return nacc > 0 &&
         fy_layout_choose(r->o->push.layout, acc, (size_t)nacc, fy_msg_str(a->facts, "board", 31), v, err, errlen) == FY_OK;
}

static void rezstd_next(struct rezstd *z) {
  struct rollout *r = z->r;
  while (z->k < r->nsched) {
    if (!scheduled_variant(r, z->k++, &z->v, z->err, sizeof z->err)) continue;
    int gzip = 0;
    for (size_t l = 0; l < z->v.m.nlayers; l++) gzip |= z->v.m.layers[l].kind == FY_KIND_LAYER_GZIP;
    if ((gzip || (r->o->push.layout->remote && !r->o->push.via)) && fy_work_queue(&r->loop, rezstd_work, rezstd_done, z) == FY_OK) return;
    fy_variant_free(&z->v);
  }
}

static void halt(struct rollout *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --via: the scheduled variants' layers must be zstd and in the registry, and the nodes get a
 * pull credential, before any node is touched (via.h). */
static void via_scheduled(struct rollout *r) {
  fy_variant *vs = calloc(r->nsched ? r->nsched : 1, sizeof *vs);
  size_t nv = 0;
  char err[1200], notes[300];
  if (!vs) {
    halt(r, "out of memory");
    return;
  }
  for (size_t k = 0; k < r->nsched; k++) nv += scheduled_variant(r, k, &vs[nv], err, sizeof err);
  fy_push_cfg *P = &r->o->push;
  if (fy_via_prepare(P->via, P->pull_auth, P->fallback_stream, vs, nv, &P->source, notes, sizeof notes, err, sizeof err) != FY_OK)
    halt(r, "%s", err);
  else {
    event(r, "devices pull the layers from %s/%s%s%s", P->source.registry, P->source.repository, notes[0] ? "; " : "", notes);
    if (strstr(notes, "pusher's own")) fy_cli_err("warning: %s", notes);
  }
  fy_variants_free(vs, nv);
}

static void recompress_scheduled(struct rollout *r) {
  struct rezstd z = {.r = r};
  rezstd_next(&z);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  if (z.fetched_total > 0) {
    char h[32];
    event(r, "fetched %s of layers from %s into $FERRY_HOME/cache", fy_human_bytes(z.fetched_total, h, sizeof h),
          fy_registry_name(r->o->push.layout->remote));
  }
  if (z.total > 0) event(r, "recompressed %d gzip layer(s) to zstd (cached in $FERRY_HOME/cache)", z.total);
}

/* ---- running ---- */

static void draw(struct rollout *r, int final) {
  if (!r->tty) return;
  if (r->lines_drawn) fprintf(stderr, "\x1b[%dA\x1b[J", r->lines_drawn);
  r->lines_drawn = 0;
  if (final) return;
  double secs = (double)(uv_now(&r->loop) - r->started_ms) / 1000.0;
  size_t done = 0, failed = 0;
  uint64_t sent = 0;
  for (size_t k = 0; k < r->nsched; k++) {
    struct rnode *x = &r->nodes[r->order[k]];
    sent += x->push.bytes_sent;
    if (x->started && x->push.phase == FY_PN_DONE) {
      done++;
      failed += !res_ok(x->push.result);
    }
    if (!x->started || x->push.phase == FY_PN_DONE) continue;
    char a[32], b[32];
    fy_cli_print(stderr, "%-20s %-11s %10s / %-10s\n", rname(r, x), fy_pnode_phase_name(x->push.phase),
            fy_human_bytes(x->push.bytes_sent, a, sizeof a), fy_human_bytes(x->push.total_to_send, b, sizeof b));
    r->lines_drawn++;
  }
  char bar[31], s[32], rate[32];
  size_t fill = r->nsched ? done * 30 / r->nsched : 30;
  for (size_t i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = '\0';
  fprintf(stderr, "[%s] %zu/%zu nodes  wave %d/%d  %zu failed  %s sent  %s/s%s\n", bar, done, r->nsched, r->cur + 1,
          r->nwaves, failed, fy_human_bytes(sent, s, sizeof s), fy_human_bytes(secs > 0 ? (uint64_t)((double)sent / secs) : 0, rate, sizeof rate),
          r->interrupted ? "  (interrupted: finishing in-flight nodes)" : "");
  r->lines_drawn++;
}

static void on_progress(uv_timer_t *t) { draw(t->data, 0); }

static void start_wave(struct rollout *r);
static void finish(struct rollout *r);

static void halt(struct rollout *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void halt(struct rollout *r, const char *fmt, ...) {
  if (r->halted) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->halt_reason, sizeof r->halt_reason, fmt, ap);
  va_end(ap);
  r->halted = 1;
  event(r, "halted: %s", r->halt_reason);
}

static void node_finished(fy_pnode *p) {
  struct rnode *x = p->ud;
  struct rollout *r = (struct rollout *)p->conn.loop->data;
  r->running--;
  if (!res_ok(p->result)) {
    r->failures++;
    if (x->wave == 0 && r->o->canary.set && count_of(&r->o->canary, r->nsched, 0) > 0)
      halt(r, "the canary %s %s: %s", rname(r, x), fy_result_name(p->result), p->msg);
    else if (r->max_failures > 0 && r->failures >= r->max_failures)
      halt(r, "%ld failure(s) reached --max-failures %ld", r->failures, r->max_failures);
  }
  if (r->running > 0) return;
  size_t ok = 0, same = 0, bad = 0;
  for (size_t k = r->wave_start[r->cur]; k < r->wave_start[r->cur + 1]; k++) {
    struct rnode *y = &r->nodes[r->order[k]];
    if (!y->started) continue;
    if (y->push.result == FY_RESULT_DEPLOYED) ok++;
    else if (y->push.result == FY_RESULT_UNCHANGED) same++;
    else bad++;
  }
  event(r, "wave %d/%d done: %zu deployed, %zu unchanged, %zu failed", r->cur + 1, r->nwaves, ok, same, bad);
  if (r->halted || r->interrupted || r->cur + 1 >= r->nwaves) {
    finish(r);
    return;
  }
  r->cur++;
  start_wave(r);
}

static void start_wave(struct rollout *r) {
  size_t from = r->wave_start[r->cur], to = r->wave_start[r->cur + 1];
  char names[400] = "";
  size_t off = 0;
  for (size_t k = from; k < to && off < sizeof names - 8; k++) {
    int w = snprintf(names + off, sizeof names - off, "%s%s", k > from ? ", " : "", fy_ask_name(&r->asks[r->order[k]]));
    if (w < 0 || (size_t)w >= sizeof names - off) { snprintf(names + sizeof names - 5, 5, "..."); break; }
    off += (size_t)w;
  }
  int canary = r->cur == 0 && count_of(&r->o->canary, r->nsched, 0) > 0;
  event(r, "wave %d/%d%s, %zu node(s): %s", r->cur + 1, r->nwaves, canary ? " (canary)" : "", to - from, names);
  /* Two chunks per node of the wave in the shared cache, bounded: nodes that read the same
   * layer at about the same pace share each disk read. */
  fy_chunks_resize(&r->chunks, (to - from) * 4);
  for (size_t k = from; k < to; k++) {
    struct rnode *x = &r->nodes[r->order[k]];
    x->started = 1;
    x->push.on_finish = node_finished;
    x->push.ud = x;
    x->push.settings = r->o->settings ? r->o->settings[x->ti] : NULL;
    r->running++;
    fy_pnode_start(&x->push, &r->loop, &r->cc->targets[x->ti], &r->o->push);
  }
}

static void followup_done(fy_ask_batch *b) {
  struct followup *f = b->ud;
  struct rollout *r = f->r;
  fy_result want = f->op == FY_REQ_ROLLBACK ? FY_RESULT_ROLLED_BACK : FY_RESULT_REMOVED;
  for (size_t k = 0; k < f->n; k++) {
    struct rnode *x = &r->nodes[f->nodes[k]];
    fy_ask *a = &f->asks[k];
    const char *res = fy_msg_str(a->answer, "result", 20), *m = fy_msg_str(a->answer, "message", 250);
    const char *rel = fy_msg_str(a->answer, "release", 100);
    if (a->err == FY_OK && fy_result_parse(res) == want) {
      x->reverted = r->halted;
      x->removed = f->op == FY_REQ_REMOVE;
      if (x->removed) event(r, "%s: removed %s%s", rname(r, x), r->o->push.app, r->halted ? " (a first install: reverted)" : " (outside --replicas)");
      else event(r, "%s: reverted to %s", rname(r, x), rel ? rel : "?");
    } else {
      fy_text_fmt(x->revert_msg, sizeof x->revert_msg, "%s failed: %s", r->halted ? "revert" : "removal", a->err ? a->msg : m ? m : "?");
      event(r, "%s: %s", rname(r, x), x->revert_msg);
    }
  }
  if (--r->fu_pending == 0) uv_close((uv_handle_t *)&r->progress, NULL);
}

/* Starts one follow-up batch over f->nodes (n of them); 0 when there was nothing to start. */
static int followup_start(struct rollout *r, struct followup *f) {
  if (!f->n) return 0;
  fy_request_msg rq = {.op = f->op, .app = r->o->push.app};
  f->r = r;
  f->asks = calloc(f->n, sizeof *f->asks);
  f->targets = calloc(f->n, sizeof *f->targets);
  f->req = fy_request_encode(&rq);
  if (!f->asks || !f->targets || !f->req) return 0;
  for (size_t k = 0; k < f->n; k++) f->targets[k] = r->cc->targets[r->nodes[f->nodes[k]].ti];
  f->b = (fy_ask_batch){.loop = &r->loop, .tls = r->o->push.tls, .timeout_ms = r->o->push.timeout_ms, .op = fy_request_op_name(f->op),
                        .app = r->o->push.app, .request = f->req, .on_all = followup_done, .ud = f};
  r->fu_pending++;
  fy_ask_batch_start(&f->b, f->asks, f->targets, f->n);
  return 1;
}

static void finish(struct rollout *r) {
  struct followup *rb = &r->fu[0], *rm = &r->fu[1];
  rb->op = FY_REQ_ROLLBACK;
  rm->op = FY_REQ_REMOVE;
  if (r->halted && r->o->revert_on_halt) {
    for (size_t k = 0; k < r->nsched; k++) {
      struct rnode *x = &r->nodes[r->order[k]];
      if (!x->started || x->push.result != FY_RESULT_DEPLOYED) continue;
      struct followup *f = x->installed ? rb : rm; /* a first install has nothing to go back to */
      f->nodes[f->n++] = r->order[k];
    }
    if (rb->n + rm->n) event(r, "reverting %zu node(s) that took the release (%zu first install(s) removed)", rb->n + rm->n, rm->n);
  } else if (!r->halted && !r->interrupted) {
    for (size_t i = 0; i < r->n; i++)
      if (r->nodes[i].remove_after) rm->nodes[rm->n++] = i;
    if (rm->n) event(r, "removing %s from %zu node(s) outside --replicas %ld", r->o->push.app, rm->n, r->o->replicas);
  }
  int started = followup_start(r, rb);
  started |= followup_start(r, rm);
  if (!started) uv_close((uv_handle_t *)&r->progress, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  struct rollout *r = s->data;
  (void)signum;
  if (!r->interrupted) {
    r->interrupted = 1;
    if (!r->tty) fprintf(stderr, "ferry: interrupted: %zu in-flight node(s) finish, no new node starts (again to abort them)\n", r->running);
    return;
  }
  for (size_t k = 0; k < r->nsched; k++) {
    struct rnode *x = &r->nodes[r->order[k]];
    if (x->started) fy_pnode_abort(&x->push, "interrupted (a node that had not received the commit keeps its release)");
  }
}


/* ---- through the broker ----
 * With broker: in the fleet file nothing connects to the nodes. Their facts come from their
 * signed retained statuses (offline nodes too); each node of a wave gets a desired state,
 * retained on PREFIX/nodes/NAME/desired, signed by this pusher with the node's next sequence,
 * which names the app's variant and carries its plan (settings, the registry source and its
 * pull credential) sealed to the node's key. A wave then waits for the nodes' signed statuses to
 * say they applied it: the ones online until they did, the offline ones --wait-offline (they
 * converge whenever they connect). The layers come from the registry, never through here. */

static volatile int broker_stop;
static void on_broker_signal(int sig) {
  (void)sig;
  broker_stop = 1;
}

/* The statuses (as facts) and the desired states of every target. */
static int broker_discover(struct rollout *r) {
  fy_cli_common *cc = r->cc;
  event(r, "reading %zu node(s)' statuses from broker %s:%d", r->n, cc->fleet.broker_host, cc->fleet.broker_port);
  int rc = fy_bfleet_open(cc, &r->bf, r->berr, sizeof r->berr);
  if (rc != FY_OK) return rc;
  for (size_t i = 0; i < r->n; i++) {
    fy_broker_node *nd = &r->bf.nodes[i];
    fy_ask *a = &r->asks[i];
    snprintf(a->peer, sizeof a->peer, "%s", nd->name);
    if (!nd->seen) snprintf(a->msg, sizeof a->msg, "never seen on the broker (is its ferryd configured with broker: and started?)");
    else if (!nd->verified) snprintf(a->msg, sizeof a->msg, "its status on the broker does not verify: %s", nd->why);
    else if (!nd->cert_pem || !json_object_get(nd->status, "platform"))
      snprintf(a->msg, sizeof a->msg, "its status on the broker has no facts (an agent older than this ferry?)");
    else a->facts = json_incref(nd->status);
    if (nd->desired_why[0]) event(r, "%s: its current desired state does not verify (%s): it is replaced", nd->name, nd->desired_why);
  }
  return FY_OK;
}

/* Signs and publishes the desired state for node i: its current one with app's entry replaced
 * by entry and sealed_plan (both NULL: app's entry taken out). */
static int broker_publish(struct rollout *r, struct rnode *x, const json_t *base, const json_t *entry, json_t *sealed_plan, char *err,
                          size_t errlen) {
  fy_broker_node *nd = &r->bf.nodes[x->ti];
  const char *app = r->o->push.app;
  char key[FY_APP_NAME_MAX + 8], topic[600];
  json_t *body = base ? json_deep_copy(base) : json_object();
  json_t *apps = json_object_get(body, "apps"), *secrets = json_object_get(body, "secrets");
  if (!json_is_object(apps)) json_object_set_new(body, "apps", apps = json_object());
  if (!json_is_object(secrets)) json_object_set_new(body, "secrets", secrets = json_object());
  snprintf(key, sizeof key, "plan/%s", app);
  if (entry) {
    json_object_set(apps, app, (json_t *)entry);
    if (sealed_plan) json_object_set(secrets, key, sealed_plan);
    else json_object_del(secrets, key); /* {remove: true}: no plan */
  } else {
    json_object_del(apps, app);
    json_object_del(secrets, key);
  }
  /* every pusher derives the next sequence from the newest it can read: the retained desired
   * state's, or the node's own status' (it may have seen one since cleared) */
  uint64_t seq = nd->desired_seq;
  json_int_t st = json_integer_value(json_object_get(json_object_get(nd->status, "desired"), "seq"));
  if (st > 0 && (uint64_t)st > seq) seq = (uint64_t)st;
  seq++;
  int64_t now = (int64_t)time(NULL);
  json_t *env = fy_envelope_sign(r->bf.sk, r->bf.cert_pem, "desired", nd->name, seq, now, now + r->o->desired_ttl_s, body, err, errlen);
  json_decref(body);
  if (!env) return FY_EINVAL;
  char *text = json_dumps(env, JSON_COMPACT);
  json_decref(env);
  if (!text) return FY_ENOMEM;
  fy_text_fmt(topic, sizeof topic, "%s/nodes/%s/desired", r->cc->fleet.topic_prefix, nd->name);
  int rc = fy_bsess_publish(r->bf.s, topic, text, strlen(text), 1, r->cc->timeout_ms);
  free(text);
  if (rc != FY_OK) {
    snprintf(err, errlen, "%s", rc == FY_ECANCELED ? "interrupted" : r->berr);
    return rc;
  }
  /* what it now holds, for the next publish (a revert) */
  nd->desired_seq = seq;
  x->bseq = seq;
  return FY_OK;
}

/* The desired state for node x with this rollout's release. */
static int broker_push_node(struct rollout *r, struct rnode *x, char *err, size_t errlen) {
  fy_broker_node *nd = &r->bf.nodes[x->ti];
  fy_ask *a = &r->asks[x->ti];
  fy_platform acc[FY_PLATFORM_ACCEPT_MAX];
  int nacc = accepts_of(a->facts, acc, FY_PLATFORM_ACCEPT_MAX);
  fy_variant v;
  json_t *plan = NULL, *sealed = NULL;
  char ctx[FY_SEAL_CONTEXT_MAX + 1];
  int rc = nacc > 0 ? fy_layout_choose(r->o->push.layout, acc, (size_t)nacc, fy_msg_str(a->facts, "board", 31), &v, err, errlen) : FY_ENOPLATFORM;
  if (nacc <= 0) snprintf(err, errlen, "its status lists no platform it accepts");
  if (rc != FY_OK) return rc;
  rc = fy_push_plan_json(&r->o->push, &v, r->o->settings ? r->o->settings[x->ti] : NULL, &plan, err, errlen);
  char *text = rc == FY_OK ? json_dumps(plan, JSON_COMPACT) : NULL;
  json_decref(plan);
  if (rc == FY_OK && !text) rc = FY_ENOMEM;
  snprintf(ctx, sizeof ctx, "%s secret plan/%s", nd->name, r->o->push.app);
  /* the plan holds the settings' secrets and the pull credential: sealed to the node's key */
  if (rc == FY_OK) rc = fy_seal(nd->cert_pem, strlen(nd->cert_pem), ctx, text, strlen(text), &sealed, err, errlen);
  if (text) {
    explicit_bzero(text, strlen(text));
    free(text);
  }
  if (rc == FY_OK) {
    json_t *entry = json_pack("{s:s, s:s}", "digest", x->digest, "platform", x->variant);
    snprintf(x->want, sizeof x->want, "%s", x->digest);
    x->old_desired = nd->desired ? json_incref(nd->desired) : NULL;
    rc = broker_publish(r, x, nd->desired, entry, sealed, err, errlen);
    json_decref(entry);
  }
  json_decref(sealed);
  fy_variant_free(&v);
  return rc;
}

/* Node x's answer to its desired state, from its signed status: 1 when it has one. */
static int broker_outcome(struct rollout *r, struct rnode *x) {
  fy_broker_node *nd = &r->bf.nodes[x->ti];
  const json_t *d = json_object_get(nd->status, "desired");
  json_int_t applied = json_integer_value(json_object_get(d, "applied"));
  if (x->push.result != FY_RESULT_NONE) return 1;
  if (applied <= 0 || (uint64_t)applied < x->bseq) return 0;
  const json_t *res = json_object_get(json_object_get(d, "results"), r->o->push.app);
  const char *dg = fy_msg_str(res, "digest", FY_DIGEST_STR);
  if (res && dg && dg[0] && strcmp(dg, x->want) != 0) {
    /* it applied a state with this sequence, but not this one: another pusher's, at the same time */
    x->push.result = FY_RESULT_FAILED;
    x->push.err = FY_EDOWNGRADE;
    fy_text_fmt(x->push.msg, sizeof x->push.msg, "the node took another desired state with sequence %llu (another pusher at the same "
                "time?): push again", (unsigned long long)x->bseq);
    event(r, "%s: %s", rname(r, x), x->push.msg);
    return 1;
  }
  fy_result rr = fy_result_parse(fy_msg_str(res, "result", 32));
  const char *rel = fy_msg_str(res, "release", 120), *why = fy_msg_str(res, "reason", 500);
  x->push.result = rr == FY_RESULT_NONE ? FY_RESULT_FAILED : rr;
  snprintf(x->push.release, sizeof x->push.release, "%s", rel ? rel : "");
  snprintf(x->push.msg, sizeof x->push.msg, "%s", why && why[0] ? why : res ? "" : "the node's status names no result for this app");
  x->push.err = res_ok(x->push.result) ? FY_OK : FY_EPEER;
  event(r, "%s: %s%s%s%s%s", rname(r, x), fy_result_name(x->push.result), rel && rel[0] ? " " : "", rel ? rel : "",
        x->push.msg[0] ? ": " : "", x->push.msg);
  return 1;
}

static void broker_on_event(void *ud, fy_broker_node *nd, const json_t *ev) {
  struct rollout *r = ud;
  struct rnode *x = &r->nodes[nd - r->bf.nodes];
  const char *what = fy_msg_str(ev, "event", 16), *why = fy_msg_str(ev, "reason", 400);
  json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
  if (!x->bseq || x->push.result != FY_RESULT_NONE || !what) return;
  /* a refusal of this desired state (the node's word; only its status says it applied) */
  if (strcmp(what, "refused") == 0 && strcmp(fy_msg_str(ev, "kind", 16) ? fy_msg_str(ev, "kind", 16) : "", "desired") == 0 &&
      (uint64_t)seq == x->bseq) {
    x->push.result = FY_RESULT_FAILED;
    x->push.err = FY_EPOLICY;
    fy_text_fmt(x->push.msg, sizeof x->push.msg, "the node refused the desired state: %s", why ? why : "?");
    event(r, "%s: %s", rname(r, x), x->push.msg);
  } else if (strcmp(what, "verified") == 0 && (uint64_t)seq == x->bseq) {
    event(r, "%s: verified the desired state %lld; applying it", rname(r, x), (long long)seq);
  }
}

/* Every node published to and still without its outcome: the current wave's, or those of a
 * revert or a removal. */
static int broker_wave_done(void *ud) {
  struct rollout *r = ud;
  size_t left = 0;
  uint64_t now = fy_mono_ms();
  for (size_t i = 0; i < r->n; i++) {
    struct rnode *x = &r->nodes[i];
    if (!x->bseq || broker_outcome(r, x)) continue;
    int online = json_is_true(json_object_get(r->bf.nodes[x->ti].status, "online"));
    if (now < x->until_ms) {
      left++;
      continue;
    }
    x->push.result = online ? FY_RESULT_FAILED : FY_RESULT_NOT_REACHED;
    x->push.err = online ? FY_ETIMEDOUT : FY_ECONN;
    fy_text_fmt(x->push.msg, sizeof x->push.msg, online ? "no result in time (its status has not said it applied the desired state)"
                                                        : "offline: not reached within --wait-offline (it converges when it connects)");
    event(r, "%s: %s", rname(r, x), x->push.msg);
  }
  r->waiting = left;
  return left == 0;
}

static void broker_on_change(void *ud, const fy_broker_node *nd) {
  struct rollout *r = ud;
  struct rnode *x = &r->nodes[nd - r->bf.nodes];
  /* a node that comes online during its wave is waited for as an online one */
  int online = json_is_true(json_object_get(nd->status, "online"));
  if (x->bseq && x->push.result == FY_RESULT_NONE && online && !x->was_online) {
    uint64_t t = fy_mono_ms() + BROKER_APPLY_MS;
    if (x->until_ms < t) x->until_ms = t;
  }
  x->was_online = online;
}

static void broker_scale_down(struct rollout *r);

static void broker_waves(struct rollout *r) {
  struct sigaction sa = {.sa_handler = on_broker_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  fy_bsess_on(r->bf.s, broker_on_change, broker_on_event, r, &broker_stop);
  for (r->cur = 0; r->cur < r->nwaves && !r->halted; r->cur++) {
    size_t from = r->wave_start[r->cur], to = r->wave_start[r->cur + 1];
    int canary = r->cur == 0 && count_of(&r->o->canary, r->nsched, 0) > 0;
    event(r, "wave %d/%d%s, %zu node(s): publishing their desired state", r->cur + 1, r->nwaves, canary ? " (canary)" : "", to - from);
    uint64_t start = fy_mono_ms();
    for (size_t k = from; k < to; k++) {
      struct rnode *x = &r->nodes[r->order[k]];
      char err[800];
      x->started = 1;
      int online = json_is_true(json_object_get(r->bf.nodes[x->ti].status, "online"));
      x->was_online = online;
      x->until_ms = start + (online ? BROKER_APPLY_MS : r->o->wait_offline_ms);
      int rc = broker_stop ? FY_ECANCELED : broker_push_node(r, x, err, sizeof err);
      if (rc == FY_ECANCELED) { /* Ctrl-C: this node and the rest of the wave are not published */
        x->started = 0;
        r->interrupted = 1;
        break;
      }
      if (rc != FY_OK) {
        x->push.result = FY_RESULT_FAILED;
        x->push.err = rc;
        snprintf(x->push.msg, sizeof x->push.msg, "%s", err);
        event(r, "%s: %s", rname(r, x), err);
        if (rc == FY_ECONN || rc == FY_ETIMEDOUT || rc == FY_ETLS) { /* the broker went: nothing more can be published */
          halt(r, "the broker: %s", err);
          break;
        }
        continue;
      }
      if (r->o->detach) x->push.result = FY_RESULT_DETACHED;
      event(r, "%s: desired state %llu published (%s%s)", rname(r, x), (unsigned long long)x->bseq, online ? "online" : "offline",
            r->o->detach ? "; detached" : "");
    }
    if (r->interrupted) {
      event(r, "interrupted: no more desired state is published; the nodes that have theirs converge on their own");
      break;
    }
    if (r->o->detach) continue; /* every wave published at once: the nodes converge on their own */
    int rc = fy_bsess_wait(r->bf.s, (uint64_t)1 << 40, broker_wave_done, r);
    if (rc == FY_ECANCELED || broker_stop) {
      r->interrupted = 1;
      event(r, "interrupted: no new wave is published; the nodes of this one converge on their own");
      break;
    }
    if (rc != FY_OK) {
      halt(r, "the broker: %s", r->berr);
      break;
    }
    size_t ok = 0, same = 0, bad = 0, away = 0;
    for (size_t k = from; k < to; k++) {
      struct rnode *x = &r->nodes[r->order[k]];
      if (x->push.result == FY_RESULT_DEPLOYED) ok++;
      else if (x->push.result == FY_RESULT_UNCHANGED) same++;
      else if (x->push.result == FY_RESULT_NOT_REACHED) away++;
      else {
        bad++;
        r->failures++;
        if (canary) halt(r, "the canary %s %s: %s", rname(r, x), fy_result_name(x->push.result), x->push.msg);
      }
    }
    event(r, "wave %d/%d done: %zu deployed, %zu unchanged, %zu failed, %zu not reached", r->cur + 1, r->nwaves, ok, same, bad, away);
    if (r->max_failures > 0 && r->failures >= r->max_failures) halt(r, "%ld failure(s) reached --max-failures %ld", r->failures, r->max_failures);
  }
  size_t short_of = 0;
  for (size_t k = 0; k < r->nsched; k++) short_of += !res_ok(r->nodes[r->order[k]].push.result);
  int outside = 0;
  for (size_t i = 0; i < r->n; i++) outside |= r->nodes[i].remove_after;
  /* the nodes outside --replicas lose the app only once the N chosen run it */
  if (!r->halted && !r->interrupted && short_of == 0) broker_scale_down(r);
  else if (!r->halted && !r->interrupted && outside)
    event(r, "not removing %s outside --replicas: %zu of the chosen node(s) do not run it yet%s", r->o->push.app, short_of,
          r->o->detach ? " (--detach: push --replicas again without it to scale down)" : "");
  if (!r->halted || !r->o->revert_on_halt) return;
  /* --revert-on-halt: every node this rollout published to gets its previous desired state back
   * (the ones that took the release go back to the previous one; the others, not reached or
   * failed, will not take it later); where there was none, the app's entry goes. */
  size_t nrev = 0;
  uint64_t start = fy_mono_ms();
  char skey[FY_APP_NAME_MAX + 8];
  snprintf(skey, sizeof skey, "plan/%s", r->o->push.app);
  for (size_t k = 0; k < r->nsched; k++) {
    struct rnode *x = &r->nodes[r->order[k]];
    char err[800];
    if (!x->started || !x->bseq) continue;
    const json_t *prev = json_object_get(json_object_get(x->old_desired, "apps"), r->o->push.app);
    json_t *sealed = json_object_get(json_object_get(x->old_desired, "secrets"), skey);
    int took = x->push.result == FY_RESULT_DEPLOYED, first = !prev || (!sealed && !json_is_true(json_object_get(prev, "remove")));
    json_t *gone = first ? json_pack("{s:b}", "remove", 1) : NULL; /* a first install: the app goes again */
    int rc = broker_publish(r, x, r->bf.nodes[x->ti].desired, first ? gone : prev, first ? NULL : sealed, err, sizeof err);
    json_decref(gone);
    if (rc != FY_OK) {
      fy_text_fmt(x->revert_msg, sizeof x->revert_msg, "revert failed: %s", err);
      event(r, "%s: %s", rname(r, x), x->revert_msg);
      continue;
    }
    if (!took) continue;
    x->push.result = FY_RESULT_NONE; /* waited for again */
    x->reverting = 1;
    x->installed = !first;
    snprintf(x->want, sizeof x->want, "%s", !first && fy_msg_str(prev, "digest", FY_DIGEST_STR) ? fy_msg_str(prev, "digest", FY_DIGEST_STR) : "");
    x->until_ms = start + BROKER_APPLY_MS;
    nrev++;
  }
  if (!nrev) return;
  event(r, "reverting %zu node(s) that took the release (their previous desired state, published again; a first install removed)", nrev);
  if (fy_bsess_wait(r->bf.s, (uint64_t)1 << 40, broker_wave_done, r) != FY_OK) event(r, "the broker: %s", r->berr[0] ? r->berr : "interrupted");
  for (size_t k = 0; k < r->nsched; k++) {
    struct rnode *x = &r->nodes[r->order[k]];
    if (!x->reverting) continue;
    if (res_ok(x->push.result) || x->push.result == FY_RESULT_REMOVED) {
      x->reverted = 1;
      x->removed = x->push.result == FY_RESULT_REMOVED;
      x->push.result = FY_RESULT_DEPLOYED;
    } else {
      fy_text_fmt(x->revert_msg, sizeof x->revert_msg, "revert %s: %s", fy_result_name(x->push.result), x->push.msg);
    }
  }
}

/* --replicas through the broker, after a rollout that went well: the targeted nodes outside the
 * N that run the app get a desired state without it ({remove: true}), and take it whenever they
 * are connected (volumes kept, as ferry rm). */
static void broker_scale_down(struct rollout *r) {
  size_t n = 0;
  uint64_t start = fy_mono_ms();
  json_t *gone = json_pack("{s:b}", "remove", 1);
  for (size_t i = 0; i < r->n; i++) {
    struct rnode *x = &r->nodes[i];
    char err[800];
    if (!x->remove_after) continue;
    x->old_desired = r->bf.nodes[i].desired ? json_incref(r->bf.nodes[i].desired) : NULL;
    if (broker_publish(r, x, r->bf.nodes[i].desired, gone, NULL, err, sizeof err) != FY_OK) {
      fy_text_fmt(x->revert_msg, sizeof x->revert_msg, "removal failed: %s", err);
      continue;
    }
    x->want[0] = '\0';
    int online = json_is_true(json_object_get(r->bf.nodes[i].status, "online"));
    x->was_online = online;
    x->until_ms = start + (online ? BROKER_APPLY_MS : r->o->wait_offline_ms);
    n++;
  }
  json_decref(gone);
  if (!n) return;
  event(r, "removing %s from %zu node(s) outside --replicas %ld (a desired state without it)", r->o->push.app, n, r->o->replicas);
  if (r->o->detach) return;
  if (fy_bsess_wait(r->bf.s, (uint64_t)1 << 40, broker_wave_done, r) != FY_OK) event(r, "the broker: %s", r->berr[0] ? r->berr : "interrupted");
  for (size_t i = 0; i < r->n; i++) {
    struct rnode *x = &r->nodes[i];
    if (!x->remove_after || !x->bseq) continue;
    if (x->push.result == FY_RESULT_REMOVED) {
      x->removed = 1;
      event(r, "%s: removed %s (outside --replicas)", rname(r, x), r->o->push.app);
    } else if (!x->revert_msg[0]) {
      fy_text_fmt(x->revert_msg, sizeof x->revert_msg, "removal %s: %s", fy_result_name(x->push.result), x->push.msg);
    }
  }
}

/* ---- reporting ---- */

static fy_result node_result(const struct rollout *r, const struct rnode *x, const char **err) {
  if (x->started && x->push.result == FY_RESULT_NONE) { /* through the broker: published, no answer before the end */
    *err = r->interrupted ? "interrupted before its result (it converges on its own)" : "no result";
    return FY_RESULT_NOT_REACHED;
  }
  if (x->started) {
    *err = res_ok(x->push.result) || x->push.result == FY_RESULT_DETACHED ? NULL : x->push.msg;
    if (x->reverted) {
      *err = x->removed ? "reverted: the rollout halted (a first install: removed)" : "reverted: the rollout halted";
      return x->removed ? FY_RESULT_REMOVED : FY_RESULT_ROLLED_BACK;
    }
    return x->push.result;
  }
  if (x->removed) {
    *err = NULL;
    return FY_RESULT_REMOVED;
  }
  if (x->remove_after && x->revert_msg[0]) {
    *err = x->revert_msg;
    return FY_RESULT_FAILED;
  }
  if (x->excluded == X_UNREACHABLE) {
    *err = x->why;
    return FY_RESULT_FAILED;
  }
  if (x->excluded == X_PLATFORM && !r->cc->inventory[x->ti] && r->cc->selector.n == 0) {
    *err = x->why; /* asked for by name with --to: that it cannot run the image is a failure */
    return FY_RESULT_FAILED;
  }
  if (x->excluded) {
    *err = NULL;
    return FY_RESULT_SKIPPED;
  }
  *err = r->halted ? "not started: the rollout halted" : r->interrupted ? "not started: interrupted" : "not started";
  return FY_RESULT_SKIPPED;
}

/* ferry plan's lines under a node: its settings as they will be, secrets masked. */
static void print_settings(const json_t *resolved) {
  json_t *s = fy_settings_shown(resolved);
  const char *k;
  json_t *v;
  size_t i;
  json_object_foreach(json_object_get(s, "env"), k, v) fy_cli_print(stdout, "    env %s=%s\n", k, json_string_value(v));
  json_array_foreach(json_object_get(s, "files"), i, v) fy_cli_print(stdout, "    file %s\n", json_string_value(v));
  json_object_foreach(json_object_get(s, "secrets"), k, v) fy_cli_print(stdout, "    secret %s (set)\n", k);
  json_decref(s);
}

static int report(struct rollout *r) {
  fy_cli_common *cc = r->cc;
  int ret = r->halted || r->interrupted ? 1 : 0;
  size_t ndeployed = 0, nunchanged = 0, nremoved = 0, nfailed = 0, nskipped = 0, ndetached = 0;
  json_t *arr = json_array();
  for (size_t i = 0; i < r->n; i++) {
    struct rnode *x = &r->nodes[i];
    const char *err;
    fy_result res = node_result(r, x, &err);
    int chosen = x->excluded == X_NONE;
    if (res == FY_RESULT_DEPLOYED) ndeployed++;
    else if (res == FY_RESULT_UNCHANGED) nunchanged++;
    else if (res == FY_RESULT_DETACHED) ndetached++;
    else if (res == FY_RESULT_REMOVED && !x->started) nremoved++;
    else if (res == FY_RESULT_SKIPPED && !chosen) nskipped++;
    else nfailed++, ret = 1;
    const char *plat = fy_msg_str(r->asks[i].facts, "platform", 64);
    json_t *o = json_pack("{s:s, s:s, s:s?, s:b}", "name", rname(r, x), "address", cc->targets[i].address, "platform", plat,
                          "selected", chosen);
    if (r->o->dry_run) {
      json_object_set_new(o, "action", json_string(chosen ? (x->unchanged ? "unchanged" : "deploy") : x->remove_after ? "remove" : "skip"));
      if (r->o->settings && r->o->settings[x->ti] && json_object_size(r->o->settings[x->ti]))
        json_object_set_new(o, "settings", fy_settings_shown(r->o->settings[x->ti]));
    } else {
      json_object_set_new(o, "result", json_string(fy_result_name(res)));
      json_object_set_new(o, "bytes_sent", json_integer((json_int_t)x->push.bytes_sent));
      json_object_set_new(o, "blobs_sent", json_integer(x->push.blobs_sent));
      json_object_set_new(o, "blobs_skipped", json_integer(x->push.blobs_skipped));
      json_object_set_new(o, "error", err ? json_string(err) : json_null());
      json_object_set_new(o, "code", json_string(fy_err_name(x->started ? (err ? x->push.err : FY_OK) : err ? FY_ECANCELED : FY_OK)));
      json_object_set_new(o, "release", x->push.release[0] ? json_string(x->push.release) : json_null());
      if (x->push.log_tail) json_object_set_new(o, "log_tail", json_string(x->push.log_tail));
      if (x->reverted || x->revert_msg[0]) json_object_set_new(o, "reverted", json_boolean(x->reverted));
    }
    json_object_set_new(o, "app", json_string(r->o->push.app));
    json_object_set_new(o, "wave", x->wave >= 0 ? json_integer(x->wave + 1) : json_null());
    json_object_set_new(o, "variant", x->variant[0] ? json_pack("{s:s, s:s}", "platform", x->variant, "digest", x->digest) : json_null());
    json_object_set_new(o, "reason", json_string(x->why));
    json_object_set_new(o, "score", json_integer(x->score));
    if (x->labels) json_object_set(o, "labels", x->labels);
    json_array_append_new(arr, o);
  }
  if (r->o->dry_run) { /* a plan fails when a node did not answer or nobody would get the release */
    ret = r->nsched == 0;
    for (size_t i = 0; i < r->n; i++) ret |= r->nodes[i].excluded == X_UNREACHABLE;
  }
  if (cc->json) {
    json_t *out = json_pack("{s:o, s:s, s:i, s:b, s:s?, s:b, s:I, s:I}", "nodes", arr, "summary", r->summary, "waves", r->nwaves,
                            "halted", r->halted, "halt_reason", r->halted ? r->halt_reason : NULL, "interrupted", r->interrupted,
                            "disk_read_bytes", (json_int_t)r->chunks.disk_bytes, "bytes_sent", (json_int_t)r->chunks.served_bytes);
    json_dumpf(out, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(out);
    return ret;
  }
  json_decref(arr);
  if (r->o->dry_run) {
    printf("%-20s %-16s %-9s %-5s %-16s %-21s %s\n", "NODE", "PLATFORM", "ACTION", "WAVE", "VARIANT", "DIGEST", "WHY");
  } else {
    printf("%-20s %-16s %-12s %-5s %-26s %10s %6s %8s\n", "NODE", "PLATFORM", "RESULT", "WAVE", "RELEASE", "SENT", "BLOBS", "SKIPPED");
  }
  for (size_t i = 0; i < r->n; i++) {
    struct rnode *x = &r->nodes[i];
    const char *err;
    fy_result res = node_result(r, x, &err);
    const char *plat = fy_msg_str(r->asks[i].facts, "platform", 64);
    char wave[16] = "-", b[32];
    if (x->wave >= 0) snprintf(wave, sizeof wave, "%d", x->wave + 1);
    if (r->o->dry_run) {
      fy_cli_print(stdout, "%-20s %-16s %-9s %-5s %-16s %-21.21s %s\n", rname(r, x), plat ? plat : "-",
             x->excluded ? (x->remove_after ? "remove" : "skip") : x->unchanged ? "unchanged" : "deploy", wave,
             x->variant[0] ? x->variant : "-", x->digest[0] ? x->digest : "-", x->why);
      if (r->o->settings && r->o->settings[x->ti] && json_object_size(r->o->settings[x->ti])) print_settings(r->o->settings[x->ti]);
    } else if (x->excluded == X_NONE || res == FY_RESULT_FAILED || res == FY_RESULT_REMOVED) {
      fy_cli_print(stdout, "%-20s %-16s %-12s %-5s %-26s %10s %6d %8d\n", rname(r, x), plat ? plat : "-", fy_result_name(res),
             wave, x->push.release[0] ? x->push.release : "-", fy_human_bytes(x->push.bytes_sent, b, sizeof b), x->push.blobs_sent,
             x->push.blobs_skipped);
    }
  }
  printf("%s\n", r->summary);
  if (!r->o->dry_run) {
    printf("rollout: %zu deployed, %zu unchanged, %zu failed or not reached, %zu not chosen%s%.0zu%s; disk read %llu KiB for %llu KiB "
           "sent%s%s\n", ndeployed, nunchanged, nfailed, nskipped, nremoved ? ", " : "", nremoved, nremoved ? " removed (outside --replicas)" : "", (unsigned long long)(r->chunks.disk_bytes >> 10), (unsigned long long)(r->chunks.served_bytes >> 10),
           r->halted ? "; halted: " : "", r->halted ? r->halt_reason : "");
    if (ndetached)
      printf("%zu node(s) detached: each converges when it takes its desired state; ferry status --fleet (--watch) follows them\n",
             ndetached);
    for (size_t i = 0; i < r->n; i++) {
      struct rnode *x = &r->nodes[i];
      const char *err;
    fy_result res = node_result(r, x, &err);
      if (!err || res_ok(res)) continue;
      fy_cli_err("%s: %s: %s%s%s", rname(r, x), fy_result_name(res), err, x->revert_msg[0] ? "; " : "", x->revert_msg);
      if (x->started && x->push.log_tail && x->push.log_tail[0]) fy_cli_print(stderr, "--- last log lines on %s:\n%s\n", rname(r, x), x->push.log_tail);
    }
  }
  return ret;
}

static void image_affinity(struct rollout *r) {
  fy_variant *vs = NULL;
  size_t nv = 0;
  char err[400];
  if (fy_layout_variants(r->o->push.layout, &vs, &nv, err, sizeof err) != FY_OK) return;
  for (size_t i = 0; i < nv; i++) {
    if (!vs[i].cfg.affinity) continue;
    json_t *j = json_loads(vs[i].cfg.affinity, 0, NULL);
    if (j && fy_affinity_from_json(j, &r->image_affinity, err, sizeof err) != FY_OK)
      fy_cli_err("ignoring the image's affinity label: %s", err);
    json_decref(j);
    break;
  }
  fy_variants_free(vs, nv);
}

int fy_rollout_run(fy_rollout_opts *o) {
  struct rollout r;
  fy_cli_common *cc = o->cc;
  int ret = 1;
  memset(&r, 0, sizeof r);
  r.o = o;
  r.cc = cc;
  r.n = cc->ntargets;
  r.tty = !cc->json && !o->dry_run && isatty(2);
  o->push.events = !r.tty; /* plain event lines on stderr, also beside --json */
  o->push.timeout_ms = cc->timeout_ms;
  o->push.chunks = &r.chunks;
  fy_chunks_init(&r.chunks, o->push.layout, 2);
  fy_layout_offered(o->push.layout, r.offered, sizeof r.offered);
  image_affinity(&r);
  r.nodes = calloc(r.n, sizeof *r.nodes);
  r.asks = calloc(r.n, sizeof *r.asks);
  r.order = calloc(r.n, sizeof *r.order);
  r.fu[0].nodes = calloc(r.n, sizeof *r.fu[0].nodes);
  r.fu[1].nodes = calloc(r.n, sizeof *r.fu[1].nodes);
  if (!r.nodes || !r.asks || !r.order || !r.fu[0].nodes || !r.fu[1].nodes) goto cleanup;
  uv_loop_init(&r.loop);
  r.loop_ok = 1;
  r.loop.data = &r;

  /* 1. discover */
  if (o->broker) {
    if (broker_discover(&r) != FY_OK) goto cleanup;
  } else {
    fy_ask_batch disc = {.loop = &r.loop, .tls = o->push.tls, .timeout_ms = cc->timeout_ms < 30000 ? cc->timeout_ms : 30000, .op = "status"};
    event(&r, "asking %zu node(s) for their facts", r.n);
    fy_ask_batch_start(&disc, r.asks, cc->targets, r.n);
    uv_run(&r.loop, UV_RUN_DEFAULT);
  }

  /* 2. decide */
  filter_nodes(&r);
  size_t avail = 0;
  for (size_t i = 0; i < r.n; i++) avail += r.nodes[i].excluded == X_NONE;
  if (o->replicas > 0 && (size_t)o->replicas < avail) pick_replicas(&r, o->replicas);
  summarize(&r);
  schedule(&r);
  fprintf(stderr, "ferry: %s\n", r.summary);
  if (o->replicas > (long)avail && !cc->json) fy_cli_err("--replicas %ld: only %zu node(s) available", o->replicas, avail);
  for (size_t i = 0; i < r.n; i++)
    if (r.nodes[i].excluded == X_UNREACHABLE) {
      r.failures++;
      event(&r, "%s: unreachable: %s", fy_ask_name(&r.asks[i]), r.nodes[i].why);
    }
  if (o->dry_run) {
    ret = report(&r);
    goto cleanup;
  }
  if (r.nsched == 0) {
    halt(&r, "no node to deploy to (%s)", r.summary);
  } else if (r.max_failures > 0 && r.failures >= r.max_failures) {
    halt(&r, "%ld node(s) unreachable before the start reached --max-failures %ld", r.failures, r.max_failures);
  }

  if (!r.halted && o->broker && !o->push.via)
    halt(&r, "a push through the broker needs registry: in the fleet file (or --via docker://HOST/REPO): the nodes pull the "
             "layers from there (ferry publish puts them there)");
  if (!r.halted && o->push.via) via_scheduled(&r);
  if (!r.halted) recompress_scheduled(&r);
  if (o->broker) {
    if (!r.halted) broker_waves(&r);
    ret = report(&r);
    goto cleanup;
  }

  /* 3. waves */
  uv_timer_init(&r.loop, &r.progress);
  r.progress.data = &r;
  uv_signal_init(&r.loop, &r.sigint);
  uv_signal_init(&r.loop, &r.sigterm);
  r.sigint.data = r.sigterm.data = &r;
  uv_signal_start(&r.sigint, on_signal, SIGINT);
  uv_signal_start(&r.sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&r.sigint);
  uv_unref((uv_handle_t *)&r.sigterm);
  r.started_ms = uv_now(&r.loop);
  if (r.tty) uv_timer_start(&r.progress, on_progress, 200, 200);
  if (r.halted) finish(&r);
  else start_wave(&r);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  draw(&r, 1);
  uv_close((uv_handle_t *)&r.sigint, NULL);
  uv_close((uv_handle_t *)&r.sigterm, NULL);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  ret = report(&r);
cleanup:
  if (r.loop_ok) uv_loop_close(&r.loop);
  fy_bfleet_close(&r.bf);
  for (size_t i = 0; r.nodes && i < r.n; i++) json_decref(r.nodes[i].old_desired);
  if (r.nodes && r.asks) {
    for (size_t i = 0; i < r.n; i++) {
      json_decref(r.nodes[i].labels);
      fy_pnode_free(&r.nodes[i].push);
      json_decref(r.asks[i].facts);
      json_decref(r.asks[i].answer);
    }
  }
  for (int k = 0; k < 2; k++) {
    if (r.fu[k].asks) fy_ask_batch_free(&r.fu[k].b);
    json_decref(r.fu[k].req);
    free(r.fu[k].asks);
    free(r.fu[k].targets);
    free(r.fu[k].nodes);
  }
  free(r.nodes);
  free(r.asks);
  free(r.order);
  fy_chunks_free(&r.chunks);
  fy_affinity_free(&r.image_affinity);
  return ret;
}
