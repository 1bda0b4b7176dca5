/* Capabilities, resources and stop signals of a release (see runspec.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/runspec.h"
#include "ferry/text.h"
#include "ferry/yaml.h"

static const char *const cap_names[FY_CAP_LAST + 1] = {
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE"};

int fy_cap_parse(const char *name, int *cap) {
  if (strncasecmp(name, "CAP_", 4) == 0) name += 4;
  if (strcasecmp(name, "ALL") == 0) {
    *cap = -2;
    return FY_OK;
  }
  for (int i = 0; i <= FY_CAP_LAST; i++)
    if (strcasecmp(name, cap_names[i]) == 0) {
      *cap = i;
      return FY_OK;
    }
  return FY_EINVAL;
}

const char *fy_cap_name(int cap) { return cap >= 0 && cap <= FY_CAP_LAST ? cap_names[cap] : NULL; }

void fy_caps_format(uint64_t mask, char *buf, size_t len) {
  size_t off = 0;
  buf[0] = '\0';
  for (int i = 0; i <= FY_CAP_LAST && off < len; i++)
    if (mask & (1ULL << i)) {
      int w = snprintf(buf + off, len - off, "%s%s", off ? "," : "", cap_names[i]);
      if (w < 0) break;
      off += (size_t)w;
    }
}

static const uint64_t all_caps = (1ULL << (FY_CAP_LAST + 1)) - 1;

uint64_t fy_runspec_caps(const fy_runspec *r) { return ((FY_CAPS_DEFAULT & ~r->cap_drop) | r->cap_add) & all_caps; }

static int cap_list(const json_t *a, const char *what, uint64_t *mask, char *err, size_t errlen) {
  if (!a) return FY_OK;
  if (!json_is_array(a) || json_array_size(a) > 64) {
    fy_text_fmt(err, errlen, "capabilities.%s: a list of names such as [NET_ADMIN]", what);
    return FY_EINVAL;
  }
  size_t i;
  const json_t *v;
  json_array_foreach(a, i, v) {
    int c;
    if (!json_is_string(v) || fy_cap_parse(json_string_value(v), &c) != FY_OK) {
      fy_text_fmt(err, errlen, "capabilities.%s: unknown capability '%.40s' (names as in capabilities(7), such as NET_ADMIN)",
                  what, json_is_string(v) ? json_string_value(v) : "?");
      return FY_EINVAL;
    }
    *mask |= c == -2 ? all_caps : 1ULL << c;
  }
  return FY_OK;
}

int fy_caps_from_json(const json_t *j, fy_runspec *r, char *err, size_t errlen) {
  if (!json_is_object(j)) {
    fy_text_fmt(err, errlen, "capabilities: {add: [NAMES], drop: [NAMES]}");
    return FY_EINVAL;
  }
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)j, k, v) {
    if (strcmp(k, "add") != 0 && strcmp(k, "drop") != 0) {
      fy_text_fmt(err, errlen, "capabilities: unknown key '%.40s' (expected add, drop)", k);
      return FY_EINVAL;
    }
  }
  int rc = cap_list(json_object_get(j, "add"), "add", &r->cap_add, err, errlen);
  return rc != FY_OK ? rc : cap_list(json_object_get(j, "drop"), "drop", &r->cap_drop, err, errlen);
}

static json_t *cap_names_json(uint64_t mask) {
  json_t *a = json_array();
  if (mask == all_caps) json_array_append_new(a, json_string("ALL"));
  else
    for (int i = 0; i <= FY_CAP_LAST; i++)
      if (mask & (1ULL << i)) json_array_append_new(a, json_string(cap_names[i]));
  return a;
}

json_t *fy_caps_to_json(const fy_runspec *r) {
  return json_pack("{s:o, s:o}", "add", cap_names_json(r->cap_add), "drop", cap_names_json(r->cap_drop));
}

/* "0.5", "2", "1.25" -> thousandths */
static int parse_cpus(const char *s, int *milli) {
  long whole = 0, frac = 0, scale = 1000;
  const char *p = s;
  if (!isdigit((unsigned char)*p)) return FY_EINVAL;
  while (isdigit((unsigned char)*p)) {
    whole = whole * 10 + (*p++ - '0');
    if (whole > 1024) return FY_EINVAL;
  }
  if (*p == '.') {
    p++;
    while (isdigit((unsigned char)*p) && scale > 1) {
      scale /= 10;
      frac += (*p++ - '0') * scale;
    }
    while (isdigit((unsigned char)*p)) p++;
  }
  if (*p) return FY_EINVAL;
  long m = whole * 1000 + frac;
  if (m < 10) return FY_EINVAL; /* the kernel's smallest quota is 1 ms per 100 ms */
  *milli = (int)m;
  return FY_OK;
}

