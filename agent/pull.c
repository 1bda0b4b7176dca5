/* A deploy's blobs from a registry; see pull.h.
 *
 *   for each blob the node lacks:
 *     for each of mirror 1..n, then the registry:
 *       GET /v2/<repo>/blobs/<digest>   [Range: bytes=<partial>-]  [Authorization: the plan's]
 *         200 -> the whole blob (a partial starts over); 206 -> from the partial's end, if
 *         Content-Range says so; 30x -> Location (https only; the credential stays behind);
 *         416 -> the partial is dropped and the blob asked for again from 0
 *       a mirror's failure moves on to the next host; the registry's is the deploy's. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry/clock.h"
#include "ferry/fsutil.h"
#include "ferry/http.h"
#include "ferry/text.h"
#include "pull.h"

#define CONNECT_TIMEOUT_MS 30000
#define IDLE_TIMEOUT_MS 60000
#define MAX_REDIRECTS 5
#define NET_BUF (64u * 1024u)
#define CA_BUNDLE_MAX (8u << 20)

/* The CA bundle: the system's (whichever of the usual places has one) and registry_ca. */
static int load_web_conf(const fy_pull *p, fy_tls_conf **out, char *err, size_t errlen) {
  static const char *const system[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"};
  char *sys = NULL, *own = NULL, *all;
  size_t sl = 0, ol = 0;
  for (size_t i = 0; i < sizeof system / sizeof *system && !sys; i++)
    if (fy_file_read(system[i], CA_BUNDLE_MAX, &sys, &sl) != FY_OK) sys = NULL;
  if (p->registry_ca[0] && fy_file_read(p->registry_ca, CA_BUNDLE_MAX, &own, &ol) != FY_OK) {
    free(sys);
    return fy_text_fail(err, errlen, FY_ECONFIG, "registry_ca %s cannot be read", p->registry_ca);
  }
  if (!sys && !own) return fy_text_fail(err, errlen, FY_ECONFIG, "no CA bundle on this node: set registry_ca in the agent config");
  all = malloc(sl + ol + 2);
  if (!all) {
    free(sys);
    free(own);
    return FY_ENOMEM;
  }
  if (sl) memcpy(all, sys, sl);
  all[sl] = '\n';
  if (ol) memcpy(all + sl + 1, own, ol);
  int rc = fy_tls_conf_new_web(out, all, sl + ol + 1, err, errlen);
  free(all);
  free(sys);
  free(own);
  return rc;
}

typedef struct conn_t {
  int fd;
  fy_tls *tls;
  fy_pull *p;
  int64_t window_start_ms;       /* the rate floor: at least MIN_RATE bytes each window */
  uint64_t window_bytes;
} conn_t;

#define RATE_WINDOW_MS 60000
#define MIN_RATE_BYTES (60u * 1024u) /* 1 KiB/s over a minute: a trickle is a stall */

/* Waits for the socket (POLLIN or POLLOUT) a second at a time, so that a cancel is seen. */
static int wait_fd(conn_t *k, short ev, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 1000) {
    if (k->p->cancel) return FY_ECANCELED;
    struct pollfd pf = {k->fd, ev, 0};
    int r = poll(&pf, 1, 1000);
    if (r > 0) return FY_OK;
    if (r < 0 && errno != EINTR) return FY_EIO;
  }
  return FY_ETIMEDOUT;
}

