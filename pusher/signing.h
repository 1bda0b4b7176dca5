/* Release signatures in an OCI layout (sign.h has the format): the signed descriptor is REF's
 * entry in index.json (or its only entry); the claim, the signature and the key id are that
 * entry's annotations, so the signature travels with the layout. */
#ifndef FERRY_PUSHER_SIGNING_H
#define FERRY_PUSHER_SIGNING_H

#include <jansson.h>

#include "ferry/sign.h"
#include "layout.h"

typedef struct fy_layout_sig {
  int present;                       /* the entry carries a signature */
  fy_digest digest;                  /* the signed entry's digest */
  char ref[256];                     /* its ref name, "" if none */
  char payload[FY_CLAIM_MAX + 1];
  char signature[FY_SIG_B64_MAX + 1];
  char key[FY_DIGEST_STR];
  fy_claim claim;                    /* parsed payload (not verified: the agent does that) */
} fy_layout_sig;

/* Reads the signature of the entry l names. FY_ENOENT when there is no single entry to sign. */
int fy_layout_signature(const fy_layout *l, fy_layout_sig *out, char *err, size_t errlen) FY_WUR;

/* Signs the entry l names: claim {app, version, expires} plus its digest; rewrites index.json
 * atomically with the annotations. Refuses variants with gzip layers (the wire carries a
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
