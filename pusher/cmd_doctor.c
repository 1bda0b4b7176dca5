/* ferry doctor: the classic pitfalls of the multi-arch workflow, checked per platform, each
 * problem with the exact command that fixes it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "elfcheck.h"
#include "ferry/fsutil.h"

struct check {
  char platform[32], what[48], status[16], detail[256], fix[256];
  int required;
};

static int capture(const char *cmd, char *out, size_t len) {
  FILE *p = popen(cmd, "r");
  out[0] = '\0';
  if (!p) return -1;
  if (!fgets(out, (int)len, p)) out[0] = '\0';
  out[strcspn(out, "\n")] = '\0';
  return pclose(p);
}

static void add(struct check *c, size_t *n, const char *plat, const char *what, int ok, int required, const char *detail, const char *fix) {
  struct check *k = &c[(*n)++];
  snprintf(k->platform, sizeof k->platform, "%s", plat);
  snprintf(k->what, sizeof k->what, "%s", what);
  snprintf(k->status, sizeof k->status, "%s", ok ? "ok" : required ? "MISSING" : "note");
  snprintf(k->detail, sizeof k->detail, "%s", detail);
  snprintf(k->fix, sizeof k->fix, "%s", ok ? "" : fix);
  k->required = required;
}

#define BINFMT "/proc/sys/fs/binfmt_misc"

int fy_cmd_doctor(int argc, char **argv) {
  int json = argc > 1 && strcmp(argv[1], "--json") == 0;
  if (argc > 1 && !json) {
    printf("usage: ferry doctor [--json]\nChecks cross compilers, sysroots, qemu-user and binfmt_misc for each platform.\n");
    return strcmp(argv[1], "--help") == 0 ? 0 : 2;
  }
  static const char *const plats[] = {"linux/amd64", "linux/arm64", "linux/arm/v7"};
  struct check c[32];
  size_t n = 0;
  fy_platform native;
  fy_platform_native(&native);
  char buf[512], cmd[512], detail[512];
  struct stat st;
  /* binfmt_misc's status file is the switch for every handler at once; each entry has its own. */
  char *gtext = NULL;
  size_t glen;
  int binfmt_mounted = fy_file_read_kernel(BINFMT "/status", 64, &gtext, &glen) == FY_OK;
  int binfmt_on = binfmt_mounted && strncmp(gtext, "enabled", 7) == 0;
  free(gtext);
  for (size_t i = 0; i < 3; i++) {
    fy_platform p;
    if (fy_platform_parse(plats[i], &p) != FY_OK) continue;
    const char *t = fy_platform_triplet(&p), *q = fy_platform_qemu(&p);
    int is_native = fy_platform_equal(&p, &native);
    snprintf(cmd, sizeof cmd, "%s-gcc --version 2>/dev/null", t);
    int ok = capture(cmd, buf, sizeof buf) == 0 && buf[0];
    char fix[256];
    snprintf(fix, sizeof fix, "apt-get install gcc-%s", t);
    add(c, &n, plats[i], "cross compiler", ok || (is_native && capture("gcc --version 2>/dev/null", buf, sizeof buf) == 0), 1, ok ? buf : "", fix);
    char libc[300], libc2[300];
    snprintf(libc, sizeof libc, "/usr/%s/lib/libc.a", t);
    snprintf(libc2, sizeof libc2, "/usr/lib/%s/libc.a", t);
    ok = stat(libc, &st) == 0 || stat(libc2, &st) == 0;
    snprintf(detail, sizeof detail, "%s", ok ? (stat(libc, &st) == 0 ? libc : libc2) : "no libc.a for static builds");
    snprintf(fix, sizeof fix, is_native ? "apt-get install libc6-dev" : "apt-get install libc6-dev-%s-cross",
             strcmp(p.arch, "arm") == 0 ? "armhf" : p.arch);
    add(c, &n, plats[i], "sysroot libraries", ok, 1, detail, fix);
    if (is_native) continue;
    snprintf(cmd, sizeof cmd, "%s --version 2>/dev/null", q);
    ok = capture(cmd, buf, sizeof buf) == 0 && buf[0];
    add(c, &n, plats[i], "qemu-user", ok, 1, ok ? buf : "needed by 'ferry test' and emulated boards", "apt-get install qemu-user");
    /* binfmt_misc: ferry itself never needs it (it runs qemu explicitly); other tools do. */
    char entry[128], *text = NULL;
    size_t len;
    snprintf(entry, sizeof entry, BINFMT "/%s", q);
    int present = binfmt_mounted && fy_file_read_kernel(entry, 4096, &text, &len) == FY_OK;
    int enabled = present && strncmp(text, "enabled", 7) == 0;
    const char *fl = present ? strstr(text, "flags:") : NULL;
    int fflag = fl && strchr(fl + 6, 'F') && strchr(fl + 6, 'F') < strchr(fl, '\n');
    free(text);
    char entry_on[160];
    snprintf(entry_on, sizeof entry_on, "echo 1 > %s   # this handler only", entry);
    if (!binfmt_mounted)
      add(c, &n, plats[i], "binfmt_misc", 0, 0, "not mounted: the kernel cannot run foreign binaries by itself (exec format error)",
          "mount binfmt_misc -t binfmt_misc " BINFMT);
    else if (!binfmt_on)
      add(c, &n, plats[i], "binfmt_misc", 0, 0, "switched off as a whole (" BINFMT "/status says disabled): no handler runs",
          "echo 1 > " BINFMT "/status");
    else if (!present)
      add(c, &n, plats[i], "binfmt_misc", 0, 0, "no qemu handler registered (docker/buildx RUN steps fail with exec format error)",
          "apt-get install qemu-user-static   # registers handlers with the F flag");
    else
      add(c, &n, plats[i], "binfmt_misc", enabled && fflag, 0, enabled ? (fflag ? "registered, enabled, F flag" : "registered without the F flag: fails in containers and chroots") : "registered but disabled",
          enabled ? "apt-get install qemu-user-static   # re-registers with the F (fix-binary) flag" : entry_on);
  }
  int problems = 0;
  for (size_t i = 0; i < n; i++) problems += c[i].required && strcmp(c[i].status, "ok") != 0;
  if (json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
      json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "platform", c[i].platform, "check", c[i].what, "status",
                                           c[i].status, "detail", c[i].detail, "fix", c[i].fix, "required", c[i].required));
    json_t *out = json_pack("{s:o, s:i}", "checks", arr, "problems", problems);
    json_dumpf(out, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(out);
  } else {
    printf("%-14s %-18s %-8s %s\n", "PLATFORM", "CHECK", "STATUS", "DETAIL");
    for (size_t i = 0; i < n; i++) {
      printf("%-14s %-18s %-8s %s\n", c[i].platform, c[i].what, c[i].status, c[i].detail);
      if (c[i].fix[0]) printf("%-14s %-18s %-8s fix: %s\n", "", "", "", c[i].fix);
    }
    printf("\nNaming: Debian and Go say arm64, the kernel and GCC say aarch64; ferry takes both (and armhf = armv7l =\n"
           "linux/arm/v7, x86_64 = amd64). 'exec format error' means the binary's architecture is not the machine's:\n"
           "'ferry build' checks every ELF file per platform and 'ferry test' runs foreign ones under qemu.\n");
    printf("%s\n", problems ? "Problems found: run the fix commands above." : "Everything ferry needs is here.");
  }
  return problems ? 1 : 0;
}
