/* oci-archive and docker-archive images, read through the streaming tar reader; see archive.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include "archive.h"
#include "blobsink.h"
#include "cli.h"
#include "ferry/fsutil.h"
#include "ferry/tar.h"
#include "ferry/text.h"

#define READ_CHUNK (256u * 1024u)
#define MAX_DOCKER_LAYERS FY_OCI_MAX_LAYERS

/* One pass over the archive: `want` says, per entry, what to do with it. */
typedef enum { TAKE_SKIP = 0, TAKE_BUFFER, TAKE_SINK } take;

typedef struct pass {
  take (*want)(struct pass *p, const char *path, uint64_t size);
  int (*done)(struct pass *p);            /* an entry taken as TAKE_SINK or TAKE_BUFFER ended */
  void *ctx;
  const fy_store *cache;
  take cur;
  char path[FY_TAR_PATH_MAX];
  char *buf;                              /* TAKE_BUFFER: the entry's bytes */
  size_t len, cap;
  fy_sink sink;                           /* TAKE_SINK */
  int sink_compress;                      /* set by want() for TAKE_SINK */
  char err[700];
} pass;

static const char *clean_path(const char *p) {
  while (p[0] == '.' && p[1] == '/') p += 2;
  while (p[0] == '/') p++;
  return p;
}

static int on_entry(void *ud, const fy_tar_entry *e) {
  pass *p = ud;
  p->cur = TAKE_SKIP;
  if (e->type != FY_TAR_FILE) return FY_OK;
  snprintf(p->path, sizeof p->path, "%s", clean_path(e->path));
  p->cur = p->want(p, p->path, e->size);
  if (p->err[0]) return FY_EPROTO;
  if (p->cur == TAKE_BUFFER) {
    if (e->size > FY_OCI_JSON_MAX) {
      fy_text_fmt(p->err, sizeof p->err, "%s: %llu bytes, over the %u-byte ceiling for JSON", p->path, (unsigned long long)e->size,
                  FY_OCI_JSON_MAX);
      return FY_ETOOBIG;
    }
    free(p->buf);
    p->len = 0;
    p->cap = (size_t)e->size;
    if (!(p->buf = malloc(p->cap + 1))) return FY_ENOMEM;
  } else if (p->cur == TAKE_SINK) {
    int rc = fy_sink_open(&p->sink, p->cache, p->sink_compress);
    if (rc != FY_OK) {
      fy_text_fmt(p->err, sizeof p->err, "writing into the cache %s: %s", p->cache->dir, fy_strerror(rc));
      return rc;
    }
  }
  return FY_OK;
}

static int on_data(void *ud, const uint8_t *d, size_t n) {
  pass *p = ud;
  if (p->cur == TAKE_BUFFER) {
    if (n > p->cap - p->len) return FY_EPROTO; /* the reader delivers no more than the header said */
    memcpy(p->buf + p->len, d, n);
    p->len += n;
  } else if (p->cur == TAKE_SINK) {
    int rc = fy_sink_write(&p->sink, d, n);
    if (rc != FY_OK) {
      fy_text_fmt(p->err, sizeof p->err, "writing into the cache %s: %s", p->cache->dir, fy_strerror(rc));
      return rc;
    }
  }
  return FY_OK;
}

static int on_end(void *ud) {
  pass *p = ud;
  if (p->cur == TAKE_SKIP) return FY_OK;
  if (p->cur == TAKE_BUFFER) p->buf[p->len] = '\0';
  int rc = p->done(p);
  fy_sink_abort(&p->sink);
  p->cur = TAKE_SKIP;
  return rc;
}

/* Opens the archive (a regular file only: a FIFO would block, a directory is not an archive)
 * and feeds it to the tar reader until its end blocks. */
