/* ferry push: every node on one loop. Per node: hello -> facts -> choose the variant ->
 * plan -> the agent's need list -> blob data from the agent's offsets, in bounded chunks with
 * backpressure -> commit -> result. Memory stays constant: one read chunk per node. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conn.h"
#include "ferry/yaml.h"
#include "layout.h"

#define CHUNK (256u * 1024u)
#define HIGH_WATER (1024u * 1024u)

enum { P_CONNECT, P_FACTS, P_PLAN, P_SEND, P_COMMIT, P_DONE };

struct need {
  int layer;
  uint64_t offset, size;
};

struct pnode {
  fy_conn conn;
  struct push *push;
  int phase;
  char name[FY_TLS_NAME_MAX];
  char platform[FY_PLATFORM_STR];
  fy_variant v;
  int have_variant;
  struct need *need;
  size_t nneed, ni;
  int fd;
  uint64_t blob_left;
  uint64_t bytes_sent, total_to_send, sent_at_start;
  int blobs_sent, blobs_skipped;
  char result[24];
  int err;
  char msg[1024];
  char release[80];
  char *log_tail;
  uint8_t *buf;
};

struct push {
  fy_layout layout;
  const char *app;
  uint64_t settle_ms;
  int settle_set;
  const char *health_cmd;
  int health_port;
  int tty, json;
  struct pnode *nodes;
  size_t n;
  uv_timer_t progress;
  uint64_t started;
  uv_loop_t *loop;
  int lines_drawn;
};

static void node_event(struct pnode *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void node_event(struct pnode *n, const char *fmt, ...) {
  if (n->push->tty || n->push->json) return;
  va_list ap;
  fprintf(stderr, "%s: ", n->name[0] ? n->name : n->conn.target.address);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void node_fail(struct pnode *n, int err, const char *msg) {
  snprintf(n->result, sizeof n->result, "failed");
  n->err = err;
  snprintf(n->msg, sizeof n->msg, "%s", msg);
  fy_conn_close(&n->conn, err, msg);
}

static void on_ready(fy_conn *c) {
  struct pnode *n = c->ud;
  json_t *hello = fy_msg_hello("ferry " FY_VERSION_STRING, "deploy", n->push->app);
  int rc = hello ? fy_conn_send_json(c, FY_FT_HELLO, hello) : FY_ENOMEM;
  json_decref(hello);
  if (rc != FY_OK) node_fail(n, rc, "cannot send hello");
  n->phase = P_FACTS;
}

static int got_facts(struct pnode *n, json_t *j) {
  fy_platform acc[FY_PLATFORM_ACCEPT_MAX];
  size_t nacc = 0, i;
  json_t *v;
  char err[1200];
  snprintf(n->name, sizeof n->name, "%s", fy_tls_peer_name(n->conn.session.tls));
  const char *plat = fy_msg_str(j, "platform", 64);
  if (plat) snprintf(n->platform, sizeof n->platform, "%s", plat);
  json_array_foreach(json_object_get(j, "accepts"), i, v) {
    if (nacc < FY_PLATFORM_ACCEPT_MAX && json_is_string(v) && fy_platform_parse(json_string_value(v), &acc[nacc]) == FY_OK) nacc++;
  }
  if (nacc == 0 && plat && fy_platform_parse(plat, &acc[0]) == FY_OK) nacc = 1;
  if (nacc == 0) {
    node_fail(n, FY_EPROTO, "the agent reported no platform");
    return FY_ECANCELED;
  }
  int rc = fy_layout_choose(&n->push->layout, acc, nacc, fy_msg_str(j, "board", 31), &n->v, err, sizeof err);
  if (rc != FY_OK) {
    node_fail(n, rc, err);
    return FY_ECANCELED;
  }
  n->have_variant = 1;
  int converted = 0;
  if ((rc = fy_layout_to_zstd(&n->push->layout, &n->v, &converted, err, sizeof err)) != FY_OK) {
    node_fail(n, rc, err);
    return FY_ECANCELED;
  }
  if (converted > 0) node_event(n, "recompressed %d gzip layer(s) to zstd (cached in the layout)", converted);
  char ds[FY_DIGEST_STR], p[FY_PLATFORM_STR];
  node_event(n, "%s, variant %s (%s)", n->platform, fy_platform_format(&n->v.cfg.platform, p, sizeof p),
             fy_digest_format(&n->v.desc.digest, ds));
  /* Flags win; else what the recipe's run: section put into the image config. */
  struct push *P = n->push;
  uint64_t settle = P->settle_set ? P->settle_ms : n->v.cfg.settle_ms >= 0 ? (uint64_t)n->v.cfg.settle_ms : P->settle_ms;
  const char *hcmd = P->health_cmd ? P->health_cmd : n->v.cfg.health_cmd;
  int hport = P->health_port ? P->health_port : n->v.cfg.health_port;
  json_t *plan = json_pack("{s:s, s:s%, s:s, s:s%, s:I}", "app", P->app, "manifest", n->v.manifest,
                           n->v.manifest_len, "manifest_digest", ds, "config", n->v.config, n->v.config_len,
                           "settle_ms", (json_int_t)settle);
  if (plan && hcmd) json_object_set_new(plan, "health_cmd", json_string(hcmd));
  if (plan && hport) json_object_set_new(plan, "health_port", json_integer(hport));
  rc = plan ? fy_conn_send_json(&n->conn, FY_FT_PLAN, plan) : FY_ENOMEM;
  json_decref(plan);
  if (rc != FY_OK) {
    node_fail(n, rc, "cannot send the plan (is the manifest over 1 MiB?)");
    return FY_ECANCELED;
  }
  n->phase = P_PLAN;
  return FY_OK;
}

