/* ferryd: the agent. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "broker.h"
#include "exec_helper.h"
#include "import.h"
#include "ferry/version.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"

static void on_signal(uv_signal_t *s, int signum) {
  fy_agent *a = s->data;
  fy_log("info", "received %s, shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  /* Every handle is closed, so that the loop ends by itself and uv_loop_close finds none open:
   * connections (and their transfers), deploys waiting on a timer, the upgrade's timers, and the
   * workloads, which stop with their agent (a restarted ferryd starts current again). */
  a->stopping = 1;
  fy_server_stop(a);
  fy_broker_stop(a);
  fy_deploys_shutdown(a);
  fy_upgrade_shutdown(a);
  fy_apps_shutdown(a);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
  uv_close((uv_handle_t *)&a->sigint, NULL);
}

static void name_open_handle(uv_handle_t *h, void *ud) {
  (void)ud;
  fy_log("error", "still open at exit: a %s handle%s", uv_handle_type_name(uv_handle_get_type(h)),
         uv_is_closing(h) ? " (closing)" : "");
}

static void usage(FILE *f) {
  fprintf(f, "usage: ferryd --config FILE [--check-config | --check-state [--verify]]\n"
             "       ferryd --config FILE --import BUNDLE.tar[:REF] [--app NAME] [--force]\n"
             "The ferry agent: receives, verifies, runs and supervises releases.\n"
             "--import installs a bundle (ferry bundle IMAGE -o BUNDLE.tar) on this device without a pusher:\n"
             "the running ferryd checks it as it checks a push (signature policy, limits, health, rollback).\n");
}

/* Long on purpose: ferryd's start-up in the order it must happen (modes that exit early, config,
 * identity, state, recovery, listener, signals, the loop, its close). */
