/* A streaming tar reader (POSIX ustar, pax extended headers, GNU long names), sans-I/O: feed
 * bytes in any chunking, get entries and their data through callbacks. Every field is bounded
 * and every header checksum verified. Paths come out as they are in the archive: deciding what
 * is safe to write is the unpacker's job (image/). */
#ifndef FERRY_TAR_H
#define FERRY_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/buf.h"
#include "ferry/error.h"

#define FY_TAR_PATH_MAX 4096
#define FY_TAR_META_MAX (64u * 1024u)
#define FY_TAR_TRAILING_MAX (64u * 1024u) /* zero bytes accepted after the end blocks (record padding) */
#define FY_TAR_XATTR_MAX 16     /* extended attributes kept per entry (pax SCHILY.xattr.*) */
#define FY_TAR_XATTR_NAME_MAX 255

enum {
  FY_TAR_FILE = '0',
  FY_TAR_HARDLINK = '1',
  FY_TAR_SYMLINK = '2',
  FY_TAR_CHAR = '3',
  FY_TAR_BLOCK = '4',
  FY_TAR_DIR = '5',
  FY_TAR_FIFO = '6',
};

typedef struct fy_tar_entry {
  char path[FY_TAR_PATH_MAX];
  char link[FY_TAR_PATH_MAX];
  char type;      /* one of FY_TAR_*; others are reported as they are */
  uint64_t size;  /* data bytes that follow (files only) */
  uint32_t mode, uid, gid;
  int64_t mtime;  /* seconds (pax "mtime" wins over the header's, fractions dropped) */
  /* Extended attributes from the pax header (SCHILY.xattr.NAME=VALUE), valid until entry_end;
   * past FY_TAR_XATTR_MAX they are counted in xattrs_dropped. */
  size_t nxattrs, xattrs_dropped;
  const char *xattr_name[FY_TAR_XATTR_MAX];
  const uint8_t *xattr_value[FY_TAR_XATTR_MAX];
  size_t xattr_len[FY_TAR_XATTR_MAX];
} fy_tar_entry;

typedef struct fy_tar_ops {
  int (*entry)(void *ud, const fy_tar_entry *e);               /* header complete */
  int (*data)(void *ud, const uint8_t *p, size_t n);           /* file bytes */
  int (*entry_end)(void *ud);                                  /* all bytes delivered */
} fy_tar_ops;

typedef struct fy_tar_reader {
  int state;
  uint8_t block[512];
  size_t got;
  uint64_t remaining;
  size_t pad;
  char meta_type;
  fy_buf meta;
  char long_path[FY_TAR_PATH_MAX];
  char long_link[FY_TAR_PATH_MAX];
  int have_long_path, have_long_link, have_pax_size, have_pax_mtime;
  uint64_t pax_size;
  int64_t pax_mtime;
  fy_buf xattr_data;          /* NAME\0VALUE of the pending pax xattrs */
  size_t nx, nx_dropped;
  struct { size_t name_off, value_off, value_len; } xa[FY_TAR_XATTR_MAX];
  int zero_blocks;
  uint64_t trailing;          /* zero bytes seen after the end blocks */
  int failed;
  fy_tar_entry cur;
  const fy_tar_ops *ops;
  void *ud;
  char err[160];
} fy_tar_reader;

void fy_tar_init(fy_tar_reader *r, const fy_tar_ops *ops, void *ud);
void fy_tar_free(fy_tar_reader *r);
/* FY_OK, FY_EPROTO (bad checksum, bad number, truncated meta, data on an entry that carries
 * none, anything but up to FY_TAR_TRAILING_MAX zero bytes after the end blocks) with r->err,
 * FY_ETOOBIG (a name or meta record over its ceiling), or what a callback returned. Sticky. */
int fy_tar_feed(fy_tar_reader *r, const uint8_t *p, size_t n) FY_WUR;
/* The archive's end blocks have been read: nothing more is wanted. */
static inline int fy_tar_done(const fy_tar_reader *r) { return r->state == 4 /* ST_DONE */; }
/* At end of input: FY_OK when the archive ended on an entry boundary, else FY_EPROTO. */
int fy_tar_finish(fy_tar_reader *r) FY_WUR;

/* Writing (deterministic archives for `ferry build`): one entry's header block(s), with uid/gid
 * 0, the given mtime, and a pax "path"/"linkpath" record first when a name does not fit ustar.
 * The caller appends the data and fy_tar_padding() zero bytes, then fy_tar_write_end(). */
int fy_tar_write_header(fy_buf *out, const char *path, char type, uint32_t mode, uint64_t size,
                        const char *link, int64_t mtime) FY_WUR;
static inline size_t fy_tar_padding(uint64_t size) { return (size_t)((512 - size % 512) % 512); }
int fy_tar_write_end(fy_buf *out) FY_WUR;
#endif
