/* Resource limits through cgroups (see cgroup.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cgroup.h"
#include "ferry/text.h"

static const char *const names[FY_CG_N] = {"memory", "cpu", "pids"};

/* Is word one of the comma-separated items of list? */
static int has_item(const char *list, const char *word) {
  size_t wl = strlen(word);
  for (const char *p = list; p && *p;) {
    const char *e = strchr(p, ',');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == wl && strncmp(p, word, wl) == 0) return 1;
    p = e ? e + 1 : NULL;
  }
  return 0;
}

static int read_small(const char *path, char *buf, size_t len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, len - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return 0;
}

void fy_cgroup_detect(const char *mountinfo, fy_cgroup_sys *s) {
  memset(s, 0, sizeof *s);
  const char *line = mountinfo;
  while (line && *line) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char buf[2048];
    if (len < sizeof buf) {
      memcpy(buf, line, len);
      buf[len] = '\0';
      /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS */
      char *f[6], *save = NULL, *sep = strstr(buf, " - ");
      size_t k = 0;
      if (sep) {
        *sep = '\0';
        for (char *t = strtok_r(buf, " ", &save); t && k < 6; t = strtok_r(NULL, " ", &save)) f[k++] = t;
        char *fstype = strtok_r(sep + 3, " ", &save), *src = strtok_r(NULL, " ", &save), *sopts = strtok_r(NULL, " ", &save);
        (void)src;
        if (k >= 5 && fstype && strcmp(fstype, "cgroup2") == 0 && !s->v2[0]) {
          snprintf(s->v2, sizeof s->v2, "%s", f[4]);
        } else if (k >= 5 && fstype && sopts && strcmp(fstype, "cgroup") == 0) {
          for (int c = 0; c < FY_CG_N; c++)
            if (has_item(sopts, names[c]) && !s->v1[c][0]) snprintf(s->v1[c], sizeof s->v1[c], "%s", f[4]);
          if (has_item(sopts, "devices") && !s->v1_devices[0]) snprintf(s->v1_devices, sizeof s->v1_devices, "%s", f[4]);
        }
      }
    }
    line = end ? end + 1 : NULL;
  }
  if (s->v2[0]) {
    char path[1100], ctl[512];
    snprintf(path, sizeof path, "%s/cgroup.controllers", s->v2);
    if (read_small(path, ctl, sizeof ctl) == 0) {
      char *save = NULL;
      for (char *t = strtok_r(ctl, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
        for (int c = 0; c < FY_CG_N; c++)
          if (strcmp(t, names[c]) == 0) s->v2_has[c] = 1;
    }
  }
}

void fy_cgroup_detect_self(fy_cgroup_sys *s) {
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap);
  int fd = buf ? open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC) : -1;
  ssize_t n;
  while (fd >= 0 && len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0) len += (size_t)n;
  if (fd >= 0) close(fd);
  if (buf) buf[len] = '\0';
  fy_cgroup_detect(buf ? buf : "", s);
  free(buf);
}

static int write_text(const char *dir, const char *file, const char *text) {
  char path[1400];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, text, strlen(text));
  int e = errno;
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -(n < 0 ? e : EIO);
}

static int make_dir(const char *path) { return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -errno; }

static void add_dir(fy_cgroup_app *out, const char *dir) {
  for (size_t i = 0; i < out->ndirs; i++)
    if (strcmp(out->dirs[i], dir) == 0) return;
  if (out->ndirs < FY_CG_MAX_DIRS) snprintf(out->dirs[out->ndirs++], sizeof out->dirs[0], "%s", dir);
}

static void not_enforced(fy_cgroup_app *out, const char *what, const char *why) {
  size_t n = strlen(out->not_enforced);
  fy_text_fmt(out->not_enforced + n, sizeof out->not_enforced - n, "%s%s: %s", n ? "; " : "", what, why);
}

