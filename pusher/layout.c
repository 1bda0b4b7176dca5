#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ferry/fsutil.h"
#include "layout.h"

#define MAX_NESTING 4

int fy_layout_read_blob(const fy_layout *l, const fy_descriptor *d, char **data, size_t *len, char *err, size_t errlen) {
  char path[4200], ds[FY_DIGEST_STR];
  fy_digest got;
  *data = NULL;
  if (d->size > FY_OCI_JSON_MAX) {
    snprintf(err, errlen, "%s: %llu bytes, over the %u-byte ceiling for JSON blobs", fy_digest_format(&d->digest, ds),
             (unsigned long long)d->size, FY_OCI_JSON_MAX);
    return FY_ETOOBIG;
  }
  fy_store_path(&l->store, &d->digest, path, sizeof path);
  int rc = fy_file_read(path, FY_OCI_JSON_MAX, data, len);
  if (rc != FY_OK) {
    snprintf(err, errlen, "%s: blob %s %s", l->dir, fy_digest_format(&d->digest, ds),
             rc == FY_ENOENT ? "is missing from the layout" : fy_strerror(rc));
    return rc == FY_ENOENT ? FY_ENOENT : rc;
  }
  fy_sha256_once(*data, *len, &got);
  if (*len != d->size || !fy_digest_equal(&got, &d->digest)) {
    snprintf(err, errlen, "%s: blob %s does not match its descriptor (size %zu, expected %llu)", l->dir,
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

int fy_layout_open(fy_layout *l, const char *spec, char *err, size_t errlen) {
  struct stat st;
  char path[4200], *data = NULL;
  size_t len;
  int rc;
  memset(l, 0, sizeof *l);
  snprintf(l->dir, sizeof l->dir, "%s", spec);
  if (stat(l->dir, &st) != 0) {
    char *colon = strrchr(l->dir, ':');
    if (colon && colon != l->dir) {
      snprintf(l->ref, sizeof l->ref, "%s", colon + 1);
      *colon = '\0';
    }
  }
  if (stat(l->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: not a directory (expected an OCI image layout)", l->dir);
    return FY_ENOENT;
  }
  snprintf(path, sizeof path, "%s/oci-layout", l->dir);
  if (stat(path, &st) != 0) {
    snprintf(err, errlen, "%s: no oci-layout file: not an OCI image layout", l->dir);
    return FY_ENOENT;
  }
  snprintf(path, sizeof path, "%s/index.json", l->dir);
  if ((rc = fy_file_read(path, FY_OCI_JSON_MAX, &data, &len)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, fy_strerror(rc));
    return rc;
  }
  fy_index ix;
  char why[300];
  rc = fy_oci_index_parse(data, len, &ix, why, sizeof why);
  free(data);
  if (rc != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, why);
    return rc;
  }
  if ((rc = fy_store_open(&l->store, l->dir, 0)) != FY_OK) {
    fy_oci_index_free(&ix);
    snprintf(err, errlen, "%s: no blobs/sha256 directory", l->dir);
    return rc;
  }
  if (!l->ref[0]) {
    l->top = ix;
    return FY_OK;
  }
  int found = -1;
  for (size_t i = 0; i < ix.n; i++)
    if (strcmp(ix.entries[i].ref_name, l->ref) == 0) found = (int)i;
  if (found < 0) {
    snprintf(err, errlen, "%s: no image tagged '%s' (org.opencontainers.image.ref.name) in index.json", l->dir, l->ref);
    fy_oci_index_free(&ix);
    return FY_ENOENT;
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

void fy_layout_close(fy_layout *l) { fy_oci_index_free(&l->top); }

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
static int complete_platforms(const fy_layout *l, fy_index *ix, int depth, char *err, size_t errlen) {
  for (size_t i = 0; i < ix->n; i++) {
    fy_descriptor *d = &ix->entries[i];
    if (d->has_platform || d->attestation || d->kind != FY_KIND_MANIFEST) continue;
    fy_variant v;
    if (load_variant(l, d, &v, err, errlen) != FY_OK) continue; /* unusable entries are skipped */
    d->platform = v.cfg.platform;
    d->has_platform = 1;
    fy_variant_free(&v);
  }
  (void)depth;
  return FY_OK;
}

static int choose_in(const fy_layout *l, const fy_index *ix_in, const fy_platform *acc, size_t nacc, const char *board, int depth,
                     fy_variant *v, char *offered, size_t olen, char *err, size_t errlen) {
  fy_index ix = {0};
  int rc;
  if (depth > MAX_NESTING) {
    snprintf(err, errlen, "indexes nested deeper than %d", MAX_NESTING);
    return FY_ETOOBIG;
  }
  ix.entries = malloc((ix_in->n ? ix_in->n : 1) * sizeof *ix.entries);
  if (!ix.entries) return FY_ENOMEM;
  memcpy(ix.entries, ix_in->entries, ix_in->n * sizeof *ix.entries);
  ix.n = ix_in->n;
  complete_platforms(l, &ix, depth, err, errlen);
  /* Nested indexes without a platform (a layout's index.json pointing at a multi-platform
   * index) are searched in order; the first that yields a variant wins. */
  int best = fy_oci_choose(&ix, acc, nacc, board);
  if (best >= 0) {
    const fy_descriptor *d = &ix.entries[best];
    if (d->kind == FY_KIND_INDEX) {
      fy_index sub;
      if ((rc = load_index_blob(l, d, &sub, err, errlen)) == FY_OK) {
        rc = choose_in(l, &sub, acc, nacc, board, depth + 1, v, offered, olen, err, errlen);
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
    rc = choose_in(l, &sub, acc, nacc, board, depth + 1, v, offered, olen, err, errlen);
    fy_oci_index_free(&sub);
  }
  free(ix.entries);
  return rc;
}

int fy_layout_choose(const fy_layout *l, const fy_platform *accepts, size_t naccepts, const char *board, fy_variant *v,
                     char *err, size_t errlen) {
  char offered[1024] = "";
  err[0] = '\0';
  int rc = choose_in(l, &l->top, accepts, naccepts, board, 0, v, offered, sizeof offered, err, errlen);
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
  if (choose_in(l, &l->top, NULL, 0, NULL, 0, &v, buf, len, err, sizeof err) == FY_OK) fy_variant_free(&v);
  if (!buf[0]) snprintf(buf, len, "no platform at all");
}

static int collect(const fy_layout *l, const fy_index *ix, int depth, fy_variant **out, size_t *n, char *err, size_t errlen) {
  if (depth > MAX_NESTING) {
    snprintf(err, errlen, "indexes nested deeper than %d", MAX_NESTING);
    return FY_ETOOBIG;
  }
  for (size_t i = 0; i < ix->n; i++) {
    const fy_descriptor *d = &ix->entries[i];
    int rc;
    if (d->attestation) continue;
    if (d->kind == FY_KIND_INDEX) {
      fy_index sub;
      if ((rc = load_index_blob(l, d, &sub, err, errlen)) != FY_OK) return rc;
      rc = collect(l, &sub, depth + 1, out, n, err, errlen);
      fy_oci_index_free(&sub);
      if (rc != FY_OK) return rc;
      continue;
    }
    if (d->kind != FY_KIND_MANIFEST) continue;
    fy_variant *nv = realloc(*out, (*n + 1) * sizeof **out);
    if (!nv) return FY_ENOMEM;
    *out = nv;
    if ((rc = load_variant(l, d, &nv[*n], err, errlen)) != FY_OK) return rc;
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
  int rc = collect(l, &l->top, 0, out, n, err, errlen);
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
