/* The distribution API v2 over libcurl; see registry.h.
 *
 *   GET/HEAD  /v2/<repo>/manifests/<tag|digest>      Accept: every manifest and index type
 *   GET/HEAD  /v2/<repo>/blobs/<digest>              (a redirect to storage is followed)
 *   POST      /v2/<repo>/blobs/uploads/[?mount=<digest>&from=<repo>]   201 mounted | 202 Location
 *   PUT       <Location>[?&]digest=<digest>          the whole blob (monolithic)
 *   PUT       /v2/<repo>/manifests/<ref>             Content-Type: the manifest's media type
 *
 * A 401 carries a WWW-Authenticate challenge; the request is sent again once, with a Bearer
 * token from the challenge's realm or Basic credentials. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "ferry/fsutil.h"
#include "ferry/httpauth.h"
#include "ferry/oci.h"
#include "ferry/text.h"
#include "ferry/wire.h"
#include "registry.h"

#define TOKEN_MAX (16u * 1024u)
#define ERRBODY_MAX 4096u
#define ACCEPT_MANIFESTS                                                                                          \
  "Accept: " FY_MT_OCI_INDEX ", " FY_MT_OCI_MANIFEST ", " FY_MT_DOCKER_LIST ", " FY_MT_DOCKER_MANIFEST

static fy_registry_opts defaults;

void fy_registry_set_defaults(const fy_registry_opts *o) { defaults = *o; }

struct fy_registry {
  fy_docker_ref ref;
  char scheme[8];          /* "https", or "http" after a fallback with --tls-verify=false */
  char host[FY_REF_HOST_MAX];
  int push;
  char authz[TOKEN_MAX + 64]; /* the Authorization header sent, "" for none */
  int basic_sent;
  char creds[1024];        /* "user:password", "" when none are configured */
  char name[600];
  CURL *h;
};

/* What one exchange brought back. Bodies go to memory (bounded), to a blob writer, or nowhere. */
typedef struct resp {
  long status;
  char content_type[128];
  char digest[FY_DIGEST_STR];
  char location[2048];
  char www_auth[FY_AUTH_HEADER_MAX + 1];
  char content_range[128];
  uint64_t length;
  int has_length;
  int to_mem;              /* 1: body into buf (up to max) */
  char *buf;
  size_t len, max;
  int toobig;
  fy_blob_writer *w;       /* body of a 200/206 into the writer */
  int werr;
  const fy_store *w_store; /* to start the writer again from 0 when a Range was ignored */
  fy_digest w_digest;
  uint64_t w_size, w_from; /* the blob's size; the offset the Range asked for (0: none) */
  int w_started;           /* the first body byte of the answer has been seen */
  int range_lie;           /* a 206 whose Content-Range does not start at w_from */
  uint64_t received;
  char errbody[ERRBODY_MAX + 1]; /* the body of an error answer, for its message */
  size_t errlen;
} resp;

