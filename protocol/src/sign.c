/* Release signatures: ECDSA P-256 over SHA-256 through mbedTLS's pk layer (2.28 or 3.6; the
 * differences are in ferry/mbedtls_compat.h). See sign.h for the format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <mbedtls/base64.h>
#include <mbedtls/chachapoly.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecp.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/sha256.h>

#include "ferry/mbedtls_compat.h"

#include "ferry/seal.h"
#include "ferry/sign.h"

struct fy_sign_key {
  mbedtls_pk_context pk;
  int has_private;
  char id[FY_DIGEST_STR];
};

/* One DRBG per signing or key generation: both are rare, and nothing is shared across forks. */
typedef struct rng {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
} rng;

static int rng_open(rng *r) {
  static const char pers[] = "ferry-sign";
  mbedtls_entropy_init(&r->entropy);
  mbedtls_ctr_drbg_init(&r->drbg);
  return mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy, (const unsigned char *)pers,
                               sizeof pers - 1) == 0
             ? FY_OK
             : FY_EIO;
}

static void rng_close(rng *r) {
  mbedtls_ctr_drbg_free(&r->drbg);
  mbedtls_entropy_free(&r->entropy);
}

static int is_p256(mbedtls_pk_context *pk) {
  return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY && fy_mbed_pk_group(pk) == MBEDTLS_ECP_DP_SECP256R1;
}

static int compute_id(fy_sign_key *k) {
  unsigned char der[256];
  int n = mbedtls_pk_write_pubkey_der(&k->pk, der, sizeof der);
  if (n <= 0) return FY_EINVAL;
  fy_digest d;
  fy_sha256_once(der + sizeof der - (size_t)n, (size_t)n, &d);
  fy_digest_format(&d, k->id);
  return FY_OK;
}

int fy_sign_keygen(char **priv_pem, char **pub_pem, char *err, size_t errlen) {
  mbedtls_pk_context pk;
  rng r;
  int rc = FY_EIO;
  *priv_pem = *pub_pem = NULL;
  mbedtls_pk_init(&pk);
  if (rng_open(&r) != FY_OK) {
    snprintf(err, errlen, "cannot seed the random generator");
    goto out;
  }
  if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
      mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk), mbedtls_ctr_drbg_random, &r.drbg) != 0) {
    snprintf(err, errlen, "cannot generate a P-256 key");
    goto out;
  }
  *priv_pem = calloc(1, FY_KEY_PEM_MAX);
  *pub_pem = calloc(1, FY_KEY_PEM_MAX);
  if (!*priv_pem || !*pub_pem) {
    rc = FY_ENOMEM;
    goto out;
  }
  if (mbedtls_pk_write_key_pem(&pk, (unsigned char *)*priv_pem, FY_KEY_PEM_MAX) != 0 ||
      mbedtls_pk_write_pubkey_pem(&pk, (unsigned char *)*pub_pem, FY_KEY_PEM_MAX) != 0) {
    snprintf(err, errlen, "cannot write the key as PEM");
    goto out;
  }
  rc = FY_OK;
out:
  if (rc != FY_OK) {
    free(*priv_pem);
    free(*pub_pem);
    *priv_pem = *pub_pem = NULL;
  }
  mbedtls_pk_free(&pk);
  rng_close(&r);
  return rc;
}

