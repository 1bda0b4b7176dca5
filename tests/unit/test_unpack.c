/* The safe unpacker against hostile layers, with both path resolvers: openat2 (where the kernel
 * has it) and the O_NOFOLLOW walk (forced here; under qemu-user 7.2 it is the only one). Each
 * refusal is checked for its error and for nothing written outside the root. Also: the tar
 * reader in every chunk size, whiteouts, caps, and the blob store's resume and digest checks. */
#include <fcntl.h>
#include <stdlib.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zstd.h>

#include "check.h"
#include "ferry/store.h"
#include "ferry/tar.h"
#include "ferry/unpack.h"
#include "ferry/text.h"
#include "ferry/fsutil.h"

static char base[256];
static int used_openat2;

/* --- a minimal ustar writer ---------------------------------------------------------- */
struct tw { uint8_t *p; size_t n, cap; };

static void tw_put(struct tw *t, const void *p, size_t n) {
  if (t->n + n > t->cap) {
    t->cap = (t->n + n) * 2 + 4096;
    t->p = realloc(t->p, t->cap);
  }
  memcpy(t->p + t->n, p, n);
  t->n += n;
}

static void tw_entry(struct tw *t, const char *name, char type, const char *link, const char *data, size_t size) {
  if (strlen(name) >= 100) /* a GNU long name entry first, as GNU tar writes it */
    tw_entry(t, "././@LongLink", 'L', NULL, name, strlen(name) + 1);
  uint8_t h[512];
  memset(h, 0, sizeof h);
  snprintf((char *)h, 100, "%s", name);
  snprintf((char *)h + 100, 8, "%07o", type == '5' ? 0755 : 0644);
  snprintf((char *)h + 108, 8, "%07o", 0);
  snprintf((char *)h + 116, 8, "%07o", 0);
  snprintf((char *)h + 124, 12, "%011o", (unsigned)size); /* test entries stay far below 8 GiB */
  snprintf((char *)h + 136, 12, "%011o", 0);
  h[156] = (uint8_t)type;
  if (link) snprintf((char *)h + 157, 100, "%s", link);
  memcpy(h + 257, "ustar\0" "00", 8);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  h[155] = ' ';
  tw_put(t, h, 512);
  if (size) {
    tw_put(t, data, size);
    uint8_t pad[512] = {0};
    if (size % 512) tw_put(t, pad, 512 - size % 512);
  }
}

/* A pax extended header ('x') with the given records ("mtime=...", "SCHILY.xattr.user.a=b"). */
static void tw_pax(struct tw *t, const char *const *recs, size_t n) {
  char buf[2048];
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    size_t body = strlen(recs[i]) + 2, len = body + 1;
    while (snprintf(NULL, 0, "%zu", len) + body != len) len++;
    off += (size_t)snprintf(buf + off, sizeof buf - off, "%zu %s\n", len, recs[i]);
  }
  tw_entry(t, "./PaxHeaders/x", 'x', NULL, buf, off);
}

static void tw_end(struct tw *t) {
  uint8_t z[1024] = {0};
  tw_put(t, z, sizeof z);
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "cannot write %s\n", path);
    abort();
  }
}

static int exists(const char *rel) {
  char p[512];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", base, rel);
  return lstat(p, &st) == 0;
}

/* Unpacks a tar (plain) into base/root, with or without the forced walk. */
static int unpack(struct tw *t, int force_walk, uint64_t max, char *err, size_t errlen) {
  char root[300], layer[300];
  snprintf(root, sizeof root, "%s/root", base);
  snprintf(layer, sizeof layer, "%s/layer.tar", base);
  write_file(layer, t->p, t->n);
  int fd = open(root, O_RDONLY | O_DIRECTORY);
  fy_unpack_opts o = {.max_bytes = max, .window_log_max = 27, .force_walk = force_walk};
  fy_unpack_stats st = {0};
  int rc = fy_unpack_layer(fd, layer, FY_KIND_LAYER_TAR, &o, &st, err, errlen);
  close(fd);
  if (force_walk) CHECK_INT(st.used_openat2, 0);
  else used_openat2 |= st.used_openat2;
  return rc;
}

