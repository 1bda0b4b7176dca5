/* Normalization and fallback tables follow containerd's platforms package (database.go,
 * compare.go); docs/platforms.md has them as tables. */
#include <stdio.h>
#include <string.h>

#include "ferry/platform.h"

/* The build's own platform, chosen once at file level (platform differences by file and macro, not #ifdef in bodies). */
#if defined(__x86_64__)
#define FY_NATIVE_ARCH "amd64"
#define FY_NATIVE_VARIANT ""
#elif defined(__aarch64__)
#define FY_NATIVE_ARCH "arm64"
#define FY_NATIVE_VARIANT ""
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 8
#define FY_NATIVE_ARCH "arm"
#define FY_NATIVE_VARIANT "v8"
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH == 6
#define FY_NATIVE_ARCH "arm"
#define FY_NATIVE_VARIANT "v6"
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH == 5
#define FY_NATIVE_ARCH "arm"
#define FY_NATIVE_VARIANT "v5"
#elif defined(__arm__)
#define FY_NATIVE_ARCH "arm"
#define FY_NATIVE_VARIANT "v7"
#elif defined(__i386__)
#define FY_NATIVE_ARCH "386"
#define FY_NATIVE_VARIANT ""
#elif defined(__riscv) && __riscv_xlen == 64
#define FY_NATIVE_ARCH "riscv64"
#define FY_NATIVE_VARIANT ""
#else
#error "unknown target architecture: add it to protocol/src/platform.c"
#endif

static int valid_field(const char *s, size_t n) {
  if (n == 0 || n >= FY_PLATFORM_FIELD) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static void set(char *dst, const char *src) { snprintf(dst, FY_PLATFORM_FIELD, "%s", src); }

static int is_os(const char *s) {
  static const char *const oses[] = {"linux", "darwin", "windows", "freebsd", "netbsd",
                                     "openbsd", "android", "illumos", "solaris", "macos",
                                     "unknown", NULL};
  for (size_t i = 0; oses[i]; i++)
    if (strcmp(s, oses[i]) == 0) return 1;
  return 0;
}

/* One row of the architecture table: an input name (and variant, "*" for any) and what it
 * becomes. Rows are tried in order. */
struct arch_row {
  const char *in_arch, *in_variant;
  const char *arch, *variant; /* variant NULL: keep the input's */
};

static const struct arch_row arch_table[] = {
    {"x86_64", "v1", "amd64", ""},   {"x86-64", "v1", "amd64", ""},  {"amd64", "v1", "amd64", ""},
    {"x86_64", "*", "amd64", NULL},  {"x86-64", "*", "amd64", NULL}, {"amd64", "*", "amd64", NULL},
    {"i386", "*", "386", ""},        {"i486", "*", "386", ""},       {"i586", "*", "386", ""},
    {"i686", "*", "386", ""},        {"386", "*", "386", ""},
    {"aarch64", "8", "arm64", ""},   {"aarch64", "v8", "arm64", ""}, {"aarch64", "v8.0", "arm64", ""},
    {"arm64", "8", "arm64", ""},     {"arm64", "v8", "arm64", ""},   {"arm64", "v8.0", "arm64", ""},
    {"aarch64", "9", "arm64", "v9"}, {"aarch64", "9.0", "arm64", "v9"}, {"aarch64", "v9.0", "arm64", "v9"},
    {"arm64", "9", "arm64", "v9"},   {"arm64", "9.0", "arm64", "v9"},   {"arm64", "v9.0", "arm64", "v9"},
    {"aarch64", "*", "arm64", NULL}, {"arm64", "*", "arm64", NULL},
    {"armhf", "*", "arm", "v7"},     {"armel", "*", "arm", "v6"},
    {"arm", "", "arm", "v7"},        {"arm", "7", "arm", "v7"},
    {"arm", "5", "arm", "v5"},       {"arm", "6", "arm", "v6"},     {"arm", "8", "arm", "v8"},
    {"arm", "*", "arm", NULL},
    {"armv8l", "*", "arm", "v8"},    {"armv7l", "*", "arm", "v7"},   {"armv7", "*", "arm", "v7"},
    {"armv6l", "*", "arm", "v6"},    {"armv6", "*", "arm", "v6"},    {"armv5tel", "*", "arm", "v5"},
    {"armv5l", "*", "arm", "v5"},
};

static void normalize(fy_platform *p) {
  if (strcmp(p->os, "macos") == 0) set(p->os, "darwin");
  for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++) {
    const struct arch_row *r = &arch_table[i];
    if (strcmp(p->arch, r->in_arch) != 0) continue;
    if (strcmp(r->in_variant, "*") != 0 && strcmp(p->variant, r->in_variant) != 0) continue;
    set(p->arch, r->arch);
    if (r->variant) set(p->variant, r->variant);
    return;
  }
}

static void lower_copy(char *dst, const char *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  dst[n] = '\0';
}

int fy_platform_from_fields(const char *os, const char *arch, const char *variant,
                            fy_platform *out) {
  const char *f[3] = {os, arch, variant ? variant : ""};
  char *dst[3] = {out->os, out->arch, out->variant};
  memset(out, 0, sizeof *out);
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(f[i]);
    if (i == 2 && n == 0) break;
    if (n >= FY_PLATFORM_FIELD) return FY_EINVAL;
    lower_copy(dst[i], f[i], n);
    if (!valid_field(dst[i], n)) return FY_EINVAL;
  }
  normalize(out);
  return FY_OK;
}

