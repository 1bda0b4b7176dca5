/* ferry status: every target at once on one loop; one unreachable node never hides the rest.
 * With --fleet the table reads like `kubectl get nodes -L kubernetes.io/arch`: a row per node
 * and app. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "ask.h"
#include "brokerc.h"
#include "ferry/sign.h"
#include "cli.h"
#include "ferry/platform.h"

struct status {
  fy_cli_common *cc;
  const char *columns[16]; /* -L label columns */
  size_t ncolumns;
};

static int selected(fy_ask_batch *b, fy_ask *a) {
  struct status *s = b->ud;
  json_t *labels = fy_cli_node_labels(s->cc, a->index, a->facts);
  int ok = fy_selector_match(&s->cc->selector, labels);
  json_decref(labels);
  return ok;
}

static json_t *node_json(const struct status *s, const fy_ask *a) {
  const fy_target *t = &a->conn.target;
  json_t *o = json_object();
  json_object_set_new(o, "name", a->facts || t->name[0] ? json_string(fy_ask_name(a)) : json_null());
  json_object_set_new(o, "address", json_string(t->address));
  if (a->facts) {
    static const char *const copy[] = {"platform", "accepts", "board", "agent_version", "agent_digest", "free_bytes", "uptime_s", "recovering", "apps", NULL};
    for (int i = 0; copy[i]; i++) {
      json_t *v = json_object_get(a->facts, copy[i]);
      json_object_set(o, copy[i], v ? v : json_null());
    }
    json_object_set_new(o, "labels", fy_cli_node_labels(s->cc, a->index, a->facts));
    json_object_set_new(o, "tls", json_string(a->tls));
    json_object_set_new(o, "error", json_null());
  } else {
    json_object_set_new(o, "platform", json_null());
    json_object_set_new(o, "error", json_string(a->msg));
    json_object_set_new(o, "code", json_string(fy_err_name(a->err)));
  }
  return o;
}

static void labels_text(const json_t *labels, char *buf, size_t len) {
  const char *key;
  json_t *v;
  size_t off = 0;
  buf[0] = '\0';
  json_object_foreach((json_t *)labels, key, v) {
    if (!json_is_string(v)) continue;
    int w = snprintf(buf + off, len - off, "%s%s=%s", off ? "," : "", key, json_string_value(v));
    if (w < 0 || (size_t)w >= len - off) break;
    off += (size_t)w;
  }
}

