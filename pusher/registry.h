/* An OCI registry, as the distribution API v2 (CNCF distribution, Harbor, ECR, GHCR, Zot) speaks
 * it, for the pusher: manifests and blobs by digest, HEAD before GET, Range to resume a blob,
 * every byte hashed as it streams and checked against its digest; uploads that send only what
 * the registry lacks (HEAD, cross-repository mount, monolithic PUT). Authentication: a 401's
 * WWW-Authenticate challenge (httpauth.h) is answered with a Bearer token from its realm (asked
 * with the credentials when there are any), or with Basic credentials; credentials come from
 * the files skopeo and docker read, in that order: $REGISTRY_AUTH_FILE,
 * $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json.
 *
 * libcurl carries the HTTP here: the laptop has Debian's libcurl with the system's trust store,
 * proxies and HTTP/2, and nothing of it is on a device (the agent's own client is in protocol/
 * and net/). Blocking; one fy_registry per repository and thread. */
#ifndef FERRY_PUSHER_REGISTRY_H
#define FERRY_PUSHER_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/digest.h"
#include "ferry/error.h"
#include "ferry/imageref.h"
#include "ferry/store.h"

typedef struct fy_registry_opts {
  const char *ca_file; /* --registry-ca: trusted besides the system's CAs */
  int insecure;        /* --tls-verify=false: certificates unchecked; plain HTTP if TLS fails */
} fy_registry_opts;

/* The options the verb parsed (--registry-ca, --tls-verify), for every registry it opens. */
void fy_registry_set_defaults(const fy_registry_opts *o);

typedef struct fy_registry fy_registry;

/* A session with ref's registry and repository; push asks for push rights when a token is
 * needed. Opening does no I/O. FY_ENOMEM. */
int fy_registry_open(fy_registry **out, const fy_docker_ref *ref, int push, char *err, size_t errlen) FY_WUR;
void fy_registry_free(fy_registry *r);
/* "HOST/REPO" for messages. */
const char *fy_registry_name(const fy_registry *r);

/* A manifest or index by tag or digest (reference), at most FY_OCI_JSON_MAX bytes. Its media
 * type and digest; by digest, the bytes must hash to it (FY_EDIGEST). FY_ENOENT on 404. */
int fy_registry_manifest_get(fy_registry *r, const char *reference, char **data, size_t *len, char *media_type,
                             size_t mtlen, fy_digest *digest, char *err, size_t errlen) FY_WUR;
/* PUT a manifest under reference (a tag or its digest). */
int fy_registry_manifest_put(fy_registry *r, const char *reference, const char *data, size_t len, const char *media_type,
                             char *err, size_t errlen) FY_WUR;
/* HEAD: FY_OK (*size set, may be NULL) when the registry has the blob, FY_ENOENT when not. */
int fy_registry_blob_head(fy_registry *r, const fy_digest *d, uint64_t *size, char *err, size_t errlen) FY_WUR;
/* The blob into the store: resumed from its partial with Range, hashed while it streams, renamed
 * when complete and matching (FY_EDIGEST otherwise, and the partial is dropped). A no-op when the
 * store has it. *fetched (may be NULL) counts the bytes that crossed the network. */
int fy_registry_blob_get(fy_registry *r, const fy_digest *d, uint64_t size, const fy_store *into, uint64_t *fetched,
                         char *err, size_t errlen) FY_WUR;
/* Uploads the file at path as blob d unless the registry has it: HEAD, then a cross-repository
 * mount from mount_from (a repository of the same registry, may be NULL), then a monolithic
 * upload. *sent: 0 had it, 1 mounted, 2 uploaded (may be NULL). With path NULL only HEAD and the
 * mount are tried: FY_ENOENT when they did not do it. */
int fy_registry_blob_put(fy_registry *r, const char *path, const fy_digest *d, uint64_t size, const char *mount_from,
                         int *sent, char *err, size_t errlen) FY_WUR;

/* A pull-only token for the repository, when the registry issues tokens (its challenge is
 * Bearer): *token and its lifetime in seconds (0 when the registry does not say). FY_ENOENT when
 * the registry takes Basic credentials or none. */
int fy_registry_pull_token(fy_registry *r, char *token, size_t len, int64_t *expires_in, char *err, size_t errlen) FY_WUR;

/* Credentials for host from the auth files above: "user:password" into out. FY_ENOENT when none
 * names the host. */
int fy_registry_credentials(const char *host, char *out, size_t len) FY_WUR;
/* The same from one auth file (fleet.yaml's registry_auth, --pull-auth). */
int fy_registry_credentials_in(const char *file, const char *host, char *out, size_t len) FY_WUR;

#endif