int fy_sign_key_parse(const char *pem, size_t len, int want_private, fy_sign_key **out, char *err, size_t errlen) {
  *out = NULL;
  if (len == 0 || len > FY_KEY_PEM_MAX) {
    snprintf(err, errlen, "not a key (%zu bytes)", len);
    return FY_EINVAL;
  }
  fy_sign_key *k = calloc(1, sizeof *k);
  char *z = malloc(len + 1); /* mbedTLS wants PEM NUL-terminated, the length counting the NUL */
  if (!k || !z) {
    free(k);
    free(z);
    return FY_ENOMEM;
  }
  memcpy(z, pem, len);
  z[len] = '\0';
  mbedtls_pk_init(&k->pk);
  rng r;
  int ok = rng_open(&r) == FY_OK && fy_mbed_pk_parse_key(&k->pk, (const unsigned char *)z, len + 1, &r.drbg) == 0;
  rng_close(&r);
  if (ok) k->has_private = 1;
  else if (!want_private) {
    mbedtls_pk_free(&k->pk);
    mbedtls_pk_init(&k->pk);
    ok = mbedtls_pk_parse_public_key(&k->pk, (const unsigned char *)z, len + 1) == 0;
  }
  mbedtls_platform_zeroize(z, len);
  free(z);
  if (!ok) {
    snprintf(err, errlen, want_private ? "not a PEM private key (expected the file `ferry key gen` wrote)"
                                       : "not a PEM public key (expected the .pub file `ferry key gen` wrote)");
    fy_sign_key_free(k);
    return FY_EINVAL;
  }
  if (!is_p256(&k->pk)) {
    snprintf(err, errlen, "not an ECDSA P-256 key (release keys are P-256; make one with `ferry key gen`)");
    fy_sign_key_free(k);
    return FY_EINVAL;
  }
  if (compute_id(k) != FY_OK) {
    snprintf(err, errlen, "cannot encode the public key");
    fy_sign_key_free(k);
    return FY_EINVAL;
  }
  *out = k;
  return FY_OK;
}

void fy_sign_key_free(fy_sign_key *k) {
  if (!k) return;
  mbedtls_pk_free(&k->pk); /* zeroizes */
  free(k);
}

const char *fy_sign_key_id(const fy_sign_key *k) { return k->id; }

int fy_sign_data(fy_sign_key *k, const void *data, size_t len, char *sig, size_t siglen) {
  unsigned char hash[32], der[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
  size_t derlen = 0, b64len = 0;
  rng r;
  if (!k->has_private) return FY_EINVAL;
  if (rng_open(&r) != FY_OK) {
    rng_close(&r);
    return FY_EIO;
  }
  fy_mbed_sha256(data, len, hash);
  int rc = fy_mbed_pk_sign(&k->pk, MBEDTLS_MD_SHA256, hash, sizeof hash, der, sizeof der, &derlen, &r.drbg);
  rng_close(&r);
  if (rc != 0) return FY_EIO;
  if (mbedtls_base64_encode((unsigned char *)sig, siglen, &b64len, der, derlen) != 0) return FY_ETOOBIG;
  return FY_OK;
}

int fy_sign_verify(const fy_sign_key *k, const void *data, size_t len, const char *sig) {
  unsigned char hash[32], der[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
  size_t derlen = 0, slen = strnlen(sig, FY_SIG_B64_MAX + 1);
  if (slen == 0 || slen > FY_SIG_B64_MAX) return FY_ESIGNATURE;
  if (mbedtls_base64_decode(der, sizeof der, &derlen, (const unsigned char *)sig, slen) != 0) return FY_ESIGNATURE;
  fy_mbed_sha256(data, len, hash);
  /* pk_verify does not write through the context; the cast only satisfies its prototype. */
  return mbedtls_pk_verify((mbedtls_pk_context *)&k->pk, MBEDTLS_MD_SHA256, hash, sizeof hash, der, derlen) == 0
             ? FY_OK
             : FY_ESIGNATURE;
}

/* --- claims ----------------------------------------------------------------------------- */

void fy_time_format_utc(int64_t t, char *buf, size_t len) {
  struct tm tm;
  time_t tt = (time_t)t;
  if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) snprintf(buf, len, "?");
}

int fy_time_parse_utc(const char *s, int64_t *out) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!s || strlen(s) != 20) return FY_EINVAL;
  const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (!end || *end) return FY_EINVAL;
  time_t t = timegm(&tm);
  if (t == (time_t)-1) return FY_EINVAL;
  *out = (int64_t)t;
  return FY_OK;
}

char *fy_claim_format(const fy_claim *c) {
  char ds[FY_DIGEST_STR], exp[32];
  fy_time_format_utc(c->expires, exp, sizeof exp);
  json_t *j = json_pack("{s:s, s:s, s:I, s:s}", "app", c->app, "digest", fy_digest_format(&c->digest, ds), "version",
                        (json_int_t)c->version, "expires", exp);
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(j);
  return s;
}