static void reset_root(void) {
  static const char *const dirs[] = {"root", "outside"};
  for (size_t i = 0; i < 2; i++) {
    char p[600];
    if (fy_path_fmt(p, sizeof p, "%s/%s", base, dirs[i]) != FY_OK || fy_remove_path(p) != FY_OK || fy_mkdirs(p, 0755) != FY_OK)
      abort();
  }
}

static void test_good_layers(int walk) {
  struct tw t = {0};
  char err[512];
  reset_root();
  tw_entry(&t, "./", '5', NULL, NULL, 0);
  tw_entry(&t, "./etc/", '5', NULL, NULL, 0);
  tw_entry(&t, "./etc/motd", '0', NULL, "hello\n", 6);
  tw_entry(&t, "bin/", '5', NULL, NULL, 0);
  tw_entry(&t, "bin/busybox", '0', NULL, "ELF", 3);
  tw_entry(&t, "bin/sh", '2', "/bin/busybox", NULL, 0);            /* absolute symlink: fine */
  tw_entry(&t, "bin/ls", '2', "busybox", NULL, 0);
  tw_entry(&t, "bin/link", '1', "bin/busybox", NULL, 0);           /* hardlink inside */
  tw_entry(&t, "deep/a/b/c/file", '0', NULL, "x", 1);              /* parents created */
  tw_entry(&t, "gone/x", '0', NULL, "x", 1);
  tw_entry(&t, "opq/old", '0', NULL, "x", 1);
  tw_end(&t);
  CHECK_INT(unpack(&t, walk, 1 << 20, err, sizeof err), FY_OK);
  CHECK(exists("root/etc/motd") && exists("root/bin/sh") && exists("root/bin/link") && exists("root/deep/a/b/c/file"));
  /* A second layer with whiteouts. */
  free(t.p);
  memset(&t, 0, sizeof t);
  tw_entry(&t, "gone/.wh.x", '0', NULL, NULL, 0);
  tw_entry(&t, "opq/.wh..wh..opq", '0', NULL, NULL, 0);
  tw_entry(&t, "opq/new", '0', NULL, "y", 1);
  tw_entry(&t, "etc/motd", '0', NULL, "v2\n", 3);                   /* replaced */
  tw_end(&t);
  CHECK_INT(unpack(&t, walk, 1 << 20, err, sizeof err), FY_OK);
  CHECK(!exists("root/gone/x") && exists("root/gone"));
  CHECK(!exists("root/opq/old") && exists("root/opq/new"));
  free(t.p);
}

/* What containerd keeps: a later layer writing through a symlinked directory (merged /usr) lands
 * in its target inside the root; climbing symlinks are stored as written; device nodes skipped;
 * mtimes and user.* xattrs kept, other xattr namespaces dropped and counted. */