static int dial(conn_t *k, const char *host, int port, char *err, size_t errlen) {
  char h[256], ps[16];
  struct addrinfo hints, *res = NULL;
  snprintf(h, sizeof h, "%s", host);
  if (h[0] == '[') { /* an IPv6 literal */
    memmove(h, h + 1, strlen(h));
    char *rb = strchr(h, ']');
    if (rb) *rb = '\0';
  }
  snprintf(ps, sizeof ps, "%d", port);
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(h, ps, &hints, &res);
  if (g != 0) return fy_text_fail(err, errlen, FY_ECONN, "%s: cannot resolve (%s)", host, gai_strerror(g));
  int rc = FY_ECONN, last = 0;
  for (struct addrinfo *ai = res; ai && rc != FY_OK; ai = ai->ai_next) {
    k->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (k->fd < 0) continue;
    if (connect(k->fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
      int w = wait_fd(k, POLLOUT, CONNECT_TIMEOUT_MS), so = 0;
      socklen_t sl = sizeof so;
      if (w == FY_OK && getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0) {
        rc = FY_OK;
        break;
      }
      if (w == FY_ECANCELED) rc = w;
      last = w == FY_ETIMEDOUT ? ETIMEDOUT : so;
    } else {
      last = errno;
    }
    close(k->fd);
    k->fd = -1;
    if (rc == FY_ECANCELED) break;
  }
  freeaddrinfo(res);
  if (rc == FY_ECANCELED) return fy_text_fail(err, errlen, rc, "canceled");
  if (rc != FY_OK) return fy_text_fail(err, errlen, last == ETIMEDOUT ? FY_ETIMEDOUT : FY_ECONN, "%s:%d: %s", host, port, strerror(last));
  return FY_OK;
}

static int send_all(conn_t *k, char *err, size_t errlen) {
  size_t n;
  const uint8_t *out;
  while ((out = fy_tls_out(k->tls, &n)) && n) {
    ssize_t w = send(k->fd, out, n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int rc = wait_fd(k, POLLOUT, IDLE_TIMEOUT_MS);
      if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "sending: %s", fy_strerror(rc));
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return fy_text_fail(err, errlen, FY_ECONN, "sending: %s", strerror(errno));
    fy_tls_out_consume(k->tls, (size_t)w);
  }
  return FY_OK;
}

/* Reads ciphertext from the socket into the TLS session: FY_OK, FY_EEOF at the socket's end. */
static int recv_some(conn_t *k, uint8_t *buf, char *err, size_t errlen) {
  for (;;) {
    if (k->p->cancel) return fy_text_fail(err, errlen, FY_ECANCELED, "canceled");
    ssize_t r = recv(k->fd, buf, NET_BUF, 0);
    if (r > 0) {
      if (fy_tls_feed(k->tls, buf, (size_t)r) != FY_OK) return fy_text_fail(err, errlen, FY_ETLS, "TLS input over its buffer");
      k->window_bytes += (uint64_t)r;
      int64_t t = (int64_t)fy_mono_ms();
      if (t - k->window_start_ms >= RATE_WINDOW_MS) {
        if (k->window_bytes < MIN_RATE_BYTES)
          return fy_text_fail(err, errlen, FY_ETIMEDOUT, "slower than 1 KiB/s for a minute (%llu bytes)", (unsigned long long)k->window_bytes);
        k->window_start_ms = t;
        k->window_bytes = 0;
      }
      return FY_OK;
    }
    if (r == 0) return FY_EEOF;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return fy_text_fail(err, errlen, FY_ECONN, "receiving: %s", strerror(errno));
    int rc = wait_fd(k, POLLIN, IDLE_TIMEOUT_MS);
    if (rc == FY_ETIMEDOUT) return fy_text_fail(err, errlen, rc, "no data for %d s", IDLE_TIMEOUT_MS / 1000);
    if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "%s", fy_strerror(rc));
  }
}

static void hang_up(conn_t *k) {
  fy_tls_free(k->tls);
  k->tls = NULL;
  if (k->fd >= 0) close(k->fd);
  k->fd = -1;
}

/* Where the body of the answer goes. */
typedef struct sink {
  fy_pull *p;
  fy_blob_writer *w;
  const fy_pull_item *it;
  uint64_t from;                  /* the offset the Range asked for */
  int started;
  fy_http_resp *resp;
  int rc;
  char why[200];
} sink;

static int on_body(void *ud, const uint8_t *b, size_t n) {
  sink *s = ud;
  int st = s->resp->status;
  if (st != 200 && st != 206) return FY_OK; /* an error's body: not read */
  if (!s->started) {
    s->started = 1;
    uint64_t expect = st == 200 ? s->it->size : s->it->size - s->from;
    if (s->resp->has_length && s->resp->length != expect) {
      fy_text_fmt(s->why, sizeof s->why, "a %d answer of %llu bytes where %llu were due", st, (unsigned long long)s->resp->length,
                  (unsigned long long)expect);
      return s->rc = FY_EPROTO;
    }
    if (st == 200 && s->from > 0) { /* the Range was not honoured: the whole blob, from 0 */
      fy_blob_writer_close(s->w);
      if ((s->rc = fy_blob_writer_open(s->w, s->p->store, &s->it->digest, s->it->size, 0)) != FY_OK) return s->rc;
      s->p->done_bytes -= s->from;
      s->from = 0;
    } else if (st == 206) {
      char want[64];
      snprintf(want, sizeof want, "bytes %llu-", (unsigned long long)s->from);
      if (strncmp(s->resp->content_range, want, strlen(want)) != 0) {
        fy_text_fmt(s->why, sizeof s->why, "asked for bytes from %llu, got '%s'", (unsigned long long)s->from, s->resp->content_range);
        return s->rc = FY_EPROTO;
      }
    }
  }
  if ((s->rc = fy_blob_writer_write(s->w, b, n)) != FY_OK) return s->rc;
  s->p->done_bytes += n;
  s->p->fetched += n;
  return FY_OK;
}

