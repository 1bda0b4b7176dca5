/* The agent's HTTP/1.1 response parser (http.h): answers as registries send them, fed in every
 * chunk size; the strict refusals (smuggling shapes, folding, bare LF, overflowing sizes); the
 * request writer and URL splitting. */
#include <stdlib.h>

#include "check.h"
#include "ferry/http.h"

typedef struct sink {
  char body[8192];
  size_t len;
} sink;

static int take(void *ud, const uint8_t *p, size_t n) {
  sink *s = ud;
  if (n > sizeof s->body - s->len) return FY_ETOOBIG;
  memcpy(s->body + s->len, p, n);
  s->len += n;
  return FY_OK;
}

/* Feeds text in pieces of `step` bytes (0: all at once); returns the parse's end state. */
static int feed(fy_http_resp *r, const char *text, size_t step, sink *s, int eof, int head_only) {
  size_t n = strlen(text), i = 0;
  fy_http_resp_init(r, head_only);
  memset(s, 0, sizeof *s);
  while (i < n) {
    size_t k = step && step < n - i ? step : n - i, used;
    int rc = fy_http_resp_feed(r, (const uint8_t *)text + i, k, &used, take, s);
    if (rc != FY_OK) return rc;
    i += used;
    if (used < k) break; /* complete: the rest is nobody's */
  }
  if (eof) return fy_http_resp_eof(r);
  return fy_http_resp_done(r) ? FY_OK : FY_EAGAIN;
}

static void every_step(const char *text, int status, const char *body, int eof) {
  for (size_t step = 0; step <= strlen(text); step++) {
    fy_http_resp r;
    sink s;
    int rc = feed(&r, text, step, &s, eof, 0);
    if (rc != FY_OK) fprintf(stderr, "step %zu: %s\n", step, r.err);
    CHECK_INT(rc, FY_OK);
    CHECK_INT(r.status, status);
    CHECK_INT(s.len, strlen(body));
    CHECK(s.len == strlen(body) && memcmp(s.body, body, s.len) == 0);
  }
}

static void bad(const char *text, int want, const char *needle) {
  fy_http_resp r;
  sink s;
  int rc = feed(&r, text, 0, &s, 1, 0);
  CHECK_INT(rc, want);
  if (!strstr(r.err, needle)) fprintf(stderr, "'%.40s': error '%s' lacks '%s'\n", text, r.err, needle);
  CHECK(strstr(r.err, needle) != NULL);
}

