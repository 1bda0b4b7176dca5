/* ferry logs | rollback | stop | start | restart | rm: one request per node after the hello, one
 * answer back. */
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

/* logs --follow: lines as they come, each with its node's name when there are several nodes. */
static void followed(fy_ask_batch *b, fy_ask *a, int stream, const char *p, size_t n) {
  (void)stream;
  while (n) {
    const char *nl = memchr(p, '\n', n);
    size_t len = nl ? (size_t)(nl - p) + 1 : n;
    if (b->n > 1) fy_cli_print(stdout, "%s: ", fy_ask_name(a));
    fy_cli_untrusted(stdout, p, len);
    p += len;
    n -= len;
  }
  if (fflush(stdout) != 0 || ferror(stdout)) exit(0); /* `ferry logs -f | head`: the reader is done */
}

/* What each verb asks for, the result that means it worked, and what it says. */
static const struct verb {
  const char *name;
  fy_request_op op;
  fy_result ok;
  const char *help;
  const char *done;          /* "NODE: APP <done> (release R)" */
} verbs[] = {
    {"logs", FY_REQ_LOGS, FY_RESULT_NONE,
     "Shows the last lines of the app's log on each node (stdout, stderr and ferryd's own lines about it).\n"
     "  -f, --follow       then every new line as the app writes it, until Ctrl-C; with more than\n"
     "                     one node each line starts with the node's name\n"
     "  --timestamps       each line with the time the agent recorded it (UTC)\n"
     "  --since DURATION   only lines of the last DURATION (10s, 5m, 2h)\n"
     "  --stream S         stdout, stderr or all (the default)\n", ""},
    {"rollback", FY_REQ_ROLLBACK, FY_RESULT_ROLLED_BACK, "Switches each node back to the app's previous release and restarts it.\n",
     "rolled back to"},
    {"stop", FY_REQ_STOP, FY_RESULT_STOPPED,
     "Stops the app on each node; it stays stopped (also across agent restarts) until ferry start,\n"
     "a deploy or a rollback starts it.\n", "stopped, release"},
    {"start", FY_REQ_START, FY_RESULT_STARTED, "Starts the app's current release on each node (one that ferry stop stopped).\n",
     "started, release"},
    {"restart", FY_REQ_RESTART, FY_RESULT_RESTARTED, "Stops the app on each node and starts its current release again.\n",
     "restarted, release"},
    {"rm", FY_REQ_REMOVE, FY_RESULT_REMOVED,
     "Stops the app on each node and removes its releases, log and blobs nothing else uses. Its\n"
     "volumes and signed version counter stay for a later push, unless --purge.\n", "removed"},
};

/* Long on purpose: the verbs share options, the ask batch and one report loop (table, plain
 * text or --json); split, the report would need the batch passed around for no gain. */
