#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "registry.h"
#include "ferry/fsutil.h"

/* One UTF-8 sequence at s (n bytes left): its length, or 0 when it is not valid UTF-8. *cp gets
 * the code point. */
static size_t utf8_seq(const unsigned char *s, size_t n, unsigned *cp) {
  unsigned c = s[0];
  size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (!len || len > n) return 0;
  unsigned v = c & (0x7f >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3f);
  }
  if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return len;
}

void fy_term_escape(const char *in, size_t n, FILE *out) {
  const unsigned char *s = (const unsigned char *)in;
  for (size_t i = 0; i < n;) {
    unsigned c = s[i], cp;
    size_t len;
    if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) {
      fputc((int)c, out);
      i++;
    } else if (c == '\r') {
      fputs("\\r", out);
      i++;
    } else if (c < 0x80) { /* the other C0 controls and DEL */
      fprintf(out, "\\x%02x", c);
      i++;
    } else if ((len = utf8_seq(s + i, n - i, &cp)) > 0) {
      if (cp >= 0x80 && cp <= 0x9f) fprintf(out, "\\u%04x", cp); /* C1 controls (CSI is U+009B) */
      else fwrite(s + i, 1, len, out);
      i += len;
    } else { /* not UTF-8: a raw byte, which an 8-bit terminal could take for a C1 control */
      fprintf(out, "\\x%02x", c);
      i++;
    }
  }
}

void fy_cli_untrusted(FILE *f, const char *s, size_t n) {
  if (isatty(fileno(f))) fy_term_escape(s, n, f);
  else fwrite(s, 1, n, f);
}

