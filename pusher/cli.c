#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "ferry/fsutil.h"

void fy_cli_err(const char *fmt, ...) {
  va_list ap;
  fputs("ferry: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int fy_cli_load_identity(const char *dir, fy_tls_conf **conf) {
  char path[4096], err[512];
  if (!dir) {
    const char *home = getenv("FERRY_HOME");
    if (home && *home)
      snprintf(path, sizeof path, "%s/identity", home);
    else
      snprintf(path, sizeof path, "%s/.ferry/identity", getenv("HOME") ? getenv("HOME") : ".");
    dir = path;
  }
  int rc = fy_identity_load(dir, FY_TLS_PUSHER, conf, err, sizeof err);
  if (rc != FY_OK) {
    fy_cli_err("%s", err);
    if (rc == FY_ENOENT)
      fy_cli_err("hint: ferry ca init CA && ferry cert issue --ca CA --name me --role pusher --out %s", dir);
  }
  return rc;
}

int fy_cli_add_target(fy_cli_common *c, const char *spec) {
  char *copy = strdup(spec), *save = NULL, err[400];
  int rc = FY_OK;
  if (!copy) return FY_ENOMEM;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (c->ntargets >= FY_MAX_TARGETS) {
      fy_cli_err("too many targets (at most %d)", FY_MAX_TARGETS);
      rc = FY_ETOOBIG;
      break;
    }
    fy_target *nt = realloc(c->targets, (c->ntargets + 1) * sizeof *nt);
    if (!nt) { rc = FY_ENOMEM; break; }
    c->targets = nt;
    if ((rc = fy_target_parse(tok, &c->targets[c->ntargets], err, sizeof err)) != FY_OK) {
      fy_cli_err("%s", err);
      break;
    }
    c->ntargets++;
  }
  free(copy);
  return rc;
}

void fy_cli_common_free(fy_cli_common *c) {
  free(c->targets);
  c->targets = NULL;
  c->ntargets = 0;
}

char *fy_human_bytes(uint64_t n, char *buf, size_t len) {
  static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int i = 0;
  while (v >= 1024.0 && i < 4) {
    v /= 1024.0;
    i++;
  }
  if (i == 0) snprintf(buf, len, "%llu B", (unsigned long long)n);
  else snprintf(buf, len, "%.1f %s", v, u[i]);
  return buf;
}

char *fy_human_duration(uint64_t s, char *buf, size_t len) {
  if (s >= 86400) snprintf(buf, len, "%llud%lluh", (unsigned long long)(s / 86400), (unsigned long long)(s % 86400 / 3600));
  else if (s >= 3600) snprintf(buf, len, "%lluh%llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
  else if (s >= 60) snprintf(buf, len, "%llum%llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
  else snprintf(buf, len, "%llus", (unsigned long long)s);
  return buf;
}

void fy_cli_print_nodes(json_t *arr) {
  json_t *out = json_pack("{s:o}", "nodes", arr);
  json_dumpf(out, stdout, JSON_INDENT(2));
  fputc('\n', stdout);
  json_decref(out);
}

int fy_cli_data_path(const char *rel, char *out, size_t len) {
  struct stat st;
  const char *env = getenv("FERRY_DATA_DIR");
  if (env && *env) {
    snprintf(out, len, "%s/%s", env, rel);
    if (stat(out, &st) == 0) return 1;
  }
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 0;
  exe[n] = '\0';
  char *dir = dirname(exe); /* .../bin */
  static const char *const ups[] = {"../share/ferry", "../../..", "../..", ".."};
  for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
    snprintf(out, len, "%s/%s/%s", dir, ups[i], rel);
    if (stat(out, &st) == 0) {
      char real[4096];
      if (realpath(out, real)) snprintf(out, len, "%s", real);
      return 1;
    }
  }
  return 0;
}
