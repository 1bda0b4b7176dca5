/* ferry logs / ferry rollback: one request per node after the hello, one answer back. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ask.h"
#include "cli.h"
#include "ferry/yaml.h"
#include "ferry/wire.h"
#include "ferry/text.h"

static int selected(fy_ask_batch *b, fy_ask *a) {
  fy_cli_common *cc = b->ud;
  json_t *labels = fy_cli_node_labels(cc, a->index, a->facts);
  int ok = fy_selector_match(&cc->selector, labels);
  json_decref(labels);
  return ok;
}

/* Long on purpose: logs and rollback share options, the ask batch and one report loop (table,
 * plain text or --json); split, the report would need the batch passed around for no gain. */
static int run_request(const char *op, int argc, char **argv) {
  static const struct option opts[] = {FY_CLI_COMMON_OPTIONS, {"app", required_argument, 0, 'a'},
                                       {"tail", required_argument, 0, 'n'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 60000};
  const char *app = NULL;
  int tail = 100, c, ret = 2, r, is_logs = strcmp(op, "logs") == 0;
  fy_tls_conf *tls = NULL;
  fy_ask *asks = NULL;
  fy_ask_batch b = {0};
  json_t *req = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, FY_CLI_COMMON_SHORT, opts, NULL)) != -1) {
    if ((r = fy_cli_common_opt(&cc, c, optarg)) != 0) {
      if (r < 0) goto cleanup;
      continue;
    }
    switch (c) {
    case 'a': app = optarg; break;
    case 'n': {
      long v;
      if (fy_parse_long(optarg, 1, FY_LOG_TAIL_LINES_MAX, &v) != FY_OK) {
        fy_cli_err("--tail: a number of lines from 1 to %d", FY_LOG_TAIL_LINES_MAX);
        goto cleanup;
      }
      tail = (int)v;
      break;
    }
    case 'h':
      printf("usage: ferry %s --app NAME%s " FY_CLI_TARGETS_USAGE "\n%s", op, is_logs ? " [--tail N]" : "",
             is_logs ? "Shows the last lines of the app's log on each node.\n"
                     : "Switches each node back to the app's previous release and restarts it.\n");
      ret = 0;
      goto cleanup;
    default: goto cleanup;
    }
  }
  if (!app || optind != argc) {
    fy_cli_err(optind != argc ? "unexpected argument '%s'" : "%s needs --app NAME", optind != argc ? argv[optind] : op);
    goto cleanup;
  }
  if (fy_cli_common_targets(&cc, op) != FY_OK) goto cleanup;
  if (fy_cli_load_identity(cc.identity, &tls) != FY_OK) { ret = 1; goto cleanup; }
  asks = calloc(cc.ntargets, sizeof *asks);
  fy_request_msg rq = {.op = is_logs ? FY_REQ_LOGS : FY_REQ_ROLLBACK, .app = app, .tail = tail};
  req = fy_request_encode(&rq);
  if (!asks || !req) { ret = 1; goto cleanup; }
  uv_loop_t loop;
  uv_loop_init(&loop);
  b = (fy_ask_batch){.loop = &loop, .tls = tls, .timeout_ms = cc.timeout_ms, .op = op, .app = app, .request = req,
                     .filter = selected, .ud = &cc};
  fy_ask_batch_start(&b, asks, cc.targets, cc.ntargets);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  ret = 0;
  size_t shown = 0;
  for (size_t i = 0; i < cc.ntargets; i++) shown += !asks[i].skipped;
  json_t *arr = json_array();
  for (size_t i = 0; i < cc.ntargets; i++) {
    fy_ask *a = &asks[i];
    const char *name = fy_ask_name(a);
    if (a->skipped) continue;
    int ok = a->err == FY_OK;
    if (ok && !is_logs) {
      fy_result_msg rm;
      char err[300];
      if (fy_result_decode(a->answer, &rm, err, sizeof err) != FY_OK) {
        ok = 0;
        fy_text_fmt(a->msg, sizeof a->msg, "%s", err);
      } else {
        ok = rm.result == FY_RESULT_ROLLED_BACK;
        if (!ok) fy_text_fmt(a->msg, sizeof a->msg, "%s", rm.message[0] ? rm.message : "failed");
      }
    }
    if (!ok) ret = 1;
    if (cc.json) {
      json_t *o = a->answer ? json_deep_copy(a->answer) : json_object();
      json_object_set_new(o, "name", json_string(name));
      json_object_set_new(o, "address", json_string(a->conn.target.address));
      json_object_set_new(o, "error", ok ? json_null() : json_string(a->msg));
      json_array_append_new(arr, o);
      continue;
    }
    if (!ok) {
      fy_cli_err("%s (%s): %s", name, a->conn.target.address, a->msg);
      continue;
    }
    if (is_logs) {
      const char *log = fy_msg_str(a->answer, "log", 1 << 20);
      if (shown > 1) fy_cli_print(stdout, "==> %s (%s) <==\n", name, app);
      fy_cli_untrusted(stdout, log ? log : "", log ? strlen(log) : 0);
    } else {
      const char *prev = fy_msg_str(a->answer, "previous", 100);
      fy_cli_print(stdout, "%s: %s rolled back to %s (previous: %s)\n", name, app, fy_msg_str(a->answer, "release", 100), prev ? prev : "-");
    }
  }
  if (cc.json) fy_cli_print_nodes(arr);
  else json_decref(arr);
cleanup:
  fy_ask_batch_free(&b);
  json_decref(req);
  free(asks);
  fy_tls_conf_free(tls);
  fy_cli_common_free(&cc);
  return ret;
}

int fy_cmd_logs(int argc, char **argv) { return run_request("logs", argc, argv); }
int fy_cmd_rollback(int argc, char **argv) { return run_request("rollback", argc, argv); }
