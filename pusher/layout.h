/* Reading OCI image layouts (image-layout.md) as buildah, skopeo, buildx and `ferry build`
 * write them: oci-layout, index.json, blobs/sha256/<hex>; nested indexes; LAYOUT:REF selecting
 * by org.opencontainers.image.ref.name. Every blob read is checked against size and digest. */
#ifndef FERRY_PUSHER_LAYOUT_H
#define FERRY_PUSHER_LAYOUT_H

#include "ferry/oci.h"
#include "ferry/store.h"

typedef struct fy_layout {
  char dir[4096];
  char ref[256];      /* "" = the whole index */
  fy_store store;
  fy_index top;       /* the index REF selects (or index.json) */
  fy_descriptor top_desc; /* REF's descriptor (has digest) when a ref was given */
  int has_top_desc;
} fy_layout;

/* "DIR" or "DIR:REF". FY_ENOENT / FY_EPROTO with a reason in err. */
int fy_layout_open(fy_layout *l, const char *spec, char *err, size_t errlen) FY_WUR;
void fy_layout_close(fy_layout *l);

/* A small blob (index, manifest, config), verified. Caller frees *data. */
int fy_layout_read_blob(const fy_layout *l, const fy_descriptor *d, char **data, size_t *len, char *err,
                        size_t errlen) FY_WUR;

/* The variant for a device that accepts `accepts`: walks nested indexes, reads configs of
 * entries without a platform; prefers the variant tuned for `board` (the node's reported board,
 * may be NULL) among equally good ones. FY_ENOPLATFORM with "node runs X; the image offers A, B". */
typedef struct fy_variant {
  fy_descriptor desc;       /* the manifest's descriptor */
  char *manifest; size_t manifest_len;
  fy_manifest m;
  char *config; size_t config_len;
  fy_image_config cfg;
} fy_variant;
int fy_layout_choose(const fy_layout *l, const fy_platform *accepts, size_t naccepts, const char *board, fy_variant *v,
                     char *err, size_t errlen) FY_WUR;
void fy_variant_free(fy_variant *v);

/* Every deployable variant of the layout (nested indexes flattened, attestations skipped,
 * platforms from the config where the index has none), in index order. */
int fy_layout_variants(const fy_layout *l, fy_variant **out, size_t *n, char *err, size_t errlen) FY_WUR;
void fy_variants_free(fy_variant *v, size_t n);

/* Recompresses the variant's gzip layers to zstd into the layout (once: the rewrite is cached
 * under LAYOUT/.ferry/zstd) and points v at the rewritten manifest. *converted: layers
 * recompressed now, -1 when a cached rewrite was reused, 0 when there was nothing to do. */
int fy_layout_to_zstd(const fy_layout *l, fy_variant *v, int *converted, char *err, size_t errlen) FY_WUR;

/* Every platform the layout offers, for messages. */
void fy_layout_offered(const fy_layout *l, char *buf, size_t len);

#endif
