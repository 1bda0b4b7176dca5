/* Builds without libcurl (the static cross-built pushers): every registry operation is refused
 * with the reason; layouts and archives work as in any build. */
#include "ferry/text.h"
#include "registry.h"

#define NO_CURL(err, errlen)                                                                              \
  fy_text_fail(err, errlen, FY_EUNSUPPORTED, "this ferry was built without libcurl and cannot reach "     \
               "registries; use the x86-64 host build, or copy the image first: skopeo copy --all docker://… oci:DIR:TAG")

void fy_registry_set_defaults(const fy_registry_opts *o) { (void)o; }
int fy_registry_open(fy_registry **out, const fy_docker_ref *ref, int push, char *err, size_t errlen) {
  (void)ref, (void)push;
  *out = NULL;
  return NO_CURL(err, errlen);
}
void fy_registry_free(fy_registry *r) { (void)r; }
const char *fy_registry_name(const fy_registry *r) { (void)r; return ""; }
int fy_registry_manifest_get(fy_registry *r, const char *reference, char **data, size_t *len, char *media_type, size_t mtlen,
                             fy_digest *digest, char *err, size_t errlen) {
  (void)r, (void)reference, (void)len, (void)media_type, (void)mtlen, (void)digest;
  *data = NULL;
  return NO_CURL(err, errlen);
}
int fy_registry_manifest_put(fy_registry *r, const char *reference, const char *data, size_t len, const char *media_type, char *err,
                             size_t errlen) {
  (void)r, (void)reference, (void)data, (void)len, (void)media_type;
  return NO_CURL(err, errlen);
}
int fy_registry_blob_head(fy_registry *r, const fy_digest *d, uint64_t *size, char *err, size_t errlen) {
  (void)r, (void)d, (void)size;
  return NO_CURL(err, errlen);
}
int fy_registry_blob_get(fy_registry *r, const fy_digest *d, uint64_t size, const fy_store *into, uint64_t *fetched, char *err,
                         size_t errlen) {
  (void)r, (void)d, (void)size, (void)into, (void)fetched;
  return NO_CURL(err, errlen);
}
int fy_registry_blob_put(fy_registry *r, const char *path, const fy_digest *d, uint64_t size, const char *mount_from, int *sent,
                         char *err, size_t errlen) {
  (void)r, (void)path, (void)d, (void)size, (void)mount_from, (void)sent;
  return NO_CURL(err, errlen);
}
int fy_registry_pull_token(fy_registry *r, char *token, size_t len, int64_t *expires_in, char *err, size_t errlen) {
  (void)r, (void)token, (void)len, (void)expires_in;
  return NO_CURL(err, errlen);
}
int fy_registry_credentials(const char *host, char *out, size_t len) {
  (void)host, (void)out, (void)len;
  return FY_ENOENT;
}
int fy_registry_credentials_in(const char *file, const char *host, char *out, size_t len) {
  (void)file, (void)host, (void)out, (void)len;
  return FY_ENOENT;
}