static void test_fidelity(int walk) {
  struct tw t = {0};
  char err[512], p[600], link[300];
  reset_root();
  tw_entry(&t, "usr/", '5', NULL, NULL, 0);
  tw_entry(&t, "usr/lib/", '5', NULL, NULL, 0);
  tw_entry(&t, "lib", '2', "usr/lib", NULL, 0);
  tw_entry(&t, "sbin", '2', "/usr/sbin", NULL, 0);             /* absolute: from the root, not the host's */
  tw_entry(&t, "etc/climb", '2', "../../../../etc/passwd", NULL, 0);
  tw_entry(&t, "dev/console", '3', NULL, NULL, 0);
  static const char *const pax[] = {"mtime=1600000000.5", "SCHILY.xattr.user.ferry=kept", "SCHILY.xattr.trusted.x=no"};
  tw_pax(&t, pax, 3);
  tw_entry(&t, "usr/bin/tool", '0', NULL, "ELF", 3);
  tw_end(&t);
  CHECK_INT(unpack(&t, walk, 1 << 20, err, sizeof err), FY_OK);
  free(t.p);
  memset(&t, 0, sizeof t);
  tw_entry(&t, "lib/x.so", '0', NULL, "so", 2);                  /* layer 2, through lib -> usr/lib */
  tw_entry(&t, "sbin/init", '0', NULL, "init", 4);               /* through sbin -> /usr/sbin */
  tw_entry(&t, "lib/.wh.gone", '0', NULL, NULL, 0);
  tw_end(&t);
  CHECK_INT(unpack(&t, walk, 1 << 20, err, sizeof err), FY_OK);
  free(t.p);
  CHECK(exists("root/usr/lib/x.so"));
  CHECK(exists("root/usr/sbin/init"));
  struct stat st;
  snprintf(p, sizeof p, "%s/root/lib", base);
  CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));             /* the link itself is kept */
  snprintf(p, sizeof p, "%s/root/etc/climb", base);
  ssize_t n = readlink(p, link, sizeof link - 1);
  link[n > 0 ? n : 0] = '\0';
  CHECK_STR(link, "../../../../etc/passwd");
  CHECK(!exists("root/dev/console"));
  snprintf(p, sizeof p, "%s/root/usr/bin/tool", base);
  CHECK(stat(p, &st) == 0 && st.st_mtime == 1600000000);
  char val[32] = "";
  ssize_t vl = getxattr(p, "user.ferry", val, sizeof val - 1);
  if (vl < 0 && errno == ENOTSUP) fprintf(stderr, "note: this filesystem has no user xattrs; not checked\n");
  else CHECK(vl == 4 && memcmp(val, "kept", 4) == 0);
  CHECK(getxattr(p, "trusted.x", val, sizeof val) < 0);
}

/* Bombs of bytes that are not file data: a directory entry that "carries" data, and zeros or
 * garbage after the archive's end. Each stops at the cap (or at once), never decompressing it all. */
