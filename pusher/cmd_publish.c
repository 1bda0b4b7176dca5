/* ferry publish IMAGE docker://HOST/REPO[:TAG]: the image into a registry, as devices will pull
 * it. Every manifest the image's index reaches goes up (attestations too: the registry checks that
 * an index's manifests exist), each after its config and layers; only the blobs the registry
 * lacks are sent (HEAD, then a cross-repository mount when the image already lives in another
 * repository of the same registry, else one monolithic upload). gzip layers are recompressed
 * to zstd first (the wire and the agents carry zstd only), and the indexes above a rewritten
 * manifest are rewritten to match. Then the index under TAG, then the signature under
 * sha256-<hex>.sig when the image carries one. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <jansson.h>

#include "cli.h"
#include "ferry/text.h"
#include "layout.h"
#include "registry.h"
#include "signing.h"

#define MAX_DEPTH 4
#define MAX_VISITS 1024

typedef struct pub {
  const fy_layout *src;
  fy_registry *dst;
  const char *mount_from;   /* the source's repository, when it is on the same registry */
  size_t uploaded, present, mounted, manifests;
  size_t visited;           /* manifests and indexes read: bounded like any walk of an image */
  uint64_t bytes;
  int quiet;
} pub;

static void usage(FILE *f) {
  fprintf(f, "usage: ferry publish IMAGE docker://HOST[:PORT]/REPO[:TAG] [--registry-ca FILE] [--tls-verify=false] [--json]\n"
             "Uploads the image to a registry, every variant with zstd layers (gzip ones are recompressed\n"
             "first, as a push would), sending only the blobs the registry lacks, then its manifests, the\n"
             "index under TAG (default: latest) and its signature under sha256-<hex>.sig. Devices can then\n"
             "pull it (ferry push --via docker://HOST/REPO, or registry: in the fleet file), and skopeo\n"
             "inspect --raw shows the digest printed here.\n" FY_CLI_IMAGE_HELP);
}

static int put_blob(pub *p, const fy_digest *d, uint64_t size, char *err, size_t errlen) {
  char path[4200], ds[FY_DIGEST_STR], h[32];
  struct stat st;
  int sent = 0, rc;
  fy_layout_blob_path(p->src, d, path, sizeof path);
  if (stat(path, &st) != 0 && p->src->remote) {
    /* The bytes are in the source registry: not fetched when the destination has them or can
     * mount them from there. */
    if ((rc = fy_registry_blob_put(p->dst, NULL, d, size, p->mount_from, &sent, err, errlen)) == FY_OK) {
      if (sent == 0) p->present++;
      else p->mounted++;
      return FY_OK;
    }
    if (rc != FY_ENOENT) return rc;
    err[0] = '\0';
    if ((rc = fy_layout_fetch_blob(p->src, d, size, NULL, err, errlen)) != FY_OK) return rc;
    fy_layout_blob_path(p->src, d, path, sizeof path);
  }
  if ((rc = fy_registry_blob_put(p->dst, path, d, size, p->mount_from, &sent, err, errlen)) != FY_OK) return rc;
  if (sent == 0) p->present++;
  if (sent == 1) p->mounted++;
  if (sent == 2) {
    p->uploaded++;
    p->bytes += size;
    if (!p->quiet) fprintf(stderr, "ferry: uploaded %s (%s)\n", fy_digest_format(d, ds), fy_human_bytes(size, h, sizeof h));
  }
  return FY_OK;
}

/* A descriptor out of JSON (an index's entry, a manifest's config or layer). */
static int desc_of(const json_t *j, fy_descriptor *d) {
  memset(d, 0, sizeof *d);
  const char *mt = json_string_value(json_object_get(j, "mediaType")), *ds = json_string_value(json_object_get(j, "digest"));
  json_int_t size = json_integer_value(json_object_get(j, "size"));
  if (!ds || fy_digest_parse(ds, &d->digest) != FY_OK || size < 0) return FY_EPROTO;
  d->size = (uint64_t)size;
  snprintf(d->media_type, sizeof d->media_type, "%s", mt && strlen(mt) < sizeof d->media_type ? mt : "");
  d->kind = fy_media_kind_of(d->media_type);
  return FY_OK;
}

static int put_manifest(pub *p, const fy_descriptor *d, const char *tag, int depth, fy_descriptor *out, char *err, size_t errlen);