static int run_pass(const char *file, pass *p, char *err, size_t errlen) {
  static const fy_tar_ops ops = {on_entry, on_data, on_end};
  struct stat st;
  fy_tar_reader tr;
  int rc = FY_OK, fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return fy_text_fail(err, errlen, FY_ENOENT, "%s: %s", file, strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fy_text_fail(err, errlen, FY_ENOENT, "%s: not a regular file (an image archive is a tar file)", file);
  }
  fcntl(fd, F_SETFL, 0);
  uint8_t *buf = malloc(READ_CHUNK);
  if (!buf) {
    close(fd);
    return FY_ENOMEM;
  }
  p->cur = TAKE_SKIP;
  p->err[0] = '\0';
  p->sink.fd = -1;
  fy_tar_init(&tr, &ops, p);
  for (;;) {
    ssize_t r = read(fd, buf, READ_CHUNK);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = fy_text_fail(err, errlen, FY_EIO, "%s: %s", file, strerror(errno));
      break;
    }
    if (r == 0) {
      if ((rc = fy_tar_finish(&tr)) != FY_OK) fy_text_fmt(err, errlen, "%s: not a complete tar archive (cut short?)", file);
      break;
    }
    if ((rc = fy_tar_feed(&tr, buf, (size_t)r)) != FY_OK) {
      if (p->err[0]) fy_text_fmt(err, errlen, "%s: %s", file, p->err);
      else fy_text_fmt(err, errlen, "%s: not a tar archive: %s", file, tr.err[0] ? tr.err : fy_strerror(rc));
      break;
    }
    if (fy_tar_done(&tr)) break;
  }
  fy_tar_free(&tr);
  fy_sink_abort(&p->sink);
  free(p->buf);
  p->buf = NULL;
  free(buf);
  close(fd);
  return rc;
}

/* --- oci-archive: a layout in a tar ------------------------------------------------------ */

typedef struct oci_ctx {
  fy_layout *l;
  int has_layout_file;
  fy_digest blob;
  size_t blobs;
} oci_ctx;

static int blob_name(const char *path, fy_digest *d) {
  char ds[FY_DIGEST_STR];
  if (strncmp(path, "blobs/sha256/", 13) != 0 || strlen(path + 13) != 64) return 0;
  snprintf(ds, sizeof ds, "sha256:%s", path + 13);
  return fy_digest_parse(ds, d) == FY_OK;
}

static take oci_want(pass *p, const char *path, uint64_t size) {
  oci_ctx *c = p->ctx;
  if (strcmp(path, "index.json") == 0) return TAKE_BUFFER;
  if (strcmp(path, "oci-layout") == 0) {
    c->has_layout_file = 1;
    return TAKE_SKIP;
  }
  if (!blob_name(path, &c->blob)) return TAKE_SKIP;
  c->blobs++;
  if (fy_store_has(p->cache, &c->blob, size)) return TAKE_SKIP; /* verified when it was stored */
  p->sink_compress = 0;
  return TAKE_SINK;
}

static int oci_done(pass *p) {
  oci_ctx *c = p->ctx;
  if (p->cur == TAKE_BUFFER) {
    free(c->l->index_json);
    c->l->index_json = p->buf;
    c->l->index_len = p->len;
    p->buf = NULL;
    return FY_OK;
  }
  fy_digest got;
  char ds[FY_DIGEST_STR];
  int rc = fy_sink_finish(&p->sink, &c->blob, &got, NULL, NULL);
  if (rc == FY_EDIGEST) fy_text_fmt(p->err, sizeof p->err, "blob %s does not match its digest", fy_digest_format(&c->blob, ds));
  else if (rc != FY_OK) fy_text_fmt(p->err, sizeof p->err, "storing blob %s in the cache: %s", fy_digest_format(&c->blob, ds), fy_strerror(rc));
  return rc;
}

int fy__archive_read_oci(fy_layout *l, char *err, size_t errlen) {
  const fy_store *cache;
  int rc = fy_layout_cache(l, &cache, err, errlen);
  if (rc != FY_OK) return rc;
  oci_ctx c = {.l = l};
  pass p = {.want = oci_want, .done = oci_done, .ctx = &c, .cache = cache};
  if ((rc = run_pass(l->file, &p, err, errlen)) != FY_OK) return rc;
  if (!c.has_layout_file || !l->index_json)
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: no %s at the top of the archive: not an oci-archive%s", l->file,
                        !c.has_layout_file ? "oci-layout" : "index.json",
                        c.blobs == 0 ? " (a docker save archive is named docker-archive:FILE)" : "");
  return FY_OK;
}