static void test_bombs(void) {
  char err[512];
  struct tw t = {0};
  static char big[2 << 20];
  reset_root();
  tw_entry(&t, "d/", '5', NULL, big, sizeof big); /* 2 MiB "inside" a directory entry */
  tw_end(&t);
  CHECK_INT(unpack(&t, 0, 8 << 20, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "a '5' entry with 2097152 bytes of data (only files carry data)");
  free(t.p);
  memset(&t, 0, sizeof t);
  tw_entry(&t, "f", '0', NULL, "x", 1);
  tw_end(&t);
  tw_put(&t, big, 8192);                                   /* record padding: fine */
  CHECK_INT(unpack(&t, 0, 8 << 20, err, sizeof err), FY_OK);
  tw_put(&t, big, sizeof big);                             /* 2 MiB more zeros: past the padding allowance */
  CHECK_INT(unpack(&t, 0, 8 << 20, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "after the end of the archive");
  t.p[t.n - 1] = 'x';
  CHECK_INT(unpack(&t, 0, 8 << 20, err, sizeof err), FY_EPROTO);
  free(t.p);
  /* 4096 empty files: no file data at all, 2 MiB of headers, over a 1 MiB cap */
  memset(&t, 0, sizeof t);
  for (int i = 0; i < 4096; i++) {
    char n[32];
    snprintf(n, sizeof n, "e%d", i);
    tw_entry(&t, n, '0', NULL, NULL, 0);
  }
  tw_end(&t);
  CHECK_INT(unpack(&t, 0, 1 << 20, err, sizeof err), FY_ETOOBIG);
  CHECK_CONTAINS(err, "decompress past limits.max_release_bytes");
  free(t.p);
}

struct hostile {
  const char *what;
  int rc;
  const char *msg;
};

static void one_hostile(int walk, void (*build)(struct tw *), const struct hostile *h) {
  struct tw t = {0};
  char err[512] = "";
  char outside_file[300];
  reset_root();
  /* Something outside the root for an escaping whiteout to delete. */
  snprintf(outside_file, sizeof outside_file, "%s/outside/file", base);
  write_file(outside_file, "keep", 4);
  build(&t);
  tw_end(&t);
  int rc = unpack(&t, walk, 1 << 20, err, sizeof err);
  if (rc != h->rc) fprintf(stderr, "case '%s' (walk=%d): rc %d, err '%s'\n", h->what, walk, rc, err);
  CHECK_INT(rc, h->rc);
  CHECK_CONTAINS(err, h->msg);
  CHECK(!exists("outside/pwned"));
  CHECK(!exists("pwned"));
  if (!exists("outside/file")) fprintf(stderr, "case '%s' (walk=%d) deleted a file outside the root\n", h->what, walk);
  CHECK(exists("outside/file"));
  CHECK(!exists("root/dev/sda"));
  free(t.p);
}

static void b_dotdot(struct tw *t) { tw_entry(t, "../pwned", '0', NULL, "x", 1); }
static void b_dotdot_mid(struct tw *t) { tw_entry(t, "a/../../pwned", '0', NULL, "x", 1); }
static void b_absolute(struct tw *t) { tw_entry(t, "/tmp/pwned", '0', NULL, "x", 1); }
static void b_symlink_write(struct tw *t) {
  char target[300];
  snprintf(target, sizeof target, "%s/outside", base);
  tw_entry(t, "evil", '2', target, NULL, 0);
  tw_entry(t, "evil/pwned", '0', NULL, "x", 1);
}
static void b_symlink_climb(struct tw *t) { tw_entry(t, "a/evil", '2', "../../outside", NULL, 0); }
static void b_hardlink_out(struct tw *t) { tw_entry(t, "evil", '1', "../outside/file", NULL, 0); }
static void b_hardlink_abs(struct tw *t) { tw_entry(t, "evil", '1', "/etc/passwd", NULL, 0); }
static void b_hardlink_symlink(struct tw *t) {
  tw_entry(t, "a/b/c/inside", '2', "../../../etc", NULL, 0); /* inside where it stands */
  tw_entry(t, "moved", '1', "a/b/c/inside", NULL, 0);        /* the same link at the top climbs out */
}
static void b_device(struct tw *t) { tw_entry(t, "dev/sda", '4', NULL, NULL, 0); }
static void b_symlink_loop(struct tw *t) {
  tw_entry(t, "a", '2', "b", NULL, 0);
  tw_entry(t, "b", '2', "/a", NULL, 0);
  tw_entry(t, "a/pwned", '0', NULL, "x", 1);
}
static void b_whiteout_climb(struct tw *t) { tw_entry(t, "../outside/.wh.file", '0', NULL, NULL, 0); }
static void b_whiteout_through_link(struct tw *t) {
  char target[300];
  snprintf(target, sizeof target, "%s/outside", base);
  tw_entry(t, "lnk", '2', target, NULL, 0);
  tw_entry(t, "lnk/.wh.file", '0', NULL, NULL, 0);
}
static void b_too_big(struct tw *t) {
  static char big[1 << 16];
  for (int i = 0; i < 20; i++) {
    char n[32];
    snprintf(n, sizeof n, "f%d", i);
    tw_entry(t, n, '0', NULL, big, sizeof big);
  }
}

static void test_hostile(int walk) {
  static const struct {
    void (*build)(struct tw *);
    struct hostile h;
  } cases[] = {
      {b_dotdot, {"a '..' path", FY_EUNSAFE, "'..' component"}},
      {b_dotdot_mid, {"'..' in the middle", FY_EUNSAFE, "'..' component"}},
      {b_absolute, {"an absolute path", FY_EUNSAFE, "absolute name"}},
      /* contained: the symlink resolves inside the root, the file lands in ROOT/BASE/outside */
      {b_symlink_write, {"a write through a symlink", FY_OK, ""}},
      /* stored as written; it can only ever resolve inside the root */
      {b_symlink_climb, {"a symlink climbing out", FY_OK, ""}},
      {b_hardlink_out, {"a hardlink to outside", FY_EUNSAFE, "'..' component"}},
      {b_hardlink_abs, {"a hardlink to an absolute path", FY_EUNSAFE, "absolute name"}},
      {b_device, {"a device node (skipped)", FY_OK, ""}},
      {b_hardlink_symlink, {"a hardlink to a symlink", FY_EUNSAFE, "hardlink to a symlink"}},
      {b_symlink_loop, {"symlinks in a loop", FY_EUNSAFE, "symlinks loop"}},
      {b_whiteout_climb, {"a whiteout climbing out", FY_EUNSAFE, "'..' component"}},
      {b_whiteout_through_link, {"a whiteout through a symlink (inside the root)", FY_OK, ""}},
      {b_too_big, {"a layer past max_bytes", FY_ETOOBIG, "max_release_bytes"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) one_hostile(walk, cases[i].build, &cases[i].h);
}

/* One depth limit: the deepest name a layer may create is removable again, with the release and
 * rootfs directories above it; one level more is refused up front. */
static void test_depth_limit(void) {
  char deep[4 * FY_UNPACK_MAX_DEPTH + 8], err[512];
  size_t n = 0;
  for (int i = 0; i < FY_UNPACK_MAX_DEPTH - 1; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "d/");
  snprintf(deep + n, sizeof deep - n, "f");
  struct tw t = {0};
  reset_root();
  tw_entry(&t, deep, '0', NULL, "x", 1); /* FY_UNPACK_MAX_DEPTH components: fine */
  tw_end(&t);
  CHECK_INT(unpack(&t, 0, 1 << 20, err, sizeof err), FY_OK);
  free(t.p);
  memset(&t, 0, sizeof t);
  char deeper[sizeof deep + 4];
  snprintf(deeper, sizeof deeper, "d/%s", deep);
  tw_entry(&t, deeper, '0', NULL, "x", 1);
  tw_end(&t);
  CHECK_INT(unpack(&t, 1, 1 << 20, err, sizeof err), FY_ETOOBIG);
  CHECK_CONTAINS(err, "levels deep");
  free(t.p);
  /* base/rel/<id>/rootfs/d/.../f, removed from base/rel as GC does */
  char cmd[900];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s/rel/id' && mv '%s/root' '%s/rel/id/rootfs'", base, base, base);
  CHECK_INT(system(cmd), 0);
  char rel[300];
  snprintf(rel, sizeof rel, "%s/rel", base);
  int dfd = open(rel, O_RDONLY | O_DIRECTORY);
  CHECK_INT(fy_remove_tree(dfd, "id"), FY_OK);
  close(dfd);
  CHECK(!exists("rel/id"));
  CHECK_INT(fy_remove_path(rel), FY_OK);
  CHECK(!exists("rel"));
  CHECK_INT(fy_remove_path(rel), FY_OK); /* gone already: nothing to do */
  mkdir(rel, 0755);
}

static void test_zstd_window(void) {
  /* A frame compressed with a 2^24 window, read with a cap of 2^20. */
  struct tw t = {0};
  static char blob[3 << 20];
  for (size_t i = 0; i < sizeof blob; i++) blob[i] = (char)(i * 2654435761u >> 24);
  reset_root();
  tw_entry(&t, "big", '0', NULL, blob, sizeof blob);
  tw_end(&t);
  ZSTD_CCtx *c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 24);
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
  size_t cap = ZSTD_compressBound(t.n);
  void *z = malloc(cap);
  size_t zn = ZSTD_compress2(c, z, cap, t.p, t.n);
  CHECK(!ZSTD_isError(zn));
  char layer[300], root[300], err[300];
  snprintf(layer, sizeof layer, "%s/layer.tar.zst", base);
  snprintf(root, sizeof root, "%s/root", base);
  write_file(layer, z, zn);
  int fd = open(root, O_RDONLY | O_DIRECTORY);
  fy_unpack_opts o = {.max_bytes = 1 << 30, .window_log_max = 20};
  fy_unpack_stats st = {0};
  CHECK_INT(fy_unpack_layer(fd, layer, FY_KIND_LAYER_ZSTD, &o, &st, err, sizeof err), FY_ETOOBIG);
  CHECK_CONTAINS(err, "window");
  o.window_log_max = 27;
  memset(&st, 0, sizeof st);
  CHECK_INT(fy_unpack_layer(fd, layer, FY_KIND_LAYER_ZSTD, &o, &st, err, sizeof err), FY_OK);
  CHECK_INT(st.bytes, sizeof blob);
  close(fd);
  ZSTD_freeCCtx(c);
  free(z);
  free(t.p);
}

static int count_entry(void *ud, const fy_tar_entry *e) { (void)e; ++*(int *)ud; return FY_OK; }
static int no_data(void *ud, const uint8_t *p, size_t n) { (void)ud; (void)p; (void)n; return FY_OK; }
static int no_end(void *ud) { (void)ud; return FY_OK; }

static void test_tar_chunks(void) {
  struct tw t = {0};
  tw_entry(&t, "a", '0', NULL, "0123456789", 10);
  tw_entry(&t, "b/", '5', NULL, NULL, 0);
  tw_entry(&t, "b/c", '0', NULL, "x", 1);
  tw_end(&t);
  static const fy_tar_ops ops = {count_entry, no_data, no_end};
  for (size_t chunk = 1; chunk <= 1031; chunk += chunk < 16 ? 1 : 97) {
    int n = 0;
    fy_tar_reader r;
    fy_tar_init(&r, &ops, &n);
    int rc = FY_OK;
    for (size_t off = 0; off < t.n && rc == FY_OK; off += chunk)
      rc = fy_tar_feed(&r, t.p + off, t.n - off < chunk ? t.n - off : chunk);
    CHECK_INT(rc, FY_OK);
    CHECK_INT(fy_tar_finish(&r), FY_OK);
    CHECK_INT(n, 3);
    fy_tar_free(&r);
  }
  /* A corrupted checksum is refused; a truncated stream too. */
  int n = 0;
  fy_tar_reader r;
  fy_tar_init(&r, &ops, &n);
  t.p[0] ^= 1;
  CHECK_INT(fy_tar_feed(&r, t.p, t.n), FY_EPROTO);
  fy_tar_free(&r);
  t.p[0] ^= 1;
  fy_tar_init(&r, &ops, &n);
  CHECK_INT(fy_tar_feed(&r, t.p, 700), FY_OK);
  CHECK_INT(fy_tar_finish(&r), FY_EPROTO);
  fy_tar_free(&r);
  free(t.p);
}

static void test_store(void) {
  fy_store s;
  fy_blob_writer w;
  fy_digest d, wrong;
  static const char data[] = "the quick brown fox jumps over the lazy dog";
  size_t n = sizeof data - 1;
  fy_sha256_once(data, n, &d);
  fy_sha256_once("other", 5, &wrong);
  CHECK_INT(fy_store_open(&s, base, 1), FY_OK);
  /* A transfer cut after 10 bytes, then resumed from the partial's length. */
  CHECK_INT(fy_blob_writer_open(&w, &s, &d, n, 0), FY_OK);
  CHECK_INT(fy_blob_writer_write(&w, data, 10), FY_OK);
  fy_blob_writer_close(&w);
  CHECK_INT(fy_store_partial(&s, &d, n), 10);
  CHECK(!fy_store_has(&s, &d, n));
  CHECK_INT(fy_blob_writer_open(&w, &s, &d, n, 11), FY_EINVAL); /* past what is on disk */
  CHECK_INT(fy_blob_writer_open(&w, &s, &d, n, 10), FY_OK);
  CHECK_INT(fy_blob_writer_write(&w, data + 10, n - 10), FY_OK);
  CHECK_INT(fy_blob_writer_write(&w, "x", 1), FY_ETOOBIG);
  CHECK_INT(fy_blob_writer_finish(&w), FY_OK);
  CHECK(fy_store_has(&s, &d, n));
  CHECK_INT(fy_store_verify(&s, &d, n), FY_OK);
  /* Bytes that do not hash to the digest are refused and never resumed. */
  CHECK_INT(fy_blob_writer_open(&w, &s, &wrong, n, 0), FY_OK);
  CHECK_INT(fy_blob_writer_write(&w, data, n), FY_OK);
  CHECK_INT(fy_blob_writer_finish(&w), FY_EDIGEST);
  CHECK_INT(fy_store_partial(&s, &wrong, n), 0);
  CHECK(!fy_store_has(&s, &wrong, n));
  /* One writer per blob: a second one (another app's pull of a shared layer) is refused while
   * the first holds the partial, and after the first finished it starts a fresh partial, never
   * truncating the blob the first renamed into the store. */
  fy_blob_writer w2;
  CHECK_INT(fy_blob_writer_open(&w, &s, &d, n, 0), FY_OK);
  CHECK_INT(fy_blob_writer_write(&w, data, 5), FY_OK);
  CHECK_INT(fy_blob_writer_open(&w2, &s, &d, n, 0), FY_EBUSY);
  CHECK_INT(fy_blob_writer_write(&w, data + 5, n - 5), FY_OK);
  CHECK_INT(fy_blob_writer_finish(&w), FY_OK);
  fy_blob_writer_close(&w);
  CHECK_INT(fy_store_verify(&s, &d, n), FY_OK);
  CHECK_INT(fy_blob_writer_open(&w2, &s, &d, n, 0), FY_OK);
  CHECK_INT(fy_store_verify(&s, &d, n), FY_OK); /* the complete blob is untouched */
  fy_blob_writer_close(&w2);
  size_t removed = 0;
  CHECK_INT(fy_store_gc(&s, NULL, 0, &removed), FY_OK);
  CHECK_INT(removed, 2); /* the blob and the second, empty partial */
  CHECK(!fy_store_has(&s, &d, n));
}

/* The kernel's files report a size of 0: fy_file_read sees nothing, fy_file_read_kernel reads
 * to EOF and still keeps to its bound. */
static void test_kernel_files(void) {
  char *d = NULL;
  size_t n = 0;
  CHECK_INT(fy_file_read_kernel("/proc/self/status", 1 << 16, &d, &n), FY_OK);
  CHECK(n > 0 && strstr(d, "VmRSS") != NULL);
  free(d);
  CHECK_INT(fy_file_read_kernel("/proc/self/status", 16, &d, &n), FY_ETOOBIG);
  CHECK(d == NULL);
  CHECK_INT(fy_file_read_kernel("/proc/self", 4096, &d, &n), FY_EINVAL); /* a directory */
}

int main(void) {
  test_kernel_files();
  snprintf(base, sizeof base, "%s/ferry-unpack-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(base)) return 1;
  char f[300];
  reset_root();
  snprintf(f, sizeof f, "%s/outside/file", base);
  write_file(f, "keep", 4);
  test_good_layers(0);
  test_good_layers(1);
  test_hostile(0);
  test_hostile(1);
  test_fidelity(0);
  test_fidelity(1);
  test_bombs();
  test_depth_limit();
  printf("resolver without force_walk: %s\n", used_openat2 ? "openat2(RESOLVE_IN_ROOT)" : "O_NOFOLLOW walk (no openat2 here)");
  test_zstd_window();
  test_tar_chunks();
  test_store();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  if (system(cmd) != 0) return 1;
  return check_done("test_unpack");
}
