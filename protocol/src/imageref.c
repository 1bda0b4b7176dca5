/* Image names as skopeo spells them; see imageref.h. */
#include <stdio.h>
#include <string.h>

#include "ferry/imageref.h"
#include "ferry/text.h"

#define FAIL_IF(cond, rc, ...)                                   \
  do {                                                           \
    if (cond) return fy_text_fail(err, errlen, rc, __VA_ARGS__); \
  } while (0)

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* distribution's path-component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* */
static int component_ok(const char *s, size_t n) {
  size_t i = 0;
  if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1])) return 0;
  while (i < n) {
    if (is_lower_alnum(s[i])) { i++; continue; }
    size_t j = i;
    while (j < n && (s[j] == '.' || s[j] == '_' || s[j] == '-')) j++;
    size_t run = j - i;
    if (run == 0) return 0; /* neither a letter, a digit nor a separator */
    int dashes = 1;
    for (size_t k = i; k < j; k++) dashes &= s[k] == '-';
    if (!(dashes || (run == 1) || (run == 2 && s[i] == '_' && s[i + 1] == '_'))) return 0;
    i = j;
  }
  return 1;
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} */
static int tag_ok(const char *t) {
  size_t n = strlen(t);
  if (n == 0 || n >= FY_REF_TAG_MAX || t[0] == '.' || t[0] == '-') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = t[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

static int host_ok(const char *h, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = h[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' ||
          c == '[' || c == ']'))
      return 0;
  }
  return 1;
}

int fy_docker_ref_parse(const char *s, fy_docker_ref *out, char *err, size_t errlen) {
  char name[FY_REF_HOST_MAX + FY_REF_REPO_MAX + 2];
  memset(out, 0, sizeof *out);
  FAIL_IF(!s || !*s, FY_EINVAL, "an empty image reference");
  FAIL_IF(strlen(s) >= sizeof name + FY_DIGEST_STR, FY_EINVAL, "image reference too long");
  const char *at = strchr(s, '@');
  size_t nlen = at ? (size_t)(at - s) : strlen(s);
  if (at) {
    fy_digest d;
    FAIL_IF(fy_digest_parse(at + 1, &d) != FY_OK, FY_EINVAL,
            "'%s': the digest after '@' must be sha256: and 64 lower-case hex digits", s);
    snprintf(out->digest, sizeof out->digest, "%s", at + 1);
  }
  FAIL_IF(nlen == 0 || nlen >= sizeof name, FY_EINVAL, "'%s': no repository name, or one too long", s);
  memcpy(name, s, nlen);
  name[nlen] = '\0';
  /* A tag follows the last ':' only when no '/' comes after it (a ':' before a '/' is a port). */
  char *colon = strrchr(name, ':'), *slash = strrchr(name, '/');
  if (colon && (!slash || colon > slash)) {
    *colon = '\0';
    FAIL_IF(!tag_ok(colon + 1), FY_EINVAL, "'%s': '%s' is not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]*, at most 127)", s,
            colon + 1);
    snprintf(out->tag, sizeof out->tag, "%s", colon + 1);
  }
  const char *repo = name;
  char *first = strchr(name, '/');
  if (first) {
    size_t hl = (size_t)(first - name);
    int is_host = memchr(name, '.', hl) || memchr(name, ':', hl) || (hl == 9 && strncmp(name, "localhost", 9) == 0);
    if (is_host) {
      FAIL_IF(!host_ok(name, hl) || hl >= sizeof out->host, FY_EINVAL, "'%s': '%.*s' is not a registry host", s, (int)hl, name);
      memcpy(out->host, name, hl);
      out->host[hl] = '\0';
      repo = first + 1;
    }
  }
  if (!out->host[0]) snprintf(out->host, sizeof out->host, "%s", FY_DOCKER_HUB);
  FAIL_IF(!*repo, FY_EINVAL, "'%s': no repository after the registry host", s);
  if (strcmp(out->host, FY_DOCKER_HUB) == 0 && !strchr(repo, '/')) {
    FAIL_IF(fy_path_fmt(out->repo, sizeof out->repo, "library/%s", repo) != FY_OK, FY_EINVAL, "'%s': repository too long", s);
  } else {
    FAIL_IF(fy_path_fmt(out->repo, sizeof out->repo, "%s", repo) != FY_OK, FY_EINVAL, "'%s': repository too long", s);
  }
  for (const char *p = out->repo; *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    FAIL_IF(!component_ok(p, n), FY_EINVAL,
            "'%s': repository '%s' must be lower-case letters and digits, separated by '.', '_', '__', '-' or '/'", s, out->repo);
    p += n + (e ? 1 : 0);
    FAIL_IF(e && !*p, FY_EINVAL, "'%s': the repository ends in '/'", s);
  }
  if (!out->tag[0] && !out->digest[0]) snprintf(out->tag, sizeof out->tag, "latest");
  return FY_OK;
}

const char *fy_docker_ref_format(const fy_docker_ref *r, char *buf, size_t len) {
  if (r->digest[0]) fy_text_fmt(buf, len, "%s/%s@%s", r->host, r->repo, r->digest);
  else fy_text_fmt(buf, len, "%s/%s:%s", r->host, r->repo, r->tag);
  return buf;
}

