#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <unistd.h>

#include "facts.h"
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
  if (fy_file_read(path, 4096, &data, &len) != FY_OK) return;
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
  if (fy_file_read(path, 1 << 20, &data, &len) != FY_OK) return 0;
  unsigned impl = 0, part = 0;
  const char *p;
  if ((p = strstr(data, "CPU implementer"))) sscanf(strchr(p, ':') ? strchr(p, ':') + 1 : p, " %x", &impl);
  if ((p = strstr(data, "CPU part"))) sscanf(strchr(p, ':') ? strchr(p, ':') + 1 : p, " %x", &part);
  free(data);
  if (impl == 0 || part == 0) return 0;
  return (impl << 24) | (part << 4);
}

/* On arm64, the kernel refuses PER_LINUX32 when the CPU cannot run AArch32 at EL0 or the kernel
 * lacks CONFIG_COMPAT (arch/arm64/kernel/sys.c), which is exactly "can this device run linux/arm". */
static int can_run_aarch32(void) {
  int old = personality(0xffffffff);
  if (personality(PER_LINUX32) == -1) return 0;
  personality((unsigned long)old);
  return 1;
}

int fy_facts_detect(const fy_agent_config *cfg, fy_facts *f, char *err, size_t errlen) {
  fy_board *boards = NULL;
  size_t nboards = 0;
  unsigned flags = 0;
  int rc;
  memset(f, 0, sizeof *f);
  fy_platform_native(&f->platform);
  if (strcmp(f->platform.arch, "arm64") == 0 && !can_run_aarch32()) flags |= FY_PLATFORM_NO_AARCH32;
  f->naccepts = fy_platform_accepts(&f->platform, flags, f->accepts, FY_PLATFORM_ACCEPT_MAX);
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