int fy_claim_parse(const char *text, size_t len, fy_claim *c, char *err, size_t errlen) {
  json_error_t je;
  memset(c, 0, sizeof *c);
  if (len > FY_CLAIM_MAX) {
    snprintf(err, errlen, "the signed claim is %zu bytes, over %d", len, FY_CLAIM_MAX);
    return FY_ESIGNATURE;
  }
  json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  const json_t *app = json_object_get(j, "app"), *dg = json_object_get(j, "digest"), *ver = json_object_get(j, "version"),
               *exp = json_object_get(j, "expires");
  int rc = FY_ESIGNATURE;
  if (!json_is_object(j)) snprintf(err, errlen, "the signed claim is not a JSON object");
  else if (!json_is_string(app) || json_string_length(app) == 0 || json_string_length(app) >= sizeof c->app)
    snprintf(err, errlen, "the signed claim has no valid app");
  else if (!json_is_string(dg) || fy_digest_parse(json_string_value(dg), &c->digest) != FY_OK)
    snprintf(err, errlen, "the signed claim has no valid digest");
  else if (!json_is_integer(ver) || json_integer_value(ver) < 0)
    snprintf(err, errlen, "the signed claim has no valid version (a number >= 0)");
  else if (!json_is_string(exp) || fy_time_parse_utc(json_string_value(exp), &c->expires) != FY_OK)
    snprintf(err, errlen, "the signed claim has no valid expires (YYYY-MM-DDTHH:MM:SSZ)");
  else {
    memcpy(c->app, json_string_value(app), json_string_length(app) + 1);
    c->version = (uint64_t)json_integer_value(ver);
    rc = FY_OK;
  }
  json_decref(j);
  return rc;
}

/* --- sealing to one node (seal.h) -------------------------------------------------------- */

static int b64_put(json_t *o, const char *key, const unsigned char *p, size_t n) {
  size_t cap = 4 * ((n + 2) / 3) + 1, olen = 0;
  unsigned char *s = malloc(cap);
  if (!s) return FY_ENOMEM;
  int rc = mbedtls_base64_encode(s, cap, &olen, p, n) == 0 && json_object_set_new(o, key, json_stringn((char *)s, olen)) == 0
               ? FY_OK
               : FY_ENOMEM;
  free(s);
  return rc;
}

/* A base64 field of at most max bytes decoded (malloc'd), or NULL. */
static unsigned char *b64_get(const json_t *o, const char *key, size_t max, size_t *n) {
  const json_t *v = json_object_get(o, key);
  const char *s = json_string_value(v);
  size_t sl = s ? json_string_length(v) : 0;
  if (!s || sl == 0 || sl > 4 * ((max + 2) / 3)) return NULL;
  unsigned char *out = malloc(sl / 4 * 3 + 4);
  if (out && mbedtls_base64_decode(out, sl / 4 * 3 + 4, n, (const unsigned char *)s, sl) == 0 && *n <= max) return out;
  free(out);
  return NULL;
}

/* key = HKDF-SHA256(salt: the ephemeral point, ikm: the ECDH secret, info: label NUL context) */
static int seal_key(const unsigned char epk[65], const mbedtls_mpi *z, const char *context, unsigned char key[32]) {
  unsigned char zb[32], info[16 + FY_SEAL_CONTEXT_MAX];
  static const char label[] = "ferry seal v1";
  size_t cl = strlen(context);
  if (cl > FY_SEAL_CONTEXT_MAX || mbedtls_mpi_write_binary(z, zb, sizeof zb) != 0) return FY_EINVAL;
  memcpy(info, label, sizeof label); /* with its NUL */
  memcpy(info + sizeof label, context, cl);
  int rc = mbedtls_hkdf(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), epk, 65, zb, sizeof zb, info, sizeof label + cl, key, 32);
  mbedtls_platform_zeroize(zb, sizeof zb);
  return rc == 0 ? FY_OK : FY_EINVAL;
}

