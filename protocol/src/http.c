/* HTTP/1.1 responses, strictly; see http.h. RFC 9112: status-line, field lines, message body
 * length (§6.3): HEAD, 1xx, 204 and 304 have none; Transfer-Encoding chunked; Content-Length;
 * else until the connection closes. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ferry/http.h"
#include "ferry/text.h"

enum { ST_HEAD, ST_BODY_LEN, ST_BODY_EOF, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_CRLF, ST_TRAILER, ST_DONE, ST_FAILED };

#define FAIL(r, rc, ...)                                  \
  do {                                                    \
    fy_text_fmt((r)->err, sizeof (r)->err, __VA_ARGS__); \
    (r)->state = ST_FAILED;                               \
    return rc;                                            \
  } while (0)

void fy_http_resp_init(fy_http_resp *r, int head_only) {
  memset(r, 0, sizeof *r);
  r->head_only = head_only;
  r->state = ST_HEAD;
}

int fy_http_resp_done(const fy_http_resp *r) { return r->state == ST_DONE; }
int fy_http_resp_head_done(const fy_http_resp *r) { return r->state != ST_HEAD && r->state != ST_FAILED && r->status; }

static int is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int parse_u64(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0 || n > 19) return 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return 1;
}

static void keep(char *dst, size_t cap, const char *v, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, v, n);
  dst[n] = '\0';
}

/* The head is complete in r->head (head_len bytes, ending in CRLF CRLF). */
static int parse_head(fy_http_resp *r) {
  char *p = r->head, *end = r->head + r->head_len;
  char *eol = strstr(p, "\r\n");
  /* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
  if (!eol || eol - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
    FAIL(r, FY_EPROTO, "not an HTTP/1.x status line");
  for (int i = 9; i < 12; i++)
    if (p[i] < '0' || p[i] > '9') FAIL(r, FY_EPROTO, "a malformed status code");
  if (eol - p > 12 && p[12] != ' ') FAIL(r, FY_EPROTO, "a malformed status line");
  r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  if (r->status < 100) FAIL(r, FY_EPROTO, "status %d", r->status);
  for (char *q = p + 12; q < eol; q++)
    if ((unsigned char)*q < 0x20 && *q != '\t') FAIL(r, FY_EPROTO, "a control byte in the reason phrase");
  int te = 0, nheaders = 0;
  for (p = eol + 2; p < end;) {
    eol = strstr(p, "\r\n");
    if (!eol) FAIL(r, FY_EPROTO, "a header line without CRLF");
    if (eol == p) break; /* the empty line */
    if (++nheaders > FY_HTTP_HEADERS_MAX) FAIL(r, FY_ETOOBIG, "more than %d headers", FY_HTTP_HEADERS_MAX);
    if (*p == ' ' || *p == '\t') FAIL(r, FY_EPROTO, "a folded header line (obsolete, refused)");
    char *colon = p;
    while (colon < eol && is_tchar(*colon)) colon++;
    if (colon == p || colon >= eol || *colon != ':') FAIL(r, FY_EPROTO, "a malformed header name");
    size_t nl = (size_t)(colon - p);
    char *v = colon + 1, *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    for (char *q = v; q < ve; q++)
      if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f) FAIL(r, FY_EPROTO, "a control byte in a header value");
    size_t vl = (size_t)(ve - v);
    if (nl == 14 && strncasecmp(p, "content-length", nl) == 0) {
      uint64_t x;
      if (!parse_u64(v, vl, &x) || x > (1ull << 62)) FAIL(r, FY_EPROTO, "a malformed Content-Length");
      if (r->has_length && x != r->length) FAIL(r, FY_EPROTO, "two different Content-Length headers");
      r->has_length = 1;
      r->length = x;
    } else if (nl == 17 && strncasecmp(p, "transfer-encoding", nl) == 0) {
      if (vl != 7 || strncasecmp(v, "chunked", 7) != 0 || te) FAIL(r, FY_EPROTO, "a Transfer-Encoding other than chunked");
      te = 1;
    } else if (nl == 8 && strncasecmp(p, "location", nl) == 0) {
      if (vl >= sizeof r->location) FAIL(r, FY_ETOOBIG, "a Location over %u bytes", FY_HTTP_URL_MAX);
      keep(r->location, sizeof r->location, v, vl);
    } else if (nl == 13 && strncasecmp(p, "content-range", nl) == 0) {
      keep(r->content_range, sizeof r->content_range, v, vl);
    } else if (nl == 12 && strncasecmp(p, "content-type", nl) == 0) {
      keep(r->content_type, sizeof r->content_type, v, vl);
    } else if (nl == 16 && strncasecmp(p, "www-authenticate", nl) == 0) {
      if (!r->www_authenticate[0]) keep(r->www_authenticate, sizeof r->www_authenticate, v, vl);
    }
    p = eol + 2;
  }
  if (te && r->has_length) FAIL(r, FY_EPROTO, "both Content-Length and Transfer-Encoding (refused)");
  r->chunked = te;
  return FY_OK;
}

