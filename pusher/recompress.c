/* gzip layers become zstd once, on the laptop: the wire and the agents only carry zstd. The
 * zstd blobs and a rewritten manifest go into the layout's own blobs/, and
 * LAYOUT/.ferry/zstd/<old manifest hex> remembers the rewrite, so the next push reuses it.
 * The config is untouched: its diff_ids name the uncompressed tars, which do not change. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <zlib.h>
#include <zstd.h>

#include "ferry/fsutil.h"
#include "layout.h"

#define RC_IN (256u * 1024u)

/* gunzip src | zstd -3 > blobs/sha256/<digest>; returns the new descriptor's digest and size. */
static int recompress_blob(const fy_layout *l, const fy_descriptor *src, fy_digest *out, uint64_t *size,
                           char *err, size_t errlen) {
  char in_path[4200], tmp[4300], dst[4200], ds[FY_DIGEST_STR];
  int ret = FY_EIO, in = -1, outfd = -1;
  z_stream zs;
  int zinit = 0;
  ZSTD_CCtx *zc = NULL;
  uint8_t *ibuf = malloc(RC_IN), *mid = malloc(RC_IN), *obuf = malloc(ZSTD_CStreamOutSize());
  fy_sha256 h, hin;
  fy_digest got;
  uint64_t in_total = 0;
  fy_sha256_init(&h);
  fy_sha256_init(&hin);
  *size = 0;
  fy_store_path(&l->store, &src->digest, in_path, sizeof in_path);
  snprintf(tmp, sizeof tmp, "%s/recompress.%d.tmp", l->store.dir, (int)getpid());
  if (!ibuf || !mid || !obuf) { ret = FY_ENOMEM; goto out; }
  if ((in = open(in_path, O_RDONLY | O_CLOEXEC)) < 0 || (outfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
    snprintf(err, errlen, "recompressing %s: %s", fy_digest_format(&src->digest, ds), strerror(errno));
    goto out;
  }
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) goto out;
  zinit = 1;
  zc = ZSTD_createCCtx();
  if (!zc) { ret = FY_ENOMEM; goto out; }
  ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1);
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
        snprintf(err, errlen, "layer %s is not valid gzip", fy_digest_format(&src->digest, ds));
        ret = FY_EPROTO;
        goto out;
      }
      size_t produced = RC_IN - zs.avail_out;
      ZSTD_inBuffer zin = {mid, produced, 0};
      int finishing = last && zs.avail_in == 0 && produced == 0;
      for (;;) {
        ZSTD_outBuffer zout = {obuf, ZSTD_CStreamOutSize(), 0};
        size_t left = ZSTD_compressStream2(zc, &zout, &zin, finishing ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(left)) { ret = FY_EIO; goto out; }
        if (zout.pos && write(outfd, obuf, zout.pos) != (ssize_t)zout.pos) goto out;
        fy_sha256_update(&h, obuf, zout.pos);
        *size += zout.pos;
        if (finishing ? left == 0 : zin.pos == zin.size) break;
      }
      if (finishing) break;
    } while (zs.avail_in > 0 || zs.avail_out == 0);
    if (last) break;
  }
  if (!zend || in_total != src->size) {
    snprintf(err, errlen, "layer %s is truncated gzip", fy_digest_format(&src->digest, ds));
    ret = FY_EPROTO;
    goto out;
  }
  fy_sha256_final(&hin, &got);
  if (!fy_digest_equal(&got, &src->digest)) {
    snprintf(err, errlen, "layer %s does not match its digest", fy_digest_format(&src->digest, ds));
    ret = FY_EDIGEST;
    goto out;
  }
  fy_sha256_final(&h, out);
  if (fsync(outfd) != 0) goto out;
  fy_store_path(&l->store, out, dst, sizeof dst);
  if (rename(tmp, dst) != 0) goto out;
  ret = FY_OK;
out:
  if (zinit) inflateEnd(&zs);
  ZSTD_freeCCtx(zc);
  if (in >= 0) close(in);
  if (outfd >= 0) close(outfd);
  if (ret != FY_OK) {
    unlink(tmp);
    if (!err[0]) snprintf(err, errlen, "recompressing a gzip layer failed: %s", fy_strerror(ret));
  }
  free(ibuf);
  free(mid);
  free(obuf);
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
  *converted = 0;
  int any = 0;
  for (size_t i = 0; i < v->m.nlayers; i++) any |= v->m.layers[i].kind == FY_KIND_LAYER_GZIP;
  if (!any) return FY_OK;
  snprintf(cache_dir, sizeof cache_dir, "%s/.ferry/zstd", l->dir);
  snprintf(cache, sizeof cache, "%s/%s", cache_dir, fy_digest_hex(&v->desc.digest, hex));
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
  }
  json_t *man = json_loadb(v->manifest, v->manifest_len, 0, NULL), *layers = json_object_get(man, "layers");
  if (!man || !json_is_array(layers)) {
    json_decref(man);
    snprintf(err, errlen, "cannot rewrite the manifest");
    return FY_EPROTO;
  }
  for (size_t i = 0; i < v->m.nlayers; i++) {
    if (v->m.layers[i].kind != FY_KIND_LAYER_GZIP) continue;
    fy_digest nd;
    uint64_t nsize;
    char ds[FY_DIGEST_STR];
    if ((rc = recompress_blob(l, &v->m.layers[i], &nd, &nsize, err, errlen)) != FY_OK) {
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
  fy_sha256_once(out, strlen(out), &md);
  char path[4200], line[128], ds[FY_DIGEST_STR];
  fy_store_path(&l->store, &md, path, sizeof path);
  rc = fy_file_write_atomic(path, out, strlen(out), 0644);
  size_t mlen = strlen(out);
  free(out);
  if (rc == FY_OK && (rc = fy_mkdirs(cache_dir, 0755)) == FY_OK) {
    snprintf(line, sizeof line, "%s %zu\n", fy_digest_format(&md, ds), mlen);
    rc = fy_file_write_atomic(cache, line, strlen(line), 0644);
  }
  if (rc != FY_OK) {
    snprintf(err, errlen, "writing the zstd manifest into %s: %s", l->dir, fy_strerror(rc));
    return rc;
  }
  return reload(l, v, &md, mlen, err, errlen);
}
