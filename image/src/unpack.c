/* Where a path lands is decided by the kernel, one component at a time, never by string
 * checks alone: the lexical checks below only give clear messages early; the resolution is what
 * keeps writes inside the root. A parent directory that is a symlink is followed the way the
 * release itself will see it, inside the root (openat2 RESOLVE_IN_ROOT; where openat2 is
 * missing, a walk that opens each component O_NOFOLLOW and resolves symlinks itself, absolute
 * ones from the root, ".." clamped at the root): the merged-/usr case (lib -> usr/lib, then
 * lib/libfoo.so) lands in usr/lib, as containerd does it, and nothing lands outside. The last
 * component is never followed: it is created or replaced. Whiteouts follow the OCI image-spec
 * layer.md. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "ferry/fsutil.h"
#include "ferry/tar.h"
#include "ferry/text.h"
#include "ferry/unpack.h"

#define IN_CHUNK (128u * 1024u)
#define MAX_DEPTH FY_UNPACK_MAX_DEPTH
#define MAX_ENTRIES 1000000u
#define MAX_DIR_TIMES 65536u      /* directories whose mtime is set when the layer ends */

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct unpacker {
  int root;
  const fy_unpack_opts *o;
  fy_unpack_stats *st;
  int out;               /* the regular file being written, or -1 */
  uint32_t out_mode, out_uid, out_gid;
  char *err;
  size_t errlen;
  int openat2_ok;        /* -1 unknown, 0 missing, 1 works */
  const fy_tar_entry *cur; /* the file being written: its mtime and xattrs at entry_end */
  int64_t out_mtime;
  struct dir_time { char *path; int64_t mtime; } *dirs; /* set last: entries inside change them */
  size_t ndirs, dirs_cap;
};

static int refuse(struct unpacker *u, int rc, const char *path, const char *fmt, ...) {
  va_list ap;
  /* a long name is cut (its start names it well enough), so the reason always fits */
  int off = strlen(path) > 160 ? snprintf(u->err, u->errlen, "%.150s...: ", path) : snprintf(u->err, u->errlen, "%s: ", path);
  if (off < 0 || (size_t)off >= u->errlen) return rc;
  va_start(ap, fmt);
  vsnprintf(u->err + off, u->errlen - (size_t)off, fmt, ap);
  va_end(ap);
  return rc;
}

/* "./a//b/" -> "a/b". Refuses absolute names and "..". Empty result means the root. */
static int clean_path(struct unpacker *u, const char *in, char *out, size_t cap, const char *what) {
  if (in[0] == '/') return refuse(u, FY_EUNSAFE, in, "%s is an absolute name", what);
  size_t o = 0;
  int levels = 0;
  const char *p = in;
  while (*p) {
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t n = (size_t)(p - s);
    while (*p == '/') p++;
    if (n == 0 || (n == 1 && s[0] == '.')) continue;
    if (n == 2 && s[0] == '.' && s[1] == '.') return refuse(u, FY_EUNSAFE, in, "%s has a '..' component", what);
    if (++levels > MAX_DEPTH) return refuse(u, FY_ETOOBIG, in, "%s is more than %d levels deep", what, MAX_DEPTH);
    if (o + n + 2 > cap) return refuse(u, FY_ETOOBIG, in, "name too long");
    if (o) out[o++] = '/';
    memcpy(out + o, s, n);
    o += n;
  }
  out[o] = '\0';
  return FY_OK;
}

static int open_dir_openat2(int root, const char *rel) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return (int)syscall(SYS_openat2, root, rel, &how, sizeof how);
}

/* Opens the directory rel (below root, symlinks followed inside it), creating missing
 * components when create is set. Returns an O_PATH fd or -1 with errno (ENOTDIR: a file in the
 * way; ELOOP: too many symlinks). */
static int open_dir(struct unpacker *u, const char *rel, int create) {
  if (rel[0] == '\0') return fcntl(u->root, F_DUPFD_CLOEXEC, 0);
  if (u->openat2_ok != 0 && !u->o->force_walk) {
    int fd = open_dir_openat2(u->root, rel);
    if (fd >= 0) {
      u->openat2_ok = 1;
      u->st->used_openat2 = 1;
      return fd;
    }
    if (errno == ENOSYS || errno == EPERM) u->openat2_ok = 0; /* qemu-user 7.2, seccomp */
    else if (errno != ENOENT || !create) return -1;
  }
  return fy_walk_in_root(u->root, rel, O_PATH | O_DIRECTORY, create);
}

