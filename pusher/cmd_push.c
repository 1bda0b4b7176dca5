/* ferry push / ferry plan: options, then the rollout engine (rollout.c). */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry/wire.h"
#include "ferry/unpack.h"
#include "ferry/yaml.h"
#include "rollout.h"
#include "settings.h"
#include "signing.h"
#include "agent_image.h"
#include "ferry/fsutil.h"
#include <errno.h>
#include <time.h>

static void push_usage(FILE *f, int plan) {
  fprintf(f,
          "usage: ferry %s IMAGE " FY_CLI_TARGETS_USAGE "\n"
          "       [--app NAME] [--replicas N] [--spread-by LABEL]\n"
          "       [--canary N|P%%] [--max-parallel N|P%%] [--max-failures N|P%%] [--revert-on-halt]\n"
          "       [--settle SECONDS] [--health-cmd CMD] [--health-port PORT] [--force]%s\n"
          "       [--env KEY=VALUE]... [--env-file FILE] [--via docker://HOST/REPO [--pull-auth FILE] [--fallback-stream]]\n"
          "       [--detach] [--wait-offline DURATION] [--desired-ttl DURATION]\n",
          plan ? "plan" : "push", plan ? "" : " [--dry-run]");
  if (plan) {
    fprintf(f, "Shows, without touching any node, which nodes a push would deploy to, the image variant\n"
               "each would get and why, and why every other node is left out, and each node's settings\n"
               "(env, files, secrets masked). The same as push --dry-run.\n" FY_CLI_IMAGE_HELP);
    return;
  }
  fprintf(f, "Sends each chosen node the image variant for its platform; only the layers it lacks travel.\n"
             "Nodes: every --to target and fleet node, narrowed by --group, --selector (k=v, k!=v,\n"
             "k in (a,b), k notin (a,b), k, !k over the fleet labels and the facts the agents report:\n"
             "kubernetes.io/arch, ferry.dev/board, ...), the fleet file's and the image's affinity, and\n"
             "--replicas (the N best by preferred affinity, then spread over --spread-by; targeted nodes\n"
             "outside the N that run the app have it removed once the rollout succeeded, volumes kept).\n"
             "Rollout: --canary N (or P%%) nodes of each distinct variant go first and alone (any failure\n"
             "there halts), then waves of --max-parallel; --max-failures halts the rollout;\n"
             "--revert-on-halt rolls back the nodes that took the release (and removes it where it was a\n"
             "first install). Ctrl-C: in-flight nodes finish and no new one starts (twice: abort).\n"
             "A node that runs this image with these options already reports 'unchanged' and is not\n"
             "touched; --force deploys it again. A node keeps running its previous release unless the new\n"
             "one stays up for --settle seconds (default 3) and passes the health check. Exit status 0\n"
             "only when every chosen node deployed or was unchanged.\n"
             "Settings: env, files and secrets from the fleet file (file < group < node), then --env and\n"
             "--env-file (KEY=VALUE lines); over the image's Env. A change of settings alone is a new\n"
             "release of the same image (nothing re-sent). Secrets reach the app at /run/secrets/NAME.\n"
             "The app is named by --app, else the signed claim, the image's title, the repository's last\n"
             "part (oci:DIR:example.com/team/NAME:1.0), the layout's folder or the archive's file name;\n"
             "never a tag.\n"
             "From a registry: --via docker://HOST/REPO (or registry: in the fleet file) sends each node\n"
             "a plan of a few KiB and the node pulls the layers it lacks from there (zstd, put there by\n"
             "ferry publish), with a pull-only token, or the read-only credential of --pull-auth FILE\n"
             "(registry_auth: in the fleet file). A node that cannot reach the registry fails with its\n"
             "error; --fallback-stream streams to it from here instead.\n"
             "Through a broker (broker: in the fleet file; the nodes need no address): nothing connects\n"
             "to the nodes. Each chosen node gets a desired state, signed by this pusher and retained on\n"
             "the broker, naming its variant, with its plan, settings and pull credential sealed to the\n"
             "node's key; the layers come from registry:. A wave waits for the online nodes to say (in\n"
             "their signed status) that they applied it, and --wait-offline DURATION (default 0) for the\n"
             "others, then counts them not-reached: they converge whenever they connect, until the\n"
             "desired state expires (--desired-ttl, 30d). --detach publishes to every chosen node and\n"
             "returns; ferry status --fleet (--watch) follows convergence. --revert-on-halt publishes\n"
             "the previous desired state again.\n" FY_CLI_IMAGE_HELP);
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

enum { MODE_PUSH, MODE_PLAN, MODE_UPGRADE };

/* Signs the generated agent image (for nodes whose trust policy requires it); a day to live. */
static int sign_layout(const fy_layout *l, const char *key_file, uint64_t version, fy_layout_sig *sig) {
  char *pem = NULL, err[600];
  size_t len;
  fy_sign_key *key = NULL;
  int rc = fy_file_read(key_file, FY_KEY_PEM_MAX, &pem, &len);
  if (rc == FY_OK) rc = fy_sign_key_parse(pem, len, 1, &key, err, sizeof err);
  else snprintf(err, sizeof err, "%s", fy_strerror(rc));
  free(pem);
  if (rc == FY_OK) rc = fy_layout_sign(l, "ferryd", version, (int64_t)time(NULL) + 86400, key, sig, err, sizeof err);
  fy_sign_key_free(key);
  if (rc != FY_OK) fy_cli_err("--key %s: %s", key_file, err);
  return rc;
}

static void upgrade_usage(FILE *f) {
  fprintf(f,
          "usage: ferry upgrade-agent " FY_CLI_TARGETS_USAGE "\n"
          "       [--agent-binary PLATFORM=FILE]... [--upgrade-timeout SECONDS] [--key FILE --version N]\n"
          "       [--canary N|P%%] [--max-parallel N|P%%] [--max-failures N|P%%] [--dry-run]\n"
          "Sends each node the ferryd for its platform through the ferry channel (only what it lacks\n"
          "travels). ferryd checks it (platform, --version, --check-config), installs it beside the old\n"
          "one (kept as ferryd.prev) and re-executes itself in place: running apps keep running. If the\n"
          "new agent does not answer within --upgrade-timeout (default 30 s), a watchdog on the node\n"
          "brings the old one back by itself (the node's result: rolled-back). The agents come from\n"
          "this build (build/<preset>/bin/ferryd) or the installed share/ferry/agents/, or are named\n"
          "with --agent-binary. --key/--version sign the agent image for nodes whose trust policy\n"
          "requires signatures. Canary and waves work as for ferry push.\n");
}

/* Long on purpose: push, plan and upgrade-agent share this one option table and sequence (options,
 * image, signature, targets, rollout); splitting it would give three copies of the option rules. */
static int run(int argc, char **argv, int mode) {
  int plan = mode == MODE_PLAN, upgrade = mode == MODE_UPGRADE;
  char *agent_bins[16];
  size_t nagent_bins = 0;
  const char *key_file = NULL;
  uint64_t sign_version = 0;
  char tmpdir[] = "/tmp/ferry-agent-image.XXXXXX";
  int made_tmp = 0;
  static const struct option opts[] = {
      FY_CLI_COMMON_OPTIONS,
      {"app", required_argument, 0, 'a'},          {"settle", required_argument, 0, 's'},
      {"health-cmd", required_argument, 0, 'H'},   {"health-port", required_argument, 0, 'P'},
      {"replicas", required_argument, 0, 'r'},     {"spread-by", required_argument, 0, 'S'},
      {"canary", required_argument, 0, 'c'},       {"max-parallel", required_argument, 0, 'p'},
      {"max-failures", required_argument, 0, 'f'}, {"revert-on-halt", no_argument, 0, 'R'},
      {"dry-run", no_argument, 0, 'n'},            {"help", no_argument, 0, 'h'},
      {"agent-binary", required_argument, 0, 'B'}, {"upgrade-timeout", required_argument, 0, 'U'},
      {"key", required_argument, 0, 'K'},          {"version", required_argument, 0, 'V'},
      {"force", no_argument, 0, 'X'},              {"env", required_argument, 0, 'E'},
      {"env-file", required_argument, 0, 'W'},     FY_CLI_REGISTRY_OPTIONS,
      {"via", required_argument, 0, 'Y'},          {"pull-auth", required_argument, 0, 'Z'},
      {"fallback-stream", no_argument, 0, 'Q'},
      {"detach", no_argument, 0, 0x1b0},           {"wait-offline", required_argument, 0, 0x1b1},
      {"desired-ttl", required_argument, 0, 0x1b2},
      {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 300000};
  fy_rollout_opts o;
  fy_layout layout;
  char app[64] = "", err[1024];
  static fy_layout_sig sig; /* lives as long as the rollout reads it */
  int c, ret = 2, r, broker_flags = 0;
  long v;
  memset(&o, 0, sizeof o);
  memset(&layout, 0, sizeof layout);
  o.cc = &cc;
  json_t *cli_env = json_object();
  json_t **resolved = NULL;
  o.push.settle_ms = 3000;
  o.revert_on_halt = -1;
  o.dry_run = plan;
  o.push.upgrade_timeout_s = 30;
  optind = 1;
  while ((c = getopt_long(argc, argv, FY_CLI_COMMON_SHORT, opts, NULL)) != -1) {
    if ((r = fy_cli_common_opt(&cc, c, optarg)) != 0 || (r = fy_cli_registry_opt(c, optarg)) != 0) {
      if (r < 0) goto cleanup;
      continue;
    }
    switch (c) {
    case 'a': snprintf(app, sizeof app, "%s", optarg); break;
    case 0x1b0: o.detach = 1; break;
    case 0x1b1: case 0x1b2: {
      uint64_t ms;
      if (fy_parse_duration_ms(optarg, &ms) != FY_OK || (c == 0x1b2 && (ms < 60000 || ms > 400ull * 86400 * 1000))) {
        fy_cli_err(c == 0x1b1 ? "--wait-offline: a duration (30s, 10m, 2h, 7d)" : "--desired-ttl: a duration from 1m to 400d (30d by default)");
        goto cleanup;
      }
      if (c == 0x1b1) o.wait_offline_ms = ms;
      else o.desired_ttl_s = (int64_t)(ms / 1000);
      broker_flags = 1;
      break;
    }
    case 's': {
      char *end;
      double s = strtod(optarg, &end);
      if (*end || s < 0 || s > 600) { fy_cli_err("--settle: seconds from 0 to 600"); goto cleanup; }
      o.push.settle_ms = (uint64_t)(s * 1000);
      o.push.settle_set = 1;
      break;
    }
    case 'H':
      if (strlen(optarg) >= FY_HEALTH_CMD_MAX) {
        fy_cli_err("--health-cmd: at most %d bytes", FY_HEALTH_CMD_MAX - 1);
        goto cleanup;
      }
      o.push.health_cmd = optarg;
      break;
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
    case 'X': o.push.force = 1; break;
    case 'Y': case 'Z': case 'Q':
      if (upgrade) { fy_cli_err("--via, --pull-auth and --fallback-stream go with push and plan"); goto cleanup; }
      if (c == 'Y') o.push.via = optarg;
      if (c == 'Z') o.push.pull_auth = optarg;
      if (c == 'Q') o.push.fallback_stream = 1;
      break;
    case 'n': o.dry_run = 1; break;
    case 'B': case 'U': case 'K': case 'V':
      if (!upgrade) { push_usage(stderr, plan); goto cleanup; }
      if (c == 'B' && nagent_bins < sizeof agent_bins / sizeof agent_bins[0]) agent_bins[nagent_bins++] = optarg;
      if (c == 'U' && fy_parse_long(optarg, 5, 600, &v) != FY_OK) { fy_cli_err("--upgrade-timeout: seconds from 5 to 600"); goto cleanup; }
      if (c == 'U') o.push.upgrade_timeout_s = (int)v;
      if (c == 'K') key_file = optarg;
      if (c == 'V' && fy_parse_u64(optarg, 1, FY_VERSION_MAX, &sign_version) != FY_OK) { fy_cli_err("--version: a whole number from 1 to 9223372036854775807 (2^63-1)"); goto cleanup; }
      break;
    case 'E':
    case 'W':
      if (upgrade) { fy_cli_err("--env and --env-file go with push and plan"); goto cleanup; }
      if ((c == 'E' ? fy_settings_env_arg(cli_env, optarg, "--env") : fy_settings_env_file(cli_env, optarg)) != FY_OK) goto cleanup;
      break;
    case 'h': if (upgrade) upgrade_usage(stdout); else push_usage(stdout, plan); ret = 0; goto cleanup;
    default: if (upgrade) upgrade_usage(stderr); else push_usage(stderr, plan); goto cleanup;
    }
  }
  if (upgrade) {
    if (argc != optind) { fy_cli_err("upgrade-agent takes no IMAGE: it sends ferryd itself"); goto cleanup; }
    if (!key_file != !sign_version) { fy_cli_err("--key and --version go together (they sign the agent image)"); goto cleanup; }
    if (fy_cli_common_targets(&cc, "upgrade-agent") != FY_OK) goto cleanup;
    /* Every platform this machine has an agent for, unless named with --agent-binary. */
    static char specs[8][4200];
    const char *plats[8];
    size_t np = fy_agent_platforms(plats, 8);
    for (size_t i = 0; i < np && nagent_bins < sizeof agent_bins / sizeof agent_bins[0]; i++) {
      int named = 0;
      for (size_t k = 0; k < nagent_bins; k++) named |= strncmp(agent_bins[k], plats[i], strlen(plats[i])) == 0 && agent_bins[k][strlen(plats[i])] == '=';
      char bin[4096];
      if (!named && fy_agent_binary_for(plats[i], bin, sizeof bin)) {
        snprintf(specs[i], sizeof specs[i], "%s=%s", plats[i], bin);
        agent_bins[nagent_bins++] = specs[i];
      }
    }
    if (!mkdtemp(tmpdir)) { fy_cli_err("mkdtemp: %s", strerror(errno)); ret = 1; goto cleanup; }
    made_tmp = 1;
    if (fy_agent_image_build(tmpdir, agent_bins, nagent_bins, err, sizeof err) != FY_OK) { fy_cli_err("%s", err); ret = 1; goto cleanup; }
    char spec[300];
    snprintf(spec, sizeof spec, "%s:ferryd", tmpdir);
    if (fy_layout_open(&layout, spec, err, sizeof err) != FY_OK) { fy_cli_err("%s", err); ret = 1; goto cleanup; }
    if (key_file && sign_layout(&layout, key_file, sign_version, &sig) != FY_OK) { ret = 1; goto cleanup; }
    snprintf(app, sizeof app, "ferryd");
    o.push.agent_upgrade = 1;
    o.revert_on_halt = 0; /* the watchdog brings the old agent back by itself */
    if (sig.present) o.push.signature = &sig;
    o.push.app = app;
    o.push.layout = &layout;
    if (fy_cli_load_identity(cc.identity, &o.push.tls) != FY_OK) { ret = 1; goto cleanup; }
    ret = fy_rollout_run(&o);
    goto cleanup;
  }
  if (argc - optind != 1) {
    fy_cli_err("%s needs one IMAGE", plan ? "plan" : "push");
    push_usage(stderr, plan);
    goto cleanup;
  }
  if (fy_cli_common_targets(&cc, plan ? "plan" : "push") != FY_OK) goto cleanup;
  if (cc.have_fleet && fleet_defaults(&o, &cc.fleet) != FY_OK) goto cleanup;
  /* registry: in the fleet file: its devices pull from there, as --via asks */
  if (!o.push.via && cc.have_fleet && cc.fleet.registry[0]) o.push.via = cc.fleet.registry;
  if (!o.push.pull_auth && cc.have_fleet && cc.fleet.registry_auth[0]) o.push.pull_auth = cc.fleet.registry_auth;
  if ((o.push.pull_auth || o.push.fallback_stream) && !o.push.via) {
    fy_cli_err("--pull-auth and --fallback-stream go with --via docker://HOST/REPO (or registry: in the fleet file)");
    goto cleanup;
  }
  if (o.revert_on_halt < 0) o.revert_on_halt = 0;
  /* broker: in the fleet file: desired state through it, unless --to names nodes directly */
  if (cc.have_fleet && cc.fleet.broker_host[0]) {
    o.broker = 1;
    for (size_t i = 0; i < cc.ntargets; i++) o.broker &= cc.inventory[i] != NULL;
    if (!o.broker) {
      fy_cli_err("--to with a fleet file that has broker:: push either through the broker (the fleet's nodes) or directly (--to, "
                 "without --fleet)");
      goto cleanup;
    }
  }
  if ((o.detach || broker_flags) && !o.broker) {
    fy_cli_err("--detach, --wait-offline and --desired-ttl go with a fleet file that has broker:");
    goto cleanup;
  }
  if (!o.desired_ttl_s) o.desired_ttl_s = 30 * 86400;
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
  /* Each node's settings, its files and secrets read now: a missing file stops the push here. */
  if (!(resolved = calloc(cc.ntargets + 1, sizeof *resolved))) { ret = 1; goto cleanup; }
  for (size_t i = 0; i < cc.ntargets; i++) {
    err[0] = '\0';
    if (!(resolved[i] = fy_settings_resolve(cc.settings ? cc.settings[i] : NULL, cli_env, err, sizeof err))) {
      fy_cli_err("%s: %s", cc.targets[i].name[0] ? cc.targets[i].name : cc.targets[i].address, err);
      goto cleanup;
    }
  }
  o.settings = resolved;
  if (fy_cli_load_identity(cc.identity, &o.push.tls) != FY_OK) { ret = 1; goto cleanup; }
  ret = fy_rollout_run(&o);
cleanup:
  for (size_t i = 0; resolved && i < cc.ntargets; i++) json_decref(resolved[i]);
  free(resolved);
  json_decref(cli_env);
  fy_layout_close(&layout);
  fy_tls_conf_free(o.push.tls);
  fy_cli_common_free(&cc);
  if (made_tmp) {
    if (fy_remove_path(tmpdir) != FY_OK) fy_cli_err("cannot remove %s", tmpdir);
  }
  return ret;
}

int fy_cmd_push(int argc, char **argv) { return run(argc, argv, MODE_PUSH); }
int fy_cmd_plan(int argc, char **argv) { return run(argc, argv, MODE_PLAN); }
int fy_cmd_upgrade_agent(int argc, char **argv) { return run(argc, argv, MODE_UPGRADE); }
