/* ferry status: every target at once on one loop; one unreachable node never hides the rest. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "conn.h"
#include "ferry/platform.h"

struct node {
  fy_conn conn;
  json_t *facts;   /* owned; NULL until the agent answered */
  char peer[FY_TLS_NAME_MAX];
  int err;
  char msg[512];
  int done;
};

static void on_ready(fy_conn *c) {
  json_t *hello = fy_msg_hello("ferry " FY_VERSION_STRING, "status", NULL);
  int rc = hello ? fy_conn_send_json(c, FY_FT_HELLO, hello) : FY_ENOMEM;
  json_decref(hello);
  if (rc != FY_OK) fy_conn_close(c, rc, "cannot send hello");
}

/* Checks the fields a report needs; a malformed answer is the agent's error, not ours. */
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
  struct node *n = c->ud;
  char err[256];
  if (f->type != FY_FT_FACTS) {
    snprintf(err, sizeof err, "unexpected %s message", fy_frame_type_name(f->type));
    fy_conn_close(c, FY_EPROTO, err);
    return FY_ECANCELED;
  }
  json_t *j;
  int rc = fy_msg_parse(f, &j, err, sizeof err);
  if (rc == FY_OK && (rc = check_facts(j, err, sizeof err)) != FY_OK) json_decref(j);
  if (rc != FY_OK) {
    fy_conn_close(c, rc, err);
    return FY_ECANCELED;
  }
  n->facts = j;
  snprintf(n->peer, sizeof n->peer, "%s", fy_tls_peer_name(c->session.tls));
  fy_conn_close(c, FY_OK, NULL);
  return FY_ECANCELED;
}

static void on_done(fy_conn *c, int err, const char *msg) {
  struct node *n = c->ud;
  n->done = 1;
  n->err = n->facts ? FY_OK : (err ? err : FY_EPROTO);
  if (!n->facts) snprintf(n->msg, sizeof n->msg, "%s", msg ? msg : fy_strerror(n->err));
}

static const fy_conn_ops status_ops = {.on_ready = on_ready, .on_frame = on_frame, .on_done = on_done};

static json_t *node_json(const struct node *n) {
  const fy_target *t = &n->conn.target;
  json_t *o = json_object();
  if (n->facts) {
    json_object_set_new(o, "name", json_string(n->peer[0] ? n->peer : json_string_value(json_object_get(n->facts, "name"))));
    json_object_set_new(o, "address", json_string(t->address));
    static const char *const copy[] = {"platform", "accepts", "labels", "board", "agent_version",
                                       "free_bytes", "uptime_s", "apps", NULL};
    for (int i = 0; copy[i]; i++) {
      json_t *v = json_object_get(n->facts, copy[i]);
      json_object_set(o, copy[i], v ? v : json_null());
    }
    json_object_set_new(o, "error", json_null());
  } else {
    json_object_set_new(o, "name", t->name[0] ? json_string(t->name) : json_null());
    json_object_set_new(o, "address", json_string(t->address));
    json_object_set_new(o, "platform", json_null());
    json_object_set_new(o, "error", json_string(n->msg));
    json_object_set_new(o, "code", json_string(fy_err_name(n->err)));
  }
  return o;
}