/* One GET on one host: the status and headers in *resp; a 200/206 body into w. */
static int get_once(fy_pull *p, const fy_url *u, const char *authz, fy_tls_conf *web, fy_blob_writer *w, const fy_pull_item *it,
                    uint64_t from, fy_http_resp *resp, char *err, size_t errlen) {
  conn_t k = {.fd = -1, .p = p, .window_start_ms = (int64_t)fy_mono_ms()};
  uint8_t *buf = malloc(NET_BUF);
  char hostport[300], range[64], auth[FY_SOURCE_AUTH_MAX + 32], *req = malloc(FY_SOURCE_AUTH_MAX + 4096);
  size_t rl;
  int rc;
  sink s = {.p = p, .w = w, .it = it, .from = from, .resp = resp};
  if (!buf || !req) {
    free(buf);
    free(req);
    return FY_ENOMEM;
  }
  if (u->port == 443) snprintf(hostport, sizeof hostport, "%s", u->host);
  else snprintf(hostport, sizeof hostport, "%s:%d", u->host, u->port);
  snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)from);
  fy_text_fmt(auth, sizeof auth, "Authorization: %s", authz ? authz : "");
  const char *hdrs[] = {from ? range : NULL, authz && *authz ? auth : NULL, "Accept: */*"};
  fy_http_resp_init(resp, 0);
  if ((rc = fy_http_request(req, FY_SOURCE_AUTH_MAX + 4096, &rl, "GET", hostport, u->path, hdrs, 3)) != FY_OK) {
    rc = fy_text_fail(err, errlen, rc, "the request does not fit");
    goto out;
  }
  if ((rc = dial(&k, u->host, u->port, err, errlen)) != FY_OK) goto out;
  if ((rc = fy_tls_new(&k.tls, web, u->host)) != FY_OK) {
    rc = fy_text_fail(err, errlen, rc, "TLS: %s", fy_strerror(rc));
    goto out;
  }
  for (;;) {
    int hs = fy_tls_handshake(k.tls);
    if ((rc = send_all(&k, err, errlen)) != FY_OK) goto out;
    if (hs == FY_OK) break;
    if (hs != FY_EAGAIN) {
      rc = fy_text_fail(err, errlen, hs, "%s:%d: %s", u->host, u->port, fy_tls_errmsg(k.tls));
      goto out;
    }
    if ((rc = recv_some(&k, buf, err, errlen)) != FY_OK) {
      if (rc == FY_EEOF) rc = fy_text_fail(err, errlen, FY_ECONN, "%s:%d closed the connection during the TLS handshake", u->host, u->port);
      goto out;
    }
  }
  if ((rc = fy_tls_write(k.tls, (const uint8_t *)req, rl)) != FY_OK || (rc = send_all(&k, err, errlen)) != FY_OK) {
    if (!err[0]) fy_text_fmt(err, errlen, "sending the request: %s", fy_strerror(rc));
    goto out;
  }
  memset(req, 0, FY_SOURCE_AUTH_MAX + 4096); /* it held the credential */
  memset(auth, 0, sizeof auth);
  int eof = 0;
  while (!fy_http_resp_done(resp)) {
    size_t got, used;
    if (p->cancel) {
      rc = fy_text_fail(err, errlen, FY_ECANCELED, "canceled");
      goto out;
    }
    /* an answer that is not the blob: its status and headers are all that is needed */
    if (fy_http_resp_head_done(resp) && resp->status != 200 && resp->status != 206) break;
    int r = fy_tls_read(k.tls, buf, NET_BUF, &got);
    if (r == FY_OK) {
      if ((rc = fy_http_resp_feed(resp, buf, got, &used, on_body, &s)) != FY_OK) {
        if (s.rc == FY_OK || s.rc == FY_EPROTO)
          fy_text_fmt(err, errlen, "%s:%d: %s", u->host, u->port, s.why[0] ? s.why : resp->err);
        else
          fy_text_fmt(err, errlen, "storing the blob: %s", s.rc == FY_ETOOBIG ? "more bytes than its size" : fy_strerror(s.rc));
        rc = s.rc ? s.rc : rc;
        goto out;
      }
      continue;
    }
    if (r == FY_EEOF || eof) {
      if ((rc = fy_http_resp_eof(resp)) != FY_OK) {
        fy_text_fmt(err, errlen, "%s:%d: %s", u->host, u->port, resp->err);
        rc = FY_ECONN;
        goto out;
      }
      break;
    }
    if (r != FY_EAGAIN) {
      rc = fy_text_fail(err, errlen, FY_ETLS, "%s:%d: %s", u->host, u->port, fy_tls_errmsg(k.tls));
      goto out;
    }
    if ((rc = recv_some(&k, buf, err, errlen)) == FY_EEOF) {
      eof = 1;
      continue;
    }
    if (rc != FY_OK) goto out;
  }
  rc = FY_OK;
