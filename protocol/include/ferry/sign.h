/* Release signatures (TUF's arbitrary-install and rollback threats).
 *
 * A release key is an ECDSA P-256 key pair (Debian's mbedTLS 2.28 has no Ed25519). `ferry sign`
 * signs a claim, compact JSON that names what may be installed:
 *
 *   {"app":"hello","digest":"sha256:…","version":7,"expires":"2027-03-01T00:00:00Z"}
 *
 * `digest` is the digest of the image the layout's REF names (an index or a manifest), the way
 * cosign signs a manifest list. The claim bytes, the DER signature (base64) and the key id travel
 * as annotations on that descriptor in the layout's index.json, and in the deploy plan.
 * The key id is "sha256:" + the hex SHA-256 of the public key's SubjectPublicKeyInfo DER.
 *
 * Pure: no files, no clocks (the caller passes `now`). */
#ifndef FERRY_SIGN_H
#define FERRY_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/digest.h"
#include "ferry/error.h"

#define FY_ANNOT_SIG "dev.ferry.signature"
#define FY_ANNOT_SIG_PAYLOAD "dev.ferry.signature.payload"
#define FY_ANNOT_SIG_KEY "dev.ferry.signature.key"

#define FY_SIG_B64_MAX 256      /* base64 of a P-256 DER signature (at most 72 bytes) */
#define FY_CLAIM_MAX 1024       /* longest claim accepted */
#define FY_KEY_PEM_MAX 4096     /* longest key file accepted */
#define FY_SIGN_CHAIN_MAX 4     /* nested indexes between the signed digest and a manifest */

typedef struct fy_sign_key fy_sign_key;

typedef struct fy_claim {
  char app[64];
  fy_digest digest;
  uint64_t version;
  int64_t expires;            /* seconds since the epoch, UTC */
} fy_claim;

/* A new P-256 key pair as PEM text (private: SEC1 "EC PRIVATE KEY"). Caller frees both. */
int fy_sign_keygen(char **priv_pem, char **pub_pem, char *err, size_t errlen) FY_WUR;

/* Parses a PEM key; want_private: the private key (for signing), else a public key (a private
 * key file is accepted too and only its public half used). Only P-256 EC keys. */
int fy_sign_key_parse(const char *pem, size_t len, int want_private, fy_sign_key **out, char *err,
                      size_t errlen) FY_WUR;
void fy_sign_key_free(fy_sign_key *k);
/* "sha256:<hex>" of the public key (FY_DIGEST_STR bytes, static to the key). */
const char *fy_sign_key_id(const fy_sign_key *k);

/* Signs SHA-256(data) with a private key; writes base64 DER into sig (FY_SIG_B64_MAX). */
int fy_sign_data(fy_sign_key *k, const void *data, size_t len, char *sig, size_t siglen) FY_WUR;
/* FY_OK when sig (base64 DER) is k's signature over SHA-256(data); FY_ESIGNATURE otherwise. */
int fy_sign_verify(const fy_sign_key *k, const void *data, size_t len, const char *sig) FY_WUR;

/* The claim as compact JSON with keys in a fixed order. Caller frees. NULL on ENOMEM. */
char *fy_claim_format(const fy_claim *c);
/* Parses a claim; FY_ESIGNATURE with a reason for anything malformed or over FY_CLAIM_MAX. */
int fy_claim_parse(const char *json, size_t len, fy_claim *c, char *err, size_t errlen) FY_WUR;

/* "2027-03-01T00:00:00Z" <-> seconds. Parse accepts only that shape. */
int fy_time_parse_utc(const char *s, int64_t *out) FY_WUR;
void fy_time_format_utc(int64_t t, char *buf, size_t len); /* 21 bytes suffice */

#endif