int main(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                       {"check-config", no_argument, 0, 'k'},
                                       {"check-state", no_argument, 0, 's'},
                                       {"verify", no_argument, 0, 'V'},
                                       {"version", no_argument, 0, 'v'},
                                       {"help", no_argument, 0, 'h'},
                                       {"import", required_argument, 0, 'I'},
                                       {"app", required_argument, 0, 'A'},
                                       {"force", no_argument, 0, 'F'},
                                       {0, 0, 0, 0}};
  const char *config = NULL, *import = NULL, *app = NULL;
  int check_only = 0, check_state = 0, verify = 0, force = 0, c;
  char err[1024];
  static fy_agent agent; /* large; lives for the whole process */
  fy_agent *a = &agent;

  if (argc > 1 && strcmp(argv[1], "__exec") == 0) return fy_exec_helper_main(argc, argv);
  if (argc > 1 && strcmp(argv[1], "__watchdog") == 0) return fy_watchdog_main(argc, argv);
  /* What ferryd inherited (a shell's stray descriptors) must not reach the workloads it spawns;
   * the descriptors an agent upgrade hands over are marked too, and read as they were. */
  fy_close_inherited(1);
  while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'k': check_only = 1; break;
    case 's': check_state = 1; break;
    case 'V': verify = 1; break;
    case 'v': printf("ferryd %s\n", FY_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    case 'I': import = optarg; break;
    case 'A': app = optarg; break;
    case 'F': force = 1; break;
    default: usage(stderr); return 2;
    }
  }
  if (!config || optind != argc || ((app || force) && !import)) {
    usage(stderr);
    return 2;
  }
  if (fy_config_load(config, &a->cfg, err, sizeof err) != FY_OK) {
    fprintf(stderr, "ferryd: %s\n", err);
    return 1;
  }
  if (fy_facts_detect(&a->cfg, &a->facts, err, sizeof err) != FY_OK) {
    fprintf(stderr, "ferryd: %s: %s\n", config, err);
    return 1;
  }
  if (import) return fy_import_main(&a->cfg, &a->facts, import, app, force);
  if (fy_identity_load(a->cfg.identity, FY_TLS_AGENT, &a->tls, err, sizeof err) == FY_OK) {
    /* the newest revocation list a pusher brought, kept across restarts */
    char crlpath[4200], *crl = NULL;
    size_t crl_len;
    if (fy_path_fmt(crlpath, sizeof crlpath, "%s/crl.pem", a->cfg.state_dir) == FY_OK &&
        fy_file_read(crlpath, FY_CRL_PEM_MAX, &crl, &crl_len) == FY_OK && fy_agent_take_crl(a, crl, err, sizeof err) != FY_OK)
      fprintf(stderr, "ferryd: %s: %s (ignored)\n", crlpath, err);
    free(crl);
    err[0] = '\0';
  }
  if (!a->tls) {
    fprintf(stderr, "ferryd: %s\n", err);
    return 1;
  }
  if (fy_trust_open(&a->trust, &a->cfg, err, sizeof err) != FY_OK) {
    fprintf(stderr, "ferryd: %s: %s\n", config, err);
    fy_tls_conf_free(a->tls);
    return 1;
  }
  snprintf(a->name, sizeof a->name, "%s", fy_tls_conf_name(a->tls));
  if (strcmp(a->name, a->cfg.name) != 0) {
    fprintf(stderr, "ferryd: %s: name '%s' does not match the identity's certificate, which is for '%s'\n",
            config, a->cfg.name, a->name);
    fy_tls_conf_free(a->tls);
    return 1;
  }
  int rc = fy_mkdirs(a->cfg.state_dir, 0700);
  if (rc != FY_OK) {
    fprintf(stderr, "ferryd: state_dir %s: %s\n", a->cfg.state_dir, fy_strerror(rc));
    fy_tls_conf_free(a->tls);
    return 1;
  }
  if ((rc = fy_store_open(&a->store, a->cfg.state_dir, 1)) != FY_OK) {
    fprintf(stderr, "ferryd: state_dir %s: cannot create the blob store: %s\n", a->cfg.state_dir, fy_strerror(rc));
    fy_tls_conf_free(a->tls);
    return 1;
  }
  if (check_state) {
    fy_tls_conf_free(a->tls);
    return fy_check_state(a, verify);
  }
  if (check_only) {
    printf("ferryd: %s is valid\n", config);
    fy_tls_conf_free(a->tls);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  a->loop = uv_default_loop();
  a->started_ms = uv_now(a->loop);
  a->config_path = config;
  fy_upgrade_startup(a, argc, argv);
  fy_cgroup_detect_self(&a->cgroups);
  if (fy_server_start(a, err, sizeof err) != FY_OK) {
    fprintf(stderr, "ferryd: %s\n", err);
    fy_tls_conf_free(a->tls);
    return 1;
  }
  if (fy_broker_start(a, err, sizeof err) != FY_OK) {
    fprintf(stderr, "ferryd: broker: %s\n", err);
    fy_server_stop(a);
    uv_run(a->loop, UV_RUN_DEFAULT);
    fy_tls_conf_free(a->tls);
    return 1;
  }
  if (a->cfg.listen_none) { /* the readiness line of a node without a port; keep its shape */
    char plat[FY_PLATFORM_STR];
    fy_log("info", "ready without a listening port (listen: none) as %s (%s, board %s); reached through the broker %s:%d", a->name,
           fy_platform_format(&a->facts.platform, plat, sizeof plat), a->facts.have_board ? a->facts.board.name : "unknown",
           a->cfg.broker_host, a->cfg.broker_port);
  }
  /* Partial blobs of transfers abandoned long ago (a resume within the age still finds them). */
  size_t old_partials = 0;
  uint64_t old_bytes = 0;
  if (fy_store_gc_ex(&a->store, NULL, 0, (int64_t)(a->cfg.partial_max_age_ms / 1000), &old_partials, &old_bytes) == FY_OK &&
      old_partials)
    fy_log("info", "removed %zu partial blob(s) older than limits.partial_max_age, %llu bytes", old_partials,
           (unsigned long long)old_bytes);
  /* Listening first: recovery goes one app per loop turn, and status answers meanwhile. */
  if ((rc = fy_apps_recover(a)) != FY_OK) fy_log("warn", "recovering apps in %s: %s", a->cfg.state_dir, fy_strerror(rc));
  uv_signal_init(a->loop, &a->sigterm);
  uv_signal_init(a->loop, &a->sigint);
  a->sigterm.data = a->sigint.data = a;
  uv_signal_start(&a->sigterm, on_signal, SIGTERM);
  uv_signal_start(&a->sigint, on_signal, SIGINT);
  uv_run(a->loop, UV_RUN_DEFAULT);
  int rc_close = uv_loop_close(a->loop);
  if (rc_close != 0) {
    fy_log("error", "the event loop still has work at exit: %s", uv_strerror(rc_close));
    uv_walk(a->loop, name_open_handle, NULL);
  }
  fy_tls_conf_free(a->tls);
  fy_trust_close(&a->trust);
  fy_log("info", "stopped");
  return rc_close == 0 ? 0 : 1;
}
