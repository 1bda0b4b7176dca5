/* Resource limits of an app (memory, cpus, pids) through the kernel's cgroups: cgroup v2 where
 * the unified hierarchy offers the controller, else the v1 hierarchy of that controller (hybrid
 * systems such as many Debian and Raspberry Pi OS installs have both). Each app gets
 * ROOT/ferry/<app> in every hierarchy it uses; the runtime helper moves itself there before the
 * app starts, so everything the app forks is counted. A limit no hierarchy can enforce is
 * reported as not enforced, with the reason, never silently dropped.
 *
 * Blocking (small writes to cgroupfs). The root of every path is a parameter, so unit tests run
 * it against a fake tree. */
#ifndef FERRY_AGENT_CGROUP_H
#define FERRY_AGENT_CGROUP_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/runspec.h"

enum { FY_CG_MEMORY, FY_CG_CPU, FY_CG_PIDS, FY_CG_N };

typedef struct fy_cgroup_sys {
  char v2[1024];            /* the cgroup2 mount, "" if none */
  int v2_has[FY_CG_N];      /* the controller is listed in v2's cgroup.controllers */
  char v1[FY_CG_N][1024];   /* each controller's v1 mount, "" if none */
  char v1_devices[1024];    /* the v1 devices controller's mount, "" if none (v2 has no file for it) */
} fy_cgroup_sys;

/* Reads the mounts from mountinfo text (/proc/self/mountinfo's format) and each v2 mount's
 * cgroup.controllers. */
void fy_cgroup_detect(const char *mountinfo, fy_cgroup_sys *s);

/* The same for this process's /proc/self/mountinfo. */
void fy_cgroup_detect_self(fy_cgroup_sys *s);

#define FY_CG_MAX_DIRS 4
typedef struct fy_cgroup_app {
  char dirs[FY_CG_MAX_DIRS][1200]; /* what the app joins */
  size_t ndirs;
  char memory_dir[1200];           /* where its OOM kills are counted, "" if no memory limit */
  int memory_v2;
  char not_enforced[300];          /* "" when every limit asked for is enforced, else why not */
} fy_cgroup_app;

/* Makes the app's cgroups and writes its limits. Never fails the start: what cannot be enforced
 * is said in out->not_enforced. */
void fy_cgroup_prepare(const fy_cgroup_sys *s, const char *app, const fy_runspec *r, fy_cgroup_app *out);
/* Device rules for an app that was granted device nodes (run.devices): where the v1 devices
 * controller is mounted, ROOT/ferry/<app> there denies every device but the runtime's own /dev
 * (null zero full random urandom tty ptmx, the pts) and the granted ones (host paths, already
 * resolved), and out->dirs gets it. Without v1 (cgroup v2 needs an eBPF program) it says so in
 * out->not_enforced. Call after fy_cgroup_prepare (which starts out afresh). */
void fy_cgroup_devices(const fy_cgroup_sys *s, const char *app, const char *const *devs, size_t n, fy_cgroup_app *out);
/* How many times the kernel's OOM killer has killed in the app's memory cgroup. */
uint64_t fy_cgroup_oom_kills(const fy_cgroup_app *c);
/* Removes the app's (empty) cgroups. */
void fy_cgroup_remove(const fy_cgroup_app *c);

#endif
