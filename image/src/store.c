#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry/fsutil.h"
#include "ferry/store.h"

#define IO_CHUNK (256u * 1024u)

int fy_store_open(fy_store *s, const char *root, int create) {
  if (snprintf(s->dir, sizeof s->dir, "%s/blobs/sha256", root) >= (int)sizeof s->dir) return FY_ETOOBIG;
  if (create) return fy_mkdirs(s->dir, 0755);
  struct stat st;
  return stat(s->dir, &st) == 0 && S_ISDIR(st.st_mode) ? FY_OK : FY_ENOENT;
}

void fy_store_path(const fy_store *s, const fy_digest *d, char *buf, size_t len) {
  char hex[FY_DIGEST_HEX];
  snprintf(buf, len, "%s/%s", s->dir, fy_digest_hex(d, hex));
}

int fy_store_has(const fy_store *s, const fy_digest *d, uint64_t size) {
  char p[4200];
  struct stat st;
  fy_store_path(s, d, p, sizeof p);
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

uint64_t fy_store_partial(const fy_store *s, const fy_digest *d, uint64_t size) {
  char p[4200];
  struct stat st;
  fy_store_path(s, d, p, sizeof p);
  strncat(p, ".partial", sizeof p - strlen(p) - 1);
  if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  return (uint64_t)st.st_size > size ? 0 : (uint64_t)st.st_size;
}

int fy_store_put(const fy_store *s, const fy_digest *d, const void *p, size_t n) {
  fy_digest got;
  char path[4200];
  fy_sha256_once(p, n, &got);
  if (!fy_digest_equal(&got, d)) return FY_EDIGEST;
  fy_store_path(s, d, path, sizeof path);
  if (fy_store_has(s, d, n)) return FY_OK;
  return fy_file_write_atomic(path, p, n, 0644);
}

static int hash_fd(int fd, uint64_t len, fy_sha256 *h) {
  uint8_t *buf = malloc(IO_CHUNK);
  if (!buf) return FY_ENOMEM;
  int rc = FY_OK;
  while (len > 0) {
    size_t want = len < IO_CHUNK ? (size_t)len : IO_CHUNK;
    ssize_t r = read(fd, buf, want);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) { rc = FY_EIO; break; }
    fy_sha256_update(h, buf, (size_t)r);
    len -= (uint64_t)r;
  }
  free(buf);
  return rc;
}

int fy_store_verify(const fy_store *s, const fy_digest *d, uint64_t size) {
  char path[4200];
  fy_sha256 h;
  fy_digest got;
  fy_store_path(s, d, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fy_err_from_errno(errno);
  fy_sha256_init(&h);
  int rc = hash_fd(fd, size, &h);
  close(fd);
  fy_sha256_final(&h, &got);
  if (rc != FY_OK) return rc;
  return fy_digest_equal(&got, d) ? FY_OK : FY_EDIGEST;
}

int fy_blob_writer_open(fy_blob_writer *w, const fy_store *s, const fy_digest *d, uint64_t size,
                        uint64_t offset) {
  struct stat st;
  memset(w, 0, sizeof *w);
  w->fd = -1;
  w->want = *d;
  w->size = size;
  fy_store_path(s, d, w->path, sizeof w->path);
  snprintf(w->partial, sizeof w->partial, "%s.partial", w->path);
  if (offset > size) return FY_EINVAL;
  w->fd = open(w->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (w->fd < 0) return fy_err_from_errno(errno);
  /* One writer per partial, across deploys, pulls and processes: a second one (another app's
   * pull of a shared layer) would write bytes this writer's running hash never saw. The lock is
   * taken on what the name held when we opened it: if a finishing writer renamed it meanwhile,
   * that is the complete blob, and it is not ours to truncate. */
  struct stat now;
  if (flock(w->fd, LOCK_EX | LOCK_NB) != 0 || fstat(w->fd, &st) != 0 || stat(w->partial, &now) != 0 || now.st_ino != st.st_ino ||
      now.st_dev != st.st_dev) {
    fy_blob_writer_close(w);
    return FY_EBUSY;
  }
  if ((uint64_t)st.st_size < offset) {
    fy_blob_writer_close(w);
    return FY_EINVAL;
  }
  if (ftruncate(w->fd, (off_t)offset) != 0) {
    int rc = fy_err_from_errno(errno);
    fy_blob_writer_close(w);
    return rc;
  }
  fy_sha256_init(&w->h);
  if (offset > 0) {
    int rc = hash_fd(w->fd, offset, &w->h);
    if (rc != FY_OK) {
      fy_blob_writer_close(w);
      return rc;
    }
  }
  if (lseek(w->fd, (off_t)offset, SEEK_SET) < 0) {
    fy_blob_writer_close(w);
    return FY_EIO;
  }
  w->written = offset;
  return FY_OK;
}

int fy_blob_writer_write(fy_blob_writer *w, const void *p, size_t n) {
  if (w->fd < 0) return FY_EINVAL;
  if (n > w->size - w->written) return FY_ETOOBIG;
  const uint8_t *q = p;
  size_t left = n;
  while (left > 0) {
    ssize_t r = write(w->fd, q, left);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fy_err_from_errno(errno);
    q += r;
    left -= (size_t)r;
  }
  fy_sha256_update(&w->h, p, n);
  w->written += n;
  return FY_OK;
}

int fy_blob_writer_finish(fy_blob_writer *w) {
  fy_digest got;
  if (w->fd < 0) return FY_EINVAL;
  if (w->written != w->size) return FY_EPROTO;
  fy_sha256_final(&w->h, &got);
  if (!fy_digest_equal(&got, &w->want)) {
    unlink(w->partial); /* bad bytes are never resumed (gone before the lock is let go) */
    close(w->fd);
    w->fd = -1;
    return FY_EDIGEST;
  }
  int rc = FY_OK;
  if (fsync(w->fd) != 0) rc = fy_err_from_errno(errno);
  /* renamed while the lock is held: no other writer can have the partial's name meanwhile */
  if (rc == FY_OK && rename(w->partial, w->path) != 0) rc = fy_err_from_errno(errno);
  close(w->fd);
  w->fd = -1;
  if (rc == FY_OK) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", w->path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      if (fsync(dfd) != 0) rc = FY_EIO;
      close(dfd);
    }
  }
  return rc;
}

