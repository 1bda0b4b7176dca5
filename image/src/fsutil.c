#include <linux/openat2.h>
#include <sys/syscall.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#include "ferry/fsutil.h"
#include "ferry/text.h"

/* Reads the regular file open on fd (closed here): as many bytes as fstat says, or with to_eof
 * (the kernel's files, whose size says nothing) until EOF, growing the buffer up to max. */
static int read_fd(int fd, size_t max, int to_eof, char **data, size_t *len) {
  int ret = FY_EIO;
  char *buf = NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) goto cleanup;
  if (!S_ISREG(st.st_mode)) { ret = FY_EINVAL; goto cleanup; }
  if (!to_eof && (uint64_t)st.st_size > max) { ret = FY_ETOOBIG; goto cleanup; }
  size_t cap = to_eof ? (max < 4096 ? max + 1 : 4096) : (size_t)st.st_size, got = 0;
  if (!(buf = malloc(cap + 1))) { ret = FY_ENOMEM; goto cleanup; }
  for (;;) {
    if (got == cap) {
      if (!to_eof) break;
      if (cap > max) { ret = FY_ETOOBIG; goto cleanup; } /* max + 1 bytes came */
      size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
      char *nb = realloc(buf, ncap + 1);
      if (!nb) { ret = FY_ENOMEM; goto cleanup; }
      buf = nb;
      cap = ncap;
    }
    ssize_t r = read(fd, buf + got, cap - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) goto cleanup;
    if (r == 0) {
      if (!to_eof) goto cleanup; /* the file shrank under us */
      break;
    }
    got += (size_t)r;
  }
  buf[got] = '\0';
  *data = buf;
  *len = got;
  buf = NULL;
  ret = FY_OK;
cleanup:
  free(buf);
  close(fd);
  return ret;
}

static int read_path(const char *path, size_t max, int to_eof, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block the open */
  if (fd < 0) return fy_err_from_errno(errno);
  return read_fd(fd, max, to_eof, data, len);
}

int fy_file_read(const char *path, size_t max, char **data, size_t *len) { return read_path(path, max, 0, data, len); }

int fy_file_read_kernel(const char *path, size_t max, char **data, size_t *len) {
  return read_path(path, max, 1, data, len);
}

#define MAX_SYMLINK_HOPS 40 /* the kernel's own limit */

/* Reopens a path of already-resolved real directories (no symlinks in it) below root. */
static int reopen_plain(int root, const char *path) {
  int fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
  char comp[256];
  const char *p = path;
  while (fd >= 0 && *p) {
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t n = (size_t)(p - s);
    if (*p == '/') p++;
    if (n == 0 || n >= sizeof comp) continue;
    memcpy(comp, s, n);
    comp[n] = '\0';
    int next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(fd);
    errno = e;
    fd = next;
  }
  return fd;
}