static void copy_header_value(char *dst, size_t cap, const char *v, size_t n) {
  while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
  while (n && (*v == ' ' || *v == '\t')) v++, n--;
  if (n >= cap) n = cap - 1;
  memcpy(dst, v, n);
  dst[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  resp *rs = ud;
  size_t n = size * nmemb;
  if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new answer (after a redirect or 100) */
    const char *sp = memchr(p, ' ', n);
    rs->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    rs->has_length = 0;
    rs->www_auth[0] = rs->location[0] = rs->digest[0] = rs->content_type[0] = rs->content_range[0] = '\0';
    return n;
  }
  const char *colon = memchr(p, ':', n);
  if (!colon) return n;
  size_t kl = (size_t)(colon - p), vl = n - kl - 1;
  const char *v = colon + 1;
  char num[32];
  if (kl == 16 && strncasecmp(p, "www-authenticate", kl) == 0) {
    if (!rs->www_auth[0]) copy_header_value(rs->www_auth, sizeof rs->www_auth, v, vl); /* the first one */
  } else if (kl == 8 && strncasecmp(p, "location", kl) == 0) {
    copy_header_value(rs->location, sizeof rs->location, v, vl);
  } else if (kl == 21 && strncasecmp(p, "docker-content-digest", kl) == 0) {
    copy_header_value(rs->digest, sizeof rs->digest, v, vl);
  } else if (kl == 12 && strncasecmp(p, "content-type", kl) == 0) {
    copy_header_value(rs->content_type, sizeof rs->content_type, v, vl);
    char *semi = strchr(rs->content_type, ';');
    if (semi) *semi = '\0';
  } else if (kl == 13 && strncasecmp(p, "content-range", kl) == 0) {
    copy_header_value(rs->content_range, sizeof rs->content_range, v, vl);
  } else if (kl == 14 && strncasecmp(p, "content-length", kl) == 0) {
    copy_header_value(num, sizeof num, v, vl);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(num, &end, 10);
    if (!errno && end != num && !*end) {
      rs->length = x;
      rs->has_length = 1;
    }
  }
  return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  resp *rs = ud;
  size_t n = size * nmemb;
  rs->received += n;
  int ok = rs->status >= 200 && rs->status < 300;
  if (!ok) {
    size_t take = n < ERRBODY_MAX - rs->errlen ? n : ERRBODY_MAX - rs->errlen;
    memcpy(rs->errbody + rs->errlen, p, take);
    rs->errlen += take;
    rs->errbody[rs->errlen] = '\0';
    return n;
  }
  if (rs->w) {
    if (!rs->w_started && rs->w_from > 0) {
      char want[64];
      snprintf(want, sizeof want, "bytes %llu-", (unsigned long long)rs->w_from);
      if (rs->status == 200) {
        /* The Range was ignored: the whole blob comes from byte 0. The partial starts over. */
        fy_blob_writer_close(rs->w);
        if ((rs->werr = fy_blob_writer_open(rs->w, rs->w_store, &rs->w_digest, rs->w_size, 0)) != FY_OK) return 0;
      } else if (strncmp(rs->content_range, want, strlen(want)) != 0) {
        rs->range_lie = 1;
        return 0;
      }
    }
    rs->w_started = 1;
    if ((rs->werr = fy_blob_writer_write(rs->w, p, n)) != FY_OK) return 0;
    return n;
  }
  if (rs->to_mem) {
    if (n > rs->max - rs->len) {
      rs->toobig = 1;
      return 0;
    }
    char *nb = realloc(rs->buf, rs->len + n + 1);
    if (!nb) return 0;
    rs->buf = nb;
    memcpy(rs->buf + rs->len, p, n);
    rs->len += n;
    rs->buf[rs->len] = '\0';
  }
  return n;
}

/* The registry's own words for a failure: {"errors":[{"code":…,"message":…}]}. */
static void registry_says(const resp *rs, char *out, size_t len) {
  json_t *j = rs->errlen ? json_loadb(rs->errbody, rs->errlen, 0, NULL) : NULL;
  json_t *e = json_array_get(json_object_get(j, "errors"), 0);
  const char *code = json_string_value(json_object_get(e, "code")), *msg = json_string_value(json_object_get(e, "message"));
  if (code || msg) fy_text_fmt(out, len, "HTTP %ld %s%s%s", rs->status, code ? code : "", code && msg ? ": " : "", msg ? msg : "");
  else fy_text_fmt(out, len, "HTTP %ld", rs->status);
  json_decref(j);
}

static int credentials_from(char paths[][4200], size_t np, const char *host, char *out, size_t len);

int fy_registry_credentials(const char *host, char *out, size_t len) {
  char paths[3][4200];
  size_t np = 0;
  const char *e;
  if ((e = getenv("REGISTRY_AUTH_FILE")) && *e) fy_text_fmt(paths[np++], sizeof paths[0], "%s", e);
  if ((e = getenv("XDG_RUNTIME_DIR")) && *e) fy_text_fmt(paths[np++], sizeof paths[0], "%s/containers/auth.json", e);
  if ((e = getenv("HOME")) && *e) fy_text_fmt(paths[np++], sizeof paths[0], "%s/.docker/config.json", e);
  return credentials_from(paths, np, host, out, len);
}

int fy_registry_credentials_in(const char *file, const char *host, char *out, size_t len) {
  char paths[1][4200];
  fy_text_fmt(paths[0], sizeof paths[0], "%s", file);
  return credentials_from(paths, 1, host, out, len);
}