void fy_cli_vprint(FILE *f, const char *fmt, va_list ap) {
  char buf[8192];
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  if (n < 0) return;
  fy_cli_untrusted(f, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

void fy_cli_print(FILE *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fy_cli_vprint(f, fmt, ap);
  va_end(ap);
}

void fy_cli_err(const char *fmt, ...) {
  va_list ap;
  fputs("ferry: ", stderr);
  va_start(ap, fmt);
  fy_cli_vprint(stderr, fmt, ap); /* messages carry what nodes said */
  va_end(ap);
  fputc('\n', stderr);
}

void fy_cli_home(const char *rel, char *out, size_t len) {
  const char *h = getenv("FERRY_HOME");
  if (h && *h) snprintf(out, len, "%s%s%s", h, rel ? "/" : "", rel ? rel : "");
  else snprintf(out, len, "%s/.ferry%s%s", getenv("HOME") ? getenv("HOME") : ".", rel ? "/" : "", rel ? rel : "");
}

int fy_cli_load_identity(const char *dir, fy_tls_conf **conf) { return fy_cli_load_identity_as(dir, FY_TLS_PUSHER, conf); }

int fy_cli_load_identity_as(const char *dir, fy_tls_role role, fy_tls_conf **conf) {
  char path[4096], err[512];
  if (!dir) {
    fy_cli_home("identity", path, sizeof path);
    dir = path;
  }
  int rc = fy_identity_load(dir, role, conf, err, sizeof err);
  if (rc != FY_OK) {
    fy_cli_err("%s", err);
    if (rc == FY_ENOENT)
      fy_cli_err("hint: ferry ca init CA && ferry cert issue --ca CA --name me --role pusher --out %s", dir);
  }
  return rc;
}

int fy_cli_load_broker_tls(const char *dir, const fy_fleet *f, fy_tls_conf **conf) {
  int rc = fy_cli_load_identity_as(dir, FY_TLS_BROKER, conf);
  if (rc != FY_OK || !f->broker_ca[0]) return rc;
  char *pem = NULL, why[300];
  size_t n = 0;
  if ((rc = fy_file_read(f->broker_ca, 1u << 20, &pem, &n)) != FY_OK) fy_cli_err("broker.ca: cannot read %s: %s", f->broker_ca, fy_strerror(rc));
  else if ((rc = fy_tls_conf_set_broker_ca(*conf, pem, n, why, sizeof why)) != FY_OK) fy_cli_err("broker.ca: %s: %s", f->broker_ca, why);
  free(pem);
  if (rc != FY_OK) {
    fy_tls_conf_free(*conf);
    *conf = NULL;
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
  free(c->inventory); /* borrowed from the fleet */
  free(c->settings);
  fy_selector_free(&c->selector);
  if (c->have_fleet) fy_fleet_free(&c->fleet);
  c->have_fleet = 0;
  c->targets = NULL;
  c->inventory = NULL;
  c->settings = NULL;
  c->ntargets = 0;
}

int fy_cli_common_opt(fy_cli_common *c, int opt, const char *arg) {
  char err[400];
  switch (opt) {
  case 't': return fy_cli_add_target(c, arg) == FY_OK ? 1 : FY_EINVAL;
  case 'i': c->identity = arg; return 1;
  case 'j': c->json = 1; return 1;
  case 'T': {
    char *end;
    double s = strtod(arg, &end);
    if (*end || !(s > 0 && s <= 86400)) {
      fy_cli_err("--timeout: seconds, more than 0 and at most 86400 (got '%s')", arg);
      return FY_EINVAL;
    }
    c->timeout_ms = (uint64_t)(s * 1000);
    return 1;
  }
  case 'F':
    if (c->fleet_path) { fy_cli_err("--fleet is given once"); return FY_EINVAL; }
    c->fleet_path = arg;
    return 1;
  case 'G':
    if (c->ngroups >= sizeof c->groups / sizeof c->groups[0]) { fy_cli_err("too many --group"); return FY_EINVAL; }
    c->groups[c->ngroups++] = arg;
    return 1;
  case 'l':
    if (c->selector.n) { fy_cli_err("--selector is given once (join requirements with ',')"); return FY_EINVAL; }
    if (fy_selector_parse(arg, &c->selector, err, sizeof err) != FY_OK) {
      fy_cli_err("--selector '%s': %s", arg, err);
      return FY_EINVAL;
    }
    return 1;
  default: return 0;
  }
}

static int in_groups(const fy_cli_common *c, const char *name) {
  if (c->ngroups == 0) return 1;
  for (size_t g = 0; g < c->ngroups; g++) {
    const fy_fleet_group *grp = fy_fleet_group_find(&c->fleet, c->groups[g]);
    for (size_t i = 0; grp && i < grp->n; i++)
      if (strcmp(grp->members[i], name) == 0) return 1;
  }
  return 0;
}

int fy_cli_common_targets(fy_cli_common *c, const char *verb) {
  char err[1200];
  size_t from_to = c->ntargets;
  if (c->ngroups && !c->fleet_path) {
    fy_cli_err("--group needs --fleet FILE");
    return FY_EINVAL;
  }
  if (c->fleet_path) {
    int rc = fy_fleet_load(c->fleet_path, &c->fleet, err, sizeof err);
    if (rc != FY_OK) {
      fy_cli_err("%s", err);
      return rc;
    }
    c->have_fleet = 1;
    for (size_t g = 0; g < c->ngroups; g++) {
      if (fy_fleet_group_find(&c->fleet, c->groups[g])) continue;
      char have[512] = "";
      for (size_t k = 0, off = 0; k < c->fleet.ngroups && off < sizeof have; k++)
        off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", k ? ", " : "", c->fleet.groups[k].name);
      fy_cli_err("%s: no group '%s' (%s%s)", c->fleet_path, c->groups[g], c->fleet.ngroups ? "the file has: " : "the file has no groups",
                 have);
      return FY_EINVAL;
    }
    size_t want = c->ntargets + c->fleet.n;
    if (want > FY_MAX_TARGETS) {
      fy_cli_err("too many targets (at most %d)", FY_MAX_TARGETS);
      return FY_ETOOBIG;
    }
    fy_target *nt = realloc(c->targets, (want ? want : 1) * sizeof *nt);
    if (!nt) return FY_ENOMEM;
    c->targets = nt;
    for (size_t i = 0; i < c->fleet.n; i++)
      if (in_groups(c, c->fleet.targets[i].name)) c->targets[c->ntargets++] = c->fleet.targets[i];
  }
  c->inventory = calloc(c->ntargets + 1, sizeof *c->inventory);
  c->settings = calloc(c->ntargets + 1, sizeof *c->settings);
  if (!c->inventory || !c->settings) return FY_ENOMEM;
  for (size_t i = from_to, k = 0; i < c->ntargets; i++) {
    while (strcmp(c->fleet.targets[k].name, c->targets[i].name) != 0) k++;
    c->inventory[i] = c->fleet.labels[k];
    c->settings[i] = c->fleet.settings ? c->fleet.settings[k] : NULL;
  }
  if (c->ntargets == 0) {
    if (c->fleet_path && c->have_fleet && c->fleet.n == 0)
      fy_cli_err("%s lists no node yet (ferry install-agent USER@HOST --name NAME --fleet %s --broker adds one)", c->fleet_path,
                 c->fleet_path);
    else
      fy_cli_err(c->fleet_path ? "%s: no node of the fleet is in the given group(s)" : "%s needs --to HOST:PORT or --fleet FILE",
                 c->fleet_path ? c->fleet_path : verb);
    return FY_EINVAL;
  }
  return FY_OK;
}

static int reserved_key(const char *k) {
  return strncmp(k, "kubernetes.io/", 14) == 0 || strncmp(k, "ferry.dev/", 10) == 0;
}

json_t *fy_cli_node_labels(const fy_cli_common *c, size_t i, const json_t *facts) {
  const json_t *reported = json_object_get(facts, "labels");
  json_t *out = json_is_object(reported) ? json_deep_copy(reported) : json_object();
  const char *k;
  json_t *v;
  if (out && i < c->ntargets && c->inventory && c->inventory[i])
    json_object_foreach(c->inventory[i], k, v) if (!reserved_key(k) || !json_object_get(out, k)) json_object_set(out, k, v);
  return out;
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

int fy_cli_registry_opt(int c, const char *arg) {
  static fy_registry_opts o;
  if (c == FY_CLI_OPT_REGISTRY_CA) {
    struct stat st;
    if (stat(arg, &st) != 0 || !S_ISREG(st.st_mode)) {
      fy_cli_err("--registry-ca %s: not a readable file (a PEM CA certificate)", arg);
      return -1;
    }
    o.ca_file = arg;
  } else if (c == FY_CLI_OPT_TLS_VERIFY) {
    if (strcmp(arg, "true") == 0) o.insecure = 0;
    else if (strcmp(arg, "false") == 0) o.insecure = 1;
    else {
      fy_cli_err("--tls-verify: true or false, got '%s'", arg);
      return -1;
    }
  } else {
    return 0;
  }
  fy_registry_set_defaults(&o);
  return 1;
}
