#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry/version.h"
#include "ferry/wire.h"
#include "ferry/text.h"
#include "push_node.h"
#include "signing.h"

#define HIGH_WATER (256u * 1024u)

const char *fy_pnode_name(const fy_pnode *n) {
  if (n->name[0]) return n->name;
  return n->conn.target.name[0] ? n->conn.target.name : n->conn.target.address;
}

const char *fy_pnode_phase_name(int phase) {
  static const char *const names[] = {"waiting", "connecting", "hello", "planning", "sending", "activating", "confirming", "done"};
  return phase >= 0 && phase <= FY_PN_DONE ? names[phase] : "?";
}

void fy_pnode_event(const fy_pnode *n, const char *fmt, ...) {
  if (!n->cfg->events) return;
  va_list ap;
  fprintf(stderr, "%s: ", fy_pnode_name(n));
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void node_fail(fy_pnode *n, int err, const char *msg) {
  n->result = FY_RESULT_FAILED;
  n->err = err;
  fy_text_fmt(n->msg, sizeof n->msg, "%s", msg);
  fy_conn_close(&n->conn, err, msg);
}

static void finish(fy_pnode *n);

void fy_pnode_abort(fy_pnode *n, const char *why) {
  if (n->phase == FY_PN_IDLE || n->phase == FY_PN_DONE) return;
  if (n->phase == FY_PN_CONFIRM) { /* the upgrade is under way on the node; stop asking */
    n->phase = FY_PN_DONE;
    n->result = FY_RESULT_FAILED;
    n->err = FY_ECANCELED;
    snprintf(n->msg, sizeof n->msg, "%s while waiting for the new agent to answer", why);
    if (n->confirm_waiting) {
      n->confirm_waiting = 0;
      n->confirm_timer_open = 0;
      uv_close((uv_handle_t *)&n->confirm_timer, NULL);
      finish(n);
    } else {
      fy_conn_close(&n->conn, FY_ECANCELED, why);
    }
    return;
  }
  node_fail(n, FY_ECANCELED, why);
}

static void on_ready(fy_conn *c) {
  fy_pnode *n = c->ud;
  json_t *hello = fy_msg_hello("ferry " FY_VERSION, "deploy", n->cfg->app);
  int rc = hello ? fy_conn_send_json(c, FY_FT_HELLO, hello) : FY_ENOMEM;
  json_decref(hello);
  if (rc != FY_OK) node_fail(n, rc, "cannot send hello");
  n->phase = FY_PN_FACTS;
}

void fy_push_plan_options(const fy_push_cfg *P, const fy_variant *v, fy_plan_msg *pm) {
  pm->settle_ms = P->settle_set ? P->settle_ms : v->cfg.settle_ms >= 0 ? (uint64_t)v->cfg.settle_ms : P->settle_ms;
  pm->health_cmd = P->health_cmd ? P->health_cmd : v->cfg.health_cmd;
  pm->health_port = P->health_port ? P->health_port : v->cfg.health_port;
  pm->force = P->force;
}

int fy_push_plan_json(const fy_push_cfg *P, const fy_variant *v, const json_t *settings, json_t **out, char *err, size_t errlen) {
  fy_plan_msg pm = {.app = P->app, .manifest = v->manifest, .manifest_len = v->manifest_len,
                    .manifest_digest = v->desc.digest, .config = v->config, .config_len = v->config_len,
                    .agent_upgrade = P->agent_upgrade, .upgrade_timeout_s = P->upgrade_timeout_s};
  int rc;
  *out = NULL;
  fy_push_plan_options(P, v, &pm);
  pm.settings = settings;
  if (P->via) pm.source = &P->source;
  json_t *chain = NULL, *sig = NULL;
  if (P->signature) { /* the signature, and the indexes that tie the manifest to what it signed */
    if ((rc = fy_layout_sig_chain(P->layout, P->signature, &v->desc.digest, &chain, err, errlen)) != FY_OK) return rc;
    sig = fy_layout_sig_json(P->signature);
    pm.signature = sig;
    pm.chain = chain;
  }
  *out = fy_plan_encode(&pm);
  json_decref(sig);
  json_decref(chain);
  if (!*out) {
    snprintf(err, errlen, "cannot encode the plan");
    return FY_ENOMEM;
  }
  return FY_OK;
}

static int got_facts(fy_pnode *n, json_t *j) {
  char err[1200];
  const fy_push_cfg *P = n->cfg;
  fy_facts_msg fm;
  snprintf(n->name, sizeof n->name, "%s", fy_tls_peer_name(n->conn.s.session.tls));
  if (fy_facts_decode(j, &fm, err, sizeof err) != FY_OK) {
    node_fail(n, FY_EPROTO, err);
    return FY_ECANCELED;
  }
  snprintf(n->old_digest, sizeof n->old_digest, "%s", fm.agent_digest);
  if (fm.proto < 4 && json_object_size(n->settings)) { /* an older agent would drop them without a word */
    snprintf(err, sizeof err, "the agent speaks protocol %u and would ignore env, files and secrets (they need 4: ferry upgrade-agent)", fm.proto);
    node_fail(n, FY_EUNSUPPORTED, err);
    return FY_ECANCELED;
  }
  fy_platform_format(&fm.platform, n->platform, sizeof n->platform);
  int rc = fy_layout_choose(P->layout, fm.accepts, fm.naccepts, fm.board[0] ? fm.board : NULL, &n->v, err, sizeof err);
  if (rc != FY_OK) {
    node_fail(n, rc, err);
    return FY_ECANCELED;
  }
  n->have_variant = 1;
  int converted = 0;
  if (P->via && fm.proto < 5) {
    snprintf(err, sizeof err, "the agent speaks protocol %u and cannot pull from a registry (that needs 5: ferry upgrade-agent)", fm.proto);
    node_fail(n, FY_EUNSUPPORTED, err);
    return FY_ECANCELED;
  }
  /* With --via the layers stay in the registry: nothing to fetch or recompress here. */
  if ((rc = P->via ? FY_OK : fy_layout_prepare(P->layout, &n->v, &converted, NULL, err, sizeof err)) != FY_OK) {
    node_fail(n, rc, err);
    return FY_ECANCELED;
  }
  if (converted > 0) fy_pnode_event(n, "recompressed %d gzip layer(s) to zstd (cached in $FERRY_HOME/cache)", converted);
  char ds[FY_DIGEST_STR], src[FY_DIGEST_STR], p[FY_PLATFORM_STR];
  /* After a gzip -> zstd rewrite the manifest sent is not the one skopeo or the registry shows:
   * both are named, so either can be looked up. */
  if (!fy_digest_equal(&n->v.source, &n->v.desc.digest))
    fy_pnode_event(n, "%s, variant %s (%s, the zstd rewrite of %s)", n->platform, fy_platform_format(&n->v.cfg.platform, p, sizeof p),
                   fy_digest_format(&n->v.desc.digest, ds), fy_digest_format(&n->v.source, src));
  else
    fy_pnode_event(n, "%s, variant %s (%s)", n->platform, fy_platform_format(&n->v.cfg.platform, p, sizeof p),
                   fy_digest_format(&n->v.desc.digest, ds));
  json_t *plan = NULL;
  if ((rc = fy_push_plan_json(P, &n->v, n->settings, &plan, err, sizeof err)) != FY_OK) {
    node_fail(n, rc, err);
    return FY_ECANCELED;
  }
  rc = fy_conn_send_json(&n->conn, FY_FT_PLAN, plan);
  json_decref(plan);
  if (rc != FY_OK) {
    node_fail(n, rc, "cannot send the plan (is the manifest over 1 MiB?)");
    return FY_ECANCELED;
  }
  n->phase = FY_PN_PLAN;
  return FY_OK;
}

static int got_need(fy_pnode *n, json_t *j) {
  fy_need_msg m;
  char err[300];
  int rc = fy_need_decode(j, &m, err, sizeof err);
  if (rc != FY_OK) return rc;
  n->nneed = 0;
  n->need = calloc(m.n + 1, sizeof *n->need);
  if (!n->need) return FY_ENOMEM;
  for (size_t i = 0; i < m.n; i++) {
    int layer = -1;
    for (size_t k = 0; k < n->v.m.nlayers; k++)
      if (fy_digest_equal(&n->v.m.layers[k].digest, &m.items[i].digest)) layer = (int)k;
    /* the node names blobs of this manifest, with their sizes as the manifest has them */
    if (layer < 0 || m.items[i].size != n->v.m.layers[layer].size) return FY_EPROTO;
    n->need[n->nneed++] = (struct fy_pneed){layer, m.items[i].offset, n->v.m.layers[layer].size};
    n->total_to_send += n->v.m.layers[layer].size - m.items[i].offset;
  }
  n->blobs_skipped = (int)m.skipped;
  if (n->cfg->via && n->nneed > 0) {
    /* --fallback-stream: the node could not pull; the bytes come from here after all (fetched
     * into the cache first when the image is in a registry; the loop waits for it, a rare path). */
    int conv = 0;
    char why[1024];
    fy_pnode_event(n, "the node could not pull from the registry: streaming %zu blob(s) to it", n->nneed);
    if ((rc = fy_layout_prepare(n->cfg->layout, &n->v, &conv, NULL, why, sizeof why)) != FY_OK) {
      node_fail(n, rc, why);
      return FY_ECANCELED;
    }
  }
  fy_pnode_event(n, "%zu blob(s) to send (%llu bytes), %d already on the node", n->nneed, (unsigned long long)n->total_to_send,
                 n->blobs_skipped);
  n->phase = FY_PN_SEND;
  return FY_OK;
}

/* Sends while the socket keeps up; on_writable brings us back. */
static void pump(fy_pnode *n) {
  fy_conn *c = &n->conn;
  char ds[FY_DIGEST_STR];
  while (n->phase == FY_PN_SEND && !c->closing && c->s.writing < HIGH_WATER) {
    if (!n->in_blob) {
      if (n->ni == n->nneed) {
        if (fy_conn_send(c, FY_FT_COMMIT, NULL, 0) != FY_OK) { node_fail(n, FY_ECONN, "cannot send commit"); return; }
        n->phase = FY_PN_COMMIT;
        fy_pnode_event(n, "all data sent; waiting for verify, unpack, start and settle");
        return;
      }
      struct fy_pneed *nd = &n->need[n->ni];
      const fy_descriptor *l = &n->v.m.layers[nd->layer];
      n->blob_off = nd->offset;
      n->blob_end = nd->size;
      n->in_blob = 1;
      fy_blob_begin_msg bm = {.digest = l->digest, .offset = nd->offset};
      json_t *b = fy_blob_begin_encode(&bm);
      fy_digest_format(&l->digest, ds);
      int rc = fy_conn_send_json(c, FY_FT_BLOB_BEGIN, b);
      json_decref(b);
      if (rc != FY_OK) { node_fail(n, rc, "cannot send blob-begin"); return; }
      fy_pnode_event(n, "sending %s from byte %llu (%llu bytes)", ds, (unsigned long long)nd->offset,
                     (unsigned long long)(nd->size - nd->offset));
    }
    if (n->blob_off == n->blob_end) {
      n->in_blob = 0;
      n->ni++;
      n->blobs_sent++;
      continue;
    }
    /* Disk reads go by aligned FY_CHUNKs (shared by the wave, whatever offset a node resumes
     * from); frames are FY_BLOB_FRAME, about one TLS record, so a cut link loses at most that. */
    uint64_t chunk_start = n->blob_off - n->blob_off % FY_CHUNK;
    uint64_t chunk_left = n->blob_end - chunk_start;
    size_t chunk_len = chunk_left < FY_CHUNK ? (size_t)chunk_left : FY_CHUNK;
    size_t in_chunk = (size_t)(n->blob_off - chunk_start);
    size_t want = chunk_len - in_chunk < FY_BLOB_FRAME ? chunk_len - in_chunk : FY_BLOB_FRAME;
    if (fy_session_send_room(&c->s.session) < want) return; /* wait for on_writable */
    const uint8_t *data;
    const fy_digest *d = &n->v.m.layers[n->need[n->ni].layer].digest;
    int rc = fy_chunks_get(n->cfg->chunks, d, chunk_start, chunk_len, &data);
    if (rc != FY_OK) {
      node_fail(n, rc, rc == FY_EIO ? "reading a layer from the layout failed (file shorter than its descriptor?)"
                                    : "reading a layer from the layout failed");
      return;
    }
    if ((rc = fy_conn_send(c, FY_FT_BLOB, data + in_chunk, want)) != FY_OK) { node_fail(n, rc, "sending blob data failed"); return; }
    n->blob_off += want;
    n->bytes_sent += want;
    n->cfg->chunks->served_bytes += want;
  }
}

static void on_writable(fy_conn *c) { pump(c->ud); }

static int got_result(fy_pnode *n, json_t *j) {
  fy_result_msg r;
  char err[300];
  if (fy_result_decode(j, &r, err, sizeof err) != FY_OK) {
    node_fail(n, FY_EPROTO, err);
    return FY_ECANCELED;
  }
  if (n->cfg->agent_upgrade && r.result == FY_RESULT_UPGRADING && r.agent_digest[0]) {
    /* The old agent re-executes: ask the node until the new one answers, or the old is back. */
    snprintf(n->expect_digest, sizeof n->expect_digest, "%s", r.agent_digest);
    fy_pnode_event(n, "the agent re-executes as %.19s...; waiting for it to answer", r.agent_digest);
    n->phase = FY_PN_CONFIRM;
    n->confirm_deadline = uv_now(n->conn.loop) + (uint64_t)(n->cfg->upgrade_timeout_s + 15) * 1000;
    fy_conn_close(&n->conn, FY_OK, NULL);
    return FY_ECANCELED;
  }
  n->result = r.result == FY_RESULT_UPGRADING ? FY_RESULT_FAILED : r.result; /* upgrading answers only an upgrade */
  if (r.release[0]) snprintf(n->release, sizeof n->release, "%s", r.release);
  n->err = r.code;
  if (n->result == FY_RESULT_UNCHANGED) {
    n->blobs_skipped = (int)r.blobs_skipped;
    fy_text_fmt(n->msg, sizeof n->msg, "%s", r.message);
  } else if (n->result != FY_RESULT_DEPLOYED) {
    if (r.has_exit_code) fy_text_fmt(n->msg, sizeof n->msg, "%s (exit code %lld)", r.message, (long long)r.exit_code);
    else fy_text_fmt(n->msg, sizeof n->msg, "%s", r.message);
    if (r.log_tail) n->log_tail = strdup(r.log_tail);
  }
  fy_pnode_event(n, "%s%s%s", fy_result_name(n->result), n->msg[0] ? ": " : "", n->msg);
  n->phase = FY_PN_DONE;
  fy_conn_close(&n->conn, FY_OK, NULL);
  return FY_ECANCELED;
}

static int got_progress(fy_pnode *n, json_t *j) { /* protocol 2: where the node's deploy stands */
  fy_progress_msg pm;
  char err[300];
  if (fy_progress_decode(j, &pm, err, sizeof err) != FY_OK) return FY_OK; /* only news: ignored when malformed */
  if (pm.step == FY_STEP_PULLING) {
    char a[32], b[32];
    fy_pnode_event(n, "pulling from the registry: %s of %s", fy_human_bytes(pm.done, a, sizeof a), fy_human_bytes(pm.total, b, sizeof b));
  } else if (pm.total && pm.step == FY_STEP_UNPACKING)
    fy_pnode_event(n, "%s %llu bytes", fy_step_name(pm.step), (unsigned long long)pm.total);
  else fy_pnode_event(n, "%s", fy_step_name(pm.step));
  return FY_OK;
}

static int got_reply(fy_pnode *n, json_t *j) {
  int rc = got_need(n, j);
  if (rc == FY_ECANCELED) return rc;
  if (rc != FY_OK) {
    node_fail(n, rc, "malformed need list from the agent");
    return FY_ECANCELED;
  }
  pump(n);
  return FY_OK;
}

/* What an agent may answer a deploy with; the conversation (ferry/conv.h) already checked that
 * it may answer it now. */
static int (*const frame_handlers[FY_FT__MAX + 1])(fy_pnode *, json_t *) = {
    [FY_FT_FACTS] = got_facts,
    [FY_FT_REPLY] = got_reply,
    [FY_FT_RESULT] = got_result,
    [FY_FT_PROGRESS] = got_progress,
};

static int on_frame(fy_conn *c, const fy_frame *f) {
  fy_pnode *n = c->ud;
  json_t *j = NULL;
  char err[300];
  int (*fn)(fy_pnode *, json_t *) = f->type <= FY_FT__MAX ? frame_handlers[f->type] : NULL;
  if (!fn) {
    snprintf(err, sizeof err, "unexpected %s message", fy_frame_type_name(f->type));
    node_fail(n, FY_EPROTO, err);
    return FY_ECANCELED;
  }
  int rc = fy_msg_parse(f, &j, err, sizeof err);
  if (rc != FY_OK) {
    node_fail(n, rc, err);
    return FY_ECANCELED;
  }
  rc = fn(n, j);
  json_decref(j);
  return rc;
}

static void confirm_later(fy_pnode *n);

static void finish(fy_pnode *n) {
  free(n->need);
  n->need = NULL;
  if (n->have_variant) fy_variant_free(&n->v);
  n->have_variant = 0;
  if (n->on_finish) n->on_finish(n);
}

static void on_done(fy_conn *c, int err, const char *msg) {
  fy_pnode *n = c->ud;
  if (n->phase == FY_PN_CONFIRM) {
    confirm_later(n);
    return;
  }
  if (n->phase != FY_PN_DONE) {
    n->phase = FY_PN_DONE;
    if (n->result == FY_RESULT_NONE || n->result == FY_RESULT_DEPLOYED) n->result = FY_RESULT_FAILED;
    if (!n->msg[0]) snprintf(n->msg, sizeof n->msg, "%s", msg ? msg : fy_strerror(err ? err : FY_ECONN));
    if (!n->err) n->err = err ? err : FY_ECONN;
    fy_pnode_event(n, "failed: %s", n->msg);
  }
  /* The variant and the need list are not needed any more: a 50-node rollout keeps only
   * results. */
  finish(n);
}

/* --- agent upgrade: confirming ----------------------------------------------------------- */

static void confirm_ready(fy_conn *c) {
  json_t *hello = fy_msg_hello("ferry " FY_VERSION, "status", NULL);
  int rc = hello ? fy_conn_send_json(c, FY_FT_HELLO, hello) : FY_ENOMEM;
  json_decref(hello);
  if (rc != FY_OK) fy_conn_close(c, rc, "cannot send hello");
}

static int confirm_frame(fy_conn *c, const fy_frame *f) {
  fy_pnode *n = c->ud;
  json_t *j = NULL;
  char err[300];
  if (f->type == FY_FT_FACTS && fy_msg_parse(f, &j, err, sizeof err) == FY_OK) {
    const char *d = fy_msg_str(j, "agent_digest", 79);
    snprintf(n->seen_digest, sizeof n->seen_digest, "%s", d ? d : "");
    if (d && strcmp(d, n->expect_digest) == 0) {
      n->result = FY_RESULT_DEPLOYED;
      snprintf(n->msg, sizeof n->msg, "agent upgraded to %.19s...", d);
      n->err = FY_OK;
      n->phase = FY_PN_DONE;
      fy_pnode_event(n, "the new agent answers: upgraded");
    } else if (d && n->old_digest[0] && strcmp(d, n->old_digest) == 0 && strcmp(d, n->expect_digest) != 0) {
      /* The old image re-executed a second after its result: the watchdog put it back. */
      n->result = FY_RESULT_ROLLED_BACK;
      n->err = FY_EUNHEALTHY;
      snprintf(n->msg, sizeof n->msg, "the new agent did not answer (within %d s, or it exited); the old agent (%.19s...) is back",
               n->cfg->upgrade_timeout_s, d);
      n->phase = FY_PN_DONE;
      fy_pnode_event(n, "%s: %s", fy_result_name(n->result), n->msg);
    }
  }
  json_decref(j);
  fy_conn_close(c, FY_OK, NULL);
  return FY_ECANCELED;
}

static void confirm_done(fy_conn *c, int err, const char *msg) {
  fy_pnode *n = c->ud;
  (void)err;
  (void)msg;
  if (n->phase == FY_PN_DONE) {
    if (n->confirm_timer_open) {
      n->confirm_timer_open = 0;
      uv_close((uv_handle_t *)&n->confirm_timer, NULL);
    }
    finish(n);
    return;
  }
  if (uv_now(c->loop) < n->confirm_deadline) {
    confirm_later(n);
    return;
  }
  n->phase = FY_PN_DONE;
  if (n->seen_digest[0]) { /* the watchdog put the old agent back */
    n->result = FY_RESULT_ROLLED_BACK;
    n->err = FY_EUNHEALTHY;
    snprintf(n->msg, sizeof n->msg, "the new agent did not answer within %d s; the old agent (%.19s...) is back",
             n->cfg->upgrade_timeout_s, n->seen_digest);
  } else {
    n->result = FY_RESULT_FAILED;
    n->err = FY_ETIMEDOUT;
    snprintf(n->msg, sizeof n->msg, "no agent answered within %d s of the upgrade", n->cfg->upgrade_timeout_s + 15);
  }
  fy_pnode_event(n, "%s: %s", fy_result_name(n->result), n->msg);
  if (n->confirm_timer_open) {
    n->confirm_timer_open = 0;
    uv_close((uv_handle_t *)&n->confirm_timer, NULL);
  }
  finish(n);
}

static const fy_conn_ops confirm_ops = {.on_ready = confirm_ready, .on_frame = confirm_frame, .on_done = confirm_done};

static void confirm_tick(uv_timer_t *t) {
  fy_pnode *n = t->data;
  n->confirm_waiting = 0;
  fy_target target = n->conn.target;
  fy_conn_start(&n->conn, t->loop, &target, n->cfg->tls, &confirm_ops, n, 3000);
}

static void confirm_later(fy_pnode *n) {
  if (!n->confirm_timer_open) {
    uv_timer_init(n->conn.loop, &n->confirm_timer);
    n->confirm_timer.data = n;
    n->confirm_timer_open = 1;
  }
  n->confirm_waiting = 1;
  uv_timer_start(&n->confirm_timer, confirm_tick, 1000, 0);
}

static const fy_conn_ops push_ops = {.on_ready = on_ready, .on_frame = on_frame, .on_writable = on_writable, .on_done = on_done};

void fy_pnode_start(fy_pnode *n, uv_loop_t *loop, const fy_target *t, const fy_push_cfg *cfg) {
  n->cfg = cfg;
  n->phase = FY_PN_CONNECT;
  fy_conn_start(&n->conn, loop, t, cfg->tls, &push_ops, n, cfg->timeout_ms);
}

void fy_pnode_free(fy_pnode *n) {
  free(n->need);
  free(n->log_tail);
  if (n->have_variant) fy_variant_free(&n->v);
  n->need = NULL;
  n->log_tail = NULL;
  n->have_variant = 0;
}
