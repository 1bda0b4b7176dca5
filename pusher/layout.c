#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "cli.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"
#include "layout.h"
#include "registry.h"
#include <jansson.h>

#define MAX_NESTING 4
/* Index entries one walk may look at: nesting alone allows N^4 (an index listing the next
 * one N times at every level); a real image has a handful. */
#define MAX_WALK 1024

void fy_layout_blob_path(const fy_layout *l, const fy_digest *d, char *buf, size_t len) {
  struct stat st;
  if (l->store.dir[0]) {
    fy_store_path(&l->store, d, buf, len);
    if (stat(buf, &st) == 0) return;
  }
  fy_store_path(&l->cache, d, buf, len);
}

/* Temporaries of runs that were killed (.sink-*, *.partial): after a day nobody resumes them. */
static void sweep_cache(const fy_store *s) {
  DIR *d = opendir(s->dir);
  struct dirent *e;
  struct stat st;
  char path[4400];
  time_t now = time(NULL);
  while (d && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    int temp = strncmp(e->d_name, ".sink-", 6) == 0 || (n > 8 && strcmp(e->d_name + n - 8, ".partial") == 0);
    if (!temp || fy_path_fmt(path, sizeof path, "%s/%s", s->dir, e->d_name) != FY_OK) continue;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime > 86400) unlink(path);
  }
  if (d) closedir(d);
}

int fy_layout_cache(const fy_layout *l, const fy_store **out, char *err, size_t errlen) {
  static int swept;
  int rc = fy_mkdirs(l->cache.dir, 0755);
  *out = &l->cache;
  if (rc != FY_OK) snprintf(err, errlen, "cannot create the cache %s: %s (set FERRY_HOME elsewhere)", l->cache.dir, fy_strerror(rc));
  if (rc == FY_OK && !swept) {
    swept = 1;
    sweep_cache(&l->cache);
  }
  return rc;
}

/* A manifest, index or config the registry has and the cache lacks, into the cache. */
static int fetch_small(const fy_layout *l, const fy_descriptor *d, char *err, size_t errlen) {
  const fy_store *cache;
  char ds[FY_DIGEST_STR], mt[128];
  int rc = fy_layout_cache(l, &cache, err, errlen);
  if (rc != FY_OK) return rc;
  fy_digest_format(&d->digest, ds);
  if (d->kind == FY_KIND_INDEX || d->kind == FY_KIND_MANIFEST) {
    char *data;
    size_t len;
    fy_digest got;
    if ((rc = fy_registry_manifest_get(l->remote, ds, &data, &len, mt, sizeof mt, &got, err, errlen)) != FY_OK) return rc;
    rc = fy_store_put(cache, &got, data, len);
    free(data);
    return rc == FY_OK ? FY_OK : fy_text_fail(err, errlen, rc, "caching %s: %s", ds, fy_strerror(rc));
  }
  return fy_registry_blob_get(l->remote, &d->digest, d->size, cache, NULL, err, errlen);
}

int fy_layout_fetch_blob(const fy_layout *l, const fy_digest *d, uint64_t size, uint64_t *fetched, char *err, size_t errlen) {
  char path[4200];
  struct stat st;
  const fy_store *cache;
  int rc;
  if (fetched) *fetched = 0;
  fy_layout_blob_path(l, d, path, sizeof path);
  if (!l->remote || (stat(path, &st) == 0 && S_ISREG(st.st_mode))) return FY_OK;
  if ((rc = fy_layout_cache(l, &cache, err, errlen)) != FY_OK) return rc;
  return fy_registry_blob_get(l->remote, d, size, cache, fetched, err, errlen);
}

int fy_layout_prepare(const fy_layout *l, fy_variant *v, int *converted, uint64_t *fetched, char *err, size_t errlen) {
  int rc;
  if (fetched) *fetched = 0;
  for (size_t i = 0; l->remote && i < v->m.nlayers; i++) {
    uint64_t got = 0;
    rc = fy_layout_fetch_blob(l, &v->m.layers[i].digest, v->m.layers[i].size, &got, err, errlen);
    if (fetched) *fetched += got;
    if (rc != FY_OK) return rc;
  }
  return fy_layout_to_zstd(l, v, converted, err, errlen);
}