/* After the head: where the body comes from. */
static void body_mode(fy_http_resp *r) {
  if (r->head_only || r->status == 204 || r->status == 304) r->state = ST_DONE;
  else if (r->chunked) r->state = ST_CHUNK_SIZE;
  else if (r->has_length) {
    r->left = r->length;
    r->state = r->left ? ST_BODY_LEN : ST_DONE;
  } else r->state = ST_BODY_EOF;
}

static int chunk_size(fy_http_resp *r) {
  /* chunk-size [ chunk-ext ] CRLF; the line is in chunk_line without its CRLF */
  uint64_t v = 0;
  size_t i = 0;
  for (; i < r->chunk_line_len; i++) {
    char c = r->chunk_line[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) break;
    if (i >= 15) FAIL(r, FY_ETOOBIG, "a chunk size over 2^60");
    v = v * 16 + (uint64_t)d;
  }
  if (i == 0 || (i < r->chunk_line_len && r->chunk_line[i] != ';' && r->chunk_line[i] != ' ' && r->chunk_line[i] != '\t'))
    FAIL(r, FY_EPROTO, "a malformed chunk size");
  r->left = v;
  r->state = v ? ST_CHUNK_DATA : ST_TRAILER;
  r->chunk_line_len = 0;
  return FY_OK;
}

int fy_http_resp_feed(fy_http_resp *r, const uint8_t *p, size_t n, size_t *used, fy_http_body_fn fn, void *ud) {
  size_t i = 0;
  int rc;
  *used = 0;
  if (r->state == ST_FAILED) return FY_EPROTO;
  while (i < n && r->state != ST_DONE) {
    switch (r->state) {
    case ST_HEAD: {
      /* byte by byte up to CRLF CRLF: the head is small and bounded */
      if (r->head_len >= FY_HTTP_HEAD_MAX) FAIL(r, FY_ETOOBIG, "a response head over %u bytes", FY_HTTP_HEAD_MAX);
      char c = (char)p[i++];
      if (c == '\0') FAIL(r, FY_EPROTO, "a NUL byte in the head");
      if (c == '\n' && (r->head_len == 0 || r->head[r->head_len - 1] != '\r')) FAIL(r, FY_EPROTO, "a bare LF in the head");
      r->head[r->head_len++] = c;
      r->head[r->head_len] = '\0';
      if (r->head_len >= 4 && memcmp(r->head + r->head_len - 4, "\r\n\r\n", 4) == 0) {
        if ((rc = parse_head(r)) != FY_OK) return rc;
        if (r->status >= 100 && r->status < 200) { /* 100 Continue and friends: the real answer follows */
          int head_only = r->head_only, interim = r->interim + 1;
          if (interim > FY_HTTP_INTERIM_MAX) FAIL(r, FY_ETOOBIG, "more than %d interim (1xx) answers", FY_HTTP_INTERIM_MAX);
          fy_http_resp_init(r, head_only);
          r->interim = interim;
          break;
        }
        body_mode(r);
      }
      break;
    }
    case ST_BODY_LEN:
    case ST_CHUNK_DATA: {
      size_t take = n - i;
      if (take > r->left) take = (size_t)r->left;
      if (fn && (rc = fn(ud, p + i, take)) != FY_OK) {
        r->state = ST_FAILED;
        return rc;
      }
      r->body_bytes += take;
      r->left -= take;
      i += take;
      if (r->left == 0) r->state = r->state == ST_BODY_LEN ? ST_DONE : ST_CHUNK_CRLF;
      break;
    }
    case ST_BODY_EOF: {
      if (fn && (rc = fn(ud, p + i, n - i)) != FY_OK) {
        r->state = ST_FAILED;
        return rc;
      }
      r->body_bytes += n - i;
      i = n;
      break;
    }
    case ST_CHUNK_SIZE:
    case ST_TRAILER:
    case ST_CHUNK_CRLF: {
      char c = (char)p[i++];
      if (r->state == ST_TRAILER && ++r->trailer_bytes > FY_HTTP_HEAD_MAX)
        FAIL(r, FY_ETOOBIG, "chunked trailers over %u bytes", FY_HTTP_HEAD_MAX);
      if (r->state == ST_TRAILER && r->chunk_line_len >= 2 && c != '\n') {
        /* a trailer field: only whether the line is empty matters; its last byte is kept (the CR) */
        r->chunk_line[1] = c;
        if (c == '\0') FAIL(r, FY_EPROTO, "a NUL byte in the chunking");
        break;
      }
      if (r->chunk_line_len >= sizeof r->chunk_line - 1 && c != '\n')
        FAIL(r, FY_ETOOBIG, "a chunk line too long (chunk extensions are not read)");
      if (c == '\n') {
        if (r->chunk_line_len == 0 || r->chunk_line[r->chunk_line_len - 1] != '\r') FAIL(r, FY_EPROTO, "a bare LF in the chunking");
        r->chunk_line_len--; /* drop the CR */
        if (r->state == ST_CHUNK_CRLF) {
          if (r->chunk_line_len != 0) FAIL(r, FY_EPROTO, "chunk data longer than its size");
          r->state = ST_CHUNK_SIZE;
        } else if (r->state == ST_CHUNK_SIZE) {
          if ((rc = chunk_size(r)) != FY_OK) return rc;
        } else if (r->chunk_line_len == 0) {
          r->state = ST_DONE; /* the empty line after the trailers */
        }
        r->chunk_line_len = 0;
      } else {
        if (c == '\0') FAIL(r, FY_EPROTO, "a NUL byte in the chunking");
        r->chunk_line[r->chunk_line_len++] = c;
      }
      break;
    }
    default:
      FAIL(r, FY_EPROTO, "fed after an error");
    }
  }
  *used = i;
  return FY_OK;
}

