/* gzip layers become zstd once, on the laptop: the wire and the agents only carry zstd. The
 * zstd blobs and a rewritten manifest go into the pusher's cache ($FERRY_HOME/cache/blobs),
 * never into the image the user named (it may be read-only, shared, or a registry's copy), and
 * $FERRY_HOME/cache/zstd/<old manifest hex> remembers the rewrite, so the next push reuses it.
 * The config is untouched: its diff_ids name the uncompressed tars, which do not change. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <zlib.h>

#include "blobsink.h"
#include "cli.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"
#include "layout.h"

#define RC_IN (256u * 1024u)

/* gunzip src | zstd -3 > cache; returns the new blob's digest and size. The gzip bytes are
 * hashed as they are read and must match src's digest. */
static int recompress_blob(const fy_layout *l, const fy_store *cache, const fy_descriptor *src, fy_digest *out,
                           uint64_t *size, char *err, size_t errlen) {
  char in_path[4200], ds[FY_DIGEST_STR];
  int ret = FY_EIO, in = -1;
  z_stream zs;
  int zinit = 0;
  fy_sink sink;
  uint8_t *ibuf = malloc(RC_IN), *mid = malloc(RC_IN);
  fy_sha256 hin;
  fy_digest got;
  uint64_t in_total = 0;
  fy_sha256_init(&hin);
  sink.fd = -1;
  sink.tmp[0] = '\0';
  sink.zc = NULL;
  sink.obuf = NULL;
  fy_layout_blob_path(l, &src->digest, in_path, sizeof in_path);
  if (!ibuf || !mid) { ret = FY_ENOMEM; goto out; }
  if ((in = open(in_path, O_RDONLY | O_CLOEXEC)) < 0) {
    fy_text_fmt(err, errlen, "recompressing %s: %s", fy_digest_format(&src->digest, ds), strerror(errno));
    goto out;
  }
  if ((ret = fy_sink_open(&sink, cache, 1)) != FY_OK) {
    fy_text_fmt(err, errlen, "recompressing into the cache %s: %s", cache->dir, fy_strerror(ret));
    goto out;
  }
  ret = FY_EIO;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) goto out;
  zinit = 1;
  int zend = 0;
  for (;;) {
    ssize_t r = read(in, ibuf, RC_IN);
    if (r < 0) goto out;
    in_total += (uint64_t)r;
    fy_sha256_update(&hin, ibuf, (size_t)r);
    zs.next_in = ibuf;
    zs.avail_in = (uInt)r;
    int last = r == 0;
    do {
      zs.next_out = mid;
      zs.avail_out = RC_IN;
      int zr = last && zs.avail_in == 0 ? (zend ? Z_STREAM_END : Z_BUF_ERROR) : inflate(&zs, Z_NO_FLUSH);
      if (zr == Z_STREAM_END) {
        zend = 1;
        /* Concatenated gzip members are valid gzip. */
        if (zs.avail_in > 0) inflateReset(&zs);
      } else if (zr != Z_OK && !(zr == Z_BUF_ERROR && last)) {
        fy_text_fmt(err, errlen, "layer %s is not valid gzip", fy_digest_format(&src->digest, ds));
        ret = FY_EPROTO;
        goto out;
      }
      size_t produced = RC_IN - zs.avail_out;
      if (produced && (ret = fy_sink_write(&sink, mid, produced)) != FY_OK) goto out;
      ret = FY_EIO;
    } while (zs.avail_in > 0 || zs.avail_out == 0);
    if (last) break;
  }
  if (!zend || in_total != src->size) {
    fy_text_fmt(err, errlen, "layer %s is truncated gzip", fy_digest_format(&src->digest, ds));
    ret = FY_EPROTO;
    goto out;
  }
  fy_sha256_final(&hin, &got);
  if (!fy_digest_equal(&got, &src->digest)) {
    fy_text_fmt(err, errlen, "layer %s does not match its digest", fy_digest_format(&src->digest, ds));
    ret = FY_EDIGEST;
    goto out;
  }
  ret = fy_sink_finish(&sink, NULL, out, size, NULL);
out:
  if (zinit) inflateEnd(&zs);
  fy_sink_abort(&sink);
  if (in >= 0) close(in);
  if (ret != FY_OK && !err[0]) fy_text_fmt(err, errlen, "recompressing a gzip layer failed: %s", fy_strerror(ret));
  free(ibuf);
  free(mid);
  return ret;
}