static void pump(struct pnode *n);

static int got_need(struct pnode *n, json_t *j) {
  json_t *arr = json_object_get(j, "need"), *v;
  size_t i;
  n->nneed = 0;
  n->need = calloc(json_array_size(arr) + 1, sizeof *n->need);
  if (!n->need) return FY_ENOMEM;
  json_array_foreach(arr, i, v) {
    fy_digest d;
    const char *ds = fy_msg_str(v, "digest", 80);
    json_int_t off = json_integer_value(json_object_get(v, "offset"));
    if (!ds || fy_digest_parse(ds, &d) != FY_OK) return FY_EPROTO;
    int layer = -1;
    for (size_t k = 0; k < n->v.m.nlayers; k++)
      if (fy_digest_equal(&n->v.m.layers[k].digest, &d)) layer = (int)k;
    if (layer < 0 || off < 0 || (uint64_t)off > n->v.m.layers[layer].size) return FY_EPROTO;
    n->need[n->nneed++] = (struct need){layer, (uint64_t)off, n->v.m.layers[layer].size};
    n->total_to_send += n->v.m.layers[layer].size - (uint64_t)off;
  }
  json_t *sk = json_object_get(j, "skipped");
  n->blobs_skipped = json_is_integer(sk) ? (int)json_integer_value(sk) : 0;
  node_event(n, "%zu blob(s) to send (%llu bytes), %d already on the node", n->nneed,
             (unsigned long long)n->total_to_send, n->blobs_skipped);
  n->phase = P_SEND;
  n->fd = -1;
  return FY_OK;
}

/* Sends while the socket keeps up; on_writable brings us back. */
static void pump(struct pnode *n) {
  fy_conn *c = &n->conn;
  char ds[FY_DIGEST_STR], path[4200];
  while (n->phase == P_SEND && !c->closing && c->writing < HIGH_WATER) {
    if (n->fd < 0) {
      if (n->ni == n->nneed) {
        if (fy_conn_send(c, FY_FT_COMMIT, NULL, 0) != FY_OK) { node_fail(n, FY_ECONN, "cannot send commit"); return; }
        n->phase = P_COMMIT;
        node_event(n, "all data sent; waiting for verify, unpack, start and settle");
        return;
      }
      struct need *nd = &n->need[n->ni];
      const fy_descriptor *l = &n->v.m.layers[nd->layer];
      fy_store_path(&n->push->layout.store, &l->digest, path, sizeof path);
      n->fd = open(path, O_RDONLY | O_CLOEXEC);
      if (n->fd < 0 || lseek(n->fd, (off_t)nd->offset, SEEK_SET) < 0) {
        char m[4400];
        snprintf(m, sizeof m, "layer %s: %s", path, strerror(errno));
        node_fail(n, FY_ENOENT, m);
        return;
      }
      n->blob_left = nd->size - nd->offset;
      json_t *b = json_pack("{s:s, s:I}", "digest", fy_digest_format(&l->digest, ds), "offset", (json_int_t)nd->offset);
      int rc = fy_conn_send_json(c, FY_FT_BLOB_BEGIN, b);
      json_decref(b);
      if (rc != FY_OK) { node_fail(n, rc, "cannot send blob-begin"); return; }
      node_event(n, "sending %s from byte %llu (%llu bytes)", ds, (unsigned long long)nd->offset, (unsigned long long)n->blob_left);
    }
    if (n->blob_left == 0) {
      close(n->fd);
      n->fd = -1;
      n->ni++;
      n->blobs_sent++;
      continue;
    }
    size_t want = n->blob_left < CHUNK ? (size_t)n->blob_left : CHUNK;
    if (fy_session_send_room(&c->session) < want) return; /* wait for on_writable */
    ssize_t r = read(n->fd, n->buf, want);
    if (r <= 0) { node_fail(n, FY_EIO, "reading a layer from the layout failed (file shorter than its descriptor?)"); return; }
    int rc = fy_conn_send(c, FY_FT_BLOB, n->buf, (size_t)r);
    if (rc != FY_OK) { node_fail(n, rc, "sending blob data failed"); return; }
    n->blob_left -= (uint64_t)r;
    n->bytes_sent += (uint64_t)r;
  }
}

