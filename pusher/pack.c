#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "elfcheck.h"
#include "ferry/tar.h"
#include "pack.h"

#define MAX_ENTRIES 100000

struct pentry {
  char *img;   /* path in the image, no leading '/' */
  char *src;   /* host path, NULL for implied directories */
  char type;
  uint32_t mode;
  uint64_t size;
  char link[4096];
};

struct plist {
  struct pentry *v;
  size_t n, cap;
};

static int add(struct plist *l, const char *img, const char *src, const struct stat *st) {
  if (l->n >= MAX_ENTRIES) return FY_ETOOBIG;
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 64;
    struct pentry *v = realloc(l->v, nc * sizeof *v);
    if (!v) return FY_ENOMEM;
    l->v = v;
    l->cap = nc;
  }
  struct pentry *e = &l->v[l->n];
  memset(e, 0, sizeof *e);
  while (*img == '/') img++;
  e->img = strdup(img);
  e->src = src ? strdup(src) : NULL;
  if (!e->img || (src && !e->src)) return FY_ENOMEM;
  if (!st) {
    e->type = FY_TAR_DIR;
    e->mode = 0755;
  } else if (S_ISDIR(st->st_mode)) {
    e->type = FY_TAR_DIR;
    e->mode = st->st_mode & 07755;
  } else if (S_ISLNK(st->st_mode)) {
    e->type = FY_TAR_SYMLINK;
    e->mode = 0777;
    ssize_t n = readlink(src, e->link, sizeof e->link - 1);
    if (n < 0) return FY_EIO;
    e->link[n] = '\0';
  } else {
    e->type = FY_TAR_FILE;
    e->mode = (st->st_mode & 0111) ? 0755 : 0644; /* normalized: the build host's umask does not leak */
    e->size = (uint64_t)st->st_size;
  }
  l->n++;
  return FY_OK;
}

static int walk(struct plist *l, const char *src, const char *img, int depth) {
  if (depth > 64) return FY_ETOOBIG;
  DIR *d = opendir(src);
  if (!d) return fy_err_from_errno(errno);
  struct dirent *de;
  int rc = FY_OK;
  while (rc == FY_OK && (de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char s[4096], i[4096];
    struct stat st;
    snprintf(s, sizeof s, "%s/%s", src, de->d_name);
    snprintf(i, sizeof i, "%s/%s", img, de->d_name);
    if (lstat(s, &st) != 0) { rc = FY_EIO; break; }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) continue; /* sockets, fifos, devices: never shipped */
    rc = add(l, i, s, &st);
    if (rc == FY_OK && S_ISDIR(st.st_mode)) rc = walk(l, s, i, depth + 1);
  }
  closedir(d);
  return rc;
}

static int by_path(const void *a, const void *b) {
  return strcmp(((const struct pentry *)a)->img, ((const struct pentry *)b)->img);
}

static void free_list(struct plist *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].img);
    free(l->v[i].src);
  }
  free(l->v);
}

struct zout {
  ZSTD_CCtx *z;
  int fd;
  fy_sha256 hz, hraw;
  uint64_t zsize, raw;
  uint8_t buf[1 << 16];
};

static int zwrite(struct zout *o, const void *p, size_t n, int end) {
  ZSTD_inBuffer in = {p, n, 0};
  fy_sha256_update(&o->hraw, p, n);
  o->raw += n;
  for (;;) {
    ZSTD_outBuffer out = {o->buf, sizeof o->buf, 0};
    size_t left = ZSTD_compressStream2(o->z, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left)) return FY_EIO;
    if (out.pos && write(o->fd, o->buf, out.pos) != (ssize_t)out.pos) return fy_err_from_errno(errno);
    fy_sha256_update(&o->hz, o->buf, out.pos);
    o->zsize += out.pos;
    if (end ? left == 0 : in.pos == in.size) return FY_OK;
  }
}