void fy_blob_writer_close(fy_blob_writer *w) {
  if (w && w->fd >= 0) {
    close(w->fd);
    w->fd = -1;
  }
}

/* Walks the store: each complete blob or partial not in keep[] (and, for partials, older than
 * older_than_s when that is positive) goes to act; returns FY_OK or the error opening it. */
static int walk(const fy_store *s, const fy_digest *keep, size_t nkeep, int64_t older_than_s, int do_remove, size_t *count,
                uint64_t *bytes) {
  DIR *d = opendir(s->dir);
  struct dirent *e;
  time_t now = time(NULL);
  if (count) *count = 0;
  if (bytes) *bytes = 0;
  if (!d) return fy_err_from_errno(errno);
  while ((e = readdir(d)) != NULL) {
    char name[80];
    fy_digest dg;
    size_t len = strlen(e->d_name);
    int partial = len == 64 + 8 && strcmp(e->d_name + 64, ".partial") == 0;
    if (len != 64 && !partial) continue; /* temp files and anything else: not ours to judge here */
    if (older_than_s > 0 && !partial) continue;
    memcpy(name, "sha256:", 7);
    memcpy(name + 7, e->d_name, 64);
    name[71] = '\0';
    if (fy_digest_parse(name, &dg) != FY_OK) continue;
    int kept = 0;
    for (size_t i = 0; i < nkeep && !kept; i++) kept = fy_digest_equal(&keep[i], &dg);
    if (kept) continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    if (older_than_s > 0 && now - st.st_mtime < older_than_s) continue;
    if (do_remove && unlinkat(dirfd(d), e->d_name, 0) != 0) continue;
    if (count) (*count)++;
    if (bytes) *bytes += (uint64_t)st.st_blocks * 512u;
  }
  closedir(d);
  return FY_OK;
}

int fy_store_gc_ex(const fy_store *s, const fy_digest *keep, size_t nkeep, int64_t older_than_s, size_t *removed,
                   uint64_t *freed) {
  return walk(s, keep, nkeep, older_than_s, 1, removed, freed);
}

int fy_store_gc(const fy_store *s, const fy_digest *keep, size_t nkeep, size_t *removed) {
  return walk(s, keep, nkeep, 0, 1, removed, NULL);
}

uint64_t fy_store_reclaimable(const fy_store *s, const fy_digest *keep, size_t nkeep) {
  uint64_t bytes = 0;
  return walk(s, keep, nkeep, 0, 0, NULL, &bytes) == FY_OK ? bytes : 0;
}