/* --- docker-archive: manifest.json, a config, uncompressed layers -------------------------- */

typedef struct docker_ctx {
  fy_layout *l;
  int stage;                       /* 1: manifest.json; 2: the config; 3: the layers */
  json_t *manifest;                /* manifest.json's one entry */
  const char *config_path;
  char *config;                    /* the config's bytes */
  size_t config_len;
  size_t nlayers;
  const char *layer_path[MAX_DOCKER_LAYERS];
  fy_digest diff_id[MAX_DOCKER_LAYERS];
  fy_digest zstd[MAX_DOCKER_LAYERS];
  uint64_t zstd_size[MAX_DOCKER_LAYERS];
  int have[MAX_DOCKER_LAYERS];
  size_t cur;                      /* the layer being compressed */
  char map_dir[4096];              /* $FERRY_HOME/cache/layers: diff_id -> zstd blob */
} docker_ctx;

/* The zstd blob the cache made from this diff_id earlier, if it is still there. */
static int cached_layer(docker_ctx *c, const fy_store *cache, size_t i) {
  char path[4200], hex[FY_DIGEST_HEX], *text = NULL;
  size_t len;
  if (fy_path_fmt(path, sizeof path, "%s/%s", c->map_dir, fy_digest_hex(&c->diff_id[i], hex)) != FY_OK) return 0;
  if (fy_file_read(path, 256, &text, &len) != FY_OK) return 0;
  char *sp = strchr(text, ' ');
  int ok = 0;
  if (sp) {
    *sp = '\0';
    c->zstd_size[i] = strtoull(sp + 1, NULL, 10);
    ok = fy_digest_parse(text, &c->zstd[i]) == FY_OK && fy_store_has(cache, &c->zstd[i], c->zstd_size[i]);
  }
  free(text);
  return ok;
}

static take docker_want(pass *p, const char *path, uint64_t size) {
  docker_ctx *c = p->ctx;
  (void)size;
  if (c->stage == 1) return strcmp(path, "manifest.json") == 0 ? TAKE_BUFFER : TAKE_SKIP;
  if (c->stage == 2) return strcmp(path, c->config_path) == 0 && !c->config ? TAKE_BUFFER : TAKE_SKIP;
  for (size_t i = 0; i < c->nlayers; i++)
    if (!c->have[i] && strcmp(path, c->layer_path[i]) == 0) {
      c->cur = i;
      p->sink_compress = 1;
      return TAKE_SINK;
    }
  return TAKE_SKIP;
}

