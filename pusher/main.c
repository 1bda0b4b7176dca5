/* ferry, the pusher CLI: one table maps verbs to their functions (dispatch through a table, docs/conventions.md). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ferry/version.h"

static const struct verb {
  const char *name;
  fy_verb_fn fn;
  const char *summary;
} verbs[] = {
    {"ca", fy_cmd_ca, "ca init DIR            create the fleet CA"},
    {"cert", fy_cmd_cert, "cert issue ...         issue an agent or pusher identity"},
    {"status", fy_cmd_status, "status --to HOST:PORT | --fleet FILE   show nodes: platform, labels, apps"},
    {"push", fy_cmd_push, "push IMAGE --to HOST:PORT | --fleet FILE   deploy (canary, waves, halt, revert)"},
    {"plan", fy_cmd_plan, "plan IMAGE --fleet FILE [--selector SEL]   who would get what, and why"},
    {"build", fy_cmd_build, "build [-f ferry.yaml] -o LAYOUT   cross-build every platform into an OCI image"},
    {"test", fy_cmd_test, "test IMAGE [-- CMD]   run each variant, the arm ones under qemu"},
    {"key", fy_cmd_key, "key gen [--out DIR]   create a release signing key"},
    {"sign", fy_cmd_sign, "sign LAYOUT[:REF] --key FILE --version N   sign a release for devices that require it"},
    {"inspect", fy_cmd_inspect, "inspect IMAGE [--json]   index, platforms, layers, config"},
    {"bundle", fy_cmd_bundle, "bundle IMAGE... -o FILE.tar   an oci-archive for a site without network"},
    {"publish", fy_cmd_publish, "publish IMAGE docker://HOST/REPO[:TAG]   upload to a registry (only missing blobs)"},
    {"doctor", fy_cmd_doctor, "doctor [--json]   cross compilers, sysroots, qemu-user, binfmt_misc"},
    {"sim", fy_cmd_sim, "sim up|down|ls   emulated boards on this machine (qemu-user)"},
    {"install-agent", fy_cmd_install_agent, "install-agent USER@HOST --name NAME   make a device a ferry node over SSH"},
    {"upgrade-agent", fy_cmd_upgrade_agent, "upgrade-agent --to HOST:PORT | --fleet FILE   new ferryd through ferry, old one back if it fails"},
    {"uninstall-agent", fy_cmd_uninstall_agent, "uninstall-agent USER@HOST   remove ferryd from a device"},
    {"logs", fy_cmd_logs, "logs --to HOST:PORT --app NAME [--tail N] [-f]   an app's log (-f: follow it)"},
    {"rollback", fy_cmd_rollback, "rollback --to HOST:PORT --app NAME   back to the previous release"},
    {"stop", fy_cmd_stop, "stop --to HOST:PORT --app NAME   stop an app (it stays stopped until start)"},
    {"start", fy_cmd_start, "start --to HOST:PORT --app NAME   start a stopped app"},
    {"restart", fy_cmd_restart, "restart --to HOST:PORT --app NAME   stop and start an app"},
    {"rm", fy_cmd_rm, "rm --to HOST:PORT --app NAME [--purge]   remove an app (--purge: its volumes too)"},
    {"exec", fy_cmd_exec, "exec TARGET --app NAME [-i] [-t] -- CMD...   run a command inside the app"},
};

static void usage(FILE *f) {
  fprintf(f, "ferry %s - deploy to arm64 and x64 edge devices\n\nusage: ferry VERB [options]\n\n",
          FY_VERSION);
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) fprintf(f, "  %s\n", verbs[i].summary);
  fprintf(f, "\n'ferry VERB --help' describes a verb. Targets are HOST:PORT or NAME@HOST:PORT, or the\n"
             "nodes of a fleet file (--fleet FILE); status, push, plan and the app verbs take both;\n"
             "the identity defaults to $FERRY_HOME/identity (~/.ferry/identity). IMAGE is an OCI layout\n"
             "DIR[:REF] or a skopeo name: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE,\n"
             "docker://HOST/REPO[:TAG].\n");
}

int main(int argc, char **argv) {
  /* A node that dies mid-transfer must cost its connection (EPIPE), not the whole rollout. */
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    printf("ferry %s\n", FY_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (strcmp(argv[1], verbs[i].name) == 0) return verbs[i].fn(argc - 1, argv + 1);
  fy_cli_err("unknown verb '%s' (see 'ferry --help')", argv[1]);
  return 2;
}