static int credentials_from(char paths[][4200], size_t np, const char *host, char *out, size_t len) {
  for (size_t i = 0; i < np; i++) {
    char *text = NULL;
    size_t tl;
    if (fy_file_read(paths[i], 1u << 20, &text, &tl) != FY_OK) continue;
    json_t *j = json_loadb(text, tl, 0, NULL);
    free(text);
    json_t *auths = json_object_get(j, "auths");
    const char *key;
    json_t *v;
    int found = 0;
    json_object_foreach(auths, key, v) {
      /* "host", "https://host", "host/path" (podman's per-repository entries count for the host) */
      const char *k = key;
      if (strncmp(k, "https://", 8) == 0) k += 8;
      else if (strncmp(k, "http://", 7) == 0) k += 7;
      size_t hl = strlen(host);
      if (strncmp(k, host, hl) != 0 || (k[hl] && k[hl] != '/')) continue;
      const char *a = json_string_value(json_object_get(v, "auth"));
      unsigned char *raw = NULL;
      size_t rl = 0;
      json_t *js = a ? json_string(a) : NULL;
      if (js && fy_settings_bytes(js, &raw, &rl) == FY_OK && rl < len && memchr(raw, ':', rl)) {
        memcpy(out, raw, rl);
        out[rl] = '\0';
        found = 1;
      }
      json_decref(js);
      free(raw);
      if (found) break;
    }
    json_decref(j);
    if (found) return FY_OK;
  }
  return FY_ENOENT;
}

int fy_registry_open(fy_registry **out, const fy_docker_ref *ref, int push, char *err, size_t errlen) {
  static int global_done;
  if (!global_done) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    atexit(curl_global_cleanup); /* OpenSSL's state goes with it (LeakSanitizer counts it otherwise) */
    global_done = 1;
  }
  fy_registry *r = calloc(1, sizeof *r);
  if (!r || !(r->h = curl_easy_init())) {
    free(r);
    return fy_text_fail(err, errlen, FY_ENOMEM, "cannot start an HTTP client");
  }
  r->ref = *ref;
  r->push = push;
  snprintf(r->scheme, sizeof r->scheme, "https");
  /* Docker Hub's API lives on registry-1.docker.io; its credentials under the short name. */
  snprintf(r->host, sizeof r->host, "%s", strcmp(ref->host, FY_DOCKER_HUB) == 0 ? "registry-1.docker.io" : ref->host);
  if (fy_registry_credentials(ref->host, r->creds, sizeof r->creds) != FY_OK &&
      strcmp(ref->host, FY_DOCKER_HUB) == 0 && fy_registry_credentials("https://index.docker.io/v1/", r->creds, sizeof r->creds) != FY_OK)
    r->creds[0] = '\0';
  fy_text_fmt(r->name, sizeof r->name, "%s/%s", ref->host, ref->repo);
  *out = r;
  return FY_OK;
}

void fy_registry_free(fy_registry *r) {
  if (!r) return;
  curl_easy_cleanup(r->h);
  /* the token and the credentials are secrets */
  memset(r->authz, 0, sizeof r->authz);
  memset(r->creds, 0, sizeof r->creds);
  free(r);
}

const char *fy_registry_name(const fy_registry *r) { return r->name; }

/* The body of a request: memory or an open file (rewound for a retry). */
typedef struct body {
  const char *mem;
  size_t len;
  int fd;
  uint64_t size;
  uint64_t off;
} body;

static size_t read_body(char *p, size_t size, size_t nmemb, void *ud) {
  body *b = ud;
  size_t want = size * nmemb;
  if (b->fd >= 0) {
    ssize_t r = read(b->fd, p, want);
    return r < 0 ? CURL_READFUNC_ABORT : (size_t)r;
  }
  size_t left = b->len - b->off;
  if (want > left) want = left;
  memcpy(p, b->mem + b->off, want);
  b->off += want;
  return want;
}

