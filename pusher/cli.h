/* Shared pieces of ferry's verbs: identity lookup, targets, output helpers. */
#ifndef FERRY_PUSHER_CLI_H
#define FERRY_PUSHER_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ferry/tls.h"
#include "target.h"

#define FY_VERSION_STRING "0.1.0"
#define FY_MAX_TARGETS 4096

typedef struct fy_cli_common {
  const char *identity;  /* NULL: $FERRY_HOME/identity */
  int json;
  uint64_t timeout_ms;
  fy_target *targets;
  size_t ntargets;
} fy_cli_common;

/* Prints "ferry: " + message to stderr. */
void fy_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Loads the pusher identity (explicit dir, or $FERRY_HOME/identity, or ~/.ferry/identity). */
int fy_cli_load_identity(const char *dir, fy_tls_conf **conf) FY_WUR;

/* Adds a --to argument (one target, or several separated by commas). */
int fy_cli_add_target(fy_cli_common *c, const char *spec) FY_WUR;
void fy_cli_common_free(fy_cli_common *c);

/* Finds a data file shipped with ferry ("toolchains/aarch64-linux-gnu.cmake"): $FERRY_DATA_DIR, then
 * <exe>/../share/ferry, then the source tree the binary was built in. 0 when missing. */
int fy_cli_data_path(const char *rel, char *out, size_t len);

/* Prints {"nodes": arr} (DESIGN.md's report shape) to stdout; takes arr. */
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
int fy_cmd_build(int argc, char **argv);
int fy_cmd_test(int argc, char **argv);
int fy_cmd_doctor(int argc, char **argv);
int fy_cmd_inspect(int argc, char **argv);
int fy_cmd_sim(int argc, char **argv);

#endif
