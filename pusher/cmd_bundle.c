/* ferry bundle IMAGE... -o FILE.tar [--platform P,...]: an oci-archive for a site with no network,
 * as skopeo writes one (oci-layout, index.json, blobs/sha256/<hex> in a tar), holding each image
 * under the REF "APP:TAG" with its signature under sha256-<hex>.sig. Indexes are kept as they
 * are, so a signature over one still verifies; --platform leaves out the manifests (and their
 * configs and layers) of the other platforms, and the attestations, to make the file smaller.
 * gzip layers are recompressed to zstd first (devices take zstd), which rewrites the manifests
 * and the indexes above them: such an image carries no signature (ferry sign refuses gzip).
 * At the site: ferry push oci-archive:FILE.tar:APP:TAG --to … from a laptop there. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include "cli.h"
#include "ferry/buf.h"
#include "ferry/fsutil.h"
#include "ferry/tar.h"
#include "ferry/text.h"
#include "layout.h"
#include "signing.h"

#define MAX_IMAGES 64
#define MAX_BLOBS 4096

typedef struct bundle {
  int fd;
  fy_digest blobs[MAX_BLOBS];     /* written already */
  size_t nblobs;
  fy_platform only[16];
  size_t nonly;
  uint64_t bytes;
} bundle;

static void usage(FILE *f) {
  fprintf(f, "usage: ferry bundle IMAGE... -o FILE.tar [--platform P[,P...]]\n"
             "Writes an oci-archive for a site without network: each IMAGE (and its signature) under the\n"
             "REF APP:TAG. At the site, from a laptop there: ferry push oci-archive:FILE.tar:APP:TAG --to ...\n"
             "or on the device itself, without a pusher: ferryd --config CONFIG --import FILE.tar[:APP:TAG]\n"
             "--platform keeps only those platforms' variants (the indexes stay whole, so signatures still\n"
             "verify). skopeo reads the file: skopeo inspect oci-archive:FILE.tar:APP:TAG.\n"
             FY_CLI_IMAGE_HELP);
}


/* One tar entry: header, data from memory or a file, padding. */
static int entry(bundle *b, const char *name, const void *mem, const char *path, uint64_t size, char *err, size_t errlen) {
  fy_buf hdr;
  static const uint8_t zeros[512];
  fy_buf_init(&hdr, 64u * 1024u);
  int rc = fy_tar_write_header(&hdr, name, FY_TAR_FILE, 0644, size, NULL, 0);
  if (rc == FY_OK) rc = fy_fd_write_all(b->fd, hdr.data, hdr.len);
  fy_buf_free(&hdr, 0);
  if (rc == FY_OK && mem) rc = fy_fd_write_all(b->fd, mem, (size_t)size);
  if (rc == FY_OK && path) {
    int in = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t *buf = malloc(256u * 1024u);
    uint64_t left = size;
    if (in < 0 || !buf) rc = in < 0 ? fy_err_from_errno(errno) : FY_ENOMEM;
    while (rc == FY_OK && left) {
      ssize_t r = read(in, buf, left < 256u * 1024u ? (size_t)left : 256u * 1024u);
      if (r <= 0) rc = r < 0 ? fy_err_from_errno(errno) : FY_EIO; /* shorter than its descriptor */
      else if ((rc = fy_fd_write_all(b->fd, buf, (size_t)r)) == FY_OK) left -= (uint64_t)r;
    }
    if (in >= 0) close(in);
    free(buf);
  }
  if (rc == FY_OK) rc = fy_fd_write_all(b->fd, zeros, fy_tar_padding(size));
  if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "writing %s: %s", name, fy_strerror(rc));
  b->bytes += size;
  return FY_OK;
}

static int add_blob(bundle *b, const fy_layout *l, const fy_digest *d, uint64_t size, char *err, size_t errlen) {
  char name[100], hex[FY_DIGEST_HEX], path[4200];
  for (size_t i = 0; i < b->nblobs; i++)
    if (fy_digest_equal(&b->blobs[i], d)) return FY_OK;
  if (b->nblobs == MAX_BLOBS) return fy_text_fail(err, errlen, FY_ETOOBIG, "more than %d blobs", MAX_BLOBS);
  int frc = fy_layout_fetch_blob(l, d, size, NULL, err, errlen); /* from the registry, for a docker:// image */
  if (frc != FY_OK) return frc;
  fy_layout_blob_path(l, d, path, sizeof path);
  snprintf(name, sizeof name, "blobs/sha256/%s", fy_digest_hex(d, hex));
  int rc = entry(b, name, NULL, path, size, err, errlen);
  if (rc == FY_OK) b->blobs[b->nblobs++] = *d;
  return rc;
}

