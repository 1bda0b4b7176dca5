/* Image names as skopeo spells them (imageref.h): each transport, REFs holding ':', Docker's
 * defaults, the app-name rule (a repository, never a tag) and the names that must be refused;
 * and a registry's WWW-Authenticate challenges (httpauth.h), in every shape registries send. */
#include "check.h"
#include "ferry/httpauth.h"
#include "ferry/imageref.h"

static fy_auth_challenge auth_ok(const char *h) {
  fy_auth_challenge c;
  char err[300] = "";
  int rc = fy_auth_parse(h, strlen(h), &c, err, sizeof err);
  if (rc != FY_OK) fprintf(stderr, "'%s': %s\n", h, err);
  CHECK_INT(rc, FY_OK);
  return c;
}

static void auth_bad(const char *h, int want, const char *needle) {
  fy_auth_challenge c;
  char err[300] = "";
  CHECK_INT(fy_auth_parse(h, strlen(h), &c, err, sizeof err), want);
  if (!strstr(err, needle)) fprintf(stderr, "'%s': error '%s' lacks '%s'\n", h, err, needle);
  CHECK(strstr(err, needle) != NULL);
}

static void auth_tests(void) {
  fy_auth_challenge c = auth_ok("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/alpine:pull\"");
  CHECK_INT(c.scheme, FY_AUTH_BEARER);
  CHECK_STR(c.realm, "https://auth.docker.io/token");
  CHECK_STR(c.service, "registry.docker.io");
  CHECK_STR(c.scope, "repository:library/alpine:pull");
  c = auth_ok("Basic realm=\"Registry Realm\"");
  CHECK_INT(c.scheme, FY_AUTH_BASIC);
  CHECK_STR(c.realm, "Registry Realm");
  c = auth_ok("basic");
  CHECK_INT(c.scheme, FY_AUTH_BASIC);
  /* Bearer wins over Basic wherever it is; unknown schemes are stepped over */
  c = auth_ok("Basic realm=x, Negotiate, Bearer realm=\"https://a/t\" , service = s, scope=\"a b\"");
  CHECK_INT(c.scheme, FY_AUTH_BEARER);
  CHECK_STR(c.realm, "https://a/t");
  CHECK_STR(c.service, "s");
  CHECK_STR(c.scope, "a b");
  c = auth_ok("Bearer realm=\"https://a/\\\"q\\\"\",error=\"insufficient_scope\"");
  CHECK_STR(c.realm, "https://a/\"q\"");
  CHECK_STR(c.error, "insufficient_scope");
  auth_bad("", FY_ESYNTAX, "no challenge");
  auth_bad("Digest realm=\"x\", nonce=\"y\"", FY_EUNSUPPORTED, "Digest");
  auth_bad("Bearer service=s", FY_ESYNTAX, "without a realm");
  auth_bad("Bearer realm=\"https://a", FY_ESYNTAX, "malformed");
  auth_bad("Bearer realm=", FY_ESYNTAX, "malformed");
  auth_bad("Bearer realm=\"a\" junk", FY_ESYNTAX, "malformed");
  auth_bad("Bearer realm=\"a\rb\"", FY_ESYNTAX, "malformed");
  auth_bad("=x", FY_ESYNTAX, "auth scheme");
  char big[FY_AUTH_HEADER_MAX + 10];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  auth_bad(big, FY_ETOOBIG, "over");
  char longval[1200 + 40];
  snprintf(longval, sizeof longval, "Bearer realm=\"%01100d\"", 0);
  auth_bad(longval, FY_ETOOBIG, "too long");
}

static fy_image_name parse_ok(const char *s) {
  fy_image_name n;
  char err[300] = "";
  int rc = fy_image_name_parse(s, &n, err, sizeof err);
  if (rc != FY_OK) fprintf(stderr, "%s: %s\n", s, err);
  CHECK_INT(rc, FY_OK);
  return n;
}

static void parse_bad(const char *s, int want, const char *needle) {
  fy_image_name n;
  char err[300] = "";
  CHECK_INT(fy_image_name_parse(s, &n, err, sizeof err), want);
  if (!strstr(err, needle)) fprintf(stderr, "'%s': error '%s' lacks '%s'\n", s, err, needle);
  CHECK(strstr(err, needle) != NULL);
}

static void docker(const char *s, const char *host, const char *repo, const char *tag, const char *digest) {
  fy_image_name n = parse_ok(s);
  CHECK_INT(n.transport, FY_IMG_DOCKER);
  CHECK_STR(n.docker.host, host);
  CHECK_STR(n.docker.repo, repo);
  CHECK_STR(n.docker.tag, tag);
  CHECK_STR(n.docker.digest, digest);
}

static void app(const char *ref, int names, const char *want) {
  char out[64];
  CHECK_INT(fy_ref_repository_name(ref, out, sizeof out), names);
  CHECK_STR(out, want);
}

