#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "facts.h"
#include "ferry/cpulevel.h"
#include "ferry/version.h"
#include "ferry/wire.h"
#include "ferry/frame.h"
#include "ferry/fsutil.h"

/* Reads the first line of ROOT/rel into out (device-tree strings end in NUL, sysfs in '\n'). */
static void read_probe(const char *root, const char *rel, char *out, size_t cap) {
  char path[2048], *data = NULL;
  size_t len = 0;
  out[0] = '\0';
  snprintf(path, sizeof path, "%s/%s", root, rel);
  if (fy_file_read_kernel(path, 4096, &data, &len) != FY_OK) return;
  size_t n = strcspn(data, "\n");
  if (n >= cap) n = cap - 1;
  memcpy(out, data, n);
  out[n] = '\0';
  free(data);
}

static unsigned read_midr(const char *root) {
  char buf[64];
  read_probe(root, "sys/devices/system/cpu/cpu0/regs/identification/midr_el1", buf, sizeof buf);
  if (buf[0]) return (unsigned)strtoul(buf, NULL, 16);
  /* Fallback: /proc/cpuinfo's "CPU implementer" and "CPU part" lines. */
  char path[2048], *data = NULL;
  size_t len;
  snprintf(path, sizeof path, "%s/proc/cpuinfo", root);
  if (fy_file_read_kernel(path, 1 << 20, &data, &len) != FY_OK) return 0;
  unsigned impl = 0, part = 0;
  const char *p;
  if ((p = strstr(data, "CPU implementer"))) sscanf(strchr(p, ':') ? strchr(p, ':') + 1 : p, " %x", &impl);
  if ((p = strstr(data, "CPU part"))) sscanf(strchr(p, ':') ? strchr(p, ':') + 1 : p, " %x", &part);
  free(data);
  if (impl == 0 || part == 0) return 0;
  return (impl << 24) | (part << 4);
}

/* The CPU level, as a platform variant ("v8.2", "v3"; "" for the baseline), per architecture. */
#if defined(__aarch64__)
static void cpu_level(char *out, size_t n) {
  int l = fy_arm64_level(getauxval(AT_HWCAP), getauxval(AT_HWCAP2));
  if (l > 0) snprintf(out, n, "v8.%d", l);
  else out[0] = '\0';
}
#elif defined(__x86_64__)
static void cpu_level(char *out, size_t n) {
  unsigned a, b, c, d;
  fy_x86_cpuid id = {0};
  if (__get_cpuid(1, &a, &b, &c, &d)) id.l1_ecx = c;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) id.l7_ebx = b;
  if (__get_cpuid(0x80000001u, &a, &b, &c, &d)) id.e1_ecx = c;
  if (id.l1_ecx & (1u << 27)) { /* OSXSAVE: XGETBV may run */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    id.xcr0 = (uint64_t)hi << 32 | lo;
  }
  int l = fy_amd64_level(&id);
  if (l > 1) snprintf(out, n, "v%d", l);
  else out[0] = '\0';
}
#else
static void cpu_level(char *out, size_t n) { (void)n; out[0] = '\0'; }
#endif

/* Under qemu's user-mode emulation the kernel is the host's: the real /proc/cpuinfo of an arm64
 * kernel names the CPU implementer, an x86 host's does not (qemu 7.2 makes up none for aarch64),
 * and qemu-aarch64 runs no 32-bit code. */
static int emulated(void) {
  char *data = NULL;
  size_t len = 0;
  if (fy_file_read_kernel("/proc/cpuinfo", 1 << 20, &data, &len) != FY_OK) return 0;
  int arm = strstr(data, "CPU implementer") != NULL;
  free(data);
  return !arm;
}