static void split(char *path, char **parent, char **base) {
  char *slash = strrchr(path, '/');
  if (slash) {
    *slash = '\0';
    *parent = path;
    *base = slash + 1;
  } else {
    *parent = path + strlen(path); /* "" */
    *base = path;
  }
}

static int remove_at(int dirfd, const char *name, int depth);

/* Removes everything inside the directory open at fd (fd stays open and owned by the caller). */
static int remove_children(int fd, int depth) {
  if (depth > MAX_DEPTH + FY_REMOVE_MARGIN) return FY_ETOOBIG;
  int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) return FY_EIO;
  DIR *d = fdopendir(dup_fd);
  if (!d) { close(dup_fd); return FY_EIO; }
  struct dirent *e;
  int rc = FY_OK;
  while (rc == FY_OK && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    rc = remove_at(fd, e->d_name, depth + 1);
  }
  closedir(d);
  return rc;
}

static int remove_at(int dirfd, const char *name, int depth) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? FY_OK : FY_EIO;
  if (!S_ISDIR(st.st_mode)) return unlinkat(dirfd, name, 0) == 0 ? FY_OK : FY_EIO;
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return FY_EIO;
  int rc = remove_children(fd, depth);
  close(fd);
  if (rc == FY_OK && unlinkat(dirfd, name, AT_REMOVEDIR) != 0) rc = FY_EIO;
  return rc;
}

int fy_remove_tree(int dirfd, const char *name) { return remove_at(dirfd, name, 0); }

int fy_remove_path(const char *path) {
  char buf[FY_TAR_PATH_MAX];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) return n ? FY_ETOOBIG : FY_EINVAL;
  memcpy(buf, path, n + 1);
  while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
  char *slash = strrchr(buf, '/');
  const char *name = slash ? slash + 1 : buf;
  if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return FY_EINVAL;
  int dfd;
  if (!slash) dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else if (slash == buf) dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  else {
    *slash = '\0';
    dfd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (dfd < 0) return errno == ENOENT ? FY_OK : fy_err_from_errno(errno);
  int rc = fy_remove_tree(dfd, name);
  close(dfd);
  return rc;
}

static int parent_error(struct unpacker *u, const char *path) {
  if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV)
    return refuse(u, FY_EUNSAFE, path, "a component of the path is not a directory, or its symlinks loop");
  return refuse(u, fy_err_from_errno(errno), path, "cannot open the parent directory: %s", strerror(errno));
}

/* Extended attributes: user.* and security.capability (file capabilities, as `setcap` leaves
 * them) are applied; any other namespace (trusted.*, security.selinux, system.*) is dropped and
 * counted, as are those the filesystem or this process cannot set. */
static void apply_xattrs(struct unpacker *u, int fd, const fy_tar_entry *e) {
  u->st->xattrs_dropped += e->xattrs_dropped;
  for (size_t i = 0; i < e->nxattrs; i++) {
    const char *name = e->xattr_name[i];
    int ok = (strncmp(name, "user.", 5) == 0 || strcmp(name, "security.capability") == 0) &&
             fsetxattr(fd, name, e->xattr_value[i], e->xattr_len[i], 0) == 0;
    if (!ok) {
      if (!u->st->xattrs_dropped) fy_text_fmt(u->st->dropped_xattr, sizeof u->st->dropped_xattr, "%s on %s", name, e->path);
      u->st->xattrs_dropped++;
    }
  }
}