int fy_seal(const char *cert_pem, size_t cert_len, const char *context, const void *plain, size_t n, json_t **out, char *err,
            size_t errlen) {
  mbedtls_x509_crt crt;
  mbedtls_ecp_group grp;
  mbedtls_mpi d, z, unused;
  mbedtls_ecp_point q, peer;
  unsigned char epk[65], key[32], nonce[12], *ct = NULL;
  size_t epk_len = 0;
  rng r;
  int rc = FY_EINVAL;
  *out = NULL;
  mbedtls_x509_crt_init(&crt);
  mbedtls_ecp_group_init(&grp);
  mbedtls_mpi_init(&d);
  mbedtls_mpi_init(&z);
  mbedtls_mpi_init(&unused);
  mbedtls_ecp_point_init(&q);
  mbedtls_ecp_point_init(&peer);
  int rng_ok = rng_open(&r) == FY_OK;
  char *z_pem = malloc(cert_len + 1);
  if (z_pem) {
    memcpy(z_pem, cert_pem, cert_len);
    z_pem[cert_len] = '\0';
  }
  if (!rng_ok) {
    snprintf(err, errlen, "no randomness");
    rc = FY_EIO;
  } else if (n > FY_SEAL_MAX || strlen(context) > FY_SEAL_CONTEXT_MAX) {
    snprintf(err, errlen, "%zu bytes or a context over the limits", n);
  } else if (!z_pem || mbedtls_x509_crt_parse(&crt, (const unsigned char *)z_pem, cert_len + 1) != 0 || !is_p256(&crt.pk) ||
             fy_mbed_ec_export(&crt.pk, &grp, &unused, &peer) != 0) {
    snprintf(err, errlen, "not a P-256 certificate");
  } else if (mbedtls_ecdh_gen_public(&grp, &d, &q, mbedtls_ctr_drbg_random, &r.drbg) != 0 ||
             mbedtls_ecdh_compute_shared(&grp, &z, &peer, &d, mbedtls_ctr_drbg_random, &r.drbg) != 0 ||
             mbedtls_ecp_point_write_binary(&grp, &q, MBEDTLS_ECP_PF_UNCOMPRESSED, &epk_len, epk, sizeof epk) != 0 ||
             epk_len != sizeof epk || seal_key(epk, &z, context, key) != FY_OK ||
             mbedtls_ctr_drbg_random(&r.drbg, nonce, sizeof nonce) != 0 || !(ct = malloc(n + 16))) {
    snprintf(err, errlen, "sealing failed");
    rc = FY_EIO;
  } else {
    mbedtls_chachapoly_context cp;
    mbedtls_chachapoly_init(&cp);
    int e = mbedtls_chachapoly_setkey(&cp, key);
    if (e == 0) e = mbedtls_chachapoly_encrypt_and_tag(&cp, n, nonce, (const unsigned char *)context, strlen(context), plain, ct, ct + n);
    mbedtls_chachapoly_free(&cp);
    json_t *o = e == 0 ? json_pack("{s:s}", "alg", FY_SEAL_ALG) : NULL;
    rc = o && b64_put(o, "epk", epk, sizeof epk) == FY_OK && b64_put(o, "nonce", nonce, sizeof nonce) == FY_OK &&
                 b64_put(o, "ct", ct, n + 16) == FY_OK
             ? FY_OK
             : FY_ENOMEM;
    if (rc == FY_OK) *out = o;
    else json_decref(o);
    if (rc != FY_OK) snprintf(err, errlen, "sealing failed");
  }
  mbedtls_platform_zeroize(key, sizeof key);
  free(ct);
  free(z_pem);
  if (rng_ok) rng_close(&r);
  mbedtls_ecp_point_free(&peer);
  mbedtls_ecp_point_free(&q);
  mbedtls_mpi_free(&unused);
  mbedtls_mpi_free(&z);
  mbedtls_mpi_free(&d);
  mbedtls_ecp_group_free(&grp);
  mbedtls_x509_crt_free(&crt);
  return rc;
}