/* An index: its manifests first; rewritten when one of them changed. */
static int put_index(pub *p, json_t *ix, int depth, int *changed, char *err, size_t errlen) {
  size_t i;
  json_t *e;
  char ds[FY_DIGEST_STR];
  json_array_foreach(json_object_get(ix, "manifests"), i, e) {
    fy_descriptor cd, nd;
    if (desc_of(e, &cd) != FY_OK) return fy_text_fail(err, errlen, FY_EPROTO, "an index entry without a valid digest");
    int rc = put_manifest(p, &cd, NULL, depth + 1, &nd, err, errlen);
    if (rc != FY_OK) return rc;
    if (!fy_digest_equal(&nd.digest, &cd.digest)) {
      json_object_set_new(e, "digest", json_string(fy_digest_format(&nd.digest, ds)));
      json_object_set_new(e, "size", json_integer((json_int_t)nd.size));
      json_object_set_new(e, "mediaType", json_string(nd.media_type));
      *changed = 1;
    }
  }
  return FY_OK;
}

/* A manifest: its config and layers (zstd), then itself. */
static int put_image_manifest(pub *p, const fy_descriptor *d, char **data, size_t *len, fy_descriptor *out, char *err, size_t errlen) {
  fy_variant v;
  memset(&v, 0, sizeof v);
  v.desc = *d;
  v.source = d->digest;
  int rc = fy_oci_manifest_parse(*data, *len, &v.m, err, errlen), conv = 0;
  if (rc != FY_OK) return rc;
  v.manifest = *data;
  v.manifest_len = *len;
  *data = NULL;
  if ((rc = fy_layout_to_zstd(p->src, &v, &conv, err, errlen)) == FY_OK) {
    if (conv > 0 && !p->quiet) fprintf(stderr, "ferry: recompressed %d gzip layer(s) to zstd\n", conv);
    rc = put_blob(p, &v.m.config.digest, v.m.config.size, err, errlen);
    for (size_t i = 0; rc == FY_OK && i < v.m.nlayers; i++) rc = put_blob(p, &v.m.layers[i].digest, v.m.layers[i].size, err, errlen);
  }
  if (rc == FY_OK) {
    *out = v.desc;
    *data = v.manifest;
    *len = v.manifest_len;
    v.manifest = NULL;
  }
  fy_variant_free(&v);
  return rc;
}

/* A manifest that is not an image (an attestation, a signature): its blobs as they are. */
static int put_artifact_blobs(pub *p, const char *data, size_t len, char *err, size_t errlen) {
  json_t *m = json_loadb(data, len, 0, NULL), *l;
  fy_descriptor bd;
  size_t i;
  int rc = desc_of(json_object_get(m, "config"), &bd) == FY_OK ? put_blob(p, &bd.digest, bd.size, err, errlen)
                                                              : fy_text_fail(err, errlen, FY_EPROTO, "a manifest without a config");
  json_array_foreach(json_object_get(m, "layers"), i, l) {
    if (rc != FY_OK) break;
    rc = desc_of(l, &bd) == FY_OK ? put_blob(p, &bd.digest, bd.size, err, errlen) : fy_text_fail(err, errlen, FY_EPROTO, "a bad layer");
  }
  json_decref(m);
  return rc;
}

static int put_manifest(pub *p, const fy_descriptor *d, const char *tag, int depth, fy_descriptor *out, char *err, size_t errlen) {
  char *data = NULL, ds[FY_DIGEST_STR];
  size_t len;
  int rc;
  if (depth > MAX_DEPTH) return fy_text_fail(err, errlen, FY_ETOOBIG, "indexes nested deeper than %d", MAX_DEPTH);
  if (++p->visited > MAX_VISITS) return fy_text_fail(err, errlen, FY_ETOOBIG, "the image reaches more than %d manifests", MAX_VISITS);
  if ((rc = fy_layout_read_blob(p->src, d, &data, &len, err, errlen)) != FY_OK) return rc;
  *out = *d;
  json_t *j = json_loadb(data, len, 0, NULL);
  const char *mt = json_string_value(json_object_get(j, "mediaType"));
  fy_media_kind k = d->kind == FY_KIND_INDEX || d->kind == FY_KIND_MANIFEST ? d->kind : fy_media_kind_of(mt);
  if (k == FY_KIND_INDEX || json_object_get(j, "manifests")) {
    int changed = 0;
    if ((rc = put_index(p, j, depth, &changed, err, errlen)) == FY_OK && changed) {
      free(data);
      data = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
      len = data ? strlen(data) : 0;
      if (!data) rc = FY_ENOMEM;
      else fy_sha256_once(data, len, &out->digest);
      out->size = len;
    }
  } else {
    fy_manifest probe;
    char why[300];
    int image = fy_oci_manifest_parse(data, len, &probe, why, sizeof why) == FY_OK;
    if (image) fy_oci_manifest_free(&probe);
    rc = image ? put_image_manifest(p, d, &data, &len, out, err, errlen) : put_artifact_blobs(p, data, len, err, errlen);
  }
  json_decref(j);
  if (rc == FY_OK) {
    if (!out->media_type[0]) snprintf(out->media_type, sizeof out->media_type, "%s", k == FY_KIND_INDEX ? FY_MT_OCI_INDEX : FY_MT_OCI_MANIFEST);
    rc = fy_registry_manifest_put(p->dst, tag ? tag : fy_digest_format(&out->digest, ds), data, len, out->media_type, err, errlen);
    p->manifests++;
  }
  free(data);
  return rc;
}

