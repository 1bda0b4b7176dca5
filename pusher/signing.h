/* Release signatures that travel with the image (sign.h has the claim): the signed descriptor is
 * the image the name selects (REF's entry in index.json, or the layout's one image, or the
 * registry's tag). The signature is an OCI artifact tied to that digest the way cosign ties
 * its own: a manifest tagged sha256-<hex>.sig in the same layout or repository, with
 * artifactType application/vnd.dev.ferry.signature.v1+json, one layer holding the claim (the
 * signature and the key id in its annotations), an empty config, and OCI 1.1's `subject` naming
 * the signed image, so a registry's referrers API lists it. skopeo copy of both tags, ferry
 * publish and ferry bundle keep it. Layouts signed by earlier versions carry annotations on the
 * index.json entry instead; they are still read. */
#ifndef FERRY_PUSHER_SIGNING_H
#define FERRY_PUSHER_SIGNING_H

#include <jansson.h>

#include "ferry/sign.h"
#include "layout.h"

#define FY_MT_SIGNATURE "application/vnd.dev.ferry.signature.v1+json"
#define FY_MT_EMPTY "application/vnd.oci.empty.v1+json"

typedef struct fy_layout_sig {
  int present;                       /* the entry carries a signature */
  fy_digest digest;                  /* the signed entry's digest */
  char ref[256];                     /* its ref name, "" if none */
  char payload[FY_CLAIM_MAX + 1];
  char signature[FY_SIG_B64_MAX + 1];
  char key[FY_DIGEST_STR];
  fy_claim claim;                    /* parsed payload (not verified: the agent does that) */
} fy_layout_sig;

/* cosign's tag for the signature of d: "sha256-<hex>.sig". */
void fy_layout_sig_tag(const fy_digest *d, char *out, size_t len);
/* The signature artifact's manifest for signed_digest, in the layout, archive or registry l
 * reads (fetched into the cache for a registry). FY_ENOENT when there is none. */
int fy_layout_sig_manifest(const fy_layout *l, const fy_digest *signed_digest, fy_descriptor *out, char *err,
                           size_t errlen) FY_WUR;

/* Reads the signature of the image l names (present = 0 when unsigned). FY_ENOENT when l names
 * no single image. */
int fy_layout_signature(const fy_layout *l, fy_layout_sig *out, char *err, size_t errlen) FY_WUR;

/* Signs the image l names (a layout only): claim {app, version, expires} plus its digest, written
 * as the artifact above into the layout's blobs and index.json (atomically), replacing an
 * earlier signature of the same image. Refuses variants with gzip layers (the wire carries a
 * recompressed manifest, which would not be what was signed). */
int fy_layout_sign(const fy_layout *l, const char *app, uint64_t version, int64_t expires, fy_sign_key *key,
                   fy_layout_sig *out, char *err, size_t errlen) FY_WUR;

/* The raw indexes from the signed digest down to the one that lists manifest (a JSON array of
 * strings; empty when the signed digest is the manifest's). */
int fy_layout_sig_chain(const fy_layout *l, const fy_layout_sig *s, const fy_digest *manifest, json_t **chain,
                        char *err, size_t errlen) FY_WUR;

/* The app name a push uses without --app: the signed claim's app, else the image's title
 * (ferry build writes the recipe name), else the layout's folder name, never a tag; sanitized to
 * an app name. "" when none can be made. */
void fy_layout_app_name(const fy_layout *l, char *app, size_t len);

/* The plan's "signature" object. */
json_t *fy_layout_sig_json(const fy_layout_sig *s);

#endif