static void apply_tls(fy_registry *r, CURL *h) {
  if (defaults.ca_file) {
    curl_easy_setopt(h, CURLOPT_CAINFO, defaults.ca_file);
    curl_easy_setopt(h, CURLOPT_CAPATH, "/etc/ssl/certs"); /* and the system's CAs */
  }
  if (defaults.insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  (void)r;
}

/* One exchange, without the authentication dance. FY_ECONN with curl's reason in err when no
 * answer came; FY_OK with rs->status otherwise. */
static int exchange(fy_registry *r, const char *method, const char *url, const char *const *hdrs, body *b, resp *rs,
                    char *err, size_t errlen) {
  CURL *h = r->h;
  struct curl_slist *list = NULL;
  char ebuf[CURL_ERROR_SIZE] = "";
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
  /* A redirect (blob storage, a CDN) stays on https, and on http only where TLS is off anyway. */
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, defaults.insecure ? "http,https" : "https");
  /* A registry that trickles is dropped: under 1 KiB/s for a minute. Small answers (manifests,
   * uploads' replies) also have a total limit. */
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  if (!rs->w && !b) curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "ferry");
  /* FERRY_REGISTRY_RATE=BYTES: a cap on the transfer rate (a shared uplink; the tests cut a
   * transfer midway with it). */
  const char *rate = getenv("FERRY_REGISTRY_RATE");
  if (rate && strtoll(rate, NULL, 10) > 0) {
    curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)strtoll(rate, NULL, 10));
    curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)strtoll(rate, NULL, 10));
  }
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
  /* Credentials never follow a redirect to another host (blob storage): curl's default. */
  apply_tls(r, h);
  if (strcmp(method, "HEAD") == 0) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "GET") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (b) {
    if (b->fd >= 0 && lseek(b->fd, 0, SEEK_SET) != 0) return fy_text_fail(err, errlen, FY_EIO, "rewinding the upload: %s", strerror(errno));
    b->off = 0;
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
    curl_easy_setopt(h, CURLOPT_READDATA, b);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(b->fd >= 0 ? b->size : b->len));
    if (strcmp(method, "POST") == 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
  } else if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
  }
  for (size_t i = 0; hdrs && hdrs[i]; i++) list = curl_slist_append(list, hdrs[i]);
  if (r->authz[0]) list = curl_slist_append(list, r->authz);
  list = curl_slist_append(list, "Expect:");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  CURLcode cc = curl_easy_perform(h);
  curl_slist_free_all(list);
  if (cc == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    return FY_OK;
  }
  if (rs->toobig) return fy_text_fail(err, errlen, FY_ETOOBIG, "%s: the answer is over %zu bytes", url, rs->max);
  if (rs->range_lie)
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: asked for bytes from %llu, the registry answered '%s'", url,
                        (unsigned long long)rs->w_from, rs->content_range);
  if (rs->werr) return fy_text_fail(err, errlen, rs->werr, "%s: storing the blob: %s", url, fy_strerror(rs->werr));
  return fy_text_fail(err, errlen, cc == CURLE_OPERATION_TIMEDOUT ? FY_ETIMEDOUT : FY_ECONN, "%s: %s", url,
                      ebuf[0] ? ebuf : curl_easy_strerror(cc));
}

/* An http:// realm gets the credentials only on the registry's own host or on loopback: a
 * challenge must not send them in clear text to wherever it names. */
static int realm_is_near(const fy_registry *r, const char *realm) {
  char host[FY_REF_HOST_MAX];
  const char *h = realm + 7, *end = h + strcspn(h, "/?#");
  size_t n = (size_t)(end - h);
  if (n == 0 || n >= sizeof host) return 0;
  memcpy(host, h, n);
  host[n] = '\0';
  char *colon = strrchr(host, ':');
  if (colon && !strchr(host, ']')) *colon = '\0';
  char rhost[FY_REF_HOST_MAX];
  snprintf(rhost, sizeof rhost, "%s", r->host);
  colon = strrchr(rhost, ':');
  if (colon && !strchr(rhost, ']')) *colon = '\0';
  return strcmp(host, rhost) == 0 || strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0;
}

/* A Bearer token for scope from the challenge's realm (with the credentials, when there are
 * any). *expires_in: seconds, 0 when not said. */