int fy_walk_in_root(int root, const char *rel, int flags, int create) {
  char todo[8200], done[8200], comp[256], target[4096];
  size_t dlen = 0;
  int hops = 0;
  if (fy_path_fmt(todo, sizeof todo, "%s", rel) != FY_OK) { errno = ENAMETOOLONG; return -1; }
  done[0] = '\0';
  int fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
  const char *p = todo;
  while (*p == '/') p++;
  if (!*p) { /* the root itself */
    if (fd >= 0) close(fd);
    return openat(root, ".", flags | O_CLOEXEC);
  }
  while (fd >= 0 && *p) {
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t n = (size_t)(p - s);
    while (*p == '/') p++;
    int last = *p == '\0';
    if (n == 0 || (n == 1 && s[0] == '.')) {
      if (last) { int r = openat(fd, ".", flags | O_CLOEXEC), e = errno; close(fd); errno = e; return r; }
      continue;
    }
    if (n >= sizeof comp) { close(fd); errno = ENAMETOOLONG; return -1; }
    memcpy(comp, s, n);
    comp[n] = '\0';
    if (n == 2 && s[0] == '.' && s[1] == '.') { /* back one resolved component; never above the root */
      char *slash = strrchr(done, '/');
      dlen = slash ? (size_t)(slash - done) : 0;
      done[dlen] = '\0';
      close(fd);
      fd = reopen_plain(root, done);
      if (last && fd >= 0) { int r = openat(fd, ".", flags | O_CLOEXEC), e = errno; close(fd); errno = e; return r; }
      continue;
    }
    ssize_t tl = readlinkat(fd, comp, target, sizeof target - 1);
    if (tl > 0) { /* a symlink: its target, then the rest; absolute ones from the root */
      if (++hops > MAX_SYMLINK_HOPS) { close(fd); errno = ELOOP; return -1; }
      target[tl] = '\0';
      char rest[sizeof todo];
      snprintf(rest, sizeof rest, "%s", p);
      if (fy_path_fmt(todo, sizeof todo, "%s%s%s", target, *rest ? "/" : "", rest) != FY_OK) { close(fd); errno = ENAMETOOLONG; return -1; }
      p = todo;
      if (target[0] == '/') {
        dlen = 0;
        done[0] = '\0';
        close(fd);
        fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
        while (*p == '/') p++;
        if (!*p && fd >= 0) { int r = openat(fd, ".", flags | O_CLOEXEC), e = errno; close(fd); errno = e; return r; }
      }
      continue;
    }
    int next;
    if (last) {
      next = openat(fd, comp, flags | O_NOFOLLOW | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NONBLOCK), 0644);
      if (next < 0 && errno == ENOENT && create && (flags & O_DIRECTORY) && mkdirat(fd, comp, 0755) == 0)
        next = openat(fd, comp, flags | O_NOFOLLOW | O_CLOEXEC);
    } else {
      next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT && create) {
        if (mkdirat(fd, comp, 0755) != 0 && errno != EEXIST) { int e = errno; close(fd); errno = e; return -1; }
        next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
    }
    int e = errno;
    close(fd);
    errno = e;
    fd = next;
    if (fd >= 0 && !last) {
      if (dlen + n + 2 >= sizeof done) { close(fd); errno = ENAMETOOLONG; return -1; }
      dlen += (size_t)snprintf(done + dlen, sizeof done - dlen, "%s%s", dlen ? "/" : "", comp);
    }
  }
  return fd;
}

/* The O_PATH handle of path inside root (openat2 RESOLVE_IN_ROOT, or the walk). */
static int path_in_root(int rfd, const char *path) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  int fd = (int)syscall(SYS_openat2, rfd, *path ? path : ".", &how, sizeof how);
  if (fd < 0 && (errno == ENOSYS || errno == EPERM)) /* qemu-user, kernels before 5.6, seccomp */
    fd = fy_walk_in_root(rfd, path, O_PATH, 0);
  return fd;
}

int fy_open_in_root(const char *root, const char *path, int flags) {
  int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0) return -1;
  while (*path == '/') path++;
  int pfd = path_in_root(rfd, path), e = errno;
  close(rfd);
  if (pfd < 0 || (flags & O_PATH)) {
    errno = e;
    return pfd;
  }
  /* Only a regular file (or a directory when asked for one) is opened for real: a device node
   * the app made in its own root is never opened by ferryd, a FIFO never waited on. */
  struct stat st;
  int ok = fstat(pfd, &st) == 0 && (S_ISREG(st.st_mode) || ((flags & O_DIRECTORY) && S_ISDIR(st.st_mode)));
  if (!ok) {
    close(pfd);
    errno = EINVAL;
    return -1;
  }
  char via[64];
  snprintf(via, sizeof via, "/proc/self/fd/%d", pfd);
  int fd = open(via, (flags & ~O_CREAT) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  e = errno;
  close(pfd);
  errno = e;
  return fd;
}

int fy_file_read_in_root(const char *root, const char *path, size_t max, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = fy_open_in_root(root, path, O_RDONLY);
  if (fd < 0) return fy_err_from_errno(errno);
  return read_fd(fd, max, 0, data, len);
}