int fy_pack_stage(const fy_recipe *r, const char *stage, const fy_platform *p, const fy_store *store,
                  fy_packed *out, char *err, size_t errlen) {
  struct plist l = {0};
  struct zout *o = NULL;
  fy_buf hdr;
  char tmp[4300], plat[FY_PLATFORM_STR];
  int rc = FY_OK;
  fy_buf_init(&hdr, 1 << 20);
  memset(out, 0, sizeof *out);
  fy_platform_format(p, plat, sizeof plat);
  tmp[0] = '\0';
  if (r->nfiles == 0) {
    rc = walk(&l, stage, "", 0);
  } else {
    for (size_t i = 0; i < r->nfiles && rc == FY_OK; i++) {
      char src[4200];
      struct stat st;
      snprintf(src, sizeof src, "%s/%s", stage, r->files[i].from);
      if (lstat(src, &st) != 0) {
        snprintf(err, errlen, "%s: files: '%s' was not produced by the build (no %s)", r->path, r->files[i].from, src);
        rc = FY_ENOENT;
        goto cleanup;
      }
      rc = add(&l, r->files[i].to, src, &st);
      if (rc == FY_OK && S_ISDIR(st.st_mode)) rc = walk(&l, src, r->files[i].to, 0);
    }
  }
  if (rc != FY_OK) {
    snprintf(err, errlen, "collecting files from %s: %s", stage, fy_strerror(rc));
    goto cleanup;
  }
  /* Every parent directory gets an entry of its own. */
  size_t n0 = l.n;
  for (size_t i = 0; i < n0 && rc == FY_OK; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s", l.v[i].img);
    for (char *s = strchr(path, '/'); s && rc == FY_OK; s = strchr(s + 1, '/')) {
      *s = '\0';
      rc = add(&l, path, NULL, NULL);
      *s = '/';
    }
  }
  qsort(l.v, l.n, sizeof *l.v, by_path);
  /* Drop duplicates (implied directories also listed for real: keep the real one). */
  size_t w = 0;
  for (size_t i = 0; i < l.n; i++) {
    if (w > 0 && strcmp(l.v[w - 1].img, l.v[i].img) == 0) {
      if (!l.v[w - 1].src && l.v[i].src) { struct pentry t = l.v[w - 1]; l.v[w - 1] = l.v[i]; l.v[i] = t; }
      free(l.v[i].img);
      free(l.v[i].src);
      continue;
    }
    l.v[w++] = l.v[i];
  }
  l.n = w;
  for (size_t i = 0; i < l.n; i++) {
    if (l.v[i].type != FY_TAR_FILE) continue;
    char shown[4200];
    snprintf(shown, sizeof shown, "/%s", l.v[i].img);
    if ((rc = fy_elf_check(l.v[i].src, shown, p, stage, err, errlen)) != FY_OK) goto cleanup;
    out->nfiles++;
  }

  if (!(o = calloc(1, sizeof *o)) || !(o->z = ZSTD_createCCtx())) { rc = FY_ENOMEM; goto cleanup; }
  ZSTD_CCtx_setParameter(o->z, ZSTD_c_compressionLevel, r->zstd_level);
  ZSTD_CCtx_setParameter(o->z, ZSTD_c_checksumFlag, 1);
  fy_sha256_init(&o->hz);
  fy_sha256_init(&o->hraw);
  snprintf(tmp, sizeof tmp, "%s/pack.%d.tmp", store->dir, (int)getpid());
  if ((o->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) { rc = fy_err_from_errno(errno); goto cleanup; }
  static const uint8_t zero[512];
  for (size_t i = 0; i < l.n && rc == FY_OK; i++) {
    struct pentry *e = &l.v[i];
    char name[4200];
    snprintf(name, sizeof name, "%s%s", e->img, e->type == FY_TAR_DIR ? "/" : "");
    fy_buf_reset(&hdr);
    rc = fy_tar_write_header(&hdr, name, e->type, e->mode, e->size, e->type == FY_TAR_SYMLINK ? e->link : NULL, r->mtime);
    if (rc == FY_OK) rc = zwrite(o, hdr.data, hdr.len, 0);
    if (rc != FY_OK || e->type != FY_TAR_FILE) continue;
    int fd = open(e->src, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { rc = fy_err_from_errno(errno); break; }
    uint64_t left = e->size;
    static uint8_t buf[1 << 16];
    while (rc == FY_OK && left > 0) {
      ssize_t got = read(fd, buf, left < sizeof buf ? (size_t)left : sizeof buf);
      if (got <= 0) { rc = FY_EIO; break; }
      rc = zwrite(o, buf, (size_t)got, 0);
      left -= (uint64_t)got;
    }
    close(fd);
    if (rc == FY_OK) rc = zwrite(o, zero, fy_tar_padding(e->size), 0);
  }
  fy_buf_reset(&hdr);
  if (rc == FY_OK) rc = fy_tar_write_end(&hdr);
  if (rc == FY_OK) rc = zwrite(o, hdr.data, hdr.len, 1);
  if (rc == FY_OK && fsync(o->fd) != 0) rc = FY_EIO;
  if (rc != FY_OK) {
    snprintf(err, errlen, "packing the %s layer: %s", plat, fy_strerror(rc));
    goto cleanup;
  }
  fy_sha256_final(&o->hz, &out->digest);
  fy_sha256_final(&o->hraw, &out->diff_id);
  out->size = o->zsize;
  out->raw_size = o->raw;
  char dst[4200];
  fy_store_path(store, &out->digest, dst, sizeof dst);
  if (rename(tmp, dst) != 0) { rc = fy_err_from_errno(errno); snprintf(err, errlen, "rename %s: %s", dst, strerror(errno)); goto cleanup; }
  tmp[0] = '\0';
cleanup:
  if (o) {
    if (o->fd > 0) close(o->fd);
    ZSTD_freeCCtx(o->z);
    free(o);
  }
  if (tmp[0]) unlink(tmp);
  fy_buf_free(&hdr, 0);
  free_list(&l);
  return rc;
}

json_t *fy_pack_platform_json(const fy_platform *p) {
  json_t *o = json_pack("{s:s, s:s}", "os", p->os, "architecture", p->arch);
  if (p->variant[0]) json_object_set_new(o, "variant", json_string(p->variant));
  return o;
}

int fy_pack_put_json(const fy_store *s, json_t *j, fy_digest *d, size_t *len) {
  char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  if (!text) return FY_ENOMEM;
  *len = strlen(text);
  fy_sha256_once(text, *len, d);
  int rc = fy_store_put(s, d, text, *len);
  free(text);
  return rc;
}
