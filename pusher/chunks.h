/* The layer bytes a rollout sends, read through a small cache shared by every node of a wave:
 * nodes that need the same layer from the same offset get the chunk one disk read brought in.
 * Memory is bounded by the slot count (each slot one FY_CHUNK); eviction is least recently used. */
#ifndef FERRY_PUSHER_CHUNKS_H
#define FERRY_PUSHER_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/digest.h"
struct fy_layout;

#define FY_CHUNK (256u * 1024u)
#define FY_BLOB_FRAME (16u * 1024u - 64u) /* BLOB payload: one TLS record with its frame header */
#define FY_CHUNKS_MAX_SLOTS 64

typedef struct fy_chunk_slot {
  fy_digest digest;
  uint64_t offset;
  size_t len;
  uint64_t used;       /* LRU tick; 0 = empty */
  uint8_t *data;
} fy_chunk_slot;

typedef struct fy_chunks {
  const struct fy_layout *layout; /* where the layers are (its blobs, then the cache) */
  fy_chunk_slot slots[FY_CHUNKS_MAX_SLOTS];
  size_t nslots;           /* in use now: 1..FY_CHUNKS_MAX_SLOTS */
  uint64_t tick;
  uint64_t disk_bytes;     /* read from disk */
  uint64_t served_bytes;   /* sent to nodes (the caller counts) */
} fy_chunks;

void fy_chunks_init(fy_chunks *c, const struct fy_layout *layout, size_t nslots);
/* Changes the slot count (a wave's width); drops slots beyond it. */
void fy_chunks_resize(fy_chunks *c, size_t nslots);
/* Up to FY_CHUNK bytes of the blob `d` from `offset` (want bytes at most, and exactly that many
 * unless the file ends early: then FY_EIO). The pointer stays valid until the next call. */
int fy_chunks_get(fy_chunks *c, const fy_digest *d, uint64_t offset, size_t want, const uint8_t **data) FY_WUR;
void fy_chunks_free(fy_chunks *c);

#endif