static int wanted(const bundle *b, const fy_descriptor *d) {
  if (d->attestation) return b->nonly == 0;
  if (!b->nonly || !d->has_platform) return 1;
  for (size_t i = 0; i < b->nonly; i++)
    if (fy_platform_equal(&b->only[i], &d->platform)) return 1;
  return 0;
}

/* A manifest or index and everything under it (the selected platforms). */
static int add_tree(bundle *b, const fy_layout *l, const fy_descriptor *d, int depth, char *err, size_t errlen) {
  char *data = NULL;
  size_t len;
  int rc;
  if (depth > 4) return fy_text_fail(err, errlen, FY_ETOOBIG, "indexes nested deeper than 4");
  if ((rc = fy_layout_read_blob(l, d, &data, &len, err, errlen)) != FY_OK) return rc;
  json_t *j = json_loadb(data, len, 0, NULL);
  free(data);
  if (d->kind == FY_KIND_INDEX) {
    fy_index ix;
    char *text = json_dumps(j, JSON_COMPACT);
    rc = text ? fy_oci_index_parse(text, strlen(text), &ix, err, errlen) : FY_ENOMEM;
    free(text);
    for (size_t i = 0; rc == FY_OK && i < ix.n; i++)
      if (wanted(b, &ix.entries[i])) rc = add_tree(b, l, &ix.entries[i], depth + 1, err, errlen);
    if (text && rc != FY_ENOMEM) fy_oci_index_free(&ix);
  } else {
    /* the config and the layers, as the manifest names them (an artifact's too) */
    json_t *cfg = json_object_get(j, "config"), *ly;
    size_t i;
    fy_digest bd;
    const char *ds = json_string_value(json_object_get(cfg, "digest"));
    rc = ds && fy_digest_parse(ds, &bd) == FY_OK ? add_blob(b, l, &bd, (uint64_t)json_integer_value(json_object_get(cfg, "size")), err, errlen)
                                                 : fy_text_fail(err, errlen, FY_EPROTO, "a manifest without a config");
    json_array_foreach(json_object_get(j, "layers"), i, ly) {
      if (rc != FY_OK) break;
      ds = json_string_value(json_object_get(ly, "digest"));
      json_int_t sz = json_integer_value(json_object_get(ly, "size"));
      rc = ds && fy_digest_parse(ds, &bd) == FY_OK && sz >= 0 ? add_blob(b, l, &bd, (uint64_t)sz, err, errlen)
                                                              : fy_text_fail(err, errlen, FY_EPROTO, "a malformed layer");
    }
  }
  json_decref(j);
  if (rc == FY_OK) rc = add_blob(b, l, &d->digest, d->size, err, errlen);
  return rc;
}

/* gzip layers: recompressed into the cache and a rewritten single manifest is bundled instead
 * of the image's (a multi-platform gzip image must be converted first, as the message says). */
static int has_gzip(const fy_layout *l, char *err, size_t errlen, int *gz) {
  fy_variant *vs = NULL;
  size_t nv = 0;
  *gz = 0;
  int rc = fy_layout_variants(l, &vs, &nv, err, errlen);
  for (size_t i = 0; rc == FY_OK && i < nv; i++)
    for (size_t k = 0; k < vs[i].m.nlayers; k++) *gz |= vs[i].m.layers[k].kind == FY_KIND_LAYER_GZIP;
  fy_variants_free(vs, nv);
  return rc;
}