static int docker_done(pass *p) {
  docker_ctx *c = p->ctx;
  if (p->cur == TAKE_BUFFER) {
    if (c->stage == 1) {
      json_error_t je;
      json_t *m = json_loadb(p->buf, p->len, 0, &je);
      if (!json_is_array(m) || json_array_size(m) != 1) {
        fy_text_fmt(p->err, sizeof p->err, "manifest.json %s", !json_is_array(m) ? "is not a list of images"
                    : json_array_size(m) == 0 ? "lists no image" : "lists several images; ferry reads a docker-archive holding one");
        json_decref(m);
        return FY_EPROTO;
      }
      json_decref(c->manifest); /* a second manifest.json replaces the first */
      c->manifest = json_incref(json_array_get(m, 0));
      json_decref(m);
      return FY_OK;
    }
    c->config = p->buf;
    c->config_len = p->len;
    p->buf = NULL;
    return FY_OK;
  }
  size_t i = c->cur;
  fy_digest in;
  char ds[FY_DIGEST_STR], line[128], path[4200], hex[FY_DIGEST_HEX];
  int rc = fy_sink_finish(&p->sink, &c->diff_id[i], &c->zstd[i], &c->zstd_size[i], &in);
  if (rc == FY_EDIGEST) {
    fy_text_fmt(p->err, sizeof p->err, "layer %s does not match its diff_id %s in the config (docker-archive layers are "
                "uncompressed tars, as docker save and skopeo write them)", c->layer_path[i], fy_digest_format(&c->diff_id[i], ds));
    return rc;
  }
  if (rc != FY_OK) {
    fy_text_fmt(p->err, sizeof p->err, "compressing layer %s into the cache: %s", c->layer_path[i], fy_strerror(rc));
    return rc;
  }
  /* The same tar listed twice is one layer twice, and so must its diff_ids be. */
  for (size_t k = 0; k < c->nlayers; k++)
    if (strcmp(c->layer_path[k], c->layer_path[i]) == 0) {
      if (!fy_digest_equal(&c->diff_id[k], &c->diff_id[i])) {
        fy_text_fmt(p->err, sizeof p->err, "layer %s is listed twice, with two different diff_ids in the config", c->layer_path[i]);
        return FY_EDIGEST;
      }
      c->have[k] = 1;
      c->zstd[k] = c->zstd[i];
      c->zstd_size[k] = c->zstd_size[i];
    }
  snprintf(line, sizeof line, "%s %llu\n", fy_digest_format(&c->zstd[i], ds), (unsigned long long)c->zstd_size[i]);
  /* A map that cannot be written only costs a recompression next time. */
  if (fy_path_fmt(path, sizeof path, "%s/%s", c->map_dir, fy_digest_hex(&c->diff_id[i], hex)) == FY_OK &&
      fy_file_write_atomic(path, line, strlen(line), 0644) != FY_OK)
    unlink(path);
  return FY_OK;
}

/* The OCI manifest and the one-entry index.json the docker-archive stands for. */
static int docker_index(fy_layout *l, docker_ctx *c, const fy_store *cache, char *err, size_t errlen) {
  fy_digest cd, md;
  char ds[FY_DIGEST_STR];
  int rc;
  fy_sha256_once(c->config, c->config_len, &cd);
  if ((rc = fy_store_put(cache, &cd, c->config, c->config_len)) != FY_OK)
    return fy_text_fail(err, errlen, rc, "storing the config in the cache: %s", fy_strerror(rc));
  json_t *layers = json_array();
  for (size_t i = 0; i < c->nlayers; i++)
    json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType", FY_MT_OCI_LAYER_ZSTD, "digest",
                                            fy_digest_format(&c->zstd[i], ds), "size", (json_int_t)c->zstd_size[i]));
  json_t *man = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2, "mediaType", FY_MT_OCI_MANIFEST, "config",
                          "mediaType", FY_MT_OCI_CONFIG, "digest", fy_digest_format(&cd, ds), "size", (json_int_t)c->config_len,
                          "layers", layers);
  char *text = man ? json_dumps(man, JSON_COMPACT) : NULL;
  json_decref(man);
  if (!text) return FY_ENOMEM;
  size_t mlen = strlen(text);
  fy_sha256_once(text, mlen, &md);
  rc = fy_store_put(cache, &md, text, mlen);
  free(text);
  if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "storing the manifest in the cache: %s", fy_strerror(rc));
  json_t *ix = json_pack("{s:i, s:s, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "mediaType", FY_MT_OCI_INDEX, "manifests",
                         "mediaType", FY_MT_OCI_MANIFEST, "digest", fy_digest_format(&md, ds), "size", (json_int_t)mlen);
  l->index_json = ix ? json_dumps(ix, JSON_COMPACT) : NULL;
  json_decref(ix);
  if (!l->index_json) return FY_ENOMEM;
  l->index_len = strlen(l->index_json);
  return FY_OK;
}

