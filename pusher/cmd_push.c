/* ferry push / ferry plan: options, then the rollout engine (rollout.c). */
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry/yaml.h"
#include "rollout.h"
#include "signing.h"

static void push_usage(FILE *f, int plan) {
  fprintf(f,
          "usage: ferry %s LAYOUT[:REF] " FY_CLI_TARGETS_USAGE "\n"
          "       [--app NAME] [--replicas N] [--spread-by LABEL]\n"
          "       [--canary N|P%%] [--max-parallel N|P%%] [--max-failures N|P%%] [--revert-on-halt]\n"
          "       [--settle SECONDS] [--health-cmd CMD] [--health-port PORT]%s\n",
          plan ? "plan" : "push", plan ? "" : " [--dry-run]");
  if (plan) {
    fprintf(f, "Shows, without touching any node, which nodes a push would deploy to, the image variant\n"
               "each would get and why, and why every other node is left out. The same as push --dry-run.\n");
    return;
  }
  fprintf(f, "Sends each chosen node the image variant for its platform; only the layers it lacks travel.\n"
             "Nodes: every --to target and fleet node, narrowed by --group, --selector (k=v, k!=v,\n"
             "k in (a,b), k notin (a,b), k, !k over the fleet labels and the facts the agents report:\n"
             "kubernetes.io/arch, ferry.dev/board, ...), the fleet file's and the image's affinity, and\n"
             "--replicas (the N best by preferred affinity, then spread over --spread-by).\n"
             "Rollout: --canary nodes go first and alone (any failure there halts), then waves of\n"
             "--max-parallel; --max-failures halts the rollout; --revert-on-halt rolls back the nodes\n"
             "that took the release. Ctrl-C: in-flight nodes finish and no new one starts (twice: abort).\n"
             "A node keeps running its previous release unless the new one stays up for --settle seconds\n"
             "(default 3) and passes the health check. Exit status 0 only when every chosen node deployed.\n");
}

/* A fleet file's rollout: defaults, for the flags that were not given. */
static int fleet_defaults(fy_rollout_opts *o, const fy_fleet *f) {
  const char *vals[] = {f->canary, f->max_parallel, f->max_failures};
  fy_count *dst[] = {&o->canary, &o->max_parallel, &o->max_failures};
  const long mins[] = {0, 1, 1};
  for (int i = 0; i < 3; i++) {
    if (dst[i]->set || !vals[i][0]) continue;
    if (fy_count_parse(vals[i], mins[i], dst[i]) != FY_OK) {
      fy_cli_err("%s: rollout: '%s' is not a usable count here", f->path, vals[i]);
      return FY_ECONFIG;
    }
  }
  if (o->revert_on_halt < 0) o->revert_on_halt = f->revert_on_halt > 0;
  if (!o->spread_by && f->spread_by[0]) o->spread_by = f->spread_by;
  return FY_OK;
}