static void on_writable(fy_conn *c) { pump(c->ud); }

static int got_result(struct pnode *n, json_t *j) {
  const char *r = fy_msg_str(j, "result", 20), *m = fy_msg_str(j, "message", FY_MSG_STR_MAX);
  const char *rel = fy_msg_str(j, "release", 79), *tail = fy_msg_str(j, "log_tail", 1 << 16);
  snprintf(n->result, sizeof n->result, "%s", r ? r : "failed");
  if (rel) snprintf(n->release, sizeof n->release, "%s", rel);
  json_t *code = json_object_get(j, "code");
  n->err = json_is_integer(code) ? (int)json_integer_value(code) : FY_EPEER;
  if (strcmp(n->result, "deployed") != 0) {
    json_t *ec = json_object_get(j, "exit_code");
    if (json_is_integer(ec))
      snprintf(n->msg, sizeof n->msg, "%s (exit code %lld)", m ? m : "", (long long)json_integer_value(ec));
    else
      snprintf(n->msg, sizeof n->msg, "%s", m ? m : "");
    if (tail) n->log_tail = strdup(tail);
  }
  node_event(n, "%s%s%s", n->result, n->msg[0] ? ": " : "", n->msg);
  n->phase = P_DONE;
  fy_conn_close(&n->conn, FY_OK, NULL);
  return FY_ECANCELED;
}

static int on_frame(fy_conn *c, const fy_frame *f) {
  struct pnode *n = c->ud;
  json_t *j = NULL;
  char err[300];
  int rc = fy_msg_parse(f, &j, err, sizeof err);
  if (rc != FY_OK) {
    node_fail(n, rc, err);
    return FY_ECANCELED;
  }
  if (n->phase == P_FACTS && f->type == FY_FT_FACTS) rc = got_facts(n, j);
  else if (n->phase == P_PLAN && f->type == FY_FT_REPLY) {
    rc = got_need(n, j);
    if (rc != FY_OK) node_fail(n, rc, "malformed need list from the agent");
    else pump(n);
    rc = rc == FY_OK ? FY_OK : FY_ECANCELED;
  } else if ((n->phase == P_COMMIT || n->phase == P_SEND) && f->type == FY_FT_RESULT) rc = got_result(n, j);
  else {
    snprintf(err, sizeof err, "unexpected %s message", fy_frame_type_name(f->type));
    node_fail(n, FY_EPROTO, err);
    rc = FY_ECANCELED;
  }
  json_decref(j);
  return rc;
}

static void on_done(fy_conn *c, int err, const char *msg) {
  struct pnode *n = c->ud;
  if (n->fd >= 0) close(n->fd);
  n->fd = -1;
  if (n->phase != P_DONE) {
    n->phase = P_DONE;
    if (!n->result[0] || strcmp(n->result, "deployed") == 0) snprintf(n->result, sizeof n->result, "failed");
    if (!n->msg[0]) snprintf(n->msg, sizeof n->msg, "%s", msg ? msg : fy_strerror(err ? err : FY_ECONN));
    if (!n->err) n->err = err ? err : FY_ECONN;
    if (!n->name[0] && c->target.name[0]) snprintf(n->name, sizeof n->name, "%s", c->target.name);
    node_event(n, "failed: %s", n->msg);
  }
  int all = 1;
  for (size_t i = 0; i < n->push->n; i++) all &= n->push->nodes[i].phase == P_DONE;
  if (all) uv_close((uv_handle_t *)&n->push->progress, NULL);
}

static const fy_conn_ops push_ops = {.on_ready = on_ready, .on_frame = on_frame, .on_writable = on_writable, .on_done = on_done};