/* A 96-byte static linux/arm (EABI5) program: exit(42). */
static const unsigned char arm32_probe[96] = {
    0x7f, 'E', 'L', 'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,      /* ELF32, little endian */
    2, 0, 40, 0, 1, 0, 0, 0, 0x54, 0x00, 0x01, 0x00,               /* EXEC, ARM, v1, entry 0x10054 */
    52, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x05,               /* phoff 52, no sections, EABI5 hard-float */
    52, 0, 32, 0, 1, 0, 0, 0, 0, 0, 0, 0,                          /* ehsize, phentsize, 1 phdr */
    1, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x01, 0x00,                /* PT_LOAD, offset 0, vaddr 0x10000 */
    0x00, 0x00, 0x01, 0x00, 96, 0, 0, 0, 96, 0, 0, 0,              /* paddr, filesz, memsz */
    5, 0, 0, 0, 0x00, 0x10, 0x00, 0x00,                            /* R+X, align 0x1000 */
    0x2a, 0x00, 0xa0, 0xe3,                                        /* mov r0, #42 */
    0x01, 0x70, 0xa0, 0xe3,                                        /* mov r7, #1 (exit) */
    0x00, 0x00, 0x00, 0xef,                                        /* svc #0 */
};

/* Runs the probe from a memfd: 42 back means the kernel ran a 32-bit arm program. A probe that
 * has not ended within 2 s (a binfmt interpreter that hangs) is killed and counts as no. */
static int arm32_runs(void) {
#ifdef MFD_EXEC
  int fd = memfd_create("ferry-arm32-probe", MFD_CLOEXEC | MFD_EXEC); /* vm.memfd_noexec=1 refuses others */
  if (fd < 0 && errno == EINVAL) fd = memfd_create("ferry-arm32-probe", MFD_CLOEXEC);
#else
  int fd = memfd_create("ferry-arm32-probe", MFD_CLOEXEC);
#endif
  if (fd < 0) return 0;
  if (write(fd, arm32_probe, sizeof arm32_probe) != (ssize_t)sizeof arm32_probe) {
    close(fd);
    return 0;
  }
  pid_t pid = fork();
  if (pid == 0) {
    char *argv[] = {"ferry-arm32-probe", NULL}, *envp[] = {NULL};
    fexecve(fd, argv, envp);
    _exit(127);
  }
  close(fd);
  if (pid < 0) return 0;
  int st = 0;
  struct timespec tick = {0, 10 * 1000 * 1000};
  for (int i = 0;; i++) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return 0;
    if (i == 200) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
      return 0;
    }
    nanosleep(&tick, NULL);
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 42;
}

/* On arm64, the kernel refuses PER_LINUX32 when the CPU cannot run AArch32 at EL0 or the kernel
 * lacks CONFIG_COMPAT (arch/arm64/kernel/sys.c); the probe then shows that it really runs. */
static int can_run_aarch32(void) {
  if (emulated()) return 0;
  int old = personality(0xffffffff);
  if (personality(PER_LINUX32) == -1) return 0;
  personality((unsigned long)old);
  return arm32_runs();
}

