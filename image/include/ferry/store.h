/* The content-addressed blob store: DIR/blobs/sha256/<hex>. An OCI layout's blobs/ on the
 * laptop and the agent's store are the same structure. Blobs are written as <hex>.partial,
 * hashed while they stream, fsynced and renamed when size and digest match; a partial survives
 * a crash or a dropped connection and is resumed from its length. Blocking file I/O. */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stdint.h>

#include "ferry/digest.h"
#include "ferry/error.h"

typedef struct fy_store {
  char dir[4096]; /* .../blobs/sha256 */
} fy_store;

/* root: a state dir or an OCI layout; creates root/blobs/sha256 when create is set. */
int fy_store_open(fy_store *s, const char *root, int create) FY_WUR;
/* Path of a complete blob. */
void fy_store_path(const fy_store *s, const fy_digest *d, char *buf, size_t len);
/* 1 when the complete blob exists with this size. */
int fy_store_has(const fy_store *s, const fy_digest *d, uint64_t size);
/* Length of the partial file, 0 when none; never more than size. */
uint64_t fy_store_partial(const fy_store *s, const fy_digest *d, uint64_t size);
/* Verifies and stores a small blob held in memory (manifest, config). */
int fy_store_put(const fy_store *s, const fy_digest *d, const void *p, size_t n) FY_WUR;
/* Re-reads a complete blob and checks its digest (FY_EDIGEST when it does not match). */
int fy_store_verify(const fy_store *s, const fy_digest *d, uint64_t size) FY_WUR;

typedef struct fy_blob_writer {
  int fd;
  fy_sha256 h;
  fy_digest want;
  uint64_t size, written;
  char path[4200], partial[4216];
} fy_blob_writer;

/* Opens the partial for writing from offset (0, or the length fy_store_partial reported; the
 * bytes before it are re-hashed). FY_EINVAL when offset is past what is on disk; FY_EBUSY when
 * another writer (this process or another) holds the partial: one writer per blob (flock). */
int fy_blob_writer_open(fy_blob_writer *w, const fy_store *s, const fy_digest *d, uint64_t size,
                        uint64_t offset) FY_WUR;
/* FY_ETOOBIG when the bytes would run past the announced size; FY_ENOSPC, FY_EIO. */
int fy_blob_writer_write(fy_blob_writer *w, const void *p, size_t n) FY_WUR;
/* Complete: size and digest checked, fsync, rename. On FY_EDIGEST the partial is removed. */
int fy_blob_writer_finish(fy_blob_writer *w) FY_WUR;
/* Closes, keeping the partial for a later resume. NULL-safe, idempotent. */
void fy_blob_writer_close(fy_blob_writer *w);

/* Removes complete blobs and partials ("<hex>.partial") whose digest is not in keep[], and, with
 * older_than_s > 0, only partials last written more than that many seconds ago (complete
 * blobs are then left alone). *removed counts what went, *freed its bytes (may be NULL). */
int fy_store_gc(const fy_store *s, const fy_digest *keep, size_t nkeep, size_t *removed) FY_WUR;
int fy_store_gc_ex(const fy_store *s, const fy_digest *keep, size_t nkeep, int64_t older_than_s, size_t *removed,
                   uint64_t *freed) FY_WUR;
/* The bytes fy_store_gc would free: entries (complete and partial) not in keep[]. */
uint64_t fy_store_reclaimable(const fy_store *s, const fy_digest *keep, size_t nkeep);

#endif