static void draw(struct push *p, int final) {
  uint64_t now = uv_now(p->loop);
  double secs = (double)(now - p->started) / 1000.0;
  if (p->lines_drawn) fprintf(stderr, "\x1b[%dA", p->lines_drawn);
  for (size_t i = 0; i < p->n; i++) {
    struct pnode *n = &p->nodes[i];
    char a[32], b[32], rate[32];
    static const char *const phase[] = {"connecting", "hello", "planning", "sending", "activating", "done"};
    double r = secs > 0 ? (double)n->bytes_sent / secs : 0;
    fy_human_bytes((uint64_t)r, rate, sizeof rate);
    const char *st = n->phase == P_DONE ? n->result : phase[n->phase];
    if (n->phase == P_SEND && r > 0) {
      uint64_t left = n->total_to_send > n->bytes_sent ? n->total_to_send - n->bytes_sent : 0;
      fprintf(stderr, "\x1b[2K%-18s %-11s %10s / %-10s %10s/s  ETA %.0fs\n", n->name[0] ? n->name : n->conn.target.address, st,
              fy_human_bytes(n->bytes_sent, a, sizeof a), fy_human_bytes(n->total_to_send, b, sizeof b), rate, (double)left / r);
    } else {
      fprintf(stderr, "\x1b[2K%-18s %-11s %10s / %-10s\n", n->name[0] ? n->name : n->conn.target.address, st,
              fy_human_bytes(n->bytes_sent, a, sizeof a), fy_human_bytes(n->total_to_send, b, sizeof b));
    }
  }
  p->lines_drawn = final ? 0 : (int)p->n;
}

static void on_progress(uv_timer_t *t) { draw(t->data, 0); }

static void push_usage(FILE *f) {
  fprintf(f, "usage: ferry push LAYOUT[:REF] --to HOST:PORT [--to ...] [--app NAME] [--identity DIR] [--json]\n"
             "                  [--settle SECONDS] [--health-cmd CMD] [--health-port PORT] [--timeout SECONDS]\n"
             "Sends each node the image variant for its platform; only the layers it lacks travel.\n"
             "The node keeps running its previous release unless the new one stays up for --settle\n"
             "seconds (default 3) and passes the health check. Exit status 0 only when every node\n"
             "deployed.\n");
}

static void sanitize_app(const char *in, char *out, size_t len) {
  size_t o = 0;
  for (size_t i = 0; in[i] && o + 1 < len && o < 63; i++) {
    char c = in[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) c = '-';
    if (o == 0 && (c == '-' || c == '.' || c == '_')) continue;
    out[o++] = c;
  }
  out[o] = '\0';
}