out:
  hang_up(&k);
  if (req) memset(req, 0, FY_SOURCE_AUTH_MAX + 4096);
  free(req);
  free(buf);
  return rc;
}

/* A blob from one host (its base, "https://host[:port]"): redirects followed; FY_OK when it is
 * in the store. */
static int fetch_from(fy_pull *p, const char *base, int with_auth, fy_tls_conf *web, const fy_pull_item *it, char *err, size_t errlen) {
  char ds[FY_DIGEST_STR], url[FY_HTTP_URL_MAX + 300];
  fy_url u, first;
  fy_blob_writer w;
  fy_http_resp *resp = malloc(sizeof *resp);
  int rc, retried = 0;
  uint64_t fetched_before = p->fetched;
  if (!resp) return FY_ENOMEM;
  fy_digest_format(&it->digest, ds);
  fy_text_fmt(url, sizeof url, "%s/v2/%s/blobs/%s", base, p->src.repository, ds);
  if (fy_url_parse(url, &first) != FY_OK) {
    free(resp);
    return fy_text_fail(err, errlen, FY_EINVAL, "%s: not a registry URL", base);
  }
again:;
  uint64_t from = fy_store_partial(p->store, &it->digest, it->size);
  if ((rc = fy_blob_writer_open(&w, p->store, &it->digest, it->size, from)) != FY_OK) {
    free(resp);
    if (rc == FY_EBUSY)
      return fy_text_fail(err, errlen, rc, "blob %s is being written by another deploy on this node; push again when it is done", ds);
    return fy_text_fail(err, errlen, rc, "opening the blob %s: %s", ds, fy_strerror(rc));
  }
  p->done_bytes += from;
  if (from == it->size) goto finish; /* every byte is here already */
  u = first;
  for (int hop = 0;; hop++) {
    /* the credential goes to the registry's own host and port, never where a redirect points */
    int same = strcmp(u.host, first.host) == 0 && u.port == first.port;
    rc = get_once(p, &u, with_auth && same ? p->src.authorization : NULL, web, &w, it, from, resp, err, errlen);
    if (rc != FY_OK) goto fail;
    int st = resp->status;
    if ((st == 301 || st == 302 || st == 303 || st == 307 || st == 308) && resp->location[0]) {
      fy_url next;
      if (hop >= MAX_REDIRECTS) {
        rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: more than %d redirects", base, MAX_REDIRECTS);
        goto fail;
      }
      if (resp->location[0] == '/') {
        next = u;
        if (strlen(resp->location) >= sizeof next.path) {
          rc = fy_text_fail(err, errlen, FY_EPROTO, "a redirect too long");
          goto fail;
        }
        snprintf(next.path, sizeof next.path, "%s", resp->location);
      } else if (fy_url_parse(resp->location, &next) != FY_OK || !next.https) {
        rc = fy_text_fail(err, errlen, FY_EPOLICY, "%s: a redirect to '%.80s', which is not https", base, resp->location);
        goto fail;
      }
      u = next;
      continue;
    }
    if (st == 416 && from > 0 && !retried) { /* the partial does not fit: start over */
      fy_blob_writer_close(&w);
      unlink(w.partial);
      p->done_bytes -= from;
      retried = 1;
      goto again;
    }
    if (st == 401 || st == 403) {
      rc = fy_text_fail(err, errlen, FY_ECERT, "%s refused the pull (HTTP %d%s%s)", base, st, resp->www_authenticate[0] ? ", " : "",
                        resp->www_authenticate[0] ? "the credential is missing, wrong or expired" : "");
      goto fail;
    }
    if (st == 404) {
      rc = fy_text_fail(err, errlen, FY_ENOENT, "%s has no blob %s in %s (HTTP 404; ferry publish the image there)", base, ds,
                        p->src.repository);
      goto fail;
    }
    if (st != 200 && st != 206) {
      rc = fy_text_fail(err, errlen, FY_EPEER, "%s: HTTP %d for blob %s", base, st, ds);
      goto fail;
    }
    break;
  }
finish:
  rc = fy_blob_writer_finish(&w);
  if (rc == FY_EDIGEST && from > 0 && !retried) {
    /* the partial it resumed held bad bytes (a source before this one): it is gone now, once more from 0 */
    fy_blob_writer_close(&w);
    p->done_bytes -= it->size;
    retried = 1;
    goto again;
  }
  if (rc == FY_EDIGEST) fy_text_fmt(err, errlen, "%s: blob %s does not match its digest (discarded)", base, ds);
  else if (rc != FY_OK) fy_text_fmt(err, errlen, "%s: blob %s: %s (%llu of %llu bytes)", base, ds, fy_strerror(rc),
                                    (unsigned long long)w.written, (unsigned long long)it->size);
  fy_blob_writer_close(&w);
  free(resp);
  return rc;
fail:
  /* What this host wrote is not trusted past its failure when it is a mirror (a mirror that
   * misbehaves must not leave bytes the registry's resume builds on): the partial goes back to
   * where it was. The registry's own bytes stay for the next push to resume. */
  if (!with_auth && w.fd >= 0 && p->fetched > fetched_before) {
    if (w.written < from || ftruncate(w.fd, (off_t)from) != 0) unlink(w.partial); /* it had started over: nothing to keep */
  }
  fy_blob_writer_close(&w);
  free(resp);
  return rc;
}