static int fsync_dir_of(const char *path) {
  char *copy = strdup(path);
  if (!copy) return FY_ENOMEM;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(copy);
  if (fd < 0) return fy_err_from_errno(errno);
  int rc = fsync(fd) == 0 ? FY_OK : fy_err_from_errno(errno);
  close(fd);
  return rc;
}

int fy_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode) {
  char tmp[4096];
  int ret, fd;
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return FY_ETOOBIG;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return fy_err_from_errno(errno);
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) goto fail;
    p += w;
    left -= (size_t)w;
  }
  if (fchmod(fd, mode) != 0 || fsync(fd) != 0) goto fail;
  if (close(fd) != 0) { fd = -1; goto fail; }
  fd = -1;
  if (rename(tmp, path) != 0) goto fail;
  return fsync_dir_of(path);
fail:
  ret = fy_err_from_errno(errno);
  if (fd >= 0) close(fd);
  unlink(tmp);
  return ret;
}

int fy_mkdirs(const char *path, mode_t mode) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return FY_EINVAL;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, mode) != 0 && errno != EEXIST) return fy_err_from_errno(errno);
    buf[i] = saved;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return FY_EEXIST;
  return FY_OK;
}

uint64_t fy_fs_free_bytes(const char *path) {
  struct statvfs sv;
  if (statvfs(path, &sv) != 0) return 0;
  return (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
}

#define PEM_MAX (64u * 1024u)

int fy_identity_load(const char *dir, fy_tls_role role, fy_tls_conf **conf, char *err,
                     size_t errlen) {
  static const char *const names[3] = {"ca.pem", "cert.pem", "key.pem"};
  char *data[3] = {NULL, NULL, NULL};
  size_t len[3] = {0, 0, 0};
  char path[4096];
  int ret = FY_ECONFIG;
  *conf = NULL;
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    int rc = fy_file_read(path, PEM_MAX, &data[i], &len[i]);
    if (rc != FY_OK) {
      snprintf(err, errlen, "%s: %s", path, rc == FY_ENOENT ? "not found (create an identity with "
               "'ferry cert issue')" : fy_strerror(rc));
      ret = rc == FY_ENOENT ? FY_ENOENT : FY_ECONFIG;
      goto cleanup;
    }
  }
  char why[256];
  ret = fy_tls_conf_new(conf, role, data[0], len[0], data[1], len[1], data[2], len[2], why, sizeof why);
  if (ret != FY_OK) snprintf(err, errlen, "identity %s: %s", dir, why);
  /* The fleet's revocation list, when the identity carries one (ferry cert revoke writes it). */
  char *crl = NULL;
  size_t crl_len = 0;
  snprintf(path, sizeof path, "%s/crl.pem", dir);
  if (ret == FY_OK && fy_file_read(path, FY_CRL_PEM_MAX, &crl, &crl_len) == FY_OK) {
    int changed;
    size_t n;
    if ((ret = fy_tls_conf_set_crl(*conf, crl, crl_len, &changed, &n, why, sizeof why)) != FY_OK) {
      snprintf(err, errlen, "%s: %s", path, why);
      fy_tls_conf_free(*conf);
      *conf = NULL;
      ret = FY_ECONFIG;
    }
  }
  free(crl);
cleanup:
  for (int i = 0; i < 3; i++) {
    if (data[i]) {
      volatile char *p = data[i];
      for (size_t k = 0; k < len[i]; k++) p[k] = 0;
    }
    free(data[i]);
  }
  return ret;
}

int fy_find_in_path(const char *prog, char *out, size_t len) {
  if (strchr(prog, '/')) {
    snprintf(out, len, "%s", prog);
    return access(out, X_OK) == 0;
  }
  const char *path = getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin";
  while (*path) {
    size_t n = strcspn(path, ":");
    snprintf(out, len, "%.*s/%s", (int)n, path, prog);
    if (access(out, X_OK) == 0) return 1;
    path += n;
    if (*path == ':') path++;
  }
  return 0;
}

int fy_fd_write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return fy_err_from_errno(errno);
    b += w;
    n -= (size_t)w;
  }
  return FY_OK;
}