static int fetch_token(fy_registry *r, const fy_auth_challenge *c, const char *scope, char *tok, size_t toklen,
                       int64_t *expires_in, char *err, size_t errlen) {
  CURL *h = curl_easy_init();
  if (!h) return FY_ENOMEM;
  char *svc = curl_easy_escape(h, c->service, 0), *sc = curl_easy_escape(h, scope, 0);
  char url[4096];
  int rc = FY_OK;
  if (strncmp(c->realm, "https://", 8) != 0 && !(defaults.insecure && strncmp(c->realm, "http://", 7) == 0 && realm_is_near(r, c->realm)))
    rc = fy_text_fail(err, errlen, FY_EPOLICY, "%s: the token endpoint %s is not https (--tls-verify=false allows http only on "
                      "the registry's own host or loopback)", r->name, c->realm);
  else if (fy_path_fmt(url, sizeof url, "%s%sservice=%s&scope=%s", c->realm, strchr(c->realm, '?') ? "&" : "?", svc ? svc : "",
                       sc ? sc : "") != FY_OK)
    rc = fy_text_fail(err, errlen, FY_ETOOBIG, "%s: token URL too long", r->name);
  curl_free(svc);
  curl_free(sc);
  resp rs;
  memset(&rs, 0, sizeof rs);
  rs.to_mem = 1;
  rs.max = TOKEN_MAX;
  char ebuf[CURL_ERROR_SIZE] = "";
  if (rc == FY_OK) {
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &rs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &rs);
    apply_tls(r, h);
    if (r->creds[0]) {
      curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
      curl_easy_setopt(h, CURLOPT_USERPWD, r->creds);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK)
      rc = fy_text_fail(err, errlen, FY_ECONN, "%s: asking %s for a token: %s", r->name, c->realm, ebuf[0] ? ebuf : curl_easy_strerror(cc));
    else if (rs.status == 401 || rs.status == 403)
      rc = fy_text_fail(err, errlen, FY_ECERT, "%s: the token service refused %s (HTTP %ld); check the credentials for %s%s",
                        r->name, r->creds[0] ? "the credentials" : "an anonymous request", rs.status, r->ref.host,
                        r->creds[0] ? "" : " (skopeo login or docker login writes them)");
    else if (rs.status != 200)
      rc = fy_text_fail(err, errlen, FY_EPEER, "%s: the token service answered HTTP %ld", r->name, rs.status);
  }
  if (rc == FY_OK) {
    json_t *j = json_loadb(rs.buf ? rs.buf : "", rs.len, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "token"));
    if (!t) t = json_string_value(json_object_get(j, "access_token"));
    if (!t || !*t || strlen(t) >= toklen || strpbrk(t, "\r\n"))
      rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: the token service's answer holds no usable token", r->name);
    else {
      snprintf(tok, toklen, "%s", t);
      json_int_t e = json_integer_value(json_object_get(j, "expires_in"));
      *expires_in = e > 0 ? (int64_t)e : 0;
    }
    json_decref(j);
  }
  free(rs.buf);
  curl_easy_cleanup(h);
  return rc;
}

/* Answers the challenge of a 401: the next request carries a token or the credentials. */
static int authenticate(fy_registry *r, const resp *rs, char *err, size_t errlen) {
  fy_auth_challenge c;
  char why[300];
  int rc = fy_auth_parse(rs->www_auth, strlen(rs->www_auth), &c, why, sizeof why);
  if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "%s: %s", r->name, rs->www_auth[0] ? why : "HTTP 401 without a challenge");
  if (c.scheme == FY_AUTH_BEARER) {
    char scope[600], *tok = malloc(TOKEN_MAX);
    int64_t exp;
    if (!tok) return FY_ENOMEM;
    fy_text_fmt(scope, sizeof scope, "repository:%s:%s", r->ref.repo, r->push ? "pull,push" : "pull");
    rc = fetch_token(r, &c, c.scope[0] && !r->push ? c.scope : scope, tok, TOKEN_MAX, &exp, err, errlen);
    if (rc == FY_OK) fy_text_fmt(r->authz, sizeof r->authz, "Authorization: Bearer %s", tok);
    memset(tok, 0, TOKEN_MAX);
    free(tok);
    return rc;
  }
  if (!r->creds[0])
    return fy_text_fail(err, errlen, FY_ECERT, "%s asks for credentials and none are configured for %s: skopeo login %s (or docker login), "
                        "or REGISTRY_AUTH_FILE", r->name, r->ref.host, r->ref.host);
  if (r->basic_sent)
    return fy_text_fail(err, errlen, FY_ECERT, "%s refused the credentials configured for %s (user '%.*s')", r->name, r->ref.host,
                        (int)(strchr(r->creds, ':') - r->creds), r->creds);
  char *b64 = fy_settings_b64(r->creds, strlen(r->creds));
  if (!b64) return FY_ENOMEM;
  fy_text_fmt(r->authz, sizeof r->authz, "Authorization: Basic %s", b64);
  free(b64);
  r->basic_sent = 1;
  return FY_OK;
}

