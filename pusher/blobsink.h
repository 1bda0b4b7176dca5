/* Writing a blob whose digest is known only at its end into a content-addressed store: the bytes
 * go to a temporary file of their own in the store's directory (so threads and processes sharing
 * a store never share one), are hashed as they pass, and are renamed to their digest once
 * complete and fsynced. With compression on, what is written is the uncompressed stream and what
 * lands is zstd (level 3, with a frame checksum): the sha256 of both comes out, so the caller can
 * check the input against a digest it trusts (a config's diff_id, a gzip layer's own). */
#ifndef FERRY_PUSHER_BLOBSINK_H
#define FERRY_PUSHER_BLOBSINK_H

#include <stdint.h>

#include "ferry/digest.h"
#include "ferry/store.h"

typedef struct fy_sink {
  int fd;
  char tmp[4300];
  const fy_store *store;
  fy_sha256 h, hin;      /* of what lands; of what was written */
  uint64_t size, in_size;
  void *zc;              /* ZSTD_CCtx, NULL when storing as written */
  uint8_t *obuf;
  size_t obuf_len;
} fy_sink;

/* Opens the temporary. FY_EIO / FY_ENOSPC / FY_ENOMEM. On failure nothing is left behind. */
int fy_sink_open(fy_sink *k, const fy_store *s, int compress) FY_WUR;
int fy_sink_write(fy_sink *k, const void *p, size_t n) FY_WUR;
/* Ends the stream. When want_in is given, the written bytes must hash to it (else FY_EDIGEST and
 * nothing is stored). On FY_OK the blob is in the store under *out (its size in *size, may be
 * NULL), and *in (may be NULL) is the digest of what was written. Always releases k. */
int fy_sink_finish(fy_sink *k, const fy_digest *want_in, fy_digest *out, uint64_t *size, fy_digest *in) FY_WUR;
/* Drops the temporary. NULL-safe, idempotent. */
void fy_sink_abort(fy_sink *k);

#endif
