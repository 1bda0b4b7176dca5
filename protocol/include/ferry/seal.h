/* Sealing bytes to one node, so that what sits on a broker's disk (retained desired state:
 * secrets, configuration files, registry credentials) is readable only by that node.
 *
 * ECIES over the node certificate's P-256 key: the sender makes an ephemeral P-256 key pair,
 * ECDH with the node's public key gives the shared secret, HKDF-SHA256 (salt: the ephemeral
 * public point; info: "ferry seal v1", a NUL and the context) makes a 256-bit key, and
 * ChaCha20-Poly1305 encrypts with a random 96-bit nonce and the context as associated data.
 * The context names what the bytes are for (the node's name and the document's kind), so a
 * sealed value moved to another node's document or to another field does not open.
 *
 *   {"alg":"ecdh-p256-hkdf-sha256-chacha20poly1305","epk":B64(65 bytes),"nonce":B64(12),"ct":B64(ciphertext and tag)}
 *
 * Pure apart from the random numbers: no files, no clocks. */
#ifndef FERRY_SEAL_H
#define FERRY_SEAL_H

#include <jansson.h>
#include <stddef.h>

#include "ferry/error.h"

#define FY_SEAL_ALG "ecdh-p256-hkdf-sha256-chacha20poly1305"
#define FY_SEAL_MAX (1u << 20)      /* bytes sealed in one value */
#define FY_SEAL_CONTEXT_MAX 256

/* Seals n bytes to the holder of the key of cert_pem (a P-256 certificate, PEM). *out is a new
 * JSON object. FY_EINVAL (not a P-256 certificate, n over FY_SEAL_MAX), FY_EIO (no randomness). */
int fy_seal(const char *cert_pem, size_t cert_len, const char *context, const void *plain, size_t n, json_t **out, char *err,
            size_t errlen) FY_WUR;
/* Opens a sealed value with the private key key_pem (PEM). *plain (malloc'd, NUL-terminated
 * after n bytes) and *n. FY_EPROTO (malformed), FY_ESIGNATURE (not sealed to this key, or
 * tampered with, or another context). */
int fy_unseal(const char *key_pem, size_t key_len, const char *context, const json_t *sealed, unsigned char **plain, size_t *n,
              char *err, size_t errlen) FY_WUR;

#endif
