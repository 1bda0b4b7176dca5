/* HTTP/1.1 for the agent's registry client, sans I/O: a request written into a buffer, and a
 * strict response parser fed bytes in any chunking (status line, headers, then the body by
 * Content-Length, chunked transfer coding, or until the connection closes), body bytes handed
 * to a callback. Debian packages no maintained HTTP/1.1 parser for all three architectures
 * (libhttp-parser is node's retired http-parser 2.9; llhttp is not packaged as a C library),
 * so this one is small, bounded and fuzzed instead.
 *
 * Strict where laxness is dangerous: no obsolete line folding, no bare LF, no control bytes in
 * values, one Content-Length (duplicates must agree), never Content-Length together with
 * Transfer-Encoding, chunk sizes overflow-checked, the head bounded by FY_HTTP_HEAD_MAX. 1xx
 * answers are skipped. Pure. */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"

#define FY_HTTP_HEAD_MAX (16u * 1024u) /* status line and headers */
#define FY_HTTP_HEADERS_MAX 100
#define FY_HTTP_URL_MAX 2048
#define FY_HTTP_INTERIM_MAX 8          /* 100 Continue and friends before the answer */

typedef int (*fy_http_body_fn)(void *ud, const uint8_t *p, size_t n); /* FY_OK or a code that stops the parse */

typedef struct fy_http_resp {
  int state;
  int head_only;                 /* the answer to HEAD: no body whatever the headers say */
  char head[FY_HTTP_HEAD_MAX + 1];
  size_t head_len;
  int status;
  int has_length, chunked;
  uint64_t length;               /* Content-Length */
  uint64_t left;                 /* body bytes (or of the current chunk) still to come */
  char chunk_line[24];
  size_t chunk_line_len;
  char location[FY_HTTP_URL_MAX];
  char content_range[128];
  char content_type[128];
  char www_authenticate[1024];
  uint64_t body_bytes;           /* delivered so far */
  int interim;                   /* 1xx heads skipped (at most FY_HTTP_INTERIM_MAX) */
  size_t trailer_bytes;          /* bytes of chunked trailers (at most FY_HTTP_HEAD_MAX) */
  char err[160];
} fy_http_resp;

void fy_http_resp_init(fy_http_resp *r, int head_only);
/* Consumes what it can of p[0..n): *used bytes (less than n only once the response is complete:
 * the rest belongs to nobody, since ferry sends Connection: close). Body bytes go to fn. FY_OK
 * (more may come, or complete: fy_http_resp_done), FY_EPROTO / FY_ETOOBIG with r->err, or what fn
 * returned. Sticky. */
int fy_http_resp_feed(fy_http_resp *r, const uint8_t *p, size_t n, size_t *used, fy_http_body_fn fn, void *ud) FY_WUR;
/* The connection closed: FY_OK when that ends the response (a body read until close), else
 * FY_EPROTO ("cut short"). */
int fy_http_resp_eof(fy_http_resp *r) FY_WUR;
int fy_http_resp_done(const fy_http_resp *r);
/* The head is in (status and headers readable). */
int fy_http_resp_head_done(const fy_http_resp *r);

/* "GET PATH HTTP/1.1" with Host, User-Agent, Connection: close and the extra header lines
 * (each "Name: value", no CR/LF inside: FY_EINVAL), into buf. FY_ETOOBIG when it does not fit. */
int fy_http_request(char *buf, size_t cap, size_t *len, const char *method, const char *host, const char *path,
                    const char *const *headers, size_t nheaders) FY_WUR;

/* https://HOST[:PORT]/PATH split into its parts (a Location, a registry's base); port 443 when
 * none (80 for http://). FY_EINVAL for anything else. */
typedef struct fy_url {
  int https;
  char host[256];
  int port;
  char path[FY_HTTP_URL_MAX];
} fy_url;
int fy_url_parse(const char *s, fy_url *u) FY_WUR;

#endif
