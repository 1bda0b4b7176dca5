/* Launch preparation: from a release's run.json, the node's config and the image's files, the
 * exact command ferryd spawns (an exec plan). No process is started here, so unit tests can
 * check every plan; the supervisor (apps.c) spawns it. Blocking: reads the image's files (the
 * program's ELF header, /etc/passwd, /etc/group) inside the release's rootfs, each opened inside
 * that root (fsutil.h's fy_open_in_root), non-blocking, and only when it is a regular file. */
#ifndef FERRY_AGENT_LAUNCH_H
#define FERRY_AGENT_LAUNCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "facts.h"
#include "ferry/runspec.h"

typedef struct fy_launch_in {
  const json_t *run;          /* the release's run.json: argv, env, workdir, user */
  const char *rootfs;         /* the release's root on the host */
  const char *app, *release, *node;
  const char *app_dir;        /* STATE/apps/<app>: its volumes are under volumes/ */
  const fy_agent_config *cfg; /* runtime.isolation, runtime.exec_wrapper */
  const fy_facts *facts;      /* the platforms this node executes */
  int is_root;                /* geteuid() == 0: containment possible, ids can be set */
  const char *self_exe;       /* this ferryd, which re-executes as the runtime helper */
  const char *const *cgroups; /* the app's cgroup directories the helper joins (cgroup.h) */
  size_t ncgroups;
  /* The health command: run instead of the image's Entrypoint/Cmd, inside the running app
   * (the helper with pid join_pid), NULL for the app itself. */
  const json_t *argv_override;
  int join_pid;
} fy_launch_in;

typedef enum { FY_LAUNCH_WRAPPER, FY_LAUNCH_CONTAIN, FY_LAUNCH_PLAIN } fy_launch_mode;

typedef struct fy_launch_plan {
  fy_launch_mode mode;
  char **argv;                /* NULL-terminated; argv[0] is the host path spawned */
  size_t nargv;
  char **env;                 /* NULL-terminated; contained, the helper's own (PATH only: the image's
                                 Env goes to the workload through the spec) */
  size_t nenv;
  char cwd[8600];             /* host directory to start in; "" when the chroot helper enters it */
  int set_ids;                /* spawn with uid/gid (plain mode as root) */
  unsigned uid, gid;
  char prog[4096];            /* the program, as the image names it */
  uint64_t caps;              /* the capabilities the workload keeps (contained mode) */
  int stop_signal;            /* what stops it: the image's StopSignal, SIGTERM by default */
  uint64_t stop_timeout_ms;   /* then SIGKILL after this */
  fy_mounts mounts;           /* the release's volumes and devices (the caller creates the volumes) */
  char device_src[FY_DEVICES_MAX][FY_APP_PATH_MAX]; /* each device resolved on the host, checked at
                                                       every start: allowed now, and a device node */
} fy_launch_plan;

/* Builds the plan. FY_OK; FY_EEXEC with a message a person can act on in err ("cannot execute
 * /app: not found in the image's PATH", "exec format error: /app is an x86-64 ELF, this node runs
 * linux/arm64", "User 'x' is not in the image's /etc/passwd", ...); FY_ENOMEM. The plan owns its
 * arrays: fy_launch_plan_free (NULL-safe, also after a failure). */
int fy_launch_plan_make(const fy_launch_in *in, fy_launch_plan *out, char *err, size_t errlen) FY_WUR;
void fy_launch_plan_free(fy_launch_plan *p);
/* "through exec_wrapper", "contained: namespaces, pivot_root, capabilities, seccomp", "no isolation" */
const char *fy_launch_mode_name(fy_launch_mode m);

#endif