int fy_facts_detect(const fy_agent_config *cfg, fy_facts *f, char *err, size_t errlen) {
  fy_board *boards = NULL;
  size_t nboards = 0;
  unsigned flags = 0;
  int rc;
  memset(f, 0, sizeof *f);
  fy_platform_native(&f->platform);
  if (strcmp(f->platform.arch, "arm64") == 0 && !can_run_aarch32()) flags |= FY_PLATFORM_NO_AARCH32;
  /* The platform stays the base name; the CPU's level leads the accepted list. */
  fy_platform leveled = f->platform;
  if (!leveled.variant[0]) cpu_level(leveled.variant, sizeof leveled.variant);
  snprintf(f->cpu_level, sizeof f->cpu_level, "%s", leveled.variant);
  f->naccepts = fy_platform_accepts(&leveled, flags, f->accepts, FY_PLATFORM_ACCEPT_MAX);
  f->page_size = sysconf(_SC_PAGESIZE);

  read_probe(cfg->probe_root, "proc/device-tree/model", f->probe.dt_model, sizeof f->probe.dt_model);
  if (!f->probe.dt_model[0])
    read_probe(cfg->probe_root, "sys/firmware/devicetree/base/model", f->probe.dt_model, sizeof f->probe.dt_model);
  read_probe(cfg->probe_root, "sys/class/dmi/id/sys_vendor", f->probe.dmi_vendor, sizeof f->probe.dmi_vendor);
  read_probe(cfg->probe_root, "sys/class/dmi/id/product_name", f->probe.dmi_product, sizeof f->probe.dmi_product);
  f->probe.midr = read_midr(cfg->probe_root);

  if ((rc = fy_board_load_builtin(&boards, &nboards, err, errlen)) != FY_OK) return rc;
  int idx = -1;
  if (strcmp(cfg->board, "auto") == 0) {
    idx = fy_board_match(boards, nboards, &f->probe, &f->platform);
  } else {
    for (size_t i = 0; i < nboards; i++)
      if (strcmp(boards[i].name, cfg->board) == 0) idx = (int)i;
    if (idx < 0) {
      int off = snprintf(err, errlen, "board '%s' is not a known profile (known:", cfg->board);
      for (size_t i = 0; i < nboards && off > 0 && (size_t)off < errlen; i++)
        off += snprintf(err + off, errlen - (size_t)off, " %s", boards[i].name);
      if (off > 0 && (size_t)off < errlen) snprintf(err + off, errlen - (size_t)off, ")");
      free(boards);
      return FY_ECONFIG;
    }
  }
  if (idx >= 0) {
    f->board = boards[idx];
    f->have_board = 1;
  }
  free(boards);
  return FY_OK;
}

json_t *fy_facts_json(const fy_agent_config *cfg, const fy_facts *f, const char *name,
                      uint64_t uptime_s) {
  json_t *labels = json_object(), *apps = json_array();
  if (!labels || !apps) {
    json_decref(labels);
    json_decref(apps);
    return NULL;
  }
  /* Precedence, lowest first: board profile labels, the config's labels, then the facts the
   * agent measures, which nobody can override (a scheduler must be able to trust them). */
  if (f->have_board)
    for (size_t i = 0; i < f->board.nlabels; i++)
      json_object_set_new(labels, f->board.label_keys[i], json_string(f->board.label_vals[i]));
  for (size_t i = 0; i < cfg->nlabels; i++)
    json_object_set_new(labels, cfg->label_keys[i], json_string(cfg->label_vals[i]));
  json_object_set_new(labels, "kubernetes.io/arch", json_string(fy_platform_k8s_arch(&f->platform)));
  json_object_set_new(labels, "kubernetes.io/os", json_string(f->platform.os));
  json_object_set_new(labels, "kubernetes.io/hostname", json_string(name));
  if (f->have_board) json_object_set_new(labels, "ferry.dev/board", json_string(f->board.name));
  if (f->platform.variant[0]) json_object_set_new(labels, "ferry.dev/variant", json_string(f->platform.variant));
  if (f->cpu_level[0]) json_object_set_new(labels, "ferry.dev/cpu-level", json_string(f->cpu_level));
  char ps[32];
  snprintf(ps, sizeof ps, "%ld", f->page_size);
  json_object_set_new(labels, "ferry.dev/page-size", json_string(ps));

  fy_facts_msg m = {.proto = FY_PROTO_VERSION, .name = name, .agent_version = FY_VERSION, .platform = f->platform,
                    .naccepts = f->naccepts, .board = f->have_board ? f->board.name : "", .labels = labels,
                    .free_bytes = fy_fs_free_bytes(cfg->state_dir), .uptime_s = uptime_s, .apps = apps};
  memcpy(m.accepts, f->accepts, f->naccepts * sizeof f->accepts[0]);
  json_t *j = fy_facts_encode(&m);
  json_decref(labels);
  json_decref(apps);
  return j;
}