/* skopeo's transports ferry does not read, each with the copy that brings its image into one
 * ferry does. */
static const char *const other_transports[] = {"dir:", "containers-storage:", "docker-daemon:", "ostree:", "sif:", "tarball:"};

static int split_path_ref(const char *rest, fy_image_name *out, const char *what, char *err, size_t errlen) {
  /* skopeo splits at the first ':' (the path cannot hold one, the REF can). */
  const char *colon = strchr(rest, ':');
  size_t plen = colon ? (size_t)(colon - rest) : strlen(rest);
  FAIL_IF(plen == 0, FY_EINVAL, "%s: no path given", what);
  FAIL_IF(plen >= sizeof out->path, FY_EINVAL, "%s: path too long", what);
  memcpy(out->path, rest, plen);
  out->path[plen] = '\0';
  if (colon) {
    FAIL_IF(!colon[1], FY_EINVAL, "%s%s: an empty REF after ':'", what, rest);
    FAIL_IF(strlen(colon + 1) >= sizeof out->ref, FY_EINVAL, "%s: REF longer than %d bytes", what, FY_REF_MAX - 1);
    snprintf(out->ref, sizeof out->ref, "%s", colon + 1);
  }
  return FY_OK;
}

int fy_image_name_parse(const char *spec, fy_image_name *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  FAIL_IF(!spec || !*spec, FY_EINVAL, "no image given");
  if (starts(spec, "docker://")) {
    out->transport = FY_IMG_DOCKER;
    return fy_docker_ref_parse(spec + 9, &out->docker, err, errlen);
  }
  if (starts(spec, "oci-archive:")) {
    out->transport = FY_IMG_OCI_ARCHIVE;
    return split_path_ref(spec + 12, out, "oci-archive:", err, errlen);
  }
  if (starts(spec, "oci:")) {
    out->transport = FY_IMG_OCI;
    return split_path_ref(spec + 4, out, "oci:", err, errlen);
  }
  if (starts(spec, "docker-archive:")) {
    out->transport = FY_IMG_DOCKER_ARCHIVE;
    const char *rest = spec + 15;
    FAIL_IF(!*rest, FY_EINVAL, "docker-archive: no file given");
    /* skopeo allows docker-archive:FILE:REF to pick one of several images; ferry reads the one
     * image docker save and skopeo write. */
    FAIL_IF(strchr(rest, ':'), FY_EUNSUPPORTED,
            "docker-archive:%s: choosing an image inside the archive is not supported; use a file holding one image", rest);
    FAIL_IF(strlen(rest) >= sizeof out->path, FY_EINVAL, "docker-archive: path too long");
    snprintf(out->path, sizeof out->path, "%s", rest);
    return FY_OK;
  }
  for (size_t i = 0; i < sizeof other_transports / sizeof *other_transports; i++)
    FAIL_IF(starts(spec, other_transports[i]), FY_EUNSUPPORTED,
            "%s images are not read by ferry; copy it into a layout first: skopeo copy --all %s oci:DIR:TAG", other_transports[i],
            spec);
  FAIL_IF(strlen(spec) >= sizeof out->path, FY_EINVAL, "image path too long");
  out->transport = FY_IMG_LAYOUT;
  snprintf(out->path, sizeof out->path, "%s", spec);
  return FY_OK;
}

int fy_ref_repository_name(const char *ref, char *out, size_t len) {
  char tmp[FY_REF_MAX];
  if (len) out[0] = '\0';
  if (!ref || (!strchr(ref, '/') && !strchr(ref, ':')) || strlen(ref) >= sizeof tmp) return 0;
  snprintf(tmp, sizeof tmp, "%s", ref);
  char *at = strchr(tmp, '@');
  if (at) *at = '\0';
  char *colon = strrchr(tmp, ':'), *slash = strrchr(tmp, '/');
  if (colon && (!slash || colon > slash)) *colon = '\0';
  slash = strrchr(tmp, '/');
  const char *last = slash ? slash + 1 : tmp;
  if (!*last || !len) return 0;
  fy_text_fmt(out, len, "%s", last);
  return 1;
}

void fy_app_name_sanitize(const char *in, char *out, size_t len) {
  size_t o = 0;
  if (len == 0) return;
  for (size_t i = 0; in[i] && o + 1 < len && o < 63; i++) {
    char c = in[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) c = '-';
    if (o == 0 && (c == '-' || c == '.' || c == '_')) continue;
    out[o++] = c;
  }
  out[o] = '\0';
}

void fy_app_name_hint(const char *ref, const char *path, int is_file, char *out, size_t len) {
  if (fy_ref_repository_name(ref, out, len)) return;
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  size_t b = n;
  while (b > 0 && path[b - 1] != '/') b--;
  size_t m = n - b;
  if (is_file) { /* "site.tar" -> "site"; ".hidden" stays */
    const char *dot = memchr(path + b, '.', m);
    if (dot && dot != path + b) m = (size_t)(dot - (path + b));
  }
  snprintf(out, len, "%.*s", (int)m, path + b);
}