static int docker_config(docker_ctx *c, char *err, size_t errlen, const char *file) {
  json_t *layers = json_object_get(c->manifest, "Layers");
  c->config_path = json_string_value(json_object_get(c->manifest, "Config"));
  if (!c->config_path || !json_is_array(layers))
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: manifest.json names no Config or Layers", file);
  if (json_array_size(layers) > MAX_DOCKER_LAYERS)
    return fy_text_fail(err, errlen, FY_ETOOBIG, "%s: more than %d layers", file, MAX_DOCKER_LAYERS);
  c->nlayers = json_array_size(layers);
  for (size_t i = 0; i < c->nlayers; i++) {
    c->layer_path[i] = json_string_value(json_array_get(layers, i));
    if (!c->layer_path[i]) return fy_text_fail(err, errlen, FY_EPROTO, "%s: manifest.json: layer %zu is not a path", file, i);
    c->layer_path[i] = clean_path(c->layer_path[i]);
  }
  c->config_path = clean_path(c->config_path);
  return FY_OK;
}

static int docker_diff_ids(docker_ctx *c, char *err, size_t errlen, const char *file) {
  json_t *cfg = json_loadb(c->config, c->config_len, 0, NULL);
  json_t *ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
  int rc = FY_OK;
  if (!json_is_array(ids) || json_array_size(ids) != c->nlayers)
    rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: the config's rootfs.diff_ids do not list the %zu layers manifest.json names", file,
                      c->nlayers);
  for (size_t i = 0; rc == FY_OK && i < c->nlayers; i++) {
    const char *s = json_string_value(json_array_get(ids, i));
    if (!s || fy_digest_parse(s, &c->diff_id[i]) != FY_OK)
      rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: diff_id %zu is not a sha256 digest", file, i);
  }
  json_decref(cfg);
  return rc;
}

int fy__archive_read_docker(fy_layout *l, char *err, size_t errlen) {
  const fy_store *cache;
  int rc = fy_layout_cache(l, &cache, err, errlen);
  if (rc != FY_OK) return rc;
  docker_ctx *c = calloc(1, sizeof *c);
  if (!c) return FY_ENOMEM;
  c->l = l;
  fy_cli_home("cache/layers", c->map_dir, sizeof c->map_dir);
  if ((rc = fy_mkdirs(c->map_dir, 0755)) != FY_OK) {
    fy_text_fmt(err, errlen, "cannot create %s: %s", c->map_dir, fy_strerror(rc));
    goto out;
  }
  pass p = {.want = docker_want, .done = docker_done, .ctx = c, .cache = cache};
  /* manifest.json comes last in what docker and skopeo write; the config, after the layers.
   * Three passes over the file (the page cache makes the first two cheap). */
  c->stage = 1;
  if ((rc = run_pass(l->file, &p, err, errlen)) != FY_OK) goto out;
  if (!c->manifest) {
    rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: no manifest.json: not a docker-archive (an OCI layout in a tar is named oci-archive:FILE)", l->file);
    goto out;
  }
  if ((rc = docker_config(c, err, errlen, l->file)) != FY_OK) goto out;
  c->stage = 2;
  if ((rc = run_pass(l->file, &p, err, errlen)) != FY_OK) goto out;
  if (!c->config) {
    rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: the config %s that manifest.json names is not in the archive", l->file, c->config_path);
    goto out;
  }
  if ((rc = docker_diff_ids(c, err, errlen, l->file)) != FY_OK) goto out;
  size_t missing = 0;
  for (size_t i = 0; i < c->nlayers; i++) missing += !(c->have[i] = cached_layer(c, cache, i));
  c->stage = 3;
  if (missing && (rc = run_pass(l->file, &p, err, errlen)) != FY_OK) goto out;
  for (size_t i = 0; i < c->nlayers; i++)
    if (!c->have[i]) {
      rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: layer %s that manifest.json names is not in the archive (a link is not followed)",
                        l->file, c->layer_path[i]);
      goto out;
    }
  rc = docker_index(l, c, cache, err, errlen);
out:
  json_decref(c->manifest);
  free(c->config);
  free(c);
  return rc;
}
