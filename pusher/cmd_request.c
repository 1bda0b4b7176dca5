/* ferry logs / ferry rollback: one request per node after the hello, one answer back. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "conn.h"
#include "ferry/yaml.h"

struct rnode {
  fy_conn conn;
  const char *op, *app;
  int tail;
  json_t *answer;
  int err;
  char msg[600];
};

static void r_ready(fy_conn *c) {
  struct rnode *n = c->ud;
  json_t *h = fy_msg_hello("ferry " FY_VERSION_STRING, n->op, n->app);
  int rc = h ? fy_conn_send_json(c, FY_FT_HELLO, h) : FY_ENOMEM;
  json_decref(h);
  if (rc != FY_OK) fy_conn_close(c, rc, "cannot send hello");
}

static int r_frame(fy_conn *c, const fy_frame *f) {
  struct rnode *n = c->ud;
  json_t *j;
  char err[300];
  if (fy_msg_parse(f, &j, err, sizeof err) != FY_OK) {
    fy_conn_close(c, FY_EPROTO, err);
    return FY_ECANCELED;
  }
  if (f->type == FY_FT_FACTS) {
    json_decref(j);
    json_t *r = json_pack("{s:s, s:s, s:i}", "op", n->op, "app", n->app, "tail", n->tail);
    int rc = fy_conn_send_json(c, FY_FT_REQUEST, r);
    json_decref(r);
    if (rc != FY_OK) fy_conn_close(c, rc, "cannot send the request");
    return FY_OK;
  }
  n->answer = j;
  fy_conn_close(c, FY_OK, NULL);
  return FY_ECANCELED;
}

static void r_done(fy_conn *c, int err, const char *msg) {
  struct rnode *n = c->ud;
  if (!n->answer) {
    n->err = err ? err : FY_ECONN;
    snprintf(n->msg, sizeof n->msg, "%s", msg ? msg : fy_strerror(n->err));
  }
}

static const fy_conn_ops r_ops = {.on_ready = r_ready, .on_frame = r_frame, .on_done = r_done};

static int run_request(const char *verb, const char *op, int argc, char **argv) {
  static const struct option opts[] = {
      {"to", required_argument, 0, 't'}, {"identity", required_argument, 0, 'i'}, {"app", required_argument, 0, 'a'},
      {"tail", required_argument, 0, 'n'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 60000};
  const char *app = NULL;
  int tail = 100, c, ret = 2;
  fy_tls_conf *tls = NULL;
  struct rnode *nodes = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 't': if (fy_cli_add_target(&cc, optarg) != FY_OK) goto cleanup; break;
    case 'i': cc.identity = optarg; break;
    case 'a': app = optarg; break;
    case 'n': {
      long v;
      if (fy_parse_long(optarg, 1, 100000, &v) != FY_OK) { fy_cli_err("--tail: a number of lines from 1 to 100000"); goto cleanup; }
      tail = (int)v;
      break;
    }
    case 'j': cc.json = 1; break;
    case 'h':
      printf("usage: ferry %s --to HOST:PORT [--to ...] --app NAME%s [--identity DIR] [--json]\n", verb,
             strcmp(op, "logs") == 0 ? " [--tail N]" : "");
      ret = 0;
      goto cleanup;
    default: goto cleanup;
    }
  }
  if (!app || cc.ntargets == 0 || optind != argc) {
    fy_cli_err("usage: ferry %s --to HOST:PORT --app NAME", verb);
    goto cleanup;
  }
  if (fy_cli_load_identity(cc.identity, &tls) != FY_OK) { ret = 1; goto cleanup; }
  nodes = calloc(cc.ntargets, sizeof *nodes);
  if (!nodes) { ret = 1; goto cleanup; }
  uv_loop_t loop;
  uv_loop_init(&loop);
  for (size_t i = 0; i < cc.ntargets; i++) {
    nodes[i].op = op;
    nodes[i].app = app;
    nodes[i].tail = tail;
    fy_conn_start(&nodes[i].conn, &loop, &cc.targets[i], tls, &r_ops, &nodes[i], cc.timeout_ms);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  ret = 0;
  json_t *arr = json_array();
  for (size_t i = 0; i < cc.ntargets; i++) {
    struct rnode *n = &nodes[i];
    const char *addr = n->conn.target.address;
    int ok = n->answer != NULL;
    if (ok && strcmp(op, "rollback") == 0) {
      const char *r = fy_msg_str(n->answer, "result", 20);
      ok = r && strcmp(r, "rolled-back") == 0;
      if (!ok) snprintf(n->msg, sizeof n->msg, "%s", fy_msg_str(n->answer, "message", 500) ? fy_msg_str(n->answer, "message", 500) : "failed");
    }
    if (!ok) ret = 1;
    if (cc.json) {
      json_t *o = n->answer ? json_deep_copy(n->answer) : json_object();
      json_object_set_new(o, "address", json_string(addr));
      json_object_set_new(o, "error", ok ? json_null() : json_string(n->msg));
      json_array_append_new(arr, o);
      continue;
    }
    if (!ok) {
      fy_cli_err("%s: %s", addr, n->msg);
      continue;
    }
    if (strcmp(op, "logs") == 0) {
      const char *log = fy_msg_str(n->answer, "log", 1 << 20);
      if (cc.ntargets > 1) printf("==> %s (%s) <==\n", addr, app);
      fputs(log ? log : "", stdout);
    } else {
      printf("%s: %s rolled back to %s (previous: %s)\n", addr, app, fy_msg_str(n->answer, "release", 100),
             fy_msg_str(n->answer, "previous", 100) ? fy_msg_str(n->answer, "previous", 100) : "-");
    }
  }
  if (cc.json) {
    fy_cli_print_nodes(arr);
  } else {
    json_decref(arr);
  }
cleanup:
  for (size_t i = 0; nodes && i < cc.ntargets; i++) json_decref(nodes[i].answer);
  free(nodes);
  fy_tls_conf_free(tls);
  fy_cli_common_free(&cc);
  return ret;
}

int fy_cmd_logs(int argc, char **argv) { return run_request("logs", "logs", argc, argv); }
int fy_cmd_rollback(int argc, char **argv) { return run_request("rollback", "rollback", argc, argv); }