int fy_http_resp_eof(fy_http_resp *r) {
  if (r->state == ST_BODY_EOF) r->state = ST_DONE;
  if (r->state == ST_DONE) return FY_OK;
  if (r->state != ST_FAILED) FAIL(r, FY_EPROTO, "the connection closed before the response was complete");
  return FY_EPROTO;
}

static int clean(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n') return 0;
  return 1;
}

int fy_http_request(char *buf, size_t cap, size_t *len, const char *method, const char *host, const char *path,
                    const char *const *headers, size_t nheaders) {
  if (!clean(method) || !clean(host) || !clean(path) || strchr(path, ' ')) return FY_EINVAL;
  int w = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ferryd\r\nConnection: close\r\n", method, path, host);
  if (w < 0 || (size_t)w >= cap) return FY_ETOOBIG;
  size_t o = (size_t)w;
  for (size_t i = 0; i < nheaders; i++) {
    if (!headers[i]) continue;
    if (!clean(headers[i])) return FY_EINVAL;
    w = snprintf(buf + o, cap - o, "%s\r\n", headers[i]);
    if (w < 0 || (size_t)w >= cap - o) return FY_ETOOBIG;
    o += (size_t)w;
  }
  if (cap - o < 3) return FY_ETOOBIG;
  memcpy(buf + o, "\r\n", 3);
  *len = o + 2;
  return FY_OK;
}

int fy_url_parse(const char *s, fy_url *u) {
  memset(u, 0, sizeof *u);
  const char *p;
  if (strncmp(s, "https://", 8) == 0) {
    u->https = 1;
    u->port = 443;
    p = s + 8;
  } else if (strncmp(s, "http://", 7) == 0) {
    u->port = 80;
    p = s + 7;
  } else {
    return FY_EINVAL;
  }
  size_t hl = strcspn(p, "/?#");
  const char *hend = p + hl;
  if (hl == 0 || memchr(p, '@', hl)) return FY_EINVAL; /* no userinfo */
  const char *colon = NULL;
  if (*p == '[') {
    const char *rb = memchr(p, ']', hl);
    if (!rb) return FY_EINVAL;
    if (rb + 1 < hend) {
      if (rb[1] != ':') return FY_EINVAL;
      colon = rb + 1;
    }
  } else {
    colon = memchr(p, ':', hl);
  }
  size_t namel = colon ? (size_t)(colon - p) : hl;
  if (namel == 0 || namel >= sizeof u->host) return FY_EINVAL;
  memcpy(u->host, p, namel);
  for (size_t i = 0; i < namel; i++)
    if ((unsigned char)u->host[i] <= 0x20 || u->host[i] == 0x7f) return FY_EINVAL;
  if (colon) {
    uint64_t port;
    if (!parse_u64(colon + 1, (size_t)(hend - colon - 1), &port) || port == 0 || port > 65535) return FY_EINVAL;
    u->port = (int)port;
  }
  const char *path = *hend ? hend : "/";
  if (*path != '/' || strlen(path) >= sizeof u->path) return FY_EINVAL;
  for (const char *q = path; *q; q++)
    if ((unsigned char)*q <= 0x20 || *q == 0x7f) return FY_EINVAL;
  snprintf(u->path, sizeof u->path, "%s", path);
  return FY_OK;
}