int fy_unseal(const char *key_pem, size_t key_len, const char *context, const json_t *sealed, unsigned char **plain, size_t *n,
              char *err, size_t errlen) {
  mbedtls_pk_context pk;
  mbedtls_ecp_group grp;
  mbedtls_mpi d, z;
  mbedtls_ecp_point own, epk_pt;
  unsigned char key[32];
  size_t epk_n = 0, nonce_n = 0, ct_n = 0;
  rng r;
  int rc = FY_EPROTO;
  *plain = NULL;
  *n = 0;
  mbedtls_pk_init(&pk);
  mbedtls_ecp_group_init(&grp);
  mbedtls_mpi_init(&d);
  mbedtls_mpi_init(&z);
  mbedtls_ecp_point_init(&own);
  mbedtls_ecp_point_init(&epk_pt);
  int rng_ok = rng_open(&r) == FY_OK;
  const char *alg = json_string_value(json_object_get(sealed, "alg"));
  unsigned char *epk = b64_get(sealed, "epk", 65, &epk_n), *nonce = b64_get(sealed, "nonce", 12, &nonce_n);
  unsigned char *ct = b64_get(sealed, "ct", FY_SEAL_MAX + 16, &ct_n), *out = NULL;
  char *z_pem = malloc(key_len + 1);
  if (z_pem) {
    memcpy(z_pem, key_pem, key_len);
    z_pem[key_len] = '\0';
  }
  if (!json_is_object(sealed) || !alg || strcmp(alg, FY_SEAL_ALG) != 0 || !epk || epk_n != 65 || !nonce || nonce_n != 12 || !ct ||
      ct_n < 16 || strlen(context) > FY_SEAL_CONTEXT_MAX) {
    snprintf(err, errlen, "not a sealed value (%s)", FY_SEAL_ALG);
  } else if (!rng_ok || !z_pem ||
             fy_mbed_pk_parse_key(&pk, (const unsigned char *)z_pem, key_len + 1, &r.drbg) != 0 || !is_p256(&pk) ||
             fy_mbed_ec_export(&pk, &grp, &d, &own) != 0) {
    snprintf(err, errlen, "the node's key is not a P-256 private key");
    rc = FY_EINVAL;
  } else if (mbedtls_ecp_point_read_binary(&grp, &epk_pt, epk, epk_n) != 0 || mbedtls_ecp_check_pubkey(&grp, &epk_pt) != 0 ||
             mbedtls_ecdh_compute_shared(&grp, &z, &epk_pt, &d, mbedtls_ctr_drbg_random, &r.drbg) != 0 ||
             seal_key(epk, &z, context, key) != FY_OK || !(out = malloc(ct_n - 16 + 1))) {
    snprintf(err, errlen, "not sealed to this node (its ephemeral key is not a P-256 point)");
    rc = FY_ESIGNATURE;
  } else {
    mbedtls_chachapoly_context cp;
    mbedtls_chachapoly_init(&cp);
    int e = mbedtls_chachapoly_setkey(&cp, key);
    if (e == 0)
      e = mbedtls_chachapoly_auth_decrypt(&cp, ct_n - 16, nonce, (const unsigned char *)context, strlen(context), ct + ct_n - 16, ct,
                                          out);
    mbedtls_chachapoly_free(&cp);
    if (e == 0) {
      out[ct_n - 16] = '\0';
      *plain = out;
      *n = ct_n - 16;
      out = NULL;
      rc = FY_OK;
    } else {
      snprintf(err, errlen, "does not open: sealed to another node or for another use, or tampered with");
      rc = FY_ESIGNATURE;
    }
  }
  mbedtls_platform_zeroize(key, sizeof key);
  free(out);
  free(epk);
  free(nonce);
  free(ct);
  if (z_pem) mbedtls_platform_zeroize(z_pem, key_len);
  free(z_pem);
  if (rng_ok) rng_close(&r);
  mbedtls_ecp_point_free(&epk_pt);
  mbedtls_ecp_point_free(&own);
  mbedtls_mpi_free(&z);
  mbedtls_mpi_free(&d);
  mbedtls_ecp_group_free(&grp);
  mbedtls_pk_free(&pk);
  return rc;
}