/* docker://: the manifest the tag or digest names, into the cache, as the one entry of an
 * index.json made here; the rest comes when it is read. */
static int open_remote(fy_layout *l, char *err, size_t errlen) {
  const fy_store *cache;
  char *data = NULL, mt[128], ds[FY_DIGEST_STR];
  size_t len;
  fy_digest d;
  int rc;
  if ((rc = fy_layout_cache(l, &cache, err, errlen)) != FY_OK) return rc;
  if ((rc = fy_registry_open(&l->remote, &l->docker, 0, err, errlen)) != FY_OK) return rc;
  const char *reference = l->docker.digest[0] ? l->docker.digest : l->docker.tag;
  if ((rc = fy_registry_manifest_get(l->remote, reference, &data, &len, mt, sizeof mt, &d, err, errlen)) != FY_OK) return rc;
  fy_media_kind k = fy_media_kind_of(mt);
  if (k != FY_KIND_INDEX && k != FY_KIND_MANIFEST) {
    /* Some registries answer with a generic type; the document says what it is. */
    json_t *j = json_loadb(data, len, 0, NULL);
    const char *inner = json_string_value(json_object_get(j, "mediaType"));
    k = fy_media_kind_of(inner);
    if (k == FY_KIND_UNKNOWN) k = json_object_get(j, "manifests") ? FY_KIND_INDEX : FY_KIND_MANIFEST;
    snprintf(mt, sizeof mt, "%s", k == FY_KIND_INDEX ? FY_MT_OCI_INDEX : FY_MT_OCI_MANIFEST);
    if (inner && fy_media_kind_of(inner) == k) fy_text_fmt(mt, sizeof mt, "%s", inner);
    json_decref(j);
  }
  rc = fy_store_put(cache, &d, data, len);
  free(data);
  if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "caching the manifest: %s", fy_strerror(rc));
  json_t *ix = json_pack("{s:i, s:s, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "mediaType", FY_MT_OCI_INDEX, "manifests", "mediaType",
                         mt, "digest", fy_digest_format(&d, ds), "size", (json_int_t)len);
  l->index_json = ix ? json_dumps(ix, JSON_COMPACT) : NULL;
  json_decref(ix);
  if (!l->index_json) return FY_ENOMEM;
  l->index_len = strlen(l->index_json);
  return FY_OK;
}

int fy_layout_read_blob(const fy_layout *l, const fy_descriptor *d, char **data, size_t *len, char *err, size_t errlen) {
  char path[4200], ds[FY_DIGEST_STR];
  fy_digest got;
  *data = NULL;
  if (d->size > FY_OCI_JSON_MAX) {
    snprintf(err, errlen, "%s: %llu bytes, over the %u-byte ceiling for JSON blobs", fy_digest_format(&d->digest, ds),
             (unsigned long long)d->size, FY_OCI_JSON_MAX);
    return FY_ETOOBIG;
  }
  fy_layout_blob_path(l, &d->digest, path, sizeof path);
  int rc = fy_file_read(path, FY_OCI_JSON_MAX, data, len);
  if (rc == FY_ENOENT && l->remote) {
    if ((rc = fetch_small(l, d, err, errlen)) != FY_OK) return rc;
    rc = fy_file_read(path, FY_OCI_JSON_MAX, data, len);
  }
  if (rc != FY_OK) {
    fy_text_fmt(err, errlen, "%s: blob %s %s", l->name, fy_digest_format(&d->digest, ds),
                rc == FY_ENOENT ? (l->dir[0] ? "is missing from the layout" : "is missing from the image") : fy_strerror(rc));
    return rc == FY_ENOENT ? FY_ENOENT : rc;
  }
  fy_sha256_once(*data, *len, &got);
  if (*len != d->size || !fy_digest_equal(&got, &d->digest)) {
    fy_text_fmt(err, errlen, "%s: blob %s does not match its descriptor (size %zu, expected %llu)", l->name,
                fy_digest_format(&d->digest, ds), *len, (unsigned long long)d->size);
    free(*data);
    *data = NULL;
    return FY_EDIGEST;
  }
  return FY_OK;
}

