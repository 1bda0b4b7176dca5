/* ustar layout (POSIX.1-2001 pax "ustar Interchange Format"):
 *   0 name[100]  100 mode[8]  108 uid[8]  116 gid[8]  124 size[12]  136 mtime[12]
 * 148 chksum[8]  156 typeflag  157 linkname[100]  257 magic[6]  263 version[2]
 * 265 uname[32]  297 gname[32]  329 devmajor[8]  337 devminor[8]  345 prefix[155]
 * Numbers are octal text, or base-256 when the first byte has its high bit set (GNU). */
#include <stdio.h>
#include <string.h>

#include "ferry/tar.h"

enum { ST_HEADER, ST_DATA, ST_META, ST_PAD, ST_DONE };

void fy_tar_init(fy_tar_reader *r, const fy_tar_ops *ops, void *ud) {
  memset(r, 0, sizeof *r);
  r->ops = ops;
  r->ud = ud;
  fy_buf_init(&r->meta, FY_TAR_META_MAX);
  fy_buf_init(&r->xattr_data, FY_TAR_META_MAX + FY_TAR_XATTR_MAX);
}

void fy_tar_free(fy_tar_reader *r) {
  if (r) {
    fy_buf_free(&r->meta, 0);
    fy_buf_free(&r->xattr_data, 0);
  }
}

static int fail(fy_tar_reader *r, int rc, const char *msg) {
  snprintf(r->err, sizeof r->err, "%s", msg);
  r->failed = rc;
  return rc;
}

static int number(const uint8_t *f, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (f[0] & 0x80) { /* base-256 */
    if (f[0] & 0x40) return 0; /* negative */
    v = f[0] & 0x3f;
    for (size_t i = 1; i < n; i++) {
      if (v >> 56) return 0;
      v = (v << 8) | f[i];
    }
    *out = v;
    return 1;
  }
  size_t i = 0;
  while (i < n && f[i] == ' ') i++;
  for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60) return 0;
    v = (v << 3) | (uint64_t)(f[i] - '0');
  }
  for (; i < n; i++)
    if (f[i] != ' ' && f[i] != '\0') return 0;
  *out = v;
  return 1;
}

static void field_str(char *dst, size_t cap, const uint8_t *f, size_t n) {
  size_t k = 0;
  while (k < n && f[k]) k++;
  if (k >= cap) k = cap - 1;
  memcpy(dst, f, k);
  dst[k] = '\0';
}

static int is_zero(const uint8_t *b) {
  for (int i = 0; i < 512; i++)
    if (b[i]) return 0;
  return 1;
}

/* pax records: "%d %s=%s\n", the length counting the whole record. */
static int parse_pax(fy_tar_reader *r) {
  const char *p = (const char *)r->meta.data, *end = p + r->meta.len;
  fy_buf_reset(&r->xattr_data);
  r->nx = r->nx_dropped = 0;
  while (p < end) {
    size_t len = 0;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9') {
      len = len * 10 + (size_t)(*q - '0');
      if (len > FY_TAR_META_MAX) return fail(r, FY_EPROTO, "pax record length over the ceiling");
      q++;
    }
    if (q == p || q >= end || *q != ' ' || len < (size_t)(q - p) + 3 || len > (size_t)(end - p) || p[len - 1] != '\n')
      return fail(r, FY_EPROTO, "malformed pax record");
    const char *kv = q + 1, *rec_end = p + len - 1;
    const char *eq = memchr(kv, '=', (size_t)(rec_end - kv));
    if (!eq) return fail(r, FY_EPROTO, "pax record without '='");
    size_t klen = (size_t)(eq - kv), vlen = (size_t)(rec_end - eq - 1);
    const char *val = eq + 1;
    if (klen == 4 && memcmp(kv, "path", 4) == 0) {
      if (vlen >= FY_TAR_PATH_MAX) return fail(r, FY_ETOOBIG, "pax path over 4096 bytes");
      memcpy(r->long_path, val, vlen);
      r->long_path[vlen] = '\0';
      r->have_long_path = 1;
    } else if (klen == 8 && memcmp(kv, "linkpath", 8) == 0) {
      if (vlen >= FY_TAR_PATH_MAX) return fail(r, FY_ETOOBIG, "pax linkpath over 4096 bytes");
      memcpy(r->long_link, val, vlen);
      r->long_link[vlen] = '\0';
      r->have_long_link = 1;
    } else if (klen == 4 && memcmp(kv, "size", 4) == 0) {
      uint64_t v = 0;
      if (vlen == 0 || vlen > 19) return fail(r, FY_EPROTO, "malformed pax size");
      for (size_t i = 0; i < vlen; i++) {
        if (val[i] < '0' || val[i] > '9') return fail(r, FY_EPROTO, "malformed pax size");
        v = v * 10 + (uint64_t)(val[i] - '0');
      }
      r->pax_size = v;
      r->have_pax_size = 1;
    } else if (klen == 5 && memcmp(kv, "mtime", 5) == 0) {
      int64_t v = 0;
      size_t i = 0;
      int neg = vlen > 0 && val[0] == '-';
      for (i = (size_t)neg; i < vlen && val[i] >= '0' && val[i] <= '9' && i < 18; i++) v = v * 10 + (val[i] - '0');
      if (i == (size_t)neg || (i < vlen && val[i] != '.')) return fail(r, FY_EPROTO, "malformed pax mtime");
      r->pax_mtime = neg ? -v : v;
      r->have_pax_mtime = 1;
    } else if (klen > 13 && memcmp(kv, "SCHILY.xattr.", 13) == 0) {
      size_t nlen = klen - 13;
      if (nlen > FY_TAR_XATTR_NAME_MAX || memchr(kv + 13, '\0', nlen) || r->nx == FY_TAR_XATTR_MAX) {
        r->nx_dropped++;
      } else {
        size_t off = r->xattr_data.len;
        if (fy_buf_append(&r->xattr_data, kv + 13, nlen) != FY_OK || fy_buf_put_u8(&r->xattr_data, 0) != FY_OK ||
            fy_buf_append(&r->xattr_data, val, vlen) != FY_OK)
          return fail(r, FY_ETOOBIG, "pax xattrs over the ceiling");
        r->xa[r->nx].name_off = off;
        r->xa[r->nx].value_off = off + nlen + 1;
        r->xa[r->nx].value_len = vlen;
        r->nx++;
      }
    }
    p += len;
  }
  return FY_OK;
}