void fy_pull_run(fy_pull *p) {
  fy_tls_conf *web = NULL;
  char base[300], why[700];
  p->rc = load_web_conf(p, &web, p->err, sizeof p->err);
  p->total_bytes = 0;
  for (size_t i = 0; i < p->n; i++) p->total_bytes += p->items[i].size;
  fy_text_fmt(base, sizeof base, "https://%s", p->src.registry);
  for (size_t i = 0; i < p->n && p->rc == FY_OK; i++) {
    const fy_pull_item *it = &p->items[i];
    int rc = FY_ECONN;
    why[0] = '\0';
    for (size_t m = 0; m < p->nmirrors && rc != FY_OK && !p->cancel; m++) {
      /* A mirror of the device's own (containerd's hosts.toml): no credential of the registry's */
      uint64_t before = p->done_bytes;
      rc = fetch_from(p, p->mirrors[m], 0, web, it, why, sizeof why);
      if (rc == FY_OK) p->from_mirror++;
      else p->done_bytes = before;
    }
    if (rc != FY_OK && !p->cancel) rc = fetch_from(p, base, 1, web, it, p->err, sizeof p->err);
    if (p->cancel) {
      p->rc = FY_ECANCELED;
      fy_text_fmt(p->err, sizeof p->err, "the pull was canceled");
      break;
    }
    if (rc != FY_OK) {
      p->rc = rc;
      if (p->nmirrors && why[0]) {
        size_t o = strlen(p->err);
        fy_text_fmt(p->err + o, sizeof p->err - o, " (the mirrors failed too: %s)", why);
      }
      break;
    }
    p->blobs++;
  }
  fy_tls_conf_free(web);
}

void fy_pull_wipe(fy_pull *p) {
  if (p) memset(p->src.authorization, 0, sizeof p->src.authorization);
}
