/* Small filesystem helpers both sides use. Blocking; call from a worker (uv_queue_work) when
 * on an event loop and the file can be large. */
#ifndef FERRY_FSUTIL_H
#define FERRY_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry/error.h"
#include "ferry/tls.h"

/* Reads a whole file of at most max bytes into a malloc'd, NUL-terminated buffer (*len excludes
 * the NUL). FY_ENOENT, FY_ETOOBIG (larger than max), FY_EIO. */
int fy_file_read(const char *path, size_t max, char **data, size_t *len) FY_WUR;

/* fy_file_read for the kernel's files (procfs, sysfs, binfmt_misc), whose size says nothing of
 * what they hold: reads to EOF, up to max bytes (FY_ETOOBIG past it). */
int fy_file_read_kernel(const char *path, size_t max, char **data, size_t *len) FY_WUR;

/* The resolution of RESOLVE_IN_ROOT done by hand (where openat2 is missing: qemu-user 7.2,
 * Linux before 5.6): rel below root, one component at a time, each opened O_NOFOLLOW; a symlink
 * is read and its target put in front of what is left (absolute ones from root), ".." goes back
 * one resolved component and never above root. The last component is opened with flags (and
 * followed if it is a symlink, unless flags has O_PATH|O_NOFOLLOW semantics wanted by the
 * caller: then pass O_NOFOLLOW yourself and check). create: missing directories are made (for
 * O_DIRECTORY, the last too). An fd, or -1 with errno (ELOOP past 40 symlinks). */
int fy_walk_in_root(int root, const char *rel, int flags, int create);

/* A file inside a release root (EINVAL when it is not a regular file, or a directory with
 * O_DIRECTORY: a device node or a FIFO is never opened), resolved the way the release itself would see it: symlinks
 * (absolute ones and "..") stay inside root (openat2 RESOLVE_IN_ROOT; no /proc magic links, no
 * crossing into another mount), opened O_NONBLOCK so a FIFO cannot hang the caller. An fd, or
 * -1 with errno. Where openat2 is missing, fy_walk_in_root gives the same answer. */
int fy_open_in_root(const char *root, const char *path, int flags);
/* fy_file_read for a file inside root, opened as above: only a regular file of at most max
 * bytes (FY_EINVAL for a FIFO, a device or a directory). */
int fy_file_read_in_root(const char *root, const char *path, size_t max, char **data, size_t *len) FY_WUR;

/* Writes data to path atomically: path.tmp, fsync, rename, fsync of the directory.
 * mode applies to the new file (0600 for keys). */
int fy_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode) FY_WUR;
/* Writes all n bytes to fd (retrying short writes and EINTR). FY_OK or the errno's code. */
int fy_fd_write_all(int fd, const void *p, size_t n) FY_WUR;

/* mkdir -p with the given mode for the directories it creates. */
int fy_mkdirs(const char *path, mode_t mode) FY_WUR;

/* An executable by name in $PATH (a name with '/' is taken as it is). 1 found, 0 not. */
int fy_find_in_path(const char *prog, char *out, size_t len);

/* Free bytes for an unprivileged writer in the filesystem holding path, or 0 on error. */
uint64_t fy_fs_free_bytes(const char *path);

/* Loads an identity directory (ca.pem, cert.pem, key.pem) for a TLS role. On error writes
 * "DIR/file: reason" into err. */
int fy_identity_load(const char *dir, fy_tls_role role, fy_tls_conf **conf, char *err,
                     size_t errlen) FY_WUR;

#endif