int fy_cmd_push(int argc, char **argv) {
  static const struct option opts[] = {
      {"to", required_argument, 0, 't'},         {"identity", required_argument, 0, 'i'},
      {"json", no_argument, 0, 'j'},             {"app", required_argument, 0, 'a'},
      {"settle", required_argument, 0, 's'},     {"health-cmd", required_argument, 0, 'H'},
      {"health-port", required_argument, 0, 'P'}, {"timeout", required_argument, 0, 'T'},
      {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 300000};
  struct push p;
  fy_tls_conf *tls = NULL;
  char app[64] = "", err[1024];
  int c, ret = 2;
  memset(&p, 0, sizeof p);
  p.settle_ms = 3000;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 't': if (fy_cli_add_target(&cc, optarg) != FY_OK) goto cleanup; break;
    case 'i': cc.identity = optarg; break;
    case 'j': cc.json = 1; break;
    case 'a': snprintf(app, sizeof app, "%s", optarg); break;
    case 's': {
      char *end;
      double s = strtod(optarg, &end);
      if (*end || s < 0 || s > 600) { fy_cli_err("--settle: seconds from 0 to 600"); goto cleanup; }
      p.settle_ms = (uint64_t)(s * 1000);
      p.settle_set = 1;
      break;
    }
    case 'H': p.health_cmd = optarg; break;
    case 'P': {
      long v;
      if (fy_parse_long(optarg, 1, 65535, &v) != FY_OK) { fy_cli_err("--health-port: 1-65535"); goto cleanup; }
      p.health_port = (int)v;
      break;
    }
    case 'T': cc.timeout_ms = (uint64_t)(strtod(optarg, NULL) * 1000); if (cc.timeout_ms == 0) { fy_cli_err("--timeout: seconds"); goto cleanup; } break;
    case 'h': push_usage(stdout); ret = 0; goto cleanup;
    default: push_usage(stderr); goto cleanup;
    }
  }
  if (argc - optind != 1 || cc.ntargets == 0) {
    fy_cli_err(argc - optind != 1 ? "push needs one LAYOUT[:REF]" : "push needs at least one --to HOST:PORT");
    push_usage(stderr);
    goto cleanup;
  }
  if (fy_layout_open(&p.layout, argv[optind], err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    ret = 1;
    goto cleanup;
  }
  if (!app[0]) {
    char *copy = strdup(p.layout.dir);
    /* The image's title (ferry build writes the recipe name), else the tag, else the folder. */
    const char *t = p.layout.has_top_desc && p.layout.top_desc.title[0] ? p.layout.top_desc.title : NULL;
    sanitize_app(t ? t : p.layout.ref[0] ? p.layout.ref : basename(copy), app, sizeof app);
    free(copy);
  }
  if (!app[0]) { fy_cli_err("cannot derive an app name; use --app NAME"); goto cleanup; }
  p.app = app;
  if (fy_cli_load_identity(cc.identity, &tls) != FY_OK) { ret = 1; goto cleanup; }
  p.json = cc.json;
  p.tty = !cc.json && isatty(2);
  p.n = cc.ntargets;
  p.nodes = calloc(p.n, sizeof *p.nodes);
  if (!p.nodes) { ret = 1; goto cleanup; }
  uv_loop_t loop;
  uv_loop_init(&loop);
  p.loop = &loop;
  p.started = uv_now(&loop);
  uv_timer_init(&loop, &p.progress);
  p.progress.data = &p;
  if (p.tty) uv_timer_start(&p.progress, on_progress, 200, 200);
  for (size_t i = 0; i < p.n; i++) {
    p.nodes[i].push = &p;
    p.nodes[i].fd = -1;
    p.nodes[i].buf = malloc(CHUNK);
    if (!p.nodes[i].buf) { ret = 1; goto cleanup; }
    fy_conn_start(&p.nodes[i].conn, &loop, &cc.targets[i], tls, &push_ops, &p.nodes[i], cc.timeout_ms);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (p.tty) draw(&p, 1);

  ret = 0;
  json_t *arr = json_array();
  for (size_t i = 0; i < p.n; i++) {
    struct pnode *n = &p.nodes[i];
    int ok = strcmp(n->result, "deployed") == 0;
    if (!ok) ret = 1;
    json_t *o = json_pack("{s:s, s:s, s:s?, s:s, s:I, s:I, s:I}", "name", n->name[0] ? n->name : n->conn.target.address,
                          "address", n->conn.target.address, "platform", n->platform[0] ? n->platform : NULL,
                          "result", n->result, "bytes_sent", (json_int_t)n->bytes_sent, "blobs_sent", (json_int_t)n->blobs_sent,
                          "blobs_skipped", (json_int_t)n->blobs_skipped);
    json_object_set_new(o, "error", ok ? json_null() : json_string(n->msg));
    json_object_set_new(o, "code", json_string(fy_err_name(ok ? FY_OK : n->err)));
    json_object_set_new(o, "app", json_string(app));
    json_object_set_new(o, "release", n->release[0] ? json_string(n->release) : json_null());
    if (n->log_tail) json_object_set_new(o, "log_tail", json_string(n->log_tail));
    json_array_append_new(arr, o);
  }
  if (cc.json) {
    fy_cli_print_nodes(arr);
  } else {
    printf("%-18s %-14s %-12s %-26s %12s %6s %8s\n", "NODE", "PLATFORM", "RESULT", "RELEASE", "SENT", "BLOBS", "SKIPPED");
    for (size_t i = 0; i < p.n; i++) {
      struct pnode *n = &p.nodes[i];
      char b[32];
      printf("%-18s %-14s %-12s %-26s %12s %6d %8d\n", n->name[0] ? n->name : n->conn.target.address,
             n->platform[0] ? n->platform : "-", n->result, n->release[0] ? n->release : "-",
             fy_human_bytes(n->bytes_sent, b, sizeof b), n->blobs_sent, n->blobs_skipped);
    }
    for (size_t i = 0; i < p.n; i++) {
      struct pnode *n = &p.nodes[i];
      if (strcmp(n->result, "deployed") == 0) continue;
      fy_cli_err("%s: %s: %s", n->name[0] ? n->name : n->conn.target.address, n->result, n->msg);
      if (n->log_tail && n->log_tail[0]) fprintf(stderr, "--- last log lines on %s:\n%s\n", n->name, n->log_tail);
    }
    json_decref(arr);
  }
cleanup:
  for (size_t i = 0; p.nodes && i < p.n; i++) {
    free(p.nodes[i].buf);
    free(p.nodes[i].need);
    free(p.nodes[i].log_tail);
    if (p.nodes[i].have_variant) fy_variant_free(&p.nodes[i].v);
  }
  free(p.nodes);
  fy_layout_close(&p.layout);
  fy_tls_conf_free(tls);
  fy_cli_common_free(&cc);
  return ret;
}