/* The per-node view: address, agent, free space, uptime, labels, then each app. */
static void print_nodes(const struct status *s, const fy_ask *asks, size_t count) {
  printf("%-18s %-22s %-14s %-14s %-8s %-10s %-8s %s\n", "NODE", "ADDRESS", "PLATFORM", "BOARD", "AGENT", "FREE", "UPTIME", "LABELS");
  for (size_t i = 0; i < count; i++) {
    const fy_ask *a = &asks[i];
    const fy_target *t = &a->conn.target;
    if (a->skipped) continue;
    if (!a->facts) {
      fy_cli_print(stdout, "%-18s %-22s %-14s error: %s\n", t->name[0] ? t->name : "-", t->address, "-", a->msg);
      continue;
    }
    char freeb[32], up[32], labels[1024];
    json_t *lj = fy_cli_node_labels(s->cc, i, a->facts);
    labels_text(lj, labels, sizeof labels);
    json_decref(lj);
    const char *board = fy_msg_str(a->facts, "board", 64), *ver = fy_msg_str(a->facts, "agent_version", 32);
    fy_cli_print(stdout, "%-18s %-22s %-14s %-14s %-8s %-10s %-8s %s\n", a->peer, t->address, fy_msg_str(a->facts, "platform", 64),
           board ? board : "-", ver ? ver : "-",
           fy_human_bytes((uint64_t)json_integer_value(json_object_get(a->facts, "free_bytes")), freeb, sizeof freeb),
           fy_human_duration((uint64_t)json_integer_value(json_object_get(a->facts, "uptime_s")), up, sizeof up), labels);
    size_t ai;
    json_t *app;
    json_array_foreach(json_object_get(a->facts, "apps"), ai, app) {
      const char *an = fy_msg_str(app, "name", 128), *rel = fy_msg_str(app, "release", 128),
                 *st = fy_msg_str(app, "state", 32), *prev = fy_msg_str(app, "previous", 128);
      fy_cli_print(stdout, "  app %-14s release %-20s previous %-20s %-8s restarts %lld\n", an ? an : "?", rel ? rel : "-",
             prev ? prev : "-", st ? st : "?", (long long)json_integer_value(json_object_get(app, "restarts")));
      const char *reason = fy_msg_str(app, "reason", 160);
      if (reason) fy_cli_print(stdout, "      last exit: killed, %s\n", reason);
      const json_t *lim = json_object_get(app, "limits");
      if (json_is_object(lim)) {
        char mem[32] = "";
        json_int_t m = json_integer_value(json_object_get(lim, "memory")), c = json_integer_value(json_object_get(lim, "cpu_milli")),
                   p = json_integer_value(json_object_get(lim, "pids"));
        if (m > 0) fy_human_bytes((uint64_t)m, mem, sizeof mem);
        const char *why = fy_msg_str(lim, "not_enforced", 300);
        printf("      limits:");
        if (m > 0) printf(" memory %s", mem);
        if (c > 0) printf(" cpus %lld.%03lld", (long long)(c / 1000), (long long)(c % 1000));
        if (p > 0) printf(" pids %lld", (long long)p);
        fy_cli_print(stdout, "%s%s\n", why ? ", not enforced: " : " (enforced)", why ? why : "");
      }
      const json_t *vols = json_object_get(app, "volumes");
      if (json_array_size(vols)) {
        size_t vi;
        const json_t *vol;
        printf("      volumes:");
        json_array_foreach(vols, vi, vol) {
          const char *vn = fy_msg_str(vol, "name", 64);
          json_int_t b = json_integer_value(json_object_get(vol, "bytes"));
          char hb[32];
          fy_cli_print(stdout, " %s=%s", vn ? vn : "?", fy_human_bytes(b > 0 ? (uint64_t)b : 0, hb, sizeof hb));
        }
        printf("\n");
      }
    }
  }
}