static int reload(const fy_layout *l, fy_variant *v, const fy_digest *md, size_t mlen, char *err, size_t errlen) {
  fy_descriptor d = v->desc;
  d.digest = *md;
  d.size = mlen;
  snprintf(d.media_type, sizeof d.media_type, "%s", FY_MT_OCI_MANIFEST);
  d.kind = FY_KIND_MANIFEST;
  char *data;
  size_t len;
  fy_manifest m;
  int rc = fy_layout_read_blob(l, &d, &data, &len, err, errlen);
  if (rc != FY_OK) return rc;
  if ((rc = fy_oci_manifest_parse(data, len, &m, err, errlen)) != FY_OK) {
    free(data);
    return rc;
  }
  free(v->manifest);
  fy_oci_manifest_free(&v->m);
  v->manifest = data;
  v->manifest_len = len;
  v->m = m;
  v->desc = d;
  return FY_OK;
}

int fy_layout_to_zstd(const fy_layout *l, fy_variant *v, int *converted, char *err, size_t errlen) {
  char cache_dir[4200], cache[4400], hex[FY_DIGEST_HEX], *text = NULL;
  size_t len;
  int rc;
  const fy_store *store;
  *converted = 0;
  int any = 0;
  for (size_t i = 0; i < v->m.nlayers; i++) any |= v->m.layers[i].kind == FY_KIND_LAYER_GZIP;
  if (!any) return FY_OK;
  fy_cli_home("cache/zstd", cache_dir, sizeof cache_dir);
  if (fy_path_fmt(cache, sizeof cache, "%s/%s", cache_dir, fy_digest_hex(&v->desc.digest, hex)) != FY_OK)
    return fy_text_fail(err, errlen, FY_ETOOBIG, "FERRY_HOME is too long");
  if (fy_file_read(cache, 256, &text, &len) == FY_OK) {
    fy_digest md;
    char *nl = strchr(text, ' ');
    unsigned long long msize = nl ? strtoull(nl + 1, NULL, 10) : 0;
    if (nl) *nl = '\0';
    if (fy_digest_parse(text, &md) == FY_OK && reload(l, v, &md, msize, err, errlen) == FY_OK) {
      free(text);
      *converted = -1; /* reused */
      return FY_OK;
    }
    free(text);
    err[0] = '\0';
  }
  if ((rc = fy_layout_cache(l, &store, err, errlen)) != FY_OK) return rc;
  json_t *man = json_loadb(v->manifest, v->manifest_len, 0, NULL), *layers = json_object_get(man, "layers");
  if (!man || !json_is_array(layers)) {
    json_decref(man);
    return fy_text_fail(err, errlen, FY_EPROTO, "cannot rewrite the manifest");
  }
  for (size_t i = 0; i < v->m.nlayers; i++) {
    if (v->m.layers[i].kind != FY_KIND_LAYER_GZIP) continue;
    fy_digest nd;
    uint64_t nsize;
    char ds[FY_DIGEST_STR];
    if ((rc = recompress_blob(l, store, &v->m.layers[i], &nd, &nsize, err, errlen)) != FY_OK) {
      json_decref(man);
      return rc;
    }
    json_t *jl = json_array_get(layers, i);
    json_object_set_new(jl, "mediaType", json_string(FY_MT_OCI_LAYER_ZSTD));
    json_object_set_new(jl, "digest", json_string(fy_digest_format(&nd, ds)));
    json_object_set_new(jl, "size", json_integer((json_int_t)nsize));
    (*converted)++;
  }
  json_object_set_new(man, "mediaType", json_string(FY_MT_OCI_MANIFEST));
  json_t *cfg = json_object_get(man, "config");
  if (json_is_object(cfg) && fy_media_kind_of(json_string_value(json_object_get(cfg, "mediaType"))) == FY_KIND_CONFIG)
    json_object_set_new(cfg, "mediaType", json_string(FY_MT_OCI_CONFIG));
  char *out = json_dumps(man, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(man);
  if (!out) return FY_ENOMEM;
  fy_digest md;
  size_t mlen = strlen(out);
  fy_sha256_once(out, mlen, &md);
  char line[128], ds[FY_DIGEST_STR];
  rc = fy_store_put(store, &md, out, mlen);
  free(out);
  if (rc == FY_OK && (rc = fy_mkdirs(cache_dir, 0755)) == FY_OK) {
    snprintf(line, sizeof line, "%s %zu\n", fy_digest_format(&md, ds), mlen);
    rc = fy_file_write_atomic(cache, line, strlen(line), 0644);
  }
  if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "writing the zstd manifest into the cache %s: %s", cache_dir, fy_strerror(rc));
  return reload(l, v, &md, mlen, err, errlen);
}
