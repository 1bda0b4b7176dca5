/* The few names that differ between mbedTLS 2.28 (Debian's; the host presets) and 3.6 LTS (built
 * from Debian's source with protocol/mbedtls_config.h; the static presets). */
#ifndef FERRY_MBEDTLS_COMPAT_H
#define FERRY_MBEDTLS_COMPAT_H
#include <mbedtls/version.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#if MBEDTLS_VERSION_MAJOR >= 3 && MBEDTLS_VERSION_NUMBER < 0x03060000
#error "ferry builds with mbedTLS 2.28 or 3.6 LTS; 3.0-3.5 are not supported"
#elif MBEDTLS_VERSION_MAJOR >= 3
#define FY_MBEDTLS3 1
#define fy_mbed_sha256(p, n, out) mbedtls_sha256((p), (n), (out), 0)
#define fy_mbed_sha256_starts(c) mbedtls_sha256_starts((c), 0)
#define fy_mbed_sha256_update mbedtls_sha256_update
#define fy_mbed_sha256_finish mbedtls_sha256_finish
/* Parsing a private key takes an RNG in 3.x (blinding). */
#define fy_mbed_pk_parse_key(pk, key, len, drbg) \
  mbedtls_pk_parse_key((pk), (key), (len), NULL, 0, mbedtls_ctr_drbg_random, (drbg))
#define fy_mbed_pk_sign(pk, md, hash, hlen, sig, sigsize, olen, drbg) \
  mbedtls_pk_sign((pk), (md), (hash), (hlen), (sig), (sigsize), (olen), mbedtls_ctr_drbg_random, (drbg))
static inline mbedtls_ecp_group_id fy_mbed_pk_group(const mbedtls_pk_context *pk) {
  return mbedtls_ecp_keypair_get_group_id(mbedtls_pk_ec(*pk));
}
/* An EC key's group, private part (zero for a public key) and public point, copied out. */
static inline int fy_mbed_ec_export(const mbedtls_pk_context *pk, mbedtls_ecp_group *grp, mbedtls_mpi *d, mbedtls_ecp_point *Q) {
  return mbedtls_ecp_export(mbedtls_pk_ec(*pk), grp, d, Q);
}
#else
#define FY_MBEDTLS3 0
#define fy_mbed_sha256(p, n, out) mbedtls_sha256_ret((p), (n), (out), 0)
#define fy_mbed_sha256_starts(c) mbedtls_sha256_starts_ret((c), 0)
#define fy_mbed_sha256_update mbedtls_sha256_update_ret
#define fy_mbed_sha256_finish mbedtls_sha256_finish_ret
#define fy_mbed_pk_parse_key(pk, key, len, drbg) ((void)(drbg), mbedtls_pk_parse_key((pk), (key), (len), NULL, 0))
#define fy_mbed_pk_sign(pk, md, hash, hlen, sig, sigsize, olen, drbg) \
  ((void)(sigsize), mbedtls_pk_sign((pk), (md), (hash), (hlen), (sig), (olen), mbedtls_ctr_drbg_random, (drbg)))
static inline mbedtls_ecp_group_id fy_mbed_pk_group(const mbedtls_pk_context *pk) { return mbedtls_pk_ec(*pk)->grp.id; }
static inline int fy_mbed_ec_export(const mbedtls_pk_context *pk, mbedtls_ecp_group *grp, mbedtls_mpi *d, mbedtls_ecp_point *Q) {
  const mbedtls_ecp_keypair *kp = mbedtls_pk_ec(*pk);
  int rc = mbedtls_ecp_group_copy(grp, &kp->grp);
  if (rc == 0) rc = mbedtls_mpi_copy(d, &kp->d);
  if (rc == 0) rc = mbedtls_ecp_copy(Q, &kp->Q);
  return rc;
}
#endif
#endif