int main(void) {
  every_step("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDocker-Content-Digest: sha256:x\r\n\r\nhello", 200, "hello", 0);
  every_step("HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 3-7/8\r\ncontent-length: 5\r\n\r\n34567", 206, "34567", 0);
  every_step("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: y\r\n\r\n", 200,
             "hello, world", 0);
  every_step("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", 0);
  every_step("HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, "until the end", 1);
  every_step("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, "", 0);

  fy_http_resp r;
  sink s;
  CHECK_INT(feed(&r, "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://s3.example.com/b?sig=1\r\nContent-Length: 0\r\n\r\n", 1, &s, 0, 0),
            FY_OK);
  CHECK_INT(r.status, 307);
  CHECK_STR(r.location, "https://s3.example.com/b?sig=1");
  CHECK_INT(feed(&r, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"https://a/t\"\r\nContent-Length: 2\r\n\r\n{}", 3,
                 &s, 0, 0), FY_OK);
  CHECK_STR(r.www_authenticate, "Bearer realm=\"https://a/t\"");
  /* HEAD: no body whatever Content-Length says */
  CHECK_INT(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 0, &s, 0, 1), FY_OK);
  CHECK_INT(r.length, 99);
  /* bytes after a complete response are not consumed */
  {
    const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA";
    size_t used;
    fy_http_resp_init(&r, 0);
    CHECK_INT(fy_http_resp_feed(&r, (const uint8_t *)t, strlen(t), &used, take, &s), FY_OK);
    CHECK_INT(used, strlen(t) - 5);
  }
  /* a body cut short */
  CHECK_INT(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, &s, 1, 0), FY_EPROTO);
  CHECK(strstr(r.err, "closed before") != NULL);

  bad("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", FY_EPROTO, "both");
  bad("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", FY_EPROTO, "two different");
  bad("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", FY_EPROTO, "Content-Length");
  bad("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", FY_EPROTO, "Content-Length");
  bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", FY_EPROTO, "Transfer-Encoding");
  bad("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", FY_EPROTO, "folded");
  bad("HTTP/1.1 200 OK\nX: a\r\n\r\n", FY_EPROTO, "bare LF");
  bad("HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n", FY_EPROTO, "control byte");
  bad("HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n", FY_EPROTO, "header name");
  bad("HTTP/2 200\r\n\r\n", FY_EPROTO, "status line");
  bad("HTTP/1.1 2x0 OK\r\n\r\n", FY_EPROTO, "status code");
  bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", FY_ETOOBIG, "chunk size");
  bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", FY_EPROTO, "chunk size");
  bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", FY_EPROTO, "longer than its size");
  every_step("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nA-Long-Trailer-Field: with a value well past twenty-four bytes\r\n\r\n",
             200, "ab", 0);
  {
    /* heads past their ceilings: one long header, too many interim answers, long trailers,
     * too many headers (each text built with a bounded cursor) */
    size_t cap = FY_HTTP_HEAD_MAX + 4096, o;
    char *t = malloc(cap);
    o = (size_t)snprintf(t, cap, "HTTP/1.1 200 OK\r\nX: ");
    memset(t + o, 'a', FY_HTTP_HEAD_MAX);
    t[o + FY_HTTP_HEAD_MAX] = '\0';
    bad(t, FY_ETOOBIG, "over");
    o = 0;
    for (int i = 0; i < 20; i++) o += (size_t)snprintf(t + o, cap - o, "HTTP/1.1 100 Continue\r\n\r\n");
    snprintf(t + o, cap - o, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    bad(t, FY_ETOOBIG, "interim");
    o = (size_t)snprintf(t, cap, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    while (o < FY_HTTP_HEAD_MAX + 100) o += (size_t)snprintf(t + o, cap - o, "X: y\r\n");
    bad(t, FY_ETOOBIG, "trailers");
    o = (size_t)snprintf(t, cap, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 120; i++) o += (size_t)snprintf(t + o, cap - o, "X: y\r\n");
    snprintf(t + o, cap - o, "\r\n");
    bad(t, FY_ETOOBIG, "headers");
    free(t);
  }

  char req[512];
  size_t len;
  const char *h[] = {"Range: bytes=5-", "Authorization: Bearer t"};
  CHECK_INT(fy_http_request(req, sizeof req, &len, "GET", "r.io:5000", "/v2/a/blobs/sha256:x", h, 2), FY_OK);
  CHECK_STR(req, "GET /v2/a/blobs/sha256:x HTTP/1.1\r\nHost: r.io:5000\r\nUser-Agent: ferryd\r\nConnection: close\r\n"
                 "Range: bytes=5-\r\nAuthorization: Bearer t\r\n\r\n");
  CHECK_INT(len, strlen(req));
  const char *evil[] = {"X: a\r\nInjected: b"};
  CHECK_INT(fy_http_request(req, sizeof req, &len, "GET", "h", "/", evil, 1), FY_EINVAL);
  CHECK_INT(fy_http_request(req, sizeof req, &len, "GET", "h", "/a b", NULL, 0), FY_EINVAL);
  CHECK_INT(fy_http_request(req, 20, &len, "GET", "h", "/", NULL, 0), FY_ETOOBIG);

  fy_url u;
  CHECK_INT(fy_url_parse("https://r.io:5000/v2/x?y=1", &u), FY_OK);
  CHECK_STR(u.host, "r.io");
  CHECK_INT(u.port, 5000);
  CHECK_STR(u.path, "/v2/x?y=1");
  CHECK_INT(u.https, 1);
  CHECK_INT(fy_url_parse("http://h", &u), FY_OK);
  CHECK_INT(u.port, 80);
  CHECK_STR(u.path, "/");
  CHECK_INT(fy_url_parse("https://[::1]:8443/p", &u), FY_OK);
  CHECK_STR(u.host, "[::1]");
  CHECK_INT(u.port, 8443);
  CHECK_INT(fy_url_parse("ftp://h/x", &u), FY_EINVAL);
  CHECK_INT(fy_url_parse("https://user:pw@h/x", &u), FY_EINVAL);
  CHECK_INT(fy_url_parse("https://h:99999/x", &u), FY_EINVAL);
  CHECK_INT(fy_url_parse("https:///x", &u), FY_EINVAL);
  CHECK_INT(fy_url_parse("https://h/a b", &u), FY_EINVAL);
  return check_done("test_http");
}