static int load_index_blob(const fy_layout *l, const fy_descriptor *d, fy_index *out, char *err, size_t errlen) {
  char *data;
  size_t len;
  int rc = fy_layout_read_blob(l, d, &data, &len, err, errlen);
  if (rc != FY_OK) return rc;
  rc = fy_oci_index_parse(data, len, out, err, errlen);
  free(data);
  return rc;
}

/* index.json is read: REF picks its entry; without REF the one image is taken, and a layout
 * with several tagged images is refused the way skopeo refuses it ("more than one image"). */
static int select_image(fy_layout *l, char *err, size_t errlen) {
  fy_index ix;
  char why[300];
  int rc = fy_oci_index_parse(l->index_json, l->index_len, &ix, why, sizeof why);
  if (rc != FY_OK) {
    fy_text_fmt(err, errlen, "%s: index.json: %s", l->name, why);
    return rc;
  }
  int found = -1;
  size_t images = 0, tagged = 0;
  for (size_t i = 0; i < ix.n; i++) {
    if (l->ref[0]) {
      if (strcmp(ix.entries[i].ref_name, l->ref) == 0) found = (int)i;
    } else if (fy_oci_is_image_entry(&ix.entries[i])) {
      images++;
      tagged += ix.entries[i].ref_name[0] != 0;
      if (found < 0) found = (int)i;
    }
  }
  if (l->ref[0] && found < 0) {
    char refs[900] = "";
    for (size_t i = 0; i < ix.n; i++)
      if (fy_oci_is_image_entry(&ix.entries[i]) && ix.entries[i].ref_name[0]) {
        size_t o = strlen(refs);
        fy_text_fmt(refs + o, sizeof refs - o, "%s%s", o ? ", " : "", ix.entries[i].ref_name);
      }
    fy_text_fmt(err, errlen, "%s: no image tagged '%s' (org.opencontainers.image.ref.name) in index.json; it holds %s", l->name,
                l->ref, refs[0] ? refs : "no tagged image");
    fy_oci_index_free(&ix);
    return FY_ENOENT;
  }
  if (!l->ref[0] && images > 1 && tagged > 0) {
    char refs[900] = "";
    for (size_t i = 0; i < ix.n; i++)
      if (fy_oci_is_image_entry(&ix.entries[i])) {
        size_t o = strlen(refs);
        fy_text_fmt(refs + o, sizeof refs - o, "%s%s", o ? ", " : "", ix.entries[i].ref_name[0] ? ix.entries[i].ref_name : "(untagged)");
      }
    fy_text_fmt(err, errlen, "%s holds %zu images (%s): choose one as %s:REF", l->name, images, refs, l->name);
    fy_oci_index_free(&ix);
    return FY_EINVAL;
  }
  if (!l->ref[0] && (images != 1 || found < 0)) {
    /* A flat index.json listing one manifest per platform (no tags): the index is the image. */
    l->top = ix;
    return images ? FY_OK : fy_text_fail(err, errlen, FY_ENOENT, "%s: index.json lists no image", l->name);
  }
  fy_descriptor d = ix.entries[found];
  fy_oci_index_free(&ix);
  l->top_desc = d;
  l->has_top_desc = 1;
  if (d.kind == FY_KIND_INDEX) return load_index_blob(l, &d, &l->top, err, errlen);
  l->top.entries = calloc(1, sizeof *l->top.entries);
  if (!l->top.entries) return FY_ENOMEM;
  l->top.entries[0] = d;
  l->top.n = 1;
  return FY_OK;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The name a push gives the app when nothing better is known: a file's name without its
 * extension, a folder's name. */
static int open_dir(fy_layout *l, char *err, size_t errlen) {
  char path[4200];
  struct stat st;
  int rc;
  if (!is_dir(l->dir)) {
    if (stat(l->dir, &st) == 0 && S_ISREG(st.st_mode))
      return fy_text_fail(err, errlen, FY_ENOENT, "%s: a file, not an OCI image layout; an archive is named oci-archive:%s or docker-archive:%s",
                          l->dir, l->dir, l->dir);
    return fy_text_fail(err, errlen, FY_ENOENT,
                        "%s: not a directory (expected an OCI image layout, or a name skopeo knows: oci:DIR[:REF], "
                        "oci-archive:FILE[:REF], docker-archive:FILE, docker://HOST/REPO:TAG)", l->dir);
  }
  snprintf(path, sizeof path, "%s/oci-layout", l->dir);
  if (stat(path, &st) != 0) return fy_text_fail(err, errlen, FY_ENOENT, "%s: no oci-layout file: not an OCI image layout", l->dir);
  snprintf(path, sizeof path, "%s/index.json", l->dir);
  if ((rc = fy_file_read(path, FY_OCI_JSON_MAX, &l->index_json, &l->index_len)) != FY_OK)
    return fy_text_fail(err, errlen, rc, "%s: %s", path, fy_strerror(rc));
  if ((rc = fy_store_open(&l->store, l->dir, 0)) != FY_OK)
    return fy_text_fail(err, errlen, rc, "%s: no blobs/sha256 directory", l->dir);
  return FY_OK;
}

int fy_layout_open(fy_layout *l, const char *spec, char *err, size_t errlen) {
  fy_image_name n;
  char home[4096];
  int rc;
  memset(l, 0, sizeof *l);
  snprintf(l->name, sizeof l->name, "%s", spec);
  fy_cli_home("cache", home, sizeof home);
  if (fy_store_open(&l->cache, home, 0) == FY_ETOOBIG) return fy_text_fail(err, errlen, FY_ETOOBIG, "FERRY_HOME is too long");
  if ((rc = fy_image_name_parse(spec, &n, err, errlen)) != FY_OK) return rc;
  l->transport = n.transport;
  snprintf(l->ref, sizeof l->ref, "%s", n.ref);
  switch (n.transport) {
  case FY_IMG_LAYOUT:
    /* LAYOUT:REF: the first prefix that is a directory is the layout (REF may hold ':'). */
    snprintf(l->dir, sizeof l->dir, "%s", n.path);
    if (!is_dir(l->dir)) {
      for (char *c = strchr(l->dir, ':'); c; c = strchr(c + 1, ':')) {
        *c = '\0';
        int d = c != l->dir && is_dir(l->dir);
        if (d) {
          snprintf(l->ref, sizeof l->ref, "%s", c + 1);
          break;
        }
        *c = ':';
      }
    }
    /* fall through */
  case FY_IMG_OCI:
    if (n.transport == FY_IMG_OCI) snprintf(l->dir, sizeof l->dir, "%s", n.path);
    fy_app_name_hint(l->ref, l->dir, 0, l->app_hint, sizeof l->app_hint);
    rc = open_dir(l, err, errlen);
    break;
  case FY_IMG_OCI_ARCHIVE:
  case FY_IMG_DOCKER_ARCHIVE:
    snprintf(l->file, sizeof l->file, "%s", n.path);
    fy_app_name_hint(l->ref, l->file, 1, l->app_hint, sizeof l->app_hint);
    l->store = l->cache;
    rc = n.transport == FY_IMG_OCI_ARCHIVE ? fy__archive_read_oci(l, err, errlen) : fy__archive_read_docker(l, err, errlen);
    break;
  case FY_IMG_DOCKER:
  default:
    fy_text_fmt(l->app_hint, sizeof l->app_hint, "%s", strrchr(n.docker.repo, '/') ? strrchr(n.docker.repo, '/') + 1 : n.docker.repo);
    l->docker = n.docker;
    l->store = l->cache;
    rc = open_remote(l, err, errlen);
    break;
  }
  if (rc == FY_OK) rc = select_image(l, err, errlen);
  if (rc != FY_OK) fy_layout_close(l);
  return rc;
}

void fy_layout_close(fy_layout *l) {
  fy_oci_index_free(&l->top);
  fy_registry_free(l->remote);
  l->remote = NULL;
  free(l->index_json);
  l->index_json = NULL;
  l->index_len = 0;
}

void fy_variant_free(fy_variant *v) {
  free(v->manifest);
  free(v->config);
  fy_oci_manifest_free(&v->m);
  fy_oci_config_free(&v->cfg);
  memset(v, 0, sizeof *v);
}

static int load_variant(const fy_layout *l, const fy_descriptor *d, fy_variant *v, char *err, size_t errlen) {
  int rc;
  memset(v, 0, sizeof *v);
  v->desc = *d;
  v->source = d->digest;
  if ((rc = fy_layout_read_blob(l, d, &v->manifest, &v->manifest_len, err, errlen)) != FY_OK) goto fail;
  if ((rc = fy_oci_manifest_parse(v->manifest, v->manifest_len, &v->m, err, errlen)) != FY_OK) goto fail;
  if ((rc = fy_layout_read_blob(l, &v->m.config, &v->config, &v->config_len, err, errlen)) != FY_OK) goto fail;
  if ((rc = fy_oci_config_parse(v->config, v->config_len, &v->cfg, err, errlen)) != FY_OK) goto fail;
  return FY_OK;
fail:
  fy_variant_free(v);
  return rc;
}

/* Fills in platforms the index leaves out (single-platform layouts): nested indexes are
 * resolved recursively, manifests through their config. */
static int complete_platforms(const fy_layout *l, fy_index *ix, int depth, size_t *left, char *err, size_t errlen) {
  for (size_t i = 0; i < ix->n; i++) {
    fy_descriptor *d = &ix->entries[i];
    if (d->has_platform || d->attestation || d->kind != FY_KIND_MANIFEST) continue;
    if (*left == 0) break;
    (*left)--;
    fy_variant v;
    if (load_variant(l, d, &v, err, errlen) != FY_OK) continue; /* unusable entries are skipped */
    d->platform = v.cfg.platform;
    d->has_platform = 1;
    fy_variant_free(&v);
  }
  (void)depth;
  return FY_OK;
}

static int walk_limit(int depth, size_t *left, char *err, size_t errlen) {
  if (depth > MAX_NESTING) return fy_text_fail(err, errlen, FY_ETOOBIG, "indexes nested deeper than %d", MAX_NESTING);
  if (*left == 0) return fy_text_fail(err, errlen, FY_ETOOBIG, "the image's indexes list more than %d entries in all", MAX_WALK);
  (*left)--;
  return FY_OK;
}

static int choose_in(const fy_layout *l, const fy_index *ix_in, const fy_platform *acc, size_t nacc, const char *board, int depth,
                     size_t *left, fy_variant *v, char *offered, size_t olen, char *err, size_t errlen) {
  fy_index ix = {0};
  int rc;
  if ((rc = walk_limit(depth, left, err, errlen)) != FY_OK) return rc;
  if (ix_in->n > *left) return fy_text_fail(err, errlen, FY_ETOOBIG, "the image's indexes list more than %d entries in all", MAX_WALK);
  *left -= ix_in->n;
  ix.entries = malloc((ix_in->n ? ix_in->n : 1) * sizeof *ix.entries);
  if (!ix.entries) return FY_ENOMEM;
  memcpy(ix.entries, ix_in->entries, ix_in->n * sizeof *ix.entries);
  ix.n = ix_in->n;
  complete_platforms(l, &ix, depth, left, err, errlen);
  /* Nested indexes without a platform (a layout's index.json pointing at a multi-platform
   * index) are searched in order; the first that yields a variant wins. */
  int best = fy_oci_choose(&ix, acc, nacc, board);
  if (best >= 0) {
    const fy_descriptor *d = &ix.entries[best];
    if (d->kind == FY_KIND_INDEX) {
      fy_index sub;
      if ((rc = load_index_blob(l, d, &sub, err, errlen)) == FY_OK) {
        rc = choose_in(l, &sub, acc, nacc, board, depth + 1, left, v, offered, olen, err, errlen);
        fy_oci_index_free(&sub);
      }
    } else {
      rc = load_variant(l, d, v, err, errlen);
    }
    free(ix.entries);
    return rc;
  }
  char here[512];
  fy_oci_offered(&ix, here, sizeof here);
  if (strcmp(here, "no platform at all") != 0) {
    size_t o = strlen(offered);
    snprintf(offered + o, olen - o, "%s%s", o ? ", " : "", here);
  }
  rc = FY_ENOPLATFORM;
  for (size_t i = 0; i < ix.n && rc == FY_ENOPLATFORM; i++) {
    const fy_descriptor *d = &ix.entries[i];
    if (d->kind != FY_KIND_INDEX || d->has_platform || d->attestation) continue;
    fy_index sub;
    if ((rc = load_index_blob(l, d, &sub, err, errlen)) != FY_OK) break;
    rc = choose_in(l, &sub, acc, nacc, board, depth + 1, left, v, offered, olen, err, errlen);
    fy_oci_index_free(&sub);
  }
  free(ix.entries);
  return rc;
}

int fy_layout_choose(const fy_layout *l, const fy_platform *accepts, size_t naccepts, const char *board, fy_variant *v,
                     char *err, size_t errlen) {
  char offered[1024] = "";
  err[0] = '\0';
  size_t left = MAX_WALK;
  int rc = choose_in(l, &l->top, accepts, naccepts, board, 0, &left, v, offered, sizeof offered, err, errlen);
  if (rc == FY_ENOPLATFORM) {
    char p[FY_PLATFORM_STR];
    /* An arm64 or amd64 node's list starts with its CPU level (linux/arm64/v8.2); it runs the
     * base platform. */
    fy_platform runs;
    memset(&runs, 0, sizeof runs);
    if (naccepts) runs = accepts[0];
    if (strcmp(runs.arch, "arm64") == 0 || strcmp(runs.arch, "amd64") == 0) runs.variant[0] = '\0';
    snprintf(err, errlen, "no variant for this node: it runs %s; the image offers %s",
             naccepts ? fy_platform_format(&runs, p, sizeof p) : "?", offered[0] ? offered : "no platform at all");
  }
  return rc;
}

void fy_layout_offered(const fy_layout *l, char *buf, size_t len) {
  /* The same walk as a choice that nothing can match: it gathers nested indexes' platforms. */
  fy_variant v;
  char err[64];
  buf[0] = '\0';
  size_t left = MAX_WALK;
  if (choose_in(l, &l->top, NULL, 0, NULL, 0, &left, &v, buf, len, err, sizeof err) == FY_OK) fy_variant_free(&v);
  if (!buf[0]) snprintf(buf, len, "no platform at all");
}

static int collect(const fy_layout *l, const fy_index *ix, int depth, size_t *left, fy_variant **out, size_t *n, char *err,
                   size_t errlen) {
  int wrc = walk_limit(depth, left, err, errlen);
  if (wrc != FY_OK) return wrc;
  if (ix->n > *left) return fy_text_fail(err, errlen, FY_ETOOBIG, "the image's indexes list more than %d entries in all", MAX_WALK);
  *left -= ix->n;
  for (size_t i = 0; i < ix->n; i++) {
    const fy_descriptor *d = &ix->entries[i];
    int rc;
    if (d->attestation) continue;
    if (d->kind == FY_KIND_INDEX) {
      fy_index sub;
      if ((rc = load_index_blob(l, d, &sub, err, errlen)) != FY_OK) return rc;
      rc = collect(l, &sub, depth + 1, left, out, n, err, errlen);
      fy_oci_index_free(&sub);
      if (rc != FY_OK) return rc;
      continue;
    }
    if (d->kind != FY_KIND_MANIFEST) continue;
    fy_variant *nv = realloc(*out, (*n + 1) * sizeof **out);
    if (!nv) return FY_ENOMEM;
    *out = nv;
    if ((rc = load_variant(l, d, &nv[*n], err, errlen)) != FY_OK) {
      /* A referrer or other artifact (a cosign signature, an SBOM) listed without a platform is
       * not an image: skipped, as a push skips it. */
      if (rc == FY_EUNSUPPORTED && !d->has_platform) {
        err[0] = '\0';
        continue;
      }
      return rc;
    }
    if (!nv[*n].desc.has_platform) {
      nv[*n].desc.platform = nv[*n].cfg.platform;
      nv[*n].desc.has_platform = 1;
    }
    (*n)++;
  }
  return FY_OK;
}

int fy_layout_variants(const fy_layout *l, fy_variant **out, size_t *n, char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  size_t left = MAX_WALK;
  int rc = collect(l, &l->top, 0, &left, out, n, err, errlen);
  if (rc != FY_OK) {
    fy_variants_free(*out, *n);
    *out = NULL;
    *n = 0;
  }
  return rc;
}

void fy_variants_free(fy_variant *v, size_t n) {
  for (size_t i = 0; i < n; i++) fy_variant_free(&v[i]);
  free(v);
}
