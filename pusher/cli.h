/* Shared pieces of ferry's verbs: identity lookup, targets, output helpers. */
#ifndef FERRY_PUSHER_CLI_H
#define FERRY_PUSHER_CLI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry/selector.h"
#include "ferry/tls.h"
#include "fleet.h"
#include "target.h"

#define FY_MAX_TARGETS 4096

/* What every verb that talks to nodes takes: where (--to, --fleet, --group), which (--selector),
 * as whom (--identity), how long (--timeout) and how to report (--json). */
typedef struct fy_cli_common {
  const char *identity;  /* NULL: $FERRY_HOME/identity */
  int json;
  uint64_t timeout_ms;
  fy_target *targets;
  size_t ntargets;
  json_t **inventory;    /* per target: the fleet file's labels, NULL for a --to target */
  json_t **settings;     /* per target: the fleet file's env, files, secrets (fleet.h), NULL for --to */
  const char *fleet_path;
  const char *groups[16];
  size_t ngroups;
  fy_selector selector;  /* --selector; empty matches every node */
  fy_fleet fleet;        /* loaded by fy_cli_common_targets when fleet_path is set */
  int have_fleet;
} fy_cli_common;

#define FY_CLI_COMMON_OPTIONS                                                                          \
  {"to", required_argument, 0, 't'}, {"identity", required_argument, 0, 'i'},                          \
  {"json", no_argument, 0, 'j'}, {"timeout", required_argument, 0, 'T'},                               \
  {"fleet", required_argument, 0, 'F'}, {"group", required_argument, 0, 'G'},                          \
  {"selector", required_argument, 0, 'l'}
#define FY_CLI_COMMON_SHORT "l:"
/* The registry options of every verb that takes an IMAGE: --registry-ca FILE, --tls-verify=BOOL.
 * fy_cli_registry_opt handles c: 1 when it was one of them, -1 (after saying why) when its value
 * is wrong, 0 when c is another option. */
#define FY_CLI_OPT_REGISTRY_CA 0x1a0
#define FY_CLI_OPT_TLS_VERIFY 0x1a1
#define FY_CLI_REGISTRY_OPTIONS                                                                        \
  {"registry-ca", required_argument, 0, FY_CLI_OPT_REGISTRY_CA},                                       \
  {"tls-verify", required_argument, 0, FY_CLI_OPT_TLS_VERIFY}
int fy_cli_registry_opt(int c, const char *arg);

/* What IMAGE may be, for every verb that takes one. */
#define FY_CLI_IMAGE_HELP                                                                            \
  "IMAGE: an OCI image layout DIR[:REF], or as skopeo names it: oci:DIR[:REF] (REF may hold ':'),\n" \
  "oci-archive:FILE[:REF], docker-archive:FILE, docker://HOST[:PORT]/REPO[:TAG|@DIGEST]. A layout\n" \
  "holding several images needs its REF. Registry credentials come from $REGISTRY_AUTH_FILE,\n"    \
  "$XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json (skopeo login, docker login);\n"  \
  "--registry-ca FILE trusts a private registry's CA, --tls-verify=false skips the check.\n"
#define FY_CLI_TARGETS_USAGE                                                                           \
  "(--to [NAME@]HOST:PORT ... | --fleet FILE [--group NAME]) [-l|--selector SEL]\n"                    \
  "       [--identity DIR] [--json] [--timeout SECONDS]"

/* Handles one of FY_CLI_COMMON_OPTIONS: 1 when it was one (and was fine), 0 when opt is not a
 * common option, FY_EINVAL after printing why. */
int fy_cli_common_opt(fy_cli_common *c, int opt, const char *arg) FY_WUR;
/* After option parsing: loads --fleet (its nodes become targets, narrowed by --group) and
 * checks there is something to talk to. Prints the error; FY_EINVAL / FY_ECONFIG. */
int fy_cli_common_targets(fy_cli_common *c, const char *verb) FY_WUR;
/* A node's labels for selection: what the agent reported, with the fleet file's labels over
 * them except for the reserved kubernetes.io/ and ferry.dev/ facts. New reference. */