int fy_cmd_publish(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, FY_CLI_REGISTRY_OPTIONS, {0, 0, 0, 0}};
  int json = 0, c, ret = 1;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int r = fy_cli_registry_opt(c, optarg);
    if (r < 0) return 2;
    if (r > 0) continue;
    if (c == 'j') json = 1;
    else if (c == 'h') { usage(stdout); return 0; }
    else { usage(stderr); return 2; }
  }
  if (argc - optind != 2) {
    fy_cli_err("publish needs an IMAGE and a destination docker://HOST/REPO[:TAG]");
    usage(stderr);
    return 2;
  }
  fy_image_name dn;
  char err[1200], ds[FY_DIGEST_STR], dest[700];
  if (fy_image_name_parse(argv[optind + 1], &dn, err, sizeof err) != FY_OK || dn.transport != FY_IMG_DOCKER) {
    fy_cli_err("%s: the destination is a registry, docker://HOST[:PORT]/REPO[:TAG]%s%s", argv[optind + 1], err[0] ? ": " : "", err);
    return 2;
  }
  fy_layout l;
  if (fy_layout_open(&l, argv[optind], err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    return 1;
  }
  pub p = {.src = &l, .quiet = json};
  fy_descriptor top, put;
  fy_layout_sig sig;
  int signed_copied = 0;
  if (!l.has_top_desc) {
    fy_cli_err("%s lists several images: name the one to publish as IMAGE:REF", l.name);
    goto out;
  }
  top = l.top_desc;
  if (l.remote && strcmp(l.docker.host, dn.docker.host) == 0) p.mount_from = l.docker.repo;
  if (fy_registry_open(&p.dst, &dn.docker, 1, err, sizeof err) != FY_OK) goto fail;
  const char *tag = dn.docker.digest[0] ? NULL : dn.docker.tag;
  if (put_manifest(&p, &top, tag, 0, &put, err, sizeof err) != FY_OK) goto fail;
  if (dn.docker.digest[0] && strcmp(dn.docker.digest, fy_digest_format(&put.digest, ds)) != 0) {
    fy_cli_err("the image published is %s, not the digest the destination names", ds);
    goto out;
  }
  /* The signature goes along when it still covers what was published (no gzip rewrite). */
  if (fy_layout_signature(&l, &sig, err, sizeof err) == FY_OK && sig.present) {
    fy_descriptor md, mput;
    char stag[96];
    if (!fy_digest_equal(&sig.digest, &put.digest)) {
      fy_cli_err("warning: the signature covers %s, and publishing rewrote the image (gzip layers): it was not copied",
                 fy_digest_format(&sig.digest, ds));
    } else if (fy_layout_sig_manifest(&l, &sig.digest, &md, err, sizeof err) == FY_OK) {
      fy_layout_sig_tag(&sig.digest, stag, sizeof stag);
      if (put_manifest(&p, &md, stag, 0, &mput, err, sizeof err) != FY_OK) goto fail;
      signed_copied = 1;
    }
  }
  fy_docker_ref_format(&dn.docker, dest, sizeof dest);
  fy_digest_format(&put.digest, ds);
  if (json) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b}", "image", l.name, "destination", dest, "digest", ds,
                          "manifests", (json_int_t)p.manifests, "blobs_uploaded", (json_int_t)p.uploaded, "blobs_present",
                          (json_int_t)p.present, "blobs_mounted", (json_int_t)p.mounted, "bytes_uploaded", (json_int_t)p.bytes,
                          "signature", signed_copied);
    json_dumpf(o, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(o);
  } else {
    char h[32];
    printf("published %s as docker://%s (%s)\n  %zu manifest(s); blobs: %zu uploaded (%s), %zu already there, %zu mounted%s\n", l.name, dest, ds,
           p.manifests, p.uploaded, fy_human_bytes(p.bytes, h, sizeof h), p.present, p.mounted,
           signed_copied ? "; signature copied" : "");
  }
  ret = 0;
  goto out;
fail:
  fy_cli_err("%s", err);
out:
  fy_registry_free(p.dst);
  fy_layout_close(&l);
  return ret;
}