static void reset_resp(resp *rs) {
  resp keep = *rs;
  free(rs->buf);
  memset(rs, 0, sizeof *rs);
  rs->to_mem = keep.to_mem;
  rs->max = keep.max;
  rs->w = keep.w;
  rs->w_store = keep.w_store;
  rs->w_digest = keep.w_digest;
  rs->w_size = keep.w_size;
  rs->w_from = keep.w_from;
}

/* An exchange with the authentication dance: on 401, authenticate and send it once more. With
 * --tls-verify=false a registry that does not speak TLS is asked again over plain HTTP. */
static int request(fy_registry *r, const char *method, const char *path, const char *const *hdrs, body *b, resp *rs, char *err,
                   size_t errlen) {
  char url[4200];
  int rc = FY_OK;
  for (int attempt = 0; attempt < 3; attempt++) {
    if (path[0] == '/') {
      if (fy_path_fmt(url, sizeof url, "%s://%s%s", r->scheme, r->host, path) != FY_OK)
        return fy_text_fail(err, errlen, FY_ETOOBIG, "URL too long");
    } else {
      fy_text_fmt(url, sizeof url, "%s", path);
    }
    reset_resp(rs);
    rc = exchange(r, method, url, hdrs, b, rs, err, errlen);
    if (rc == FY_ECONN && defaults.insecure && strcmp(r->scheme, "https") == 0 && path[0] == '/') {
      snprintf(r->scheme, sizeof r->scheme, "http");
      continue;
    }
    if (rc != FY_OK || rs->status != 401) return rc;
    if (attempt == 2) break;
    if ((rc = authenticate(r, rs, err, errlen)) != FY_OK) return rc;
  }
  return fy_text_fail(err, errlen, FY_ECERT, "%s: still HTTP 401 after authenticating", r->name);
}

static int fail_status(const fy_registry *r, const resp *rs, const char *what, char *err, size_t errlen) {
  char says[400];
  registry_says(rs, says, sizeof says);
  int rc = rs->status == 404 ? FY_ENOENT : rs->status == 401 || rs->status == 403 ? FY_ECERT : FY_EPEER;
  return fy_text_fail(err, errlen, rc, "%s: %s: %s", r->name, what, says);
}

int fy_registry_manifest_get(fy_registry *r, const char *reference, char **data, size_t *len, char *media_type, size_t mtlen,
                             fy_digest *digest, char *err, size_t errlen) {
  char path[1200];
  const char *hdrs[] = {ACCEPT_MANIFESTS, NULL};
  resp rs;
  memset(&rs, 0, sizeof rs);
  rs.to_mem = 1;
  rs.max = FY_OCI_JSON_MAX;
  *data = NULL;
  fy_text_fmt(path, sizeof path, "/v2/%s/manifests/%s", r->ref.repo, reference);
  int rc = request(r, "GET", path, hdrs, NULL, &rs, err, errlen);
  if (rc == FY_OK && rs.status != 200) rc = fail_status(r, &rs, reference, err, errlen);
  if (rc == FY_OK) {
    fy_digest want;
    fy_sha256_once(rs.buf ? rs.buf : "", rs.len, digest);
    if (fy_digest_parse(reference, &want) == FY_OK && !fy_digest_equal(&want, digest))
      rc = fy_text_fail(err, errlen, FY_EDIGEST, "%s: the manifest served for %s does not match that digest", r->name, reference);
  }
  if (rc == FY_OK) {
    fy_text_fmt(media_type, mtlen, "%s", rs.content_type);
    if (!rs.buf && !(rs.buf = calloc(1, 1))) rc = FY_ENOMEM;
  }
  if (rc == FY_OK) {
    *data = rs.buf;
    *len = rs.len;
  } else {
    free(rs.buf);
  }
  return rc;
}

