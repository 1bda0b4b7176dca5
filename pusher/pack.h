/* Packs a staging root into one deterministic layer: entries sorted by name, uid/gid 0, one
 * mtime, zstd at a given level (single-threaded, so the bytes only depend on the input),
 * written into a blob store. ELF files are checked against the platform on the way. */
#ifndef FERRY_PUSHER_PACK_H
#define FERRY_PUSHER_PACK_H

#include <jansson.h>

#include "ferry/store.h"
#include "recipe.h"

typedef struct fy_packed {
  fy_digest digest;   /* of the zstd blob */
  uint64_t size;
  fy_digest diff_id;  /* of the uncompressed tar */
  uint64_t raw_size;
  size_t nfiles;
} fy_packed;

int fy_pack_stage(const fy_recipe *r, const char *stage, const fy_platform *p, const fy_store *store,
                  fy_packed *out, char *err, size_t errlen) FY_WUR;

/* {"os", "architecture"[, "variant"]} as OCI indexes and configs carry it. */
json_t *fy_pack_platform_json(const fy_platform *p);
/* Serializes j (compact, sorted keys: deterministic), stores it as a blob; its digest and size. */
int fy_pack_put_json(const fy_store *s, json_t *j, fy_digest *d, size_t *len) FY_WUR;

#endif