int fy_resources_from_json(const json_t *j, fy_runspec *r, char *err, size_t errlen) {
  if (!json_is_object(j)) {
    fy_text_fmt(err, errlen, "resources: {memory: 64MiB, cpus: 0.5, pids: 100}");
    return FY_EINVAL;
  }
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)j, k, v) {
    char num[32];
    if (json_is_integer(v)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(num, sizeof num, "%g", json_real_value(v));
    else if (json_is_string(v) && json_string_length(v) < sizeof num) snprintf(num, sizeof num, "%s", json_string_value(v));
    else num[0] = '\0';
    uint64_t u;
    long l;
    if (strcmp(k, "memory") == 0) {
      if (fy_parse_size(num, &u) != FY_OK || u < (4u << 20) || u > (1ULL << 50)) {
        fy_text_fmt(err, errlen, "resources.memory: a size of at least 4MiB such as 64MiB, got '%s'", num);
        return FY_EINVAL;
      }
      r->memory = (int64_t)u;
    } else if (strcmp(k, "cpus") == 0 || strcmp(k, "cpu_milli") == 0) {
      int m = 0;
      int ok = strcmp(k, "cpus") == 0 ? parse_cpus(num, &m) == FY_OK
                                      : fy_parse_long(num, 10, 1024000, &l) == FY_OK && (m = (int)l) > 0;
      if (!ok) {
        fy_text_fmt(err, errlen, "resources.cpus: a number of CPUs such as 0.5 (at least 0.01), got '%s'", num);
        return FY_EINVAL;
      }
      r->cpu_milli = m;
    } else if (strcmp(k, "pids") == 0) {
      if (fy_parse_long(num, 1, 4194304, &l) != FY_OK) {
        fy_text_fmt(err, errlen, "resources.pids: 1-4194304, got '%s'", num);
        return FY_EINVAL;
      }
      r->pids = l;
    } else {
      fy_text_fmt(err, errlen, "resources: unknown key '%.40s' (expected memory, cpus, pids)", k);
      return FY_EINVAL;
    }
  }
  return FY_OK;
}

json_t *fy_resources_to_json(const fy_runspec *r) {
  json_t *o = json_object();
  if (r->memory) json_object_set_new(o, "memory", json_integer(r->memory));
  if (r->cpu_milli) json_object_set_new(o, "cpu_milli", json_integer(r->cpu_milli));
  if (r->pids) json_object_set_new(o, "pids", json_integer(r->pids));
  return o;
}

static const char *const sig_names[32] = {
    NULL, "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
    "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
    "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR",
    "SIGSYS"};

int fy_signal_parse(const char *s, int *sig) {
  long n;
  int v = -1;
  if (fy_parse_long(s, 1, 31, &n) == FY_OK) v = (int)n;
  else
    for (int i = 1; i < 32; i++)
      if (strcasecmp(s, sig_names[i]) == 0 || strcasecmp(s, sig_names[i] + 3) == 0) v = i;
  if (v < 0 || v == 19 /* SIGSTOP */ || v == 17 /* SIGCHLD */) return FY_EINVAL;
  *sig = v;
  return FY_OK;
}

const char *fy_signal_name(int sig) { return sig > 0 && sig < 32 ? sig_names[sig] : NULL; }