int fy_platform_parse(const char *spec, fy_platform *out) {
  char part[3][FY_PLATFORM_FIELD];
  size_t np = 0;
  const char *s = spec;
  if (spec == NULL || *spec == '\0') return FY_EINVAL;
  for (;;) {
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (np == 3 || n == 0 || n >= FY_PLATFORM_FIELD) return FY_EINVAL;
    lower_copy(part[np], s, n);
    np++;
    if (!slash) break;
    s = slash + 1;
  }
  if (np == 1) {
    if (is_os(part[0])) {
      fy_platform nat;
      fy_platform_native(&nat);
      return fy_platform_from_fields(part[0], nat.arch, nat.variant, out);
    }
    return fy_platform_from_fields("linux", part[0], NULL, out);
  }
  if (np == 2) {
    if (is_os(part[0])) return fy_platform_from_fields(part[0], part[1], NULL, out);
    return fy_platform_from_fields("linux", part[0], part[1], out);
  }
  return fy_platform_from_fields(part[0], part[1], part[2], out);
}

char *fy_platform_format(const fy_platform *p, char *buf, size_t n) {
  if (p->variant[0])
    snprintf(buf, n, "%s/%s/%s", p->os, p->arch, p->variant);
  else
    snprintf(buf, n, "%s/%s", p->os, p->arch);
  return buf;
}

int fy_platform_equal(const fy_platform *a, const fy_platform *b) {
  return strcmp(a->os, b->os) == 0 && strcmp(a->arch, b->arch) == 0 &&
         strcmp(a->variant, b->variant) == 0;
}

void fy_platform_native(fy_platform *out) {
  memset(out, 0, sizeof *out);
  set(out->os, "linux");
  set(out->arch, FY_NATIVE_ARCH);
  set(out->variant, FY_NATIVE_VARIANT);
}

/* Parses "vM.N" / "vM" into major and minor; returns 0 when the variant has another shape. */
static int arm64_level(const char *v, int *major, int *minor) {
  int ma = 0, mi = 0, consumed = 0;
  if (v[0] == '\0') { *major = 8; *minor = 0; return 1; }
  if (sscanf(v, "v%d.%d%n", &ma, &mi, &consumed) == 2 && v[consumed] == '\0') {
  } else if (sscanf(v, "v%d%n", &ma, &consumed) == 1 && v[consumed] == '\0') {
    mi = 0;
  } else {
    return 0;
  }
  if (ma < 8 || ma > 9 || mi < 0 || mi > 9) return 0;
  *major = ma;
  *minor = mi;
  return 1;
}

static size_t push(fy_platform *out, size_t n, size_t max, const char *os, const char *arch,
                   const char *variant) {
  if (n >= max) return n;
  memset(&out[n], 0, sizeof out[n]);
  set(out[n].os, os);
  set(out[n].arch, arch);
  set(out[n].variant, variant);
  return n + 1;
}

static size_t push_arm32(fy_platform *out, size_t n, size_t max, const char *os, int from) {
  static const char *const v[] = {"v5", "v6", "v7", "v8"};
  for (int i = from; i >= 5; i--) n = push(out, n, max, os, "arm", v[i - 5]);
  return n;
}

size_t fy_platform_accepts(const fy_platform *dev, unsigned flags, fy_platform *out, size_t max) {
  size_t n = 0;
  const char *os = dev->os;
  char v[FY_PLATFORM_FIELD];
  if (max == 0) return 0;
  n = push(out, n, max, os, dev->arch, dev->variant);
  if (strcmp(dev->arch, "amd64") == 0) {
    int level = 1;
    if (sscanf(dev->variant, "v%d", &level) != 1) level = 1;
    for (int l = level - 1; l >= 2 && l <= 4; l--) {
      snprintf(v, sizeof v, "v%d", l);
      n = push(out, n, max, os, "amd64", v);
    }
    if (dev->variant[0]) n = push(out, n, max, os, "amd64", "");
    n = push(out, n, max, os, "386", "");
  } else if (strcmp(dev->arch, "arm64") == 0) {
    int ma, mi;
    if (arm64_level(dev->variant, &ma, &mi)) {
      /* v9.N implies v8.(N+5) (Armv9.0 is aligned with Armv8.5). */
      int v8max = ma == 9 ? mi + 5 : mi;
      if (ma == 9) {
        for (int m = mi - 1; m >= 1; m--) {
          snprintf(v, sizeof v, "v9.%d", m);
          n = push(out, n, max, os, "arm64", v);
        }
        if (mi > 0) n = push(out, n, max, os, "arm64", "v9");
      }
      int first8 = ma == 9 ? v8max : v8max - 1;
      for (int m = first8; m >= 1; m--) {
        snprintf(v, sizeof v, "v8.%d", m);
        n = push(out, n, max, os, "arm64", v);
      }
      if (dev->variant[0]) n = push(out, n, max, os, "arm64", "");
      if (!(flags & FY_PLATFORM_NO_AARCH32)) n = push_arm32(out, n, max, os, 8);
    }
  } else if (strcmp(dev->arch, "arm") == 0) {
    int level = 0;
    if (sscanf(dev->variant, "v%d", &level) == 1 && level >= 5 && level <= 8)
      n = push_arm32(out, n, max, os, level - 1);
  }
  return n;
}

int fy_platform_rank(const fy_platform *accepts, size_t n, const fy_platform *cand) {
  for (size_t i = 0; i < n; i++)
    if (fy_platform_equal(&accepts[i], cand)) return (int)i;
  return -1;
}