/* The fleet view: NODE ARCH BOARD APP RELEASE STATE AGE [-L columns], a row per node and app. */
static void print_fleet(const struct status *s, const fy_ask *asks, size_t count) {
  printf("%-20s %-8s %-14s %-14s %-28s %-9s %-7s", "NODE", "ARCH", "BOARD", "APP", "RELEASE", "STATE", "AGE");
  for (size_t c = 0; c < s->ncolumns; c++) {
    const char *slash = strrchr(s->columns[c], '/');
    char up[64];
    snprintf(up, sizeof up, "%s", slash ? slash + 1 : s->columns[c]);
    for (char *p = up; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    printf(" %-12s", up);
  }
  putchar('\n');
  for (size_t i = 0; i < count; i++) {
    const fy_ask *a = &asks[i];
    if (a->skipped) continue;
    if (!a->facts) {
      printf("%-20s %-8s %-14s %-14s %-28s %-9s %-7s\n", fy_ask_name(a), "?", "?", "-", "-", "Unreachable", "-");
      continue;
    }
    json_t *labels = fy_cli_node_labels(s->cc, i, a->facts);
    const char *arch = fy_msg_str(labels, "kubernetes.io/arch", 32), *board = fy_msg_str(a->facts, "board", 64);
    json_t *apps = json_object_get(a->facts, "apps"), *app;
    size_t napps = json_array_size(apps), ai;
    for (ai = 0; ai < (napps ? napps : 1); ai++) {
      app = json_array_get(apps, ai);
      const char *an = app ? fy_msg_str(app, "name", 128) : NULL, *rel = app ? fy_msg_str(app, "release", 128) : NULL,
                 *st = app ? fy_msg_str(app, "state", 32) : NULL;
      json_t *age = json_object_get(app, "age_s");
      char ages[32];
      if (json_is_integer(age)) fy_human_duration((uint64_t)json_integer_value(age), ages, sizeof ages);
      else snprintf(ages, sizeof ages, "-");
      fy_cli_print(stdout, "%-20s %-8s %-14s %-14s %-28s %-9s %-7s", fy_ask_name(a), arch ? arch : "-", board ? board : "-",
             an ? an : "<none>", rel ? rel : "-", st ? st : "-", ages);
      for (size_t c = 0; c < s->ncolumns; c++) {
        const char *v = fy_msg_str(labels, s->columns[c], 64);
        fy_cli_print(stdout, " %-12s", v ? v : "");
      }
      putchar('\n');
    }
    json_decref(labels);
  }
}

/* ONLINE, LAST SEEN 3d ago, NEVER SEEN, UNVERIFIED; *t the status's time (0 when none). */
static void node_state(const fy_broker_node *nd, int64_t now, char *state, size_t len, json_int_t *t) {
  const json_t *st = nd->status;
  char ago[32];
  *t = json_integer_value(json_object_get(st, "time"));
  if (!*t) *t = json_integer_value(json_object_get(st, "since"));
  if (!nd->seen) snprintf(state, len, "NEVER SEEN");
  else if (!nd->verified) snprintf(state, len, "UNVERIFIED");
  else if (json_is_true(json_object_get(st, "online"))) snprintf(state, len, "ONLINE");
  else snprintf(state, len, "LAST SEEN %s ago", *t > 0 && now >= *t ? fy_human_duration((uint64_t)(now - *t), ago, sizeof ago) : "?");
}

/* The node's apps as its status lists them, and those its desired state names that it does not
 * run (yet), each with its convergence when a desired state names it. */
static json_t *node_apps(const fy_broker_node *nd, int64_t now) {
  json_t *out = json_array();
  const json_t *apps = json_object_get(nd->status, "apps"), *v;
  const char *name;
  size_t i;
  json_array_foreach(apps, i, v) {
    json_t *o = json_deep_copy(v);
    const char *cv = fy_broker_convergence(nd, fy_msg_str(v, "name", 128) ? fy_msg_str(v, "name", 128) : "", now);
    if (o && cv) json_object_set_new(o, "convergence", json_string(cv));
    json_array_append_new(out, o);
  }
  json_object_foreach(json_object_get(nd->desired, "apps"), name, v) {
    int listed = 0;
    json_array_foreach(apps, i, v) listed |= fy_msg_str(v, "name", 128) && strcmp(fy_msg_str(v, "name", 128), name) == 0;
    if (!listed) json_array_append_new(out, json_pack("{s:s, s:s}", "name", name, "convergence", fy_broker_convergence(nd, name, now)));
  }
  return out;
}

/* --watch: a line per status as it comes (a node going, coming back, its apps changing). */
static volatile int watch_stop;
static void on_watch_signal(int sig) {
  (void)sig;
  watch_stop = 1;
}
static void watch_line(void *ud, const fy_broker_node *nd) {
  (void)ud;
  char state[64], when[16];
  json_int_t t;
  time_t now = time(NULL);
  struct tm tm;
  node_state(nd, (int64_t)now, state, sizeof state, &t);
  strftime(when, sizeof when, "%H:%M:%S", localtime_r(&now, &tm));
  json_t *apps = node_apps(nd, (int64_t)now);
  size_t napps = json_array_size(apps);
  fy_cli_print(stdout, "%s %-20s %-22s", when, nd->name, state);
  for (size_t i = 0; i < napps; i++) {
    const json_t *app = json_array_get(apps, i);
    const char *an = fy_msg_str(app, "name", 128), *rel = fy_msg_str(app, "release", 128), *ast = fy_msg_str(app, "state", 32);
    const char *cv = fy_msg_str(app, "convergence", 32);
    fy_cli_print(stdout, " %s=%s(%s%s%s)", an ? an : "?", rel ? rel : "-", ast ? ast : "-", cv ? ", " : "", cv ? cv : "");
  }
  json_decref(apps);
  if (nd->seen && !nd->verified) fy_cli_print(stdout, " %s", nd->why);
  putchar('\n');
  fflush(stdout);
}

/* With broker: in the fleet file, the nodes' signed statuses from the broker: every node at once,
 * online or not, without waiting for any of them. */
static int status_from_broker(struct status *s, int watch) {
  fy_cli_common *cc = s->cc;
  fy_tls_conf *btls = NULL;
  char err[600];
  int ret = 1;
  fy_broker_node *nodes = calloc(cc->ntargets ? cc->ntargets : 1, sizeof *nodes);
  if (!nodes || fy_cli_load_broker_tls(cc->identity, &cc->fleet, &btls) != FY_OK) goto out;
  for (size_t i = 0; i < cc->ntargets; i++) snprintf(nodes[i].name, sizeof nodes[i].name, "%s", cc->targets[i].name);
  if (watch) {
    struct sigaction sa = {.sa_handler = on_watch_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = fy_broker_watch(&cc->fleet, btls, nodes, cc->ntargets, cc->timeout_ms, watch_line, NULL, &watch_stop, err, sizeof err);
    if (rc != FY_OK) fy_cli_err("%s", err);
    ret = rc == FY_OK ? 0 : 1;
    goto out;
  }
  if (fy_broker_read_statuses(&cc->fleet, btls, nodes, cc->ntargets, cc->timeout_ms, 1, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    goto out;
  }
  int64_t now = (int64_t)time(NULL);
  json_t *arr = cc->json ? json_array() : NULL;
  if (!cc->json)
    printf("%-20s %-22s %-8s %-14s %-14s %-28s %-9s %s\n", "NODE", "STATE", "ARCH", "BOARD", "APP", "RELEASE", "APP STATE", "DESIRED");
  ret = 0;
  for (size_t i = 0; i < cc->ntargets; i++) {
    const fy_broker_node *nd = &nodes[i];
    const json_t *st = nd->status;
    /* --selector over the node's labels as its status reports them, the fleet file's over those */
    json_t *sel_labels = fy_cli_node_labels(cc, i, st);
    int keep = fy_selector_match(&cc->selector, sel_labels);
    json_decref(sel_labels);
    if (!keep) continue;
    int online = json_is_true(json_object_get(st, "online"));
    json_int_t t;
    char state[64];
    node_state(nd, now, state, sizeof state, &t);
    if (!nd->verified) ret = 1;
    if (cc->json) {
      json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:b}", "name", nd->name, "via", "broker", "seen", nd->seen, "verified", nd->verified,
                            "online", online);
      if (o && t > 0) {
        char when[40];
        fy_time_format_utc((int64_t)t, when, sizeof when);
        json_object_set_new(o, "last_seen", json_string(when));
      }
      if (o && nd->why[0]) json_object_set_new(o, "error", json_string(nd->why));
      static const char *const copy[] = {"platform", "accepts", "board", "agent_version", "labels", NULL};
      for (size_t k = 0; o && st && copy[k]; k++)
        if (json_object_get(st, copy[k])) json_object_set(o, copy[k], json_object_get(st, copy[k]));
      json_t *apps = node_apps(nd, now);
      if (o) json_object_set_new(o, "apps", apps);
      else json_decref(apps);
      if (o && nd->desired_seq) json_object_set_new(o, "desired_seq", json_integer((json_int_t)nd->desired_seq));
      json_array_append_new(arr, o);
      continue;
    }
    const json_t *labels = json_object_get(st, "labels");
    json_t *apps = node_apps(nd, now);
    const char *arch = fy_msg_str(labels, "kubernetes.io/arch", 32), *board = fy_msg_str(st, "board", 64);
    size_t napps = json_array_size(apps);
    for (size_t ai = 0; ai < (napps ? napps : 1); ai++) {
      const json_t *app = json_array_get(apps, ai);
      const char *an = app ? fy_msg_str(app, "name", 128) : NULL, *rel = app ? fy_msg_str(app, "release", 128) : NULL,
                 *ast = app ? fy_msg_str(app, "state", 32) : NULL, *cv = app ? fy_msg_str(app, "convergence", 32) : NULL;
      fy_cli_print(stdout, "%-20s %-22s %-8s %-14s %-14s %-28s %-9s %s\n", nd->name, state, arch ? arch : "-", board ? board : "-",
                   an ? an : "<none>", rel ? rel : "-", ast ? ast : "-", cv ? cv : "-");
    }
    json_decref(apps);
    if (nd->seen && !nd->verified) fy_cli_err("%s: its status on the broker does not verify: %s", nd->name, nd->why);
  }
  if (cc->json) fy_cli_print_nodes(arr);
out:
  if (nodes) fy_broker_nodes_free(nodes, cc->ntargets);
  free(nodes);
  fy_tls_conf_free(btls);
  return ret;
}

static void status_usage(FILE *f) {
  fprintf(f, "usage: ferry status " FY_CLI_TARGETS_USAGE "\n"
             "                    [-L|--label-columns KEY[,KEY...]] [--watch]\n"
             "Asks each node for its facts: platform, labels, board, free space, apps.\n"
             "With --fleet: a row per node and app (node, arch, board, app, release, state, age);\n"
             "-L adds a column per label, as kubectl does. --selector keeps the matching nodes.\n"
             "A fleet file with broker: is answered from the broker: each node's signed status, ONLINE or\n"
             "LAST SEEN, offline nodes too, without waiting for any node; --watch then prints a line per node\n"
             "whenever its status changes (a node going away, coming back, its apps), until Ctrl-C.\n"
             "Exit status 0 only when every node answered.\n");
}

int fy_cmd_status(int argc, char **argv) {
  static const struct option opts[] = {FY_CLI_COMMON_OPTIONS, {"label-columns", required_argument, 0, 'L'},
                                       {"watch", no_argument, 0, 'W'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int watch = 0;
  fy_cli_common cc = {.timeout_ms = 10000};
  struct status s = {.cc = &cc};
  fy_ask_batch b = {0};
  fy_tls_conf *tls = NULL;
  fy_ask *asks = NULL;
  char *colbuf = NULL;
  int c, ret = 2, r;
  optind = 1;
  while ((c = getopt_long(argc, argv, FY_CLI_COMMON_SHORT "L:", opts, NULL)) != -1) {
    if ((r = fy_cli_common_opt(&cc, c, optarg)) != 0) {
      if (r < 0) goto cleanup;
      continue;
    }
    switch (c) {
    case 'L':
      free(colbuf);
      colbuf = strdup(optarg);
      s.ncolumns = 0;
      for (char *save = NULL, *tok = strtok_r(colbuf, ",", &save); tok && s.ncolumns < 16; tok = strtok_r(NULL, ",", &save))
        s.columns[s.ncolumns++] = tok;
      break;
    case 'W': watch = 1; break;
    case 'h': status_usage(stdout); ret = 0; goto cleanup;
    default: status_usage(stderr); goto cleanup;
    }
  }
  if (optind != argc) {
    fy_cli_err("unexpected argument '%s'", argv[optind]);
    goto cleanup;
  }
  if (fy_cli_common_targets(&cc, "status") != FY_OK) goto cleanup;
  if (cc.have_fleet && cc.fleet.have_broker) {
    ret = status_from_broker(&s, watch);
    goto cleanup;
  }
  if (watch) {
    fy_cli_err("--watch follows the statuses on the fleet's broker: it needs --fleet with broker: in the fleet file");
    goto cleanup;
  }
  if (fy_cli_load_identity(cc.identity, &tls) != FY_OK) { ret = 1; goto cleanup; }
  asks = calloc(cc.ntargets, sizeof *asks);
  if (!asks) { ret = 1; goto cleanup; }
  uv_loop_t loop;
  uv_loop_init(&loop);
  b = (fy_ask_batch){.loop = &loop, .tls = tls, .timeout_ms = cc.timeout_ms, .op = "status", .filter = selected, .ud = &s};
  fy_ask_batch_start(&b, asks, cc.targets, cc.ntargets);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  ret = 0;
  for (size_t i = 0; i < cc.ntargets; i++)
    if (asks[i].err) ret = 1;
  if (cc.json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < cc.ntargets; i++)
      if (!asks[i].skipped) json_array_append_new(arr, node_json(&s, &asks[i]));
    fy_cli_print_nodes(arr);
  } else if (cc.have_fleet) {
    print_fleet(&s, asks, cc.ntargets);
  } else {
    print_nodes(&s, asks, cc.ntargets);
  }
  for (size_t i = 0; i < cc.ntargets; i++)
    if (asks[i].err && !cc.json) fy_cli_err("%s (%s): %s", fy_ask_name(&asks[i]), asks[i].conn.target.address, asks[i].msg);
cleanup:
  fy_ask_batch_free(&b);
  free(asks);
  free(colbuf);
  fy_tls_conf_free(tls);
  fy_cli_common_free(&cc);
  return ret;
}
