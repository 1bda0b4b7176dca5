/* See blobsink.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "blobsink.h"
#include "ferry/fsutil.h"


int fy_sink_open(fy_sink *k, const fy_store *s, int compress) {
  memset(k, 0, sizeof *k);
  k->fd = -1;
  k->store = s;
  fy_sha256_init(&k->h);
  fy_sha256_init(&k->hin);
  if (snprintf(k->tmp, sizeof k->tmp, "%s/.sink-XXXXXX", s->dir) >= (int)sizeof k->tmp) return FY_ETOOBIG;
  if (compress) {
    k->obuf_len = ZSTD_CStreamOutSize();
    k->zc = ZSTD_createCCtx();
    k->obuf = malloc(k->obuf_len);
    if (!k->zc || !k->obuf) {
      fy_sink_abort(k);
      return FY_ENOMEM;
    }
    ZSTD_CCtx_setParameter(k->zc, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(k->zc, ZSTD_c_checksumFlag, 1);
  }
  if ((k->fd = mkstemp(k->tmp)) < 0) {
    int rc = fy_err_from_errno(errno);
    k->tmp[0] = '\0';
    fy_sink_abort(k);
    return rc;
  }
  (void)fchmod(k->fd, 0644); /* blobs are content, not secrets (mkstemp made it 0600) */
  return FY_OK;
}

static int land(fy_sink *k, const uint8_t *p, size_t n) {
  fy_sha256_update(&k->h, p, n);
  k->size += n;
  return fy_fd_write_all(k->fd, p, n);
}

static int pump(fy_sink *k, const void *p, size_t n, int end) {
  ZSTD_inBuffer in = {p, n, 0};
  for (;;) {
    ZSTD_outBuffer out = {k->obuf, k->obuf_len, 0};
    size_t left = ZSTD_compressStream2(k->zc, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left)) return FY_EIO;
    int rc = land(k, k->obuf, out.pos);
    if (rc != FY_OK) return rc;
    if (end ? left == 0 : in.pos == in.size) return FY_OK;
  }
}

int fy_sink_write(fy_sink *k, const void *p, size_t n) {
  if (k->fd < 0) return FY_EINVAL;
  fy_sha256_update(&k->hin, p, n);
  k->in_size += n;
  return k->zc ? pump(k, p, n, 0) : land(k, p, n);
}

int fy_sink_finish(fy_sink *k, const fy_digest *want_in, fy_digest *out, uint64_t *size, fy_digest *in) {
  fy_digest got_in;
  char dst[4200];
  int rc = k->fd < 0 ? FY_EINVAL : FY_OK;
  if (rc == FY_OK && k->zc) rc = pump(k, NULL, 0, 1);
  if (rc == FY_OK) {
    fy_sha256_final(&k->hin, &got_in);
    if (want_in && !fy_digest_equal(want_in, &got_in)) rc = FY_EDIGEST;
  }
  if (rc == FY_OK) {
    if (k->zc) fy_sha256_final(&k->h, out);
    else *out = got_in;
    if (fsync(k->fd) != 0) rc = fy_err_from_errno(errno);
  }
  if (rc == FY_OK) {
    fy_store_path(k->store, out, dst, sizeof dst);
    if (rename(k->tmp, dst) != 0) rc = fy_err_from_errno(errno);
    else k->tmp[0] = '\0';
  }
  if (rc == FY_OK) {
    if (size) *size = k->size;
    if (in) *in = got_in;
  }
  fy_sink_abort(k);
  return rc;
}

void fy_sink_abort(fy_sink *k) {
  if (!k) return;
  if (k->fd >= 0) close(k->fd);
  k->fd = -1;
  if (k->tmp[0]) unlink(k->tmp);
  k->tmp[0] = '\0';
  ZSTD_freeCCtx(k->zc);
  k->zc = NULL;
  free(k->obuf);
  k->obuf = NULL;
}
