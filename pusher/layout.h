/* Opening an image by the names skopeo uses (imageref.h): an OCI image layout (image-layout.md)
 * as buildah, skopeo, buildx and `ferry build` write it, or an oci-archive / docker-archive file,
 * seen through one struct: an index.json, and blobs found first in the layout's own blobs/, then
 * in the pusher's cache ($FERRY_HOME/cache/blobs), where archives are unpacked and gzip layers
 * recompressed. Nothing is ever written into the user's input. Every blob read is checked
 * against size and digest. */
#ifndef FERRY_PUSHER_LAYOUT_H
#define FERRY_PUSHER_LAYOUT_H

#include "ferry/imageref.h"
#include "ferry/oci.h"
#include "ferry/store.h"

typedef struct fy_layout {
  char name[4200];    /* the image as the user named it, for messages */
  fy_img_transport transport;
  char dir[4096];     /* the layout's folder; "" when the image is not a layout (archives) */
  char file[4096];    /* the archive, for oci-archive: and docker-archive: */
  char ref[256];      /* "" = the layout's one image */
  char app_hint[128]; /* repository or file name: the app name after the claim and the title */
  fy_store store;     /* where the image's own blobs are (the layout's blobs/, else the cache) */
  fy_store cache;     /* $FERRY_HOME/cache/blobs (created when first written) */
  struct fy_registry *remote; /* docker://: where missing blobs come from (NULL otherwise) */
  fy_docker_ref docker;       /* docker:// only */
  char *index_json;   /* index.json as read (or made for a docker-archive or a registry) */
  size_t index_len;
  fy_index top;       /* the index REF selects (or index.json) */
  fy_descriptor top_desc; /* REF's descriptor (has digest) when a ref was given */
  int has_top_desc;
} fy_layout;

/* PATH[:REF] (the first prefix of PATH that is a directory is the layout), oci:DIR[:REF],
 * oci-archive:FILE[:REF] or docker-archive:FILE. Without REF the layout must hold one image
 * (signature and attestation entries aside): several are refused, listing their REFs.
 * FY_ENOENT / FY_EPROTO / FY_EUNSUPPORTED / FY_EDIGEST with a reason in err. Blocks (an archive
 * is read through once or twice). */
int fy_layout_open(fy_layout *l, const char *spec, char *err, size_t errlen) FY_WUR;
void fy_layout_close(fy_layout *l);

/* Where blob d is: the image's own store when it holds it, else the cache. */
void fy_layout_blob_path(const fy_layout *l, const fy_digest *d, char *buf, size_t len);
/* The cache store, created on first use. */
int fy_layout_cache(const fy_layout *l, const fy_store **out, char *err, size_t errlen) FY_WUR;

/* A small blob (index, manifest, config), verified. Caller frees *data. */
int fy_layout_read_blob(const fy_layout *l, const fy_descriptor *d, char **data, size_t *len, char *err,
                        size_t errlen) FY_WUR;

/* The variant for a device that accepts `accepts`: walks nested indexes, reads configs of
 * entries without a platform; prefers the variant tuned for `board` (the node's reported board,
 * may be NULL) among equally good ones. FY_ENOPLATFORM with "node runs X; the image offers A, B". */
typedef struct fy_variant {
  fy_descriptor desc;       /* the manifest's descriptor */
  fy_digest source;         /* the manifest as the image holds it (differs from desc after a
                               gzip -> zstd rewrite: the digest skopeo and registries show) */
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

/* Blob d local: fetched from the registry into the cache when the image is remote and the cache
 * lacks it (*fetched: bytes over the network, may be NULL); a no-op otherwise. */
int fy_layout_fetch_blob(const fy_layout *l, const fy_digest *d, uint64_t size, uint64_t *fetched, char *err, size_t errlen) FY_WUR;

/* Makes the variant's layers local: fetched from the registry into the cache when the image is
 * remote (*fetched: bytes that crossed the network, may be NULL), then fy_layout_to_zstd. */
int fy_layout_prepare(const fy_layout *l, fy_variant *v, int *converted, uint64_t *fetched, char *err, size_t errlen) FY_WUR;

/* Recompresses the variant's gzip layers to zstd into the cache (once: the rewrite is remembered
 * under $FERRY_HOME/cache/zstd/<manifest hex>) and points v at the rewritten manifest; v->source
 * keeps the original manifest's digest. *converted: layers recompressed now, -1 when a cached
 * rewrite was reused, 0 when there was nothing to do. */
int fy_layout_to_zstd(const fy_layout *l, fy_variant *v, int *converted, char *err, size_t errlen) FY_WUR;

/* Every platform the layout offers, for messages. */
void fy_layout_offered(const fy_layout *l, char *buf, size_t len);

#endif