static int run_request(const struct verb *vb, int argc, char **argv) {
  static const struct option opts[] = {FY_CLI_COMMON_OPTIONS, {"app", required_argument, 0, 'a'},
                                       {"tail", required_argument, 0, 'n'}, {"purge", no_argument, 0, 'P'},
                                       {"follow", no_argument, 0, 'f'}, {"timestamps", no_argument, 0, 'Y'},
                                       {"since", required_argument, 0, 's'}, {"stream", required_argument, 0, 'R'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 60000};
  const char *app = NULL, *op = vb->name;
  int tail = 100, purge = 0, c, ret = 2, r, is_logs = vb->op == FY_REQ_LOGS, lifecycle = fy_request_is_lifecycle(vb->op);
  fy_request_msg rq = {.op = vb->op};
  fy_tls_conf *tls = NULL;
  fy_ask *asks = NULL;
  fy_ask_batch b = {0};
  json_t *req = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, FY_CLI_COMMON_SHORT "f", opts, NULL)) != -1) {
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
    case 'P':
      if (vb->op != FY_REQ_REMOVE) { fy_cli_err("--purge goes with ferry rm"); goto cleanup; }
      purge = 1;
      break;
    case 'f':
    case 'Y':
    case 's':
    case 'R':
      if (!is_logs) {
        fy_cli_err("%s goes with ferry logs", c == 'f' ? "--follow" : c == 'Y' ? "--timestamps" : c == 's' ? "--since" : "--stream");
        goto cleanup;
      }
      if (c == 'f') rq.follow = 1;
      if (c == 'Y') rq.timestamps = 1;
      if (c == 'R' && fy_log_stream_parse(optarg, &rq.stream) != FY_OK) {
        fy_cli_err("--stream: stdout, stderr or all, not '%s'", optarg);
        goto cleanup;
      }
      if (c == 's') {
        uint64_t ms;
        if (fy_parse_duration_ms(optarg, &ms) != FY_OK || ms == 0 || ms > (uint64_t)FY_LOG_SINCE_MAX_S * 1000u) {
          fy_cli_err("--since: a duration such as 30s, 10m or 2h (at most %u days), not '%s'", FY_LOG_SINCE_MAX_S / 86400u, optarg);
          goto cleanup;
        }
        rq.since_s = (uint32_t)((ms + 999) / 1000);
      }
      break;
    case 'h':
      printf("usage: ferry %s --app NAME%s " FY_CLI_TARGETS_USAGE "\n%s%s", op,
             is_logs ? " [--tail N] [-f] [--timestamps] [--since D] [--stream S]" : vb->op == FY_REQ_REMOVE ? " [--purge]" : "", vb->help,
             lifecycle ? "A node without the app is skipped. Exit status 0 only when every node that has it got there.\n" : "");
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
  int via_broker = cc.have_fleet && cc.fleet.broker_host[0];
  for (size_t i = 0; i < cc.ntargets; i++) via_broker &= cc.inventory[i] != NULL;
  if (via_broker && rq.follow) {
    fy_cli_err("logs --follow does not go through the broker; without --follow, logs answers through it");
    goto cleanup;
  }
  if (fy_cli_load_identity(cc.identity, &tls) != FY_OK) { ret = 1; goto cleanup; }
  asks = calloc(cc.ntargets, sizeof *asks);
  rq.app = app;
  rq.tail = tail;
  rq.purge = purge;
  req = fy_request_encode(&rq);
  if (!asks || !req) { ret = 1; goto cleanup; }
  uv_loop_t loop;
  b = (fy_ask_batch){.loop = &loop, .tls = tls, .timeout_ms = cc.timeout_ms, .op = op, .app = app, .request = req,
                     .filter = selected, .ud = &cc, .on_output = rq.follow ? followed : NULL};
  if (via_broker) { /* broker: in the fleet file: the same requests, signed, through it */
    if (fy_broker_ask_run(&cc, &b, asks) != FY_OK) { ret = 1; goto cleanup; }
  } else {
    uv_loop_init(&loop);
    fy_ask_batch_start(&b, asks, cc.targets, cc.ntargets);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  ret = 0;
  size_t shown = 0, have = 0;
  for (size_t i = 0; i < cc.ntargets; i++) shown += !asks[i].skipped;
  if (rq.follow) fflush(stdout);
  json_t *arr = json_array();
  for (size_t i = 0; i < cc.ntargets; i++) {
    fy_ask *a = &asks[i];
    const char *name = fy_ask_name(a);
    if (a->skipped) continue;
    int ok = a->err == FY_OK, absent = lifecycle && a->err == FY_ENOAPP;
    fy_result res = FY_RESULT_NONE;
    if (ok && !is_logs) {
      fy_result_msg rm;
      char err[300];
      if (fy_result_decode(a->answer, &rm, err, sizeof err) != FY_OK) {
        ok = 0;
        fy_text_fmt(a->msg, sizeof a->msg, "%s", err);
      } else {
        res = rm.result;
        ok = rm.result == vb->ok;
        if (!ok) fy_text_fmt(a->msg, sizeof a->msg, "%s", rm.message[0] ? rm.message : "failed");
      }
    }
    if (lifecycle && a->err == FY_EUNSUPPORTED) {
      size_t l = strlen(a->msg);
      fy_text_fmt(a->msg + l, sizeof a->msg - l, "; the agent is older than this ferry (ferry upgrade-agent brings it up to date)");
    }
    have += !absent;
    if (!ok && !absent) ret = 1;
    if (!ok) res = absent ? FY_RESULT_SKIPPED : FY_RESULT_FAILED;
    if (cc.json) {
      json_t *o = a->answer ? json_deep_copy(a->answer) : json_object();
      json_object_set_new(o, "name", json_string(name));
      json_object_set_new(o, "address", json_string(a->conn.target.address));
      json_object_set_new(o, "app", json_string(app));
      if (!is_logs) json_object_set_new(o, "result", json_string(fy_result_name(res)));
      if (!is_logs) json_object_set_new(o, "code", json_string(fy_err_name(ok ? FY_OK : a->err ? a->err : FY_EPEER)));
      json_object_set_new(o, "error", ok ? json_null() : json_string(a->msg));
      json_array_append_new(arr, o);
      continue;
    }
    if (absent) {
      fy_cli_print(stdout, "%s: %s skipped: not on this node\n", name, app);
      continue;
    }
    if (!ok) {
      if (via_broker) fy_cli_err("%s (through the broker): %s", name, a->msg);
      else fy_cli_err("%s (%s): %s", name, a->conn.target.address, a->msg);
      continue;
    }
    if (is_logs) {
      const char *log = fy_msg_str(a->answer, "log", 1 << 20);
      if (shown > 1) fy_cli_print(stdout, "==> %s (%s) <==\n", name, app);
      fy_cli_untrusted(stdout, log ? log : "", log ? strlen(log) : 0);
    } else if (vb->op == FY_REQ_ROLLBACK) {
      const char *prev = fy_msg_str(a->answer, "previous", 100);
      fy_cli_print(stdout, "%s: %s rolled back to %s (previous: %s)\n", name, app, fy_msg_str(a->answer, "release", 100), prev ? prev : "-");
    } else {
      const char *rel = fy_msg_str(a->answer, "release", 100), *m = fy_msg_str(a->answer, "message", 300);
      fy_cli_print(stdout, "%s: %s %s%s%s%s%s\n", name, app, vb->done, vb->op == FY_REQ_REMOVE ? "" : " ",
                   vb->op == FY_REQ_REMOVE ? "" : rel && rel[0] ? rel : "-", m && m[0] ? " - " : "", m ? m : "");
    }
  }
  if (lifecycle && shown > 0 && have == 0) {
    fy_cli_err("no node has app '%s'", app);
    ret = 1;
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

int fy_cmd_logs(int argc, char **argv) { return run_request(&verbs[0], argc, argv); }
int fy_cmd_rollback(int argc, char **argv) { return run_request(&verbs[1], argc, argv); }
int fy_cmd_stop(int argc, char **argv) { return run_request(&verbs[2], argc, argv); }
int fy_cmd_start(int argc, char **argv) { return run_request(&verbs[3], argc, argv); }
int fy_cmd_restart(int argc, char **argv) { return run_request(&verbs[4], argc, argv); }
int fy_cmd_rm(int argc, char **argv) { return run_request(&verbs[5], argc, argv); }