static int end_meta(fy_tar_reader *r) {
  int rc = FY_OK;
  if (r->meta_type == 'x') {
    rc = parse_pax(r);
  } else if (r->meta_type == 'L' || r->meta_type == 'K') {
    char *dst = r->meta_type == 'L' ? r->long_path : r->long_link;
    size_t n = strnlen((const char *)r->meta.data, r->meta.len);
    if (n >= FY_TAR_PATH_MAX) return fail(r, FY_ETOOBIG, "GNU long name over 4096 bytes");
    memcpy(dst, r->meta.data, n);
    dst[n] = '\0';
    if (r->meta_type == 'L') r->have_long_path = 1;
    else r->have_long_link = 1;
  } /* 'g' (global pax): ignored */
  fy_buf_reset(&r->meta);
  return rc;
}

static int header(fy_tar_reader *r) {
  const uint8_t *b = r->block;
  uint64_t sum = 0, want, v;
  if (is_zero(b)) {
    if (++r->zero_blocks == 2) r->state = ST_DONE;
    return FY_OK;
  }
  if (r->zero_blocks) return fail(r, FY_EPROTO, "data after an end-of-archive block");
  for (int i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? ' ' : b[i];
  if (!number(b + 148, 8, &want) || want != sum) return fail(r, FY_EPROTO, "tar header checksum mismatch (not a tar stream?)");
  fy_tar_entry *e = &r->cur;
  memset(e, 0, sizeof *e);
  e->type = (char)(b[156] ? b[156] : '0');
  if (e->type == '7') e->type = FY_TAR_FILE;
  if (!number(b + 124, 12, &e->size)) return fail(r, FY_EPROTO, "malformed size field");
  if (!number(b + 100, 8, &v)) return fail(r, FY_EPROTO, "malformed mode field");
  e->mode = (uint32_t)(v & 07777);
  if (!number(b + 108, 8, &v) || v > 0xffffffffu) return fail(r, FY_EPROTO, "malformed uid field");
  e->uid = (uint32_t)v;
  if (!number(b + 116, 8, &v) || v > 0xffffffffu) return fail(r, FY_EPROTO, "malformed gid field");
  e->gid = (uint32_t)v;

  if (e->type == 'x' || e->type == 'g' || e->type == 'L' || e->type == 'K') {
    if (e->size > FY_TAR_META_MAX) return fail(r, FY_ETOOBIG, "extended header over 64 KiB");
    r->meta_type = e->type;
    r->remaining = e->size;
    r->pad = (size_t)((512 - e->size % 512) % 512);
    r->state = e->size ? ST_META : ST_PAD;
    if (!e->size) return end_meta(r);
    return FY_OK;
  }

  if (r->have_long_path) {
    memcpy(e->path, r->long_path, strlen(r->long_path) + 1);
  } else {
    char name[101], prefix[156];
    field_str(name, sizeof name, b, 100);
    field_str(prefix, sizeof prefix, b + 345, memcmp(b + 257, "ustar", 5) == 0 ? 155 : 0);
    if (prefix[0]) snprintf(e->path, sizeof e->path, "%s/%s", prefix, name);
    else memcpy(e->path, name, strlen(name) + 1);
  }
  if (r->have_long_link) memcpy(e->link, r->long_link, strlen(r->long_link) + 1);
  else field_str(e->link, sizeof e->link, b + 157, 100);
  if (r->have_pax_size) e->size = r->pax_size;
  if (!number(b + 136, 12, &v)) v = 0; /* a malformed time is not worth refusing a layer for */
  e->mtime = r->have_pax_mtime ? r->pax_mtime : (int64_t)(v & 0x7fffffffffffffffULL);
  for (size_t i = 0; i < r->nx; i++) {
    e->xattr_name[i] = (const char *)r->xattr_data.data + r->xa[i].name_off;
    e->xattr_value[i] = r->xattr_data.data + r->xa[i].value_off;
    e->xattr_len[i] = r->xa[i].value_len;
  }
  e->nxattrs = r->nx;
  e->xattrs_dropped = r->nx_dropped;
  r->nx = r->nx_dropped = 0; /* the data stays until the next pax header: valid through entry_end */
  r->have_long_path = r->have_long_link = r->have_pax_size = r->have_pax_mtime = 0;

  /* Only regular files carry data: a size on anything else would be bytes decompressed for
   * nothing (a way around the size cap), so it is refused. */
  if (e->size && e->type != FY_TAR_FILE && (e->type == FY_TAR_DIR || e->type == FY_TAR_SYMLINK || e->type == FY_TAR_HARDLINK ||
                                            e->type == FY_TAR_CHAR || e->type == FY_TAR_BLOCK || e->type == FY_TAR_FIFO))
  {
    char msg[120];
    snprintf(msg, sizeof msg, "a '%c' entry with %llu bytes of data (only files carry data)", e->type, (unsigned long long)e->size);
    return fail(r, FY_EPROTO, msg);
  }
  r->remaining = e->size;
  r->pad = (size_t)((512 - e->size % 512) % 512);
  int rc = r->ops->entry(r->ud, e);
  if (rc != FY_OK) return rc;
  r->state = ST_DATA;
  if (r->remaining == 0) {
    if ((rc = r->ops->entry_end(r->ud)) != FY_OK) return rc;
    r->state = r->pad ? ST_PAD : ST_HEADER;
  }
  return FY_OK;
}

int fy_tar_feed(fy_tar_reader *r, const uint8_t *p, size_t n) {
  int rc;
  if (r->failed) return r->failed;
  while (n > 0) {
    switch (r->state) {
    case ST_DONE: /* record padding (zeros) may follow the end blocks; nothing else */
      for (size_t i = 0; i < n; i++)
        if (p[i]) return fail(r, FY_EPROTO, "data after the end of the archive");
      if (n > FY_TAR_TRAILING_MAX - r->trailing) return fail(r, FY_EPROTO, "more than 64 KiB after the end of the archive");
      r->trailing += n;
      return FY_OK;
    case ST_HEADER: {
      size_t take = 512 - r->got < n ? 512 - r->got : n;
      memcpy(r->block + r->got, p, take);
      r->got += take;
      p += take;
      n -= take;
      if (r->got < 512) return FY_OK;
      r->got = 0;
      if ((rc = header(r)) != FY_OK) return r->failed = rc;
      break;
    }
    case ST_DATA: {
      size_t take = r->remaining < n ? (size_t)r->remaining : n;
      if (r->cur.type == FY_TAR_FILE && (rc = r->ops->data(r->ud, p, take)) != FY_OK) return r->failed = rc;
      p += take;
      n -= take;
      r->remaining -= take;
      if (r->remaining == 0) {
        if ((rc = r->ops->entry_end(r->ud)) != FY_OK) return r->failed = rc;
        r->state = r->pad ? ST_PAD : ST_HEADER;
      }
      break;
    }
    case ST_META: {
      size_t take = r->remaining < n ? (size_t)r->remaining : n;
      if ((rc = fy_buf_append(&r->meta, p, take)) != FY_OK) return fail(r, rc, "extended header too large");
      p += take;
      n -= take;
      r->remaining -= take;
      if (r->remaining == 0) {
        if ((rc = end_meta(r)) != FY_OK) return r->failed = rc;
        r->state = r->pad ? ST_PAD : ST_HEADER;
      }
      break;
    }
    case ST_PAD: {
      size_t take = r->pad < n ? r->pad : n;
      p += take;
      n -= take;
      r->pad -= take;
      if (r->pad == 0) r->state = ST_HEADER;
      break;
    }
    }
  }
  return FY_OK;
}

int fy_tar_finish(fy_tar_reader *r) {
  if (r->failed) return r->failed;
  if (r->state == ST_DONE || (r->state == ST_HEADER && r->got == 0)) return FY_OK;
  return fail(r, FY_EPROTO, "truncated tar stream");
}

static void octal(uint8_t *f, size_t n, uint64_t v) {
  /* n-1 octal digits and a NUL; numbers too large for that use base-256 (GNU). */
  if (n - 1 < 22 && v >= (1ull << (3 * (n - 1)))) {
    memset(f, 0, n);
    f[0] = 0x80;
    for (size_t i = n - 1; i > 0 && v; i--, v >>= 8) f[i] = (uint8_t)v;
    return;
  }
  f[n - 1] = '\0';
  for (size_t i = n - 1; i > 0; i--, v >>= 3) f[i - 1] = (uint8_t)('0' + (v & 7));
}

static int block(fy_buf *out, const char *name, char type, uint32_t mode, uint64_t size, const char *link,
                 const char *prefix, int64_t mtime) {
  uint8_t h[512];
  memset(h, 0, sizeof h);
  memcpy(h, name, strnlen(name, 100));
  octal(h + 100, 8, mode & 07777);
  octal(h + 108, 8, 0);
  octal(h + 116, 8, 0);
  octal(h + 124, 12, size);
  octal(h + 136, 12, (uint64_t)(mtime < 0 ? 0 : mtime));
  h[156] = (uint8_t)type;
  if (link) memcpy(h + 157, link, strnlen(link, 100));
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memcpy(h + 265, "root", 4);
  memcpy(h + 297, "root", 4);
  if (prefix) memcpy(h + 345, prefix, strnlen(prefix, 155));
  memset(h + 148, ' ', 8);
  uint64_t sum = 0;
  for (int i = 0; i < 512; i++) sum += h[i];
  octal(h + 148, 7, sum);
  h[155] = ' ';
  return fy_buf_append(out, h, sizeof h);
}

static int pax_record(fy_buf *rec, const char *key, const char *val) {
  /* "LEN key=value\n" where LEN counts itself. */
  size_t body = strlen(key) + strlen(val) + 3, len = body + 1;
  while (snprintf(NULL, 0, "%zu", len) + body != len) len++;
  char head[32];
  snprintf(head, sizeof head, "%zu ", len);
  int rc = fy_buf_append_str(rec, head);
  if (rc == FY_OK) rc = fy_buf_append_str(rec, key);
  if (rc == FY_OK) rc = fy_buf_append(rec, "=", 1);
  if (rc == FY_OK) rc = fy_buf_append_str(rec, val);
  if (rc == FY_OK) rc = fy_buf_append(rec, "\n", 1);
  return rc;
}

int fy_tar_write_header(fy_buf *out, const char *path, char type, uint32_t mode, uint64_t size, const char *link,
                        int64_t mtime) {
  size_t n = strlen(path);
  const char *name = path, *prefix = NULL;
  char pre[156];
  int need_pax = link && strlen(link) > 100;
  if (n >= FY_TAR_PATH_MAX || (link && strlen(link) >= FY_TAR_PATH_MAX)) return FY_ETOOBIG;
  if (n > 100) {
    /* ustar: split at a '/' so that prefix <= 155 and name <= 100 */
    const char *cut = NULL;
    for (const char *p = path + n - 1; p > path; p--)
      if (*p == '/' && (size_t)(p - path) <= 155 && n - (size_t)(p - path) - 1 <= 100) { cut = p; break; }
    if (cut) {
      memcpy(pre, path, (size_t)(cut - path));
      pre[cut - path] = '\0';
      prefix = pre;
      name = cut + 1;
    } else {
      need_pax = 1;
    }
  }
  if (need_pax) {
    fy_buf rec;
    int rc;
    fy_buf_init(&rec, FY_TAR_META_MAX);
    rc = pax_record(&rec, "path", path);
    if (rc == FY_OK && link) rc = pax_record(&rec, "linkpath", link);
    if (rc == FY_OK) rc = block(out, "././@PaxHeader", 'x', 0644, rec.len, NULL, NULL, mtime);
    if (rc == FY_OK) rc = fy_buf_append(out, rec.data, rec.len);
    static const uint8_t zero[512];
    if (rc == FY_OK) rc = fy_buf_append(out, zero, fy_tar_padding(rec.len));
    fy_buf_free(&rec, 0);
    if (rc != FY_OK) return rc;
    name = path;
    prefix = NULL;
  }
  return block(out, name, type, mode, size, link, prefix, mtime);
}

int fy_tar_write_end(fy_buf *out) {
  static const uint8_t zero[1024];
  return fy_buf_append(out, zero, sizeof zero);
}
