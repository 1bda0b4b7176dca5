/* Capabilities, resources and stop signals of a release (see runspec.h). */
#include <ctype.h>
#include <stdarg.h>
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

/* --- volumes and devices -------------------------------------------------------------------- */

int fy_app_path_clean(const char *p) {
  size_t n = p ? strlen(p) : 0;
  if (n < 2 || n >= FY_APP_PATH_MAX || p[0] != '/' || p[n - 1] == '/') return 0;
  for (const char *c = p; *c;) {
    const char *e = strchr(c + 1, '/');
    size_t len = e ? (size_t)(e - c - 1) : strlen(c + 1);
    if (len == 0 || (len == 1 && c[1] == '.') || (len == 2 && c[1] == '.' && c[2] == '.')) return 0;
    c = e ? e : c + 1 + len;
  }
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) return 0;
  return 1;
}

static int under(const char *p, const char *dir) {
  size_t n = strlen(dir);
  return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int fy_volume_name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= FY_VOLUME_NAME_MAX || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9'))) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_')) return 0;
  return 1;
}

int fy_volumes_from_json(const json_t *j, fy_mounts *m, char *err, size_t errlen) {
  m->nvolumes = 0;
  if (!j || json_is_null(j)) return FY_OK;
  if (!json_is_object(j)) return fy_text_fail(err, errlen, FY_EINVAL, "volumes: expected a map of name: /path/in/the/app");
  if (json_object_size(j) > FY_VOLUMES_MAX) return fy_text_fail(err, errlen, FY_EINVAL, "volumes: at most %d", FY_VOLUMES_MAX);
  const char *name;
  const json_t *v;
  json_object_foreach((json_t *)j, name, v) {
    const char *path = json_string_value(v);
    if (!fy_volume_name_valid(name)) return fy_text_fail(err, errlen, FY_EINVAL, "volumes: '%.40s' is not a volume name (1-32 of a-z, 0-9, '-', '_')", name);
    if (!path || !fy_app_path_clean(path))
      return fy_text_fail(err, errlen, FY_EINVAL, "volumes.%s: expected a clean absolute path such as /var/lib/app", name);
    if (under(path, "/proc") || under(path, "/sys") || under(path, "/dev") || under(path, "/run/secrets"))
      return fy_text_fail(err, errlen, FY_EINVAL, "volumes.%s: %s is where the runtime mounts its own file systems", name, path);
    char env_a[64], env_b[64];
    fy_volume_env_name(name, env_a, sizeof env_a);
    for (size_t i = 0; i < m->nvolumes; i++) {
      if (strcmp(m->volumes[i].path, path) == 0) return fy_text_fail(err, errlen, FY_EINVAL, "volumes.%s: %s is another volume's path too", name, path);
      fy_volume_env_name(m->volumes[i].name, env_b, sizeof env_b);
      if (strcmp(env_a, env_b) == 0)
        return fy_text_fail(err, errlen, FY_EINVAL, "volumes.%s: its %s would be volume %s's too", name, env_a, m->volumes[i].name);
    }
    snprintf(m->volumes[m->nvolumes].name, FY_VOLUME_NAME_MAX, "%s", name);
    snprintf(m->volumes[m->nvolumes].path, FY_APP_PATH_MAX, "%s", path);
    m->nvolumes++;
  }
  return FY_OK;
}

int fy_devices_from_json(const json_t *j, fy_mounts *m, char *err, size_t errlen) {
  m->ndevices = 0;
  if (!j || json_is_null(j)) return FY_OK;
  if (!json_is_array(j)) return fy_text_fail(err, errlen, FY_EINVAL, "devices: expected a list of device paths such as /dev/i2c-1");
  if (json_array_size(j) > FY_DEVICES_MAX) return fy_text_fail(err, errlen, FY_EINVAL, "devices: at most %d", FY_DEVICES_MAX);
  for (size_t i = 0; i < json_array_size(j); i++) {
    const char *path = json_string_value(json_array_get(j, i));
    if (!path || !fy_app_path_clean(path) || !under(path, "/dev") || strcmp(path, "/dev") == 0)
      return fy_text_fail(err, errlen, FY_EINVAL, "devices: entry %zu is not a clean path under /dev", i + 1);
    snprintf(m->devices[m->ndevices++], FY_APP_PATH_MAX, "%s", path);
  }
  return FY_OK;
}

json_t *fy_volumes_to_json(const fy_mounts *m) {
  json_t *o = json_object();
  for (size_t i = 0; o && i < m->nvolumes; i++) json_object_set_new(o, m->volumes[i].name, json_string(m->volumes[i].path));
  return o;
}

json_t *fy_devices_to_json(const fy_mounts *m) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < m->ndevices; i++) json_array_append_new(a, json_string(m->devices[i]));
  return a;
}

void fy_volume_env_name(const char *name, char *out, size_t len) {
  size_t o = (size_t)snprintf(out, len, "FERRY_VOLUME_");
  for (size_t i = 0; name[i] && o + 1 < len; i++) out[o++] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
  out[o < len ? o : len - 1] = '\0';
}
