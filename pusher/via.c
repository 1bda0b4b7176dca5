/* See via.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/text.h"
#include "ferry/wire.h"
#include "registry.h"
#include "via.h"

int fy_via_prepare(const char *via, const char *auth_file, int fallback, const fy_variant *vs, size_t nv, fy_plan_source *src,
                   char *notes, size_t nlen, char *err, size_t errlen) {
  fy_image_name in;
  fy_registry *r = NULL;
  char why[600], ds[FY_DIGEST_STR], p[FY_PLATFORM_STR], dest[700];
  int rc;
  memset(src, 0, sizeof *src);
  notes[0] = '\0';
  if (fy_image_name_parse(via, &in, why, sizeof why) != FY_OK || in.transport != FY_IMG_DOCKER)
    return fy_text_fail(err, errlen, FY_EINVAL, "--via %s: expected docker://HOST[:PORT]/REPO", via);
  fy_text_fmt(dest, sizeof dest, "%s/%s", in.docker.host, in.docker.repo);
  /* The wire and the agents carry zstd only: a gzip image in the registry is refused here. */
  for (size_t i = 0; i < nv; i++)
    for (size_t k = 0; k < vs[i].m.nlayers; k++)
      if (vs[i].m.layers[k].kind != FY_KIND_LAYER_ZSTD)
        return fy_text_fail(err, errlen, FY_EUNSUPPORTED,
                            "the %s variant has %s layers, and devices pull zstd only: publish it with zstd layers first "
                            "(ferry publish IMAGE docker://%s:TAG, or skopeo copy --all --dest-compress-format zstd)",
                            fy_platform_format(&vs[i].cfg.platform, p, sizeof p),
                            vs[i].m.layers[k].kind == FY_KIND_LAYER_GZIP ? "gzip" : "uncompressed", dest);
  if ((rc = fy_registry_open(&r, &in.docker, 0, err, errlen)) != FY_OK) return rc;
  for (size_t i = 0; i < nv && rc == FY_OK; i++)
    for (size_t k = 0; k < vs[i].m.nlayers && rc == FY_OK; k++) {
      rc = fy_registry_blob_head(r, &vs[i].m.layers[k].digest, NULL, err, errlen);
      if (rc == FY_ENOENT)
        rc = fy_text_fail(err, errlen, FY_ENOENT, "%s lacks layer %s of the %s variant: ferry publish IMAGE docker://%s:TAG first", dest,
                          fy_digest_format(&vs[i].m.layers[k].digest, ds), fy_platform_format(&vs[i].cfg.platform, p, sizeof p), dest);
    }
  if (rc != FY_OK) goto out;
  /* The pull credential: a token the registry scopes to pull (and expires), else a read-only
   * credential, else ours. */
  char *tok = malloc(FY_SOURCE_AUTH_MAX);
  int64_t ttl = 0;
  if (!tok) { rc = FY_ENOMEM; goto out; }
  rc = fy_registry_pull_token(r, tok, FY_SOURCE_AUTH_MAX - 16, &ttl, err, errlen);
  if (rc == FY_OK) {
    fy_text_fmt(src->authorization, sizeof src->authorization, "Bearer %s", tok);
    fy_text_fmt(notes, nlen, "devices pull with a pull-only token%s", ttl ? " that expires" : "");
  } else if (rc == FY_ENOENT) {
    char cred[1024];
    err[0] = '\0';
    rc = FY_OK;
    const char *kind = NULL;
    if (auth_file && fy_registry_credentials_in(auth_file, in.docker.host, cred, sizeof cred) == FY_OK) kind = "the read-only credential of";
    else if (auth_file) {
      rc = fy_text_fail(err, errlen, FY_ENOENT, "%s names no credential for %s", auth_file, in.docker.host);
    } else if (fy_registry_credentials(in.docker.host, cred, sizeof cred) == FY_OK) {
      kind = "the pusher's own credential (set registry_auth: in the fleet file, or --pull-auth, to a read-only one)";
    }
    if (kind) {
      char *b64 = fy_settings_b64(cred, strlen(cred));
      if (!b64) rc = FY_ENOMEM;
      else fy_text_fmt(src->authorization, sizeof src->authorization, "Basic %s", b64);
      free(b64);
      memset(cred, 0, sizeof cred);
      fy_text_fmt(notes, nlen, "devices pull with %s%s%s", kind, auth_file && strstr(kind, "read-only") ? " " : "",
                  auth_file && strstr(kind, "read-only") ? auth_file : "");
    } else if (rc == FY_OK) {
      fy_text_fmt(notes, nlen, "devices pull anonymously (no credential for %s)", in.docker.host);
    }
  }
  memset(tok, 0, FY_SOURCE_AUTH_MAX);
  free(tok);
  if (rc != FY_OK) goto out;
  fy_text_fmt(src->registry, sizeof src->registry, "%s", strcmp(in.docker.host, FY_DOCKER_HUB) == 0 ? "registry-1.docker.io" : in.docker.host);
  fy_text_fmt(src->repository, sizeof src->repository, "%s", in.docker.repo);
  src->fallback = fallback;
out:
  fy_registry_free(r);
  return rc;
}