static void print_table(struct node *nodes, size_t count) {
  printf("%-18s %-22s %-14s %-14s %-8s %-10s %-8s %s\n", "NODE", "ADDRESS", "PLATFORM", "BOARD",
         "AGENT", "FREE", "UPTIME", "LABELS");
  for (size_t i = 0; i < count; i++) {
    struct node *n = &nodes[i];
    const fy_target *t = &n->conn.target;
    if (!n->facts) {
      printf("%-18s %-22s %-14s error: %s\n", t->name[0] ? t->name : "-", t->address, "-", n->msg);
      continue;
    }
    char freeb[32], up[32], labels[1024] = "";
    const char *key;
    json_t *v;
    size_t off = 0;
    json_object_foreach(json_object_get(n->facts, "labels"), key, v) {
      if (!json_is_string(v)) continue;
      int w = snprintf(labels + off, sizeof labels - off, "%s%s=%s", off ? "," : "", key, json_string_value(v));
      if (w < 0 || (size_t)w >= sizeof labels - off) break;
      off += (size_t)w;
    }
    const char *board = fy_msg_str(n->facts, "board", 64);
    const char *ver = fy_msg_str(n->facts, "agent_version", 32);
    printf("%-18s %-22s %-14s %-14s %-8s %-10s %-8s %s\n", n->peer, t->address,
           fy_msg_str(n->facts, "platform", 64), board ? board : "-", ver ? ver : "-",
           fy_human_bytes((uint64_t)json_integer_value(json_object_get(n->facts, "free_bytes")), freeb, sizeof freeb),
           fy_human_duration((uint64_t)json_integer_value(json_object_get(n->facts, "uptime_s")), up, sizeof up),
           labels);
    json_t *apps = json_object_get(n->facts, "apps");
    size_t ai;
    json_t *app;
    json_array_foreach(apps, ai, app) {
      const char *an = fy_msg_str(app, "name", 128), *rel = fy_msg_str(app, "release", 128),
                 *st = fy_msg_str(app, "state", 32), *prev = fy_msg_str(app, "previous", 128);
      printf("  app %-14s release %-20s previous %-20s %-8s restarts %lld\n", an ? an : "?",
             rel ? rel : "-", prev ? prev : "-", st ? st : "?",
             (long long)json_integer_value(json_object_get(app, "restarts")));
    }
  }
}

static void status_usage(FILE *f) {
  fprintf(f, "usage: ferry status --to HOST:PORT [--to ...] [--identity DIR] [--json] [--timeout SECONDS]\n"
             "Asks each node for its facts: platform, labels, board, free space, apps.\n"
             "Exit status 0 only when every node answered.\n");
}

int fy_cmd_status(int argc, char **argv) {
  static const struct option opts[] = {
      {"to", required_argument, 0, 't'},   {"identity", required_argument, 0, 'i'},
      {"json", no_argument, 0, 'j'},       {"timeout", required_argument, 0, 'T'},
      {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 10000};
  fy_tls_conf *tls = NULL;
  struct node *nodes = NULL;
  int c, ret = 2;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 't': if (fy_cli_add_target(&cc, optarg) != FY_OK) goto cleanup; break;
    case 'i': cc.identity = optarg; break;
    case 'j': cc.json = 1; break;
    case 'T': {
      char *end;
      double s = strtod(optarg, &end);
      if (*end || s <= 0 || s > 3600) { fy_cli_err("--timeout: expected seconds (0-3600)"); goto cleanup; }
      cc.timeout_ms = (uint64_t)(s * 1000);
      break;
    }
    case 'h': status_usage(stdout); ret = 0; goto cleanup;
    default: status_usage(stderr); goto cleanup;
    }
  }
  if (optind != argc || cc.ntargets == 0) {
    fy_cli_err(cc.ntargets == 0 ? "status needs at least one --to HOST:PORT" : "unexpected argument '%s'",
               argv[optind < argc ? optind : 0]);
    goto cleanup;
  }
  if (fy_cli_load_identity(cc.identity, &tls) != FY_OK) { ret = 1; goto cleanup; }
  nodes = calloc(cc.ntargets, sizeof *nodes);
  if (!nodes) { ret = 1; goto cleanup; }
  uv_loop_t loop;
  uv_loop_init(&loop);
  for (size_t i = 0; i < cc.ntargets; i++)
    fy_conn_start(&nodes[i].conn, &loop, &cc.targets[i], tls, &status_ops, &nodes[i], cc.timeout_ms);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  ret = 0;
  for (size_t i = 0; i < cc.ntargets; i++) if (nodes[i].err) ret = 1;
  if (cc.json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < cc.ntargets; i++) json_array_append_new(arr, node_json(&nodes[i]));
    fy_cli_print_nodes(arr);
  } else {
    print_table(nodes, cc.ntargets);
  }
  for (size_t i = 0; i < cc.ntargets; i++) {
    if (nodes[i].err && !cc.json) fy_cli_err("%s: %s", nodes[i].conn.target.address, nodes[i].msg);
    json_decref(nodes[i].facts);
  }
cleanup:
  free(nodes);
  fy_tls_conf_free(tls);
  fy_cli_common_free(&cc);
  return ret;
}