static void set_times_at(int dirfd, const char *name, int64_t mtime) {
  struct timespec ts[2] = {{.tv_sec = (time_t)mtime, .tv_nsec = 0}, {.tv_sec = (time_t)mtime, .tv_nsec = 0}};
  (void)utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* Directories get their mtime once the layer is done (what is created inside changes it). */
static void remember_dir_time(struct unpacker *u, const char *path, int64_t mtime) {
  if (u->ndirs == MAX_DIR_TIMES) return;
  if (u->ndirs == u->dirs_cap) {
    size_t cap = u->dirs_cap ? u->dirs_cap * 2 : 64;
    struct dir_time *d = realloc(u->dirs, cap * sizeof *d);
    if (!d) return;
    u->dirs = d;
    u->dirs_cap = cap;
  }
  char *copy = strdup(path);
  if (!copy) return;
  u->dirs[u->ndirs].path = copy;
  u->dirs[u->ndirs++].mtime = mtime;
}

static void apply_dir_times(struct unpacker *u) {
  for (size_t i = 0; i < u->ndirs; i++) {
    char *parent, *base;
    split(u->dirs[i].path, &parent, &base);
    int pfd = open_dir(u, parent, 0);
    if (pfd >= 0) {
      set_times_at(pfd, base, u->dirs[i].mtime);
      close(pfd);
    }
    free(u->dirs[i].path);
  }
  free(u->dirs);
  u->dirs = NULL;
  u->ndirs = u->dirs_cap = 0;
}

static int on_entry(void *ud, const fy_tar_entry *e) {
  struct unpacker *u = ud;
  char path[FY_TAR_PATH_MAX], *parent, *base;
  int rc, pfd = -1;
  if (++u->st->entries > MAX_ENTRIES) return refuse(u, FY_ETOOBIG, e->path, "more than %u entries", MAX_ENTRIES);
  if ((rc = clean_path(u, e->path, path, sizeof path, "the name")) != FY_OK) return rc;
  if (path[0] == '\0') return FY_OK; /* the root itself */
  split(path, &parent, &base);

  if (e->type == FY_TAR_CHAR || e->type == FY_TAR_BLOCK) { /* the runtime gives every app its own /dev */
    u->st->skipped_devices++;
    return FY_OK;
  }

  pfd = open_dir(u, parent, 1);
  if (pfd < 0) return parent_error(u, e->path);

  /* Whiteouts (OCI layer.md): ".wh..wh..opq" empties the directory, ".wh.NAME" removes NAME. */
  if (strncmp(base, ".wh.", 4) == 0) {
    if (strcmp(base, ".wh..wh..opq") == 0) {
      rc = remove_children(pfd, 0);
    } else if (base[4] == '\0' || strcmp(base + 4, ".") == 0 || strcmp(base + 4, "..") == 0) {
      rc = refuse(u, FY_EUNSAFE, e->path, "malformed whiteout");
    } else {
      rc = remove_at(pfd, base + 4, 0);
    }
    close(pfd);
    if (rc != FY_OK && rc != FY_EUNSAFE) return refuse(u, rc, e->path, "cannot apply the whiteout");
    return rc;
  }

  struct stat st;
  int exists = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
  switch (e->type) {
  case FY_TAR_DIR:
    if (exists && !S_ISDIR(st.st_mode) && (rc = remove_at(pfd, base, 0)) != FY_OK) break;
    if ((!exists || !S_ISDIR(st.st_mode)) && mkdirat(pfd, base, 0755) != 0) {
      rc = refuse(u, fy_err_from_errno(errno), e->path, "mkdir: %s", strerror(errno));
      break;
    }
    {
      int dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (dfd < 0) { rc = parent_error(u, e->path); break; }
      if (fchmod(dfd, e->mode & 07777) != 0) rc = FY_EIO;
      if (u->o->chown && fchown(dfd, e->uid, e->gid) != 0) rc = FY_EIO;
      if (rc == FY_OK) apply_xattrs(u, dfd, e);
      close(dfd);
      if (rc != FY_OK) rc = refuse(u, rc, e->path, "cannot set the directory's mode or owner");
      else {
        if (*parent) base[-1] = '/'; /* split() cut the path there: whole again */
        remember_dir_time(u, path, e->mtime);
      }
    }
    break;
  case FY_TAR_FILE:
    if (exists && (rc = remove_at(pfd, base, 0)) != FY_OK) break;
    u->out = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (u->out < 0) { rc = refuse(u, fy_err_from_errno(errno), e->path, "create: %s", strerror(errno)); break; }
    u->out_mode = e->mode & 07777;
    u->out_uid = e->uid;
    u->out_gid = e->gid;
    u->cur = e;
    break;
  case FY_TAR_SYMLINK:
    if (e->link[0] == '\0') { rc = refuse(u, FY_EUNSAFE, e->path, "symlink with an empty target"); break; }
    /* Stored as written, whatever it points at: it is only ever resolved inside the root (by
     * this unpacker, and at run time, where the release root is the root). */
    if (exists && (rc = remove_at(pfd, base, 0)) != FY_OK) break;
    if (symlinkat(e->link, pfd, base) != 0) { rc = refuse(u, fy_err_from_errno(errno), e->path, "symlink: %s", strerror(errno)); break; }
    if (u->o->chown) (void)fchownat(pfd, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW);
    set_times_at(pfd, base, e->mtime);
    break;
  case FY_TAR_HARDLINK: {
    char target[FY_TAR_PATH_MAX], *tparent, *tbase;
    if ((rc = clean_path(u, e->link, target, sizeof target, "the hardlink target")) != FY_OK) break;
    if (target[0] == '\0') { rc = refuse(u, FY_EUNSAFE, e->path, "hardlink to the root"); break; }
    split(target, &tparent, &tbase);
    int tfd = open_dir(u, tparent, 0);
    if (tfd < 0) { rc = parent_error(u, e->link); break; }
    struct stat ts;
    if (fstatat(tfd, tbase, &ts, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(ts.st_mode)) {
      close(tfd);
      rc = refuse(u, FY_EUNSAFE, e->path, "hardlink target '%s' is missing or a directory", e->link);
      break;
    }
    if (S_ISLNK(ts.st_mode)) { /* it would move the link to another directory, where it points elsewhere */
      close(tfd);
      rc = refuse(u, FY_EUNSAFE, e->path, "hardlink to a symlink ('%s')", e->link);
      break;
    }
    if (exists && (rc = remove_at(pfd, base, 0)) != FY_OK) { close(tfd); break; }
    if (linkat(tfd, tbase, pfd, base, 0) != 0) rc = refuse(u, fy_err_from_errno(errno), e->path, "link: %s", strerror(errno));
    close(tfd);
    break;
  }
  case FY_TAR_FIFO:
    if (exists && (rc = remove_at(pfd, base, 0)) != FY_OK) break;
    if (mkfifoat(pfd, base, e->mode & 0777) != 0) rc = refuse(u, fy_err_from_errno(errno), e->path, "mkfifo: %s", strerror(errno));
    else set_times_at(pfd, base, e->mtime);
    break;
  default:
    rc = refuse(u, FY_EUNSUPPORTED, e->path, "unsupported tar entry type '%c'", e->type);
  }
  close(pfd);
  return rc;
}

static int on_data(void *ud, const uint8_t *p, size_t n) {
  struct unpacker *u = ud;
  if (u->out < 0) return FY_OK;
  if (n > u->o->max_bytes - u->st->bytes || u->st->bytes > u->o->max_bytes) {
    snprintf(u->err, u->errlen, "the release unpacks past limits.max_release_bytes (%llu bytes)",
             (unsigned long long)u->o->max_bytes);
    return FY_ETOOBIG;
  }
  u->st->bytes += n;
  while (n > 0) {
    ssize_t w = write(u->out, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      snprintf(u->err, u->errlen, "writing the release: %s", strerror(errno));
      return fy_err_from_errno(errno);
    }
    p += w;
    n -= (size_t)w;
  }
  return FY_OK;
}

static int on_entry_end(void *ud) {
  struct unpacker *u = ud;
  if (u->out < 0) return FY_OK;
  int rc = FY_OK;
  if (fchmod(u->out, u->out_mode) != 0) rc = FY_EIO;
  if (u->o->chown && fchown(u->out, u->out_uid, u->out_gid) != 0) rc = FY_EIO;
  if (u->o->chown && (u->out_mode & 06000) && fchmod(u->out, u->out_mode) != 0) rc = FY_EIO; /* chown clears set-id */
  if (u->cur) { /* after chown, which clears security.capability */
    apply_xattrs(u, u->out, u->cur);
    struct timespec ts[2] = {{.tv_sec = (time_t)u->cur->mtime, .tv_nsec = 0}, {.tv_sec = (time_t)u->cur->mtime, .tv_nsec = 0}};
    (void)futimens(u->out, ts);
    u->cur = NULL;
  }
  close(u->out);
  u->out = -1;
  if (rc != FY_OK) snprintf(u->err, u->errlen, "cannot set a file's mode or owner");
  return rc;
}

static const fy_tar_ops unpack_ops = {on_entry, on_data, on_entry_end};

/* Every byte the layers decompress to (tar headers, padding, what follows the end) counts
 * against the cap, not only file data: a bomb made of anything else stops there too. */
static int feed(fy_tar_reader *tr, fy_unpack_stats *st, const fy_unpack_opts *o, const uint8_t *p, size_t n, char *err,
                size_t errlen) {
  if (n > o->max_bytes - st->stream_bytes || st->stream_bytes > o->max_bytes) {
    snprintf(err, errlen, "the layers decompress past limits.max_release_bytes (%llu bytes)", (unsigned long long)o->max_bytes);
    return FY_ETOOBIG;
  }
  st->stream_bytes += n;
  return fy_tar_feed(tr, p, n);
}

int fy_unpack_layer(int rootfd, const char *layer_path, fy_media_kind kind, const fy_unpack_opts *o,
                    fy_unpack_stats *st, char *err, size_t errlen) {
  struct unpacker u = {.root = rootfd, .o = o, .st = st, .out = -1, .err = err, .errlen = errlen, .openat2_ok = -1};
  fy_tar_reader tr;
  ZSTD_DCtx *z = NULL;
  uint8_t *in = NULL, *out = NULL;
  int rc = FY_OK, fd = -1;
  err[0] = '\0';
  if (kind != FY_KIND_LAYER_TAR && kind != FY_KIND_LAYER_ZSTD) {
    snprintf(err, errlen, "%s: layers must be tar or tar+zstd here", layer_path);
    return FY_EUNSUPPORTED;
  }
  fy_tar_init(&tr, &unpack_ops, &u);
  fd = open(layer_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", layer_path, strerror(errno));
    rc = fy_err_from_errno(errno);
    goto cleanup;
  }
  in = malloc(IN_CHUNK);
  out = malloc(ZSTD_DStreamOutSize());
  if (!in || !out) { rc = FY_ENOMEM; goto cleanup; }
  if (kind == FY_KIND_LAYER_ZSTD) {
    z = ZSTD_createDCtx();
    if (!z || ZSTD_isError(ZSTD_DCtx_setParameter(z, ZSTD_d_windowLogMax, o->window_log_max))) {
      rc = FY_ENOMEM;
      goto cleanup;
    }
  }
  size_t last_ret = 0;
  for (;;) {
    ssize_t r = read(fd, in, IN_CHUNK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { rc = FY_EIO; snprintf(err, errlen, "reading %s: %s", layer_path, strerror(errno)); goto cleanup; }
    if (r == 0) break;
    if (!z) {
      rc = feed(&tr, st, o, in, (size_t)r, err, errlen);
    } else {
      ZSTD_inBuffer ib = {in, (size_t)r, 0};
      while (rc == FY_OK && ib.pos < ib.size) {
        ZSTD_outBuffer ob = {out, ZSTD_DStreamOutSize(), 0};
        size_t ret = ZSTD_decompressStream(z, &ob, &ib);
        if (ZSTD_isError(ret)) {
          if (ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge) {
            snprintf(err, errlen, "zstd frame needs a window over 2^%d bytes (limits.zstd_window_log_max)", o->window_log_max);
            rc = FY_ETOOBIG;
          } else {
            snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(ret));
            rc = FY_EPROTO;
          }
          goto cleanup;
        }
        last_ret = ret;
        rc = feed(&tr, st, o, out, ob.pos, err, errlen);
      }
    }
    if (rc != FY_OK) {
      if (!err[0]) snprintf(err, errlen, "tar: %s", tr.err[0] ? tr.err : fy_strerror(rc));
      goto cleanup;
    }
  }
  if (z && last_ret != 0) {
    snprintf(err, errlen, "zstd: truncated frame");
    rc = FY_EPROTO;
    goto cleanup;
  }
  if ((rc = fy_tar_finish(&tr)) != FY_OK) snprintf(err, errlen, "tar: %s", tr.err);
  if (rc == FY_OK) apply_dir_times(&u);
cleanup:
  for (size_t i = 0; i < u.ndirs; i++) free(u.dirs[i].path);
  free(u.dirs);
  if (u.out >= 0) close(u.out);
  fy_tar_free(&tr);
  ZSTD_freeDCtx(z);
  free(in);
  free(out);
  if (fd >= 0) close(fd);
  return rc;
}