int fy_registry_manifest_put(fy_registry *r, const char *reference, const char *data, size_t len, const char *media_type, char *err,
                             size_t errlen) {
  char path[1200], ct[200];
  fy_text_fmt(ct, sizeof ct, "Content-Type: %s", media_type);
  const char *hdrs[] = {ct, NULL};
  body b = {.mem = data, .len = len, .fd = -1};
  resp rs;
  memset(&rs, 0, sizeof rs);
  fy_text_fmt(path, sizeof path, "/v2/%s/manifests/%s", r->ref.repo, reference);
  int rc = request(r, "PUT", path, hdrs, &b, &rs, err, errlen);
  if (rc == FY_OK && rs.status != 201 && rs.status != 200) rc = fail_status(r, &rs, "storing the manifest", err, errlen);
  return rc;
}

int fy_registry_blob_head(fy_registry *r, const fy_digest *d, uint64_t *size, char *err, size_t errlen) {
  char path[1200], ds[FY_DIGEST_STR];
  resp rs;
  memset(&rs, 0, sizeof rs);
  fy_text_fmt(path, sizeof path, "/v2/%s/blobs/%s", r->ref.repo, fy_digest_format(d, ds));
  int rc = request(r, "HEAD", path, NULL, NULL, &rs, err, errlen);
  if (rc != FY_OK) return rc;
  if (rs.status == 404) return FY_ENOENT;
  if (rs.status != 200) return fail_status(r, &rs, ds, err, errlen);
  if (size) *size = rs.has_length ? rs.length : 0;
  return FY_OK;
}

int fy_registry_blob_get(fy_registry *r, const fy_digest *d, uint64_t size, const fy_store *into, uint64_t *fetched, char *err,
                         size_t errlen) {
  char path[1200], ds[FY_DIGEST_STR], range[64];
  fy_blob_writer w;
  if (fetched) *fetched = 0;
  if (fy_store_has(into, d, size)) return FY_OK;
  uint64_t off = fy_store_partial(into, d, size);
  int rc = fy_blob_writer_open(&w, into, d, size, off);
  if (rc != FY_OK) return fy_text_fail(err, errlen, rc, "caching %s: %s", fy_digest_format(d, ds), fy_strerror(rc));
  if (off == size && size > 0) {
    /* Every byte is there already (a run cut after the last one): check it, nothing to ask. */
    if ((rc = fy_blob_writer_finish(&w)) == FY_OK) {
      fy_blob_writer_close(&w);
      return FY_OK;
    }
    fy_blob_writer_close(&w); /* a bad partial is gone (EDIGEST removes it): start over */
    return fy_registry_blob_get(r, d, size, into, fetched, err, errlen);
  }
  fy_text_fmt(path, sizeof path, "/v2/%s/blobs/%s", r->ref.repo, fy_digest_format(d, ds));
  resp rs;
  memset(&rs, 0, sizeof rs);
  rs.w = &w;
  rs.w_store = into;
  rs.w_digest = *d;
  rs.w_size = size;
  rs.w_from = off;
  snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)off);
  const char *hdrs[] = {off ? range : NULL, NULL};
  rc = request(r, "GET", path, hdrs, NULL, &rs, err, errlen);
  if (fetched) *fetched = rs.received;
  if ((rc == FY_OK && rs.status == 416 && off > 0) || rc == FY_EPROTO) {
    /* The partial does not fit what the registry has: it goes, and the next run starts at 0. */
    fy_blob_writer_close(&w);
    unlink(w.partial);
    if (rc == FY_OK) return fy_registry_blob_get(r, d, size, into, fetched, err, errlen);
    return rc;
  }
  if (rc == FY_OK && rs.status != 200 && rs.status != 206) rc = fail_status(r, &rs, ds, err, errlen);
  if (rc == FY_OK) {
    rc = fy_blob_writer_finish(&w);
    if (rc == FY_EDIGEST)
      fy_text_fmt(err, errlen, "%s: blob %s does not match its digest (the registry's copy is corrupt or was tampered with)", r->name, ds);
    else if (rc != FY_OK)
      fy_text_fmt(err, errlen, "%s: blob %s: %s (%llu of %llu bytes)", r->name, ds, fy_strerror(rc), (unsigned long long)w.written,
                  (unsigned long long)size);
  }
  fy_blob_writer_close(&w);
  return rc;
}