static int run(int argc, char **argv, int plan) {
  static const struct option opts[] = {
      FY_CLI_COMMON_OPTIONS,
      {"app", required_argument, 0, 'a'},          {"settle", required_argument, 0, 's'},
      {"health-cmd", required_argument, 0, 'H'},   {"health-port", required_argument, 0, 'P'},
      {"replicas", required_argument, 0, 'r'},     {"spread-by", required_argument, 0, 'S'},
      {"canary", required_argument, 0, 'c'},       {"max-parallel", required_argument, 0, 'p'},
      {"max-failures", required_argument, 0, 'f'}, {"revert-on-halt", no_argument, 0, 'R'},
      {"dry-run", no_argument, 0, 'n'},            {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 300000};
  fy_rollout_opts o;
  fy_layout layout;
  char app[64] = "", err[1024];
  static fy_layout_sig sig; /* lives as long as the rollout reads it */
  int c, ret = 2, r;
  long v;
  memset(&o, 0, sizeof o);
  memset(&layout, 0, sizeof layout);
  o.cc = &cc;
  o.push.settle_ms = 3000;
  o.revert_on_halt = -1;
  o.dry_run = plan;
  optind = 1;
  while ((c = getopt_long(argc, argv, FY_CLI_COMMON_SHORT, opts, NULL)) != -1) {
    if ((r = fy_cli_common_opt(&cc, c, optarg)) != 0) {
      if (r < 0) goto cleanup;
      continue;
    }
    switch (c) {
    case 'a': snprintf(app, sizeof app, "%s", optarg); break;
    case 's': {
      char *end;
      double s = strtod(optarg, &end);
      if (*end || s < 0 || s > 600) { fy_cli_err("--settle: seconds from 0 to 600"); goto cleanup; }
      o.push.settle_ms = (uint64_t)(s * 1000);
      o.push.settle_set = 1;
      break;
    }
    case 'H': o.push.health_cmd = optarg; break;
    case 'P':
      if (fy_parse_long(optarg, 1, 65535, &v) != FY_OK) { fy_cli_err("--health-port: 1-65535"); goto cleanup; }
      o.push.health_port = (int)v;
      break;
    case 'r':
      if (fy_parse_long(optarg, 1, FY_MAX_TARGETS, &v) != FY_OK) { fy_cli_err("--replicas: a number of nodes, 1 or more"); goto cleanup; }
      o.replicas = v;
      break;
    case 'S':
      if (!fy_label_key_valid(optarg)) { fy_cli_err("--spread-by: a label key such as topology.kubernetes.io/zone"); goto cleanup; }
      o.spread_by = optarg;
      break;
    case 'c': case 'p': case 'f': {
      fy_count *dst = c == 'c' ? &o.canary : c == 'p' ? &o.max_parallel : &o.max_failures;
      const char *name = c == 'c' ? "--canary" : c == 'p' ? "--max-parallel" : "--max-failures";
      if (fy_count_parse(optarg, c == 'c' ? 0 : 1, dst) != FY_OK) {
        fy_cli_err("%s: a number of nodes (%s) or a percentage such as 25%%", name, c == 'c' ? "0 or more" : "1 or more");
        goto cleanup;
      }
      break;
    }
    case 'R': o.revert_on_halt = 1; break;
    case 'n': o.dry_run = 1; break;
    case 'h': push_usage(stdout, plan); ret = 0; goto cleanup;
    default: push_usage(stderr, plan); goto cleanup;
    }
  }
  if (argc - optind != 1) {
    fy_cli_err("%s needs one LAYOUT[:REF]", plan ? "plan" : "push");
    push_usage(stderr, plan);
    goto cleanup;
  }
  if (fy_cli_common_targets(&cc, plan ? "plan" : "push") != FY_OK) goto cleanup;
  if (cc.have_fleet && fleet_defaults(&o, &cc.fleet) != FY_OK) goto cleanup;
  if (o.revert_on_halt < 0) o.revert_on_halt = 0;
  if (fy_layout_open(&layout, argv[optind], err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    ret = 1;
    goto cleanup;
  }
  if (!app[0]) fy_layout_app_name(&layout, app, sizeof app);
  if (!app[0]) { fy_cli_err("cannot derive an app name; use --app NAME"); goto cleanup; }
  if (fy_layout_signature(&layout, &sig, err, sizeof err) == FY_OK && sig.present) {
    if (strcmp(sig.claim.app, app) != 0) {
      fy_cli_err("the image is signed for app '%s', not '%s' (drop --app, or sign it for '%s')", sig.claim.app, app, app);
      goto cleanup;
    }
    o.push.signature = &sig;
  }
  o.push.app = app;
  o.push.layout = &layout;
  if (fy_cli_load_identity(cc.identity, &o.push.tls) != FY_OK) { ret = 1; goto cleanup; }
  ret = fy_rollout_run(&o);
cleanup:
  fy_layout_close(&layout);
  fy_tls_conf_free(o.push.tls);
  fy_cli_common_free(&cc);
  return ret;
}

int fy_cmd_push(int argc, char **argv) { return run(argc, argv, 0); }
int fy_cmd_plan(int argc, char **argv) { return run(argc, argv, 1); }