int main(void) {
  fy_image_name n = parse_ok("./image");
  CHECK_INT(n.transport, FY_IMG_LAYOUT);
  CHECK_STR(n.path, "./image");
  CHECK_STR(n.ref, "");
  n = parse_ok("./image:1.0.0"); /* the pusher splits a bare path where a directory ends */
  CHECK_INT(n.transport, FY_IMG_LAYOUT);
  CHECK_STR(n.path, "./image:1.0.0");

  n = parse_ok("oci:/tmp/lay:example.com/probe:1.0");
  CHECK_INT(n.transport, FY_IMG_OCI);
  CHECK_STR(n.path, "/tmp/lay");
  CHECK_STR(n.ref, "example.com/probe:1.0");
  n = parse_ok("oci:lay");
  CHECK_STR(n.path, "lay");
  CHECK_STR(n.ref, "");
  n = parse_ok("oci-archive:site.tar:v2");
  CHECK_INT(n.transport, FY_IMG_OCI_ARCHIVE);
  CHECK_STR(n.path, "site.tar");
  CHECK_STR(n.ref, "v2");
  n = parse_ok("docker-archive:/x/hello.tar");
  CHECK_INT(n.transport, FY_IMG_DOCKER_ARCHIVE);
  CHECK_STR(n.path, "/x/hello.tar");

  docker("docker://registry.example.com/team/app:1.4", "registry.example.com", "team/app", "1.4", "");
  docker("docker://127.0.0.1:5000/x:1", "127.0.0.1:5000", "x", "1", "");
  docker("docker://localhost/a/b/c", "localhost", "a/b/c", "latest", "");
  docker("docker://alpine", "docker.io", "library/alpine", "latest", "");
  docker("docker://user/app:v1", "docker.io", "user/app", "v1", "");
  docker("docker://r.io:443/a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "r.io:443", "a", "",
         "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  docker("docker://r.io/my_app__x-y.z:1", "r.io", "my_app__x-y.z", "1", "");

  parse_bad("", FY_EINVAL, "no image");
  parse_bad("oci:", FY_EINVAL, "no path");
  parse_bad("oci:lay:", FY_EINVAL, "empty REF");
  parse_bad("oci-archive::x", FY_EINVAL, "no path");
  parse_bad("docker-archive:", FY_EINVAL, "no file");
  parse_bad("docker-archive:a.tar:repo:1", FY_EUNSUPPORTED, "choosing an image");
  parse_bad("docker://", FY_EINVAL, "empty");
  parse_bad("docker://r.io/", FY_EINVAL, "no repository");
  parse_bad("docker://r.io/App:1", FY_EINVAL, "lower-case");
  parse_bad("docker://r.io/a//b", FY_EINVAL, "lower-case");
  parse_bad("docker://r.io/a/:1", FY_EINVAL, "ends in '/'");
  parse_bad("docker://r.io/a:-bad", FY_EINVAL, "not a valid tag");
  parse_bad("docker://r.io/a@sha256:abc", FY_EINVAL, "64 lower-case hex");
  parse_bad("docker://r.io/a@md5:0123", FY_EINVAL, "sha256");
  parse_bad("docker://r.io/a---b..c", FY_EINVAL, "lower-case");
  parse_bad("docker://registry.example.com/myApp:1", FY_EINVAL, "lower-case"); /* once an endless loop */
  parse_bad("docker://localhost:5000/team/my+app", FY_EINVAL, "lower-case");
  parse_bad("docker://h.io/a:b:c", FY_EINVAL, "lower-case");
  parse_bad("docker://h io/a", FY_EINVAL, "lower-case");
  parse_bad("containers-storage:localhost/x:1", FY_EUNSUPPORTED, "skopeo copy --all containers-storage:");
  parse_bad("docker-daemon:x:1", FY_EUNSUPPORTED, "oci:DIR:TAG");
  char big[5000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  parse_bad(big, FY_EINVAL, "too long");
  memcpy(big, "oci:", 4);
  parse_bad(big, FY_EINVAL, "too long");
  memcpy(big, "docker://", 9);
  parse_bad(big, FY_EINVAL, "too long");

  char buf[600];
  fy_image_name d = parse_ok("docker://r.io:5000/team/app");
  CHECK_STR(fy_docker_ref_format(&d.docker, buf, sizeof buf), "r.io:5000/team/app:latest");

  /* The app name: a repository's last part, never a tag. */
  app("example.com/probe:1.0", 1, "probe");
  app("probe:1.0", 1, "probe");
  app("team/probe", 1, "probe");
  app("localhost:5000/a/b:latest", 1, "b");
  app("r.io/x@sha256:0123", 1, "x");
  app("1.0.0", 0, "");
  app("latest", 0, "");
  app("", 0, "");
  app(NULL, 0, "");
  auth_tests();
  return check_done("test_imageref");
}