void fy_cgroup_prepare(const fy_cgroup_sys *s, const char *app, const fy_runspec *r, fy_cgroup_app *out) {
  memset(out, 0, sizeof *out);
  int want[FY_CG_N] = {r->memory > 0, r->cpu_milli > 0, r->pids > 0};
  char values[FY_CG_N][2][64];
  snprintf(values[FY_CG_MEMORY][0], 64, "%lld", (long long)r->memory);        /* v2 memory.max */
  snprintf(values[FY_CG_MEMORY][1], 64, "%lld", (long long)r->memory);        /* v1 memory.limit_in_bytes */
  snprintf(values[FY_CG_CPU][0], 64, "%d 100000", r->cpu_milli * 100);        /* v2 cpu.max: quota period */
  snprintf(values[FY_CG_CPU][1], 64, "%d", r->cpu_milli * 100);               /* v1 cpu.cfs_quota_us */
  snprintf(values[FY_CG_PIDS][0], 64, "%lld", (long long)r->pids);
  snprintf(values[FY_CG_PIDS][1], 64, "%lld", (long long)r->pids);
  static const char *const files[FY_CG_N][2] = {
      {"memory.max", "memory.limit_in_bytes"}, {"cpu.max", "cpu.cfs_quota_us"}, {"pids.max", "pids.max"}};
  for (int c = 0; c < FY_CG_N; c++) {
    if (!want[c]) continue;
    char base[1100], dir[1200];
    int v2 = s->v2_has[c], rc;
    if (!v2 && !s->v1[c][0]) {
      not_enforced(out, names[c],
                   c == FY_CG_MEMORY ? "the kernel offers no memory cgroup (on a Raspberry Pi add cgroup_enable=memory "
                                       "cgroup_memory=1 to cmdline.txt and reboot)"
                                     : "the kernel offers no cgroup controller for it");
      continue;
    }
    snprintf(base, sizeof base, "%s/ferry", v2 ? s->v2 : s->v1[c]);
    if (fy_path_fmt(dir, sizeof dir, "%s/%s", base, app) != FY_OK) continue;
    if ((rc = make_dir(base)) == 0 && v2) {
      char ctl[16], parent[1100];
      snprintf(ctl, sizeof ctl, "+%s", names[c]);
      snprintf(parent, sizeof parent, "%s", s->v2);
      rc = write_text(parent, "cgroup.subtree_control", ctl);
      if (rc == 0) rc = write_text(base, "cgroup.subtree_control", ctl);
    }
    if (rc == 0) rc = make_dir(dir);
    if (rc == 0 && c == FY_CG_CPU && !v2) rc = write_text(dir, "cpu.cfs_period_us", "100000");
    if (rc == 0) rc = write_text(dir, files[c][v2 ? 0 : 1], values[c][v2 ? 0 : 1]);
    if (rc != 0) {
      char why[200];
      fy_text_fmt(why, sizeof why, "cannot set it up in %s (%s)", dir, strerror(-rc));
      not_enforced(out, names[c], why);
      continue;
    }
    add_dir(out, dir);
    if (c == FY_CG_MEMORY) {
      snprintf(out->memory_dir, sizeof out->memory_dir, "%s", dir);
      out->memory_v2 = v2;
    }
  }
}

void fy_cgroup_devices(const fy_cgroup_sys *s, const char *app, const char *const *devs, size_t n, fy_cgroup_app *out) {
  if (n == 0) return;
  if (!s->v1_devices[0]) {
    not_enforced(out, "device rules", "no v1 devices controller (cgroup v2 would need an eBPF program); the granted nodes are "
                                      "the only ones in the app's /dev, and its mounts are nodev");
    return;
  }
  /* What the runtime puts in every app's /dev: null zero full random urandom, tty, ptmx and pts. */
  static const char *const base_rules[] = {"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                                           "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"};
  char base[1100], dir[1200], why[300];
  snprintf(base, sizeof base, "%s/ferry", s->v1_devices);
  int rc = fy_path_fmt(dir, sizeof dir, "%s/%s", base, app) == FY_OK ? 0 : -ENAMETOOLONG;
  if (rc == 0) rc = make_dir(base);
  if (rc == 0) rc = make_dir(dir);
  if (rc == 0) rc = write_text(dir, "devices.deny", "a");
  for (size_t i = 0; rc == 0 && i < sizeof base_rules / sizeof base_rules[0]; i++) rc = write_text(dir, "devices.allow", base_rules[i]);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    struct stat st;
    char rule[64];
    if (stat(devs[i], &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) continue; /* the launch says why */
    snprintf(rule, sizeof rule, "%c %u:%u rwm", S_ISCHR(st.st_mode) ? 'c' : 'b', major(st.st_rdev), minor(st.st_rdev));
    rc = write_text(dir, "devices.allow", rule);
  }
  if (rc != 0) {
    fy_text_fmt(why, sizeof why, "cannot set them up in %s (%s)", dir, strerror(-rc));
    not_enforced(out, "device rules", why);
    return;
  }
  add_dir(out, dir);
}

uint64_t fy_cgroup_oom_kills(const fy_cgroup_app *c) {
  if (!c->memory_dir[0]) return 0;
  char path[1300], text[1024];
  snprintf(path, sizeof path, "%s/%s", c->memory_dir, c->memory_v2 ? "memory.events" : "memory.oom_control");
  if (read_small(path, text, sizeof text) != 0) return 0;
  const char *p = strstr(text, "oom_kill ");
  return p ? strtoull(p + 9, NULL, 10) : 0;
}

void fy_cgroup_remove(const fy_cgroup_app *c) {
  for (size_t i = 0; i < c->ndirs; i++) (void)rmdir(c->dirs[i]);
}
