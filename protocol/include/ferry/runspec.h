/* How a release runs beyond its argv: the capabilities it keeps, the resources it may use, the
 * signal that stops it and its health command. ferry.yaml's run section writes them into the
 * image config (so a release signature covers them); the agent reads them back from there. The
 * names and units are Docker's and runc's; the numbers are Linux's, the same on every
 * architecture ferry supports. Pure: no files, no processes. */
#ifndef FERRY_RUNSPEC_H
#define FERRY_RUNSPEC_H

#include <jansson.h>
#include <stdint.h>

#include "ferry/error.h"

/* Docker's default capability set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
 * NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP. */
#define FY_CAPS_DEFAULT 0xa80425fbULL
#define FY_CAP_LAST 40 /* CAP_CHECKPOINT_RESTORE; the kernel may know fewer */
#define FY_STOP_TIMEOUT_DEFAULT_MS 10000u
#define FY_STOP_TIMEOUT_MAX_MS 600000u

/* "CAP_NET_ADMIN", "NET_ADMIN" and "net_admin" -> 12; "ALL" -> -2. FY_EINVAL if unknown. */
int fy_cap_parse(const char *name, int *cap) FY_WUR;
const char *fy_cap_name(int cap); /* "NET_ADMIN", or NULL */
/* Writes the names of the bits set in mask, comma-separated ("CHOWN,KILL"). */
void fy_caps_format(uint64_t mask, char *buf, size_t len);

typedef struct fy_runspec {
  uint64_t cap_add, cap_drop; /* over the default set; "ALL" sets every bit */
  int64_t memory;             /* bytes; 0: no limit */
  int cpu_milli;              /* thousandths of a CPU; 0: no limit */
  int64_t pids;               /* 0: no limit */
} fy_runspec;

/* Volumes (run.volumes: name -> path in the app, kept by the node across releases at
 * STATE/apps/<app>/volumes/<name>) and devices (run.devices: device nodes the app needs, which
 * the node's agent config must allow). Paths are absolute and clean ("/var/lib/app": no "//",
 * ".", ".." or trailing "/"), at most FY_APP_PATH_MAX - 1 bytes; a volume is not "/" nor under
 * /proc, /sys, /dev or /run/secrets; a device is under /dev. */
#define FY_VOLUMES_MAX 16
#define FY_DEVICES_MAX 16
#define FY_APP_PATH_MAX 256
#define FY_VOLUME_NAME_MAX 33 /* 1-32 of a-z 0-9 - _, starting with a letter or digit */
typedef struct fy_mounts {
  size_t nvolumes;
  struct { char name[FY_VOLUME_NAME_MAX]; char path[FY_APP_PATH_MAX]; } volumes[FY_VOLUMES_MAX];
  size_t ndevices;
  char devices[FY_DEVICES_MAX][FY_APP_PATH_MAX];
} fy_mounts;
int fy_app_path_clean(const char *p);
int fy_volume_name_valid(const char *name); /* volume and secret names */
/* {"data":"/var/lib/app"} / ["/dev/i2c-1"] into m (NULL: none). FY_EINVAL with the reason in err. */
int fy_volumes_from_json(const json_t *j, fy_mounts *m, char *err, size_t errlen) FY_WUR;
int fy_devices_from_json(const json_t *j, fy_mounts *m, char *err, size_t errlen) FY_WUR;
json_t *fy_volumes_to_json(const fy_mounts *m);
json_t *fy_devices_to_json(const fy_mounts *m);
/* FERRY_VOLUME_<NAME>: the name upper-cased, '-' as '_' ("my-data" -> FERRY_VOLUME_MY_DATA). */
void fy_volume_env_name(const char *name, char *out, size_t len);

/* The effective capability set: (default | add) & ~drop; an explicit add wins over drop ALL. */
uint64_t fy_runspec_caps(const fy_runspec *r);

/* {"add":[names],"drop":[names]} into r->cap_add/cap_drop. FY_EINVAL with the reason in err. */
int fy_caps_from_json(const json_t *j, fy_runspec *r, char *err, size_t errlen) FY_WUR;
json_t *fy_caps_to_json(const fy_runspec *r);
/* {"memory":"64MiB"|bytes, "cpus":"0.5"|1, "pids":N} into r. FY_EINVAL with the reason in err. */
int fy_resources_from_json(const json_t *j, fy_runspec *r, char *err, size_t errlen) FY_WUR;
json_t *fy_resources_to_json(const fy_runspec *r); /* {"memory":bytes,"cpu_milli":N,"pids":N}, set ones only */

/* "SIGTERM", "TERM", "sigterm" or "15" -> 15. FY_EINVAL for anything else (SIGKILL and SIGSTOP
 * included: neither lets a process stop cleanly, and both are what the stop ends with anyway). */
int fy_signal_parse(const char *s, int *sig) FY_WUR;
const char *fy_signal_name(int sig); /* "SIGTERM", or NULL */

#endif
