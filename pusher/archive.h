/* Images in a file (layout.c opens them): an oci-archive is a tar of an OCI image layout; a
 * docker-archive is what `docker save` and `skopeo copy … docker-archive:` write (manifest.json,
 * a config, uncompressed layer tars). Both are read through with the streaming tar reader,
 * never unpacked as files: blobs go into the pusher's cache, each verified against its digest,
 * and index.json is kept in memory. A docker-archive's layers are compressed to zstd once; the
 * cache remembers each by its diff_id, so the next read compresses nothing. */
#ifndef FERRY_PUSHER_ARCHIVE_H
#define FERRY_PUSHER_ARCHIVE_H

#include "layout.h"

/* l->file is the archive; fills l->index_json and the cache. FY_ENOENT (no such file, not a
 * regular file), FY_EPROTO (not an archive of that kind), FY_EDIGEST (a blob that does not match
 * its name), FY_ETOOBIG, FY_EIO; a reason in err. Blocks. */
int fy__archive_read_oci(fy_layout *l, char *err, size_t errlen) FY_WUR;
int fy__archive_read_docker(fy_layout *l, char *err, size_t errlen) FY_WUR;

#endif