json_t *fy_cli_node_labels(const fy_cli_common *c, size_t i, const json_t *facts);

/* Prints "ferry: " + message to stderr. */
void fy_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Text that came from a node (logs, errors, labels, names) on its way to the operator: on a
 * terminal every C0 control but newline and tab, DEL, the C1 controls U+0080-U+009F and bytes
 * that are not UTF-8 are shown as visible escapes (\x1b, \r, \u009b), as git and systemctl show
 * untrusted text; written as is to a file or a pipe (and --json is always exact). */
void fy_term_escape(const char *s, size_t n, FILE *out);
void fy_cli_untrusted(FILE *f, const char *s, size_t n);
/* printf through fy_cli_untrusted (the whole line: ferry's own text has no controls). */
void fy_cli_print(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fy_cli_vprint(FILE *f, const char *fmt, va_list ap);

/* Loads the pusher identity (explicit dir, or $FERRY_HOME/identity, or ~/.ferry/identity). */
/* $FERRY_HOME/rel (~/.ferry/rel); rel may be NULL for the directory itself. */
void fy_cli_home(const char *rel, char *out, size_t len);
int fy_cli_load_identity(const char *dir, fy_tls_conf **conf) FY_WUR;
/* The same identity in another role: FY_TLS_BROKER to talk to the fleet's broker. */
int fy_cli_load_identity_as(const char *dir, fy_tls_role role, fy_tls_conf **conf) FY_WUR;
/* The identity as the broker's client, with the fleet file's broker.ca when it names one. */
int fy_cli_load_broker_tls(const char *dir, const fy_fleet *f, fy_tls_conf **conf) FY_WUR;

/* Adds a --to argument (one target, or several separated by commas). */
int fy_cli_add_target(fy_cli_common *c, const char *spec) FY_WUR;
void fy_cli_common_free(fy_cli_common *c);

/* Finds a data file shipped with ferry ("toolchains/aarch64-linux-gnu.cmake"): $FERRY_DATA_DIR, then
 * <exe>/../share/ferry, then the source tree the binary was built in. 0 when missing. */
int fy_cli_data_path(const char *rel, char *out, size_t len);

/* Prints {"nodes": arr} (the report shape in docs/architecture.md) to stdout; takes arr. */
void fy_cli_print_nodes(json_t *arr);

/* "1.5 GiB", "312 KiB" */
char *fy_human_bytes(uint64_t n, char *buf, size_t len);
/* "3d4h", "5m12s", "42s" */
char *fy_human_duration(uint64_t seconds, char *buf, size_t len);

typedef int (*fy_verb_fn)(int argc, char **argv);
int fy_cmd_ca(int argc, char **argv);
int fy_cmd_cert(int argc, char **argv);
int fy_cmd_status(int argc, char **argv);
int fy_cmd_push(int argc, char **argv);
int fy_cmd_logs(int argc, char **argv);
int fy_cmd_rollback(int argc, char **argv);
int fy_cmd_stop(int argc, char **argv);
int fy_cmd_start(int argc, char **argv);
int fy_cmd_restart(int argc, char **argv);
int fy_cmd_rm(int argc, char **argv);
int fy_cmd_exec(int argc, char **argv);
int fy_cmd_build(int argc, char **argv);
int fy_cmd_test(int argc, char **argv);
int fy_cmd_doctor(int argc, char **argv);
int fy_cmd_inspect(int argc, char **argv);
int fy_cmd_publish(int argc, char **argv);
int fy_cmd_bundle(int argc, char **argv);
int fy_cmd_sim(int argc, char **argv);
int fy_cmd_plan(int argc, char **argv);
int fy_cmd_key(int argc, char **argv);
int fy_cmd_sign(int argc, char **argv);
int fy_cmd_install_agent(int argc, char **argv);
int fy_cmd_upgrade_agent(int argc, char **argv);
int fy_cmd_uninstall_agent(int argc, char **argv);

#endif
