/* The safe layer unpacker: applies OCI layers (tar, tar+zstd) into a release root with OCI
 * whiteout rules, never writing outside it. Used by the agent when deploying and by
 * `ferry test` preparing a rootfs. Blocking; run it on a worker thread.
 *
 * Kept as containerd keeps them: modes, owners (as root), mtimes, xattrs in user.* and
 * security.capability. Parent directories that are symlinks are followed inside the root
 * (openat2 RESOLVE_IN_ROOT, or a walk with the same meaning where openat2 is missing), so a
 * write through one lands inside the root (merged /usr); symlinks are stored as written, even
 * those whose target climbs: they only ever resolve inside the root. Device nodes are skipped
 * (counted in the stats). Refused with FY_EUNSAFE: absolute names, ".." components, hardlinks to
 * absolute or climbing names, symlinks that loop. Refused with FY_ETOOBIG: a zstd frame needing
 * a window over window_log_max, more than max_bytes of file data or of decompressed bytes
 * (headers, padding, anything). Refused with FY_EPROTO: data on an entry that carries none,
 * anything but zero padding after the archive's end. */
#ifndef FERRY_UNPACK_H
#define FERRY_UNPACK_H

#include <stdint.h>

#include "ferry/error.h"
#include "ferry/oci.h"

typedef struct fy_unpack_opts {
  uint64_t max_bytes;    /* across all layers of a release */
  int window_log_max;    /* zstd */
  int force_walk;        /* tests: use the O_NOFOLLOW walk even where openat2 exists */
  int chown;             /* apply the tar's uid/gid (when running as root) */
} fy_unpack_opts;

typedef struct fy_unpack_stats {
  uint64_t bytes;        /* file bytes written so far (carried across layers) */
  uint64_t stream_bytes; /* every byte decompressed so far (carried across layers), also capped */
  uint64_t entries;
  int used_openat2;      /* 1 when openat2 resolved paths, 0 when the walk did */
  uint64_t skipped_devices; /* device nodes in the layers: never created (the runtime makes /dev) */
  uint64_t xattrs_dropped;  /* extended attributes not applied (not user.* or security.capability,
                               or the filesystem refused them) */
  char dropped_xattr[160];  /* the first of them, "NAME on PATH" */
} fy_unpack_stats;

/* Applies the layer file at layer_path (kind: FY_KIND_LAYER_TAR or _ZSTD) into the directory
 * rootfd. On error returns the code and writes "path: reason" into err. */
int fy_unpack_layer(int rootfd, const char *layer_path, fy_media_kind kind, const fy_unpack_opts *o,
                    fy_unpack_stats *st, char *err, size_t errlen) FY_WUR;

/* One depth limit for what the unpacker creates and what fy_remove_tree removes: a layer's names
 * have at most FY_UNPACK_MAX_DEPTH components (deeper is FY_ETOOBIG), and fy_remove_tree goes
 * FY_UNPACK_MAX_DEPTH levels plus FY_REMOVE_MARGIN (the release and rootfs directories above an
 * unpacked root) deep, so anything an unpack made can be removed again. */
#define FY_UNPACK_MAX_DEPTH 128
#define FY_REMOVE_MARGIN 8

/* Removes a directory tree below dirfd (name may be "."-free relative path), not following
 * symlinks. Depth-bounded (see above): FY_ETOOBIG past it. Blocking. */
int fy_remove_tree(int dirfd, const char *name) FY_WUR;

/* fy_remove_tree for a path (its parent is opened first). A missing path is FY_OK. Blocking. */
int fy_remove_path(const char *path) FY_WUR;

#endif