int fy_registry_blob_put(fy_registry *r, const char *path, const fy_digest *d, uint64_t size, const char *mount_from, int *sent,
                         char *err, size_t errlen) {
  char url[1400], ds[FY_DIGEST_STR], loc[2400];
  uint64_t have = 0;
  int rc = fy_registry_blob_head(r, d, &have, err, errlen);
  if (sent) *sent = 0;
  if (rc == FY_OK) return FY_OK;
  if (rc != FY_ENOENT) return rc;
  err[0] = '\0';
  resp rs;
  memset(&rs, 0, sizeof rs);
  fy_digest_format(d, ds);
  if (mount_from && strcmp(mount_from, r->ref.repo) != 0)
    fy_text_fmt(url, sizeof url, "/v2/%s/blobs/uploads/?mount=%s&from=%s", r->ref.repo, ds, mount_from);
  else
    fy_text_fmt(url, sizeof url, "/v2/%s/blobs/uploads/", r->ref.repo);
  if ((rc = request(r, "POST", url, NULL, NULL, &rs, err, errlen)) != FY_OK) return rc;
  if (rs.status == 201) {
    if (sent) *sent = 1;
    return FY_OK;
  }
  if (rs.status != 202 || !rs.location[0]) return fail_status(r, &rs, "starting an upload", err, errlen);
  if (!path) return FY_ENOENT; /* a mount only, and the registry did not mount it */
  fy_text_fmt(loc, sizeof loc, "%s", rs.location); /* absolute, or a path request() puts on the registry */
  char put[2600];
  fy_text_fmt(put, sizeof put, "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", ds);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fy_text_fail(err, errlen, FY_EIO, "%s: %s", path, strerror(errno));
  body b = {.fd = fd, .size = size};
  const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
  rc = request(r, "PUT", put, hdrs, &b, &rs, err, errlen);
  close(fd);
  if (rc == FY_OK && rs.status != 201) rc = fail_status(r, &rs, "uploading a blob", err, errlen);
  if (rc == FY_OK && sent) *sent = 2;
  return rc;
}

int fy_registry_pull_token(fy_registry *r, char *token, size_t len, int64_t *expires_in, char *err, size_t errlen) {
  /* The challenge of an anonymous /v2/ says whether tokens are issued, and where. */
  resp rs;
  memset(&rs, 0, sizeof rs);
  char *saved = malloc(sizeof r->authz), url[4200];
  if (!saved) return FY_ENOMEM;
  memcpy(saved, r->authz, sizeof r->authz);
  r->authz[0] = '\0';
  fy_text_fmt(url, sizeof url, "%s://%s/v2/", r->scheme, r->host);
  int rc = exchange(r, "GET", url, NULL, NULL, &rs, err, errlen);
  memcpy(r->authz, saved, sizeof r->authz);
  memset(saved, 0, sizeof r->authz);
  free(saved);
  if (rc != FY_OK) return rc;
  fy_auth_challenge c;
  char why[300];
  if (rs.status != 401 || fy_auth_parse(rs.www_auth, strlen(rs.www_auth), &c, why, sizeof why) != FY_OK || c.scheme != FY_AUTH_BEARER)
    return FY_ENOENT;
  char scope[600];
  fy_text_fmt(scope, sizeof scope, "repository:%s:pull", r->ref.repo);
  return fetch_token(r, &c, scope, token, len, expires_in, err, errlen);
}