int fy_cmd_bundle(int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"platform", required_argument, 0, 'p'},
                                       {"help", no_argument, 0, 'h'}, FY_CLI_REGISTRY_OPTIONS, {0, 0, 0, 0}};
  const char *out = NULL;
  char err[1200], tmp[4200];
  int c, ret = 1;
  bundle *b = calloc(1, sizeof *b);
  if (!b) return 1;
  b->fd = -1;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:p:", opts, NULL)) != -1) {
    int r = fy_cli_registry_opt(c, optarg);
    if (r < 0) { free(b); return 2; }
    if (r > 0) continue;
    if (c == 'o') out = optarg;
    else if (c == 'p') {
      char *copy = strdup(optarg), *save = NULL;
      for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (b->nonly == 16 || fy_platform_parse(t, &b->only[b->nonly++]) != FY_OK) {
          fy_cli_err("--platform: '%s' is not a platform name (linux/arm64, linux/arm/v7, ...)", t);
          free(copy);
          free(b);
          return 2;
        }
      free(copy);
    } else if (c == 'h') { usage(stdout); free(b); return 0; }
    else { usage(stderr); free(b); return 2; }
  }
  if (!out || optind >= argc || argc - optind > MAX_IMAGES) {
    fy_cli_err("bundle needs one to %d IMAGEs and -o FILE.tar", MAX_IMAGES);
    usage(stderr);
    free(b);
    return 2;
  }
  if (fy_path_fmt(tmp, sizeof tmp, "%s.tmp-%d", out, (int)getpid()) != FY_OK || (b->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
    fy_cli_err("%s: %s", out, strerror(errno));
    free(b);
    return 1;
  }
  json_t *index = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType", FY_MT_OCI_INDEX, "manifests");
  size_t nimages = 0;
  for (int i = optind; i < argc; i++) {
    fy_layout l;
    char app[64] = "", ref[300], ds[FY_DIGEST_STR], stag[96];
    int gz = 0;
    if (fy_layout_open(&l, argv[i], err, sizeof err) != FY_OK) goto fail;
    if (!l.has_top_desc) {
      fy_text_fmt(err, sizeof err, "%s lists several images: name one as IMAGE:REF", argv[i]);
      fy_layout_close(&l);
      goto fail;
    }
    if (has_gzip(&l, err, sizeof err, &gz) != FY_OK || gz) {
      if (gz) fy_text_fmt(err, sizeof err, "%s has gzip layers, and devices take zstd: convert it first (skopeo copy --all "
                          "--dest-compress-format zstd %s oci:DIR:TAG, or ferry publish it and bundle that)", argv[i], argv[i]);
      fy_layout_close(&l);
      goto fail;
    }
    fy_layout_app_name(&l, app, sizeof app);
    const char *tag = l.ref[0] && !strchr(l.ref, ':') && !strchr(l.ref, '/') ? l.ref
                      : l.transport == FY_IMG_DOCKER && l.docker.tag[0] ? l.docker.tag : "latest";
    fy_text_fmt(ref, sizeof ref, "%s:%s", app[0] ? app : "image", tag);
    fy_descriptor top = l.top_desc;
    int rc = add_tree(b, &l, &top, 0, err, sizeof err);
    json_t *e = json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType", top.media_type, "digest", fy_digest_format(&top.digest, ds), "size",
                          (json_int_t)top.size, "annotations", FY_ANNOT_REF_NAME, ref);
    if (rc == FY_OK && app[0]) json_object_set_new(json_object_get(e, "annotations"), "org.opencontainers.image.title", json_string(app));
    json_array_append_new(json_object_get(index, "manifests"), e);
    fy_descriptor md;
    if (rc == FY_OK && fy_layout_sig_manifest(&l, &top.digest, &md, err, sizeof err) == FY_OK) {
      fy_layout_sig_tag(&top.digest, stag, sizeof stag);
      if ((rc = add_tree(b, &l, &md, 0, err, sizeof err)) == FY_OK)
        json_array_append_new(json_object_get(index, "manifests"),
                              json_pack("{s:s, s:s, s:I, s:{s:s}}", "mediaType", FY_MT_OCI_MANIFEST, "digest", fy_digest_format(&md.digest, ds),
                                        "size", (json_int_t)md.size, "annotations", FY_ANNOT_REF_NAME, stag));
      fprintf(stderr, "ferry: %s: with its signature\n", ref);
    }
    err[0] = rc == FY_OK ? '\0' : err[0];
    fy_layout_close(&l);
    if (rc != FY_OK) goto fail;
    fprintf(stderr, "ferry: %s as %s\n", argv[i], ref);
    nimages++;
  }
  char *text = json_dumps(index, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  const char *layout = "{\"imageLayoutVersion\":\"1.0.0\"}";
  fy_buf end;
  fy_buf_init(&end, 4096);
  int rc = text ? FY_OK : FY_ENOMEM;
  if (rc == FY_OK) rc = entry(b, "oci-layout", layout, NULL, strlen(layout), err, sizeof err);
  if (rc == FY_OK) rc = entry(b, "index.json", text, NULL, strlen(text), err, sizeof err);
  free(text);
  if (rc == FY_OK && (rc = fy_tar_write_end(&end)) == FY_OK) rc = fy_fd_write_all(b->fd, end.data, end.len);
  fy_buf_free(&end, 0);
  if (rc == FY_OK && fsync(b->fd) != 0) rc = fy_err_from_errno(errno);
  if (rc != FY_OK) {
    if (!err[0]) fy_text_fmt(err, sizeof err, "writing %s: %s", out, fy_strerror(rc));
    goto fail;
  }
  close(b->fd);
  b->fd = -1;
  if (rename(tmp, out) != 0) {
    fy_text_fmt(err, sizeof err, "%s: %s", out, strerror(errno));
    goto fail;
  }
  char h[32];
  printf("bundled %zu image(s), %zu blobs (%s) into %s\n", nimages, b->nblobs, fy_human_bytes(b->bytes, h, sizeof h), out);
  ret = 0;
  goto done;
fail:
  fy_cli_err("%s", err);
  if (b->fd >= 0) close(b->fd);
  b->fd = -1;
  unlink(tmp);
done:
  json_decref(index);
  free(b);
  return ret;
}
