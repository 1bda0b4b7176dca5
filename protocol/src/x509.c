/* The fleet CA's certificates and revocation lists ('ferry ca', 'ferry cert'), in memory: PEM
 * in, PEM out; pusher/pki.c keeps the files. Written with mbedTLS's x509write (2.28 or 3.6; the
 * differences are in ferry/mbedtls_compat.h). 2.28 has no setters for subjectAltName and
 * extendedKeyUsage, so those two extensions are DER-encoded here (RFC 5280 4.2.1.6, 4.2.1.12),
 * and neither version writes CRLs, so the CRL is too (RFC 5280 5.1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "ferry/mbedtls_compat.h"
#include "ferry/x509.h"

struct rng {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
};

static int rng_setup(struct rng *r) {
  mbedtls_entropy_init(&r->entropy);
  mbedtls_ctr_drbg_init(&r->drbg);
  return mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy,
                               (const unsigned char *)"ferry-pki", 9);
}

static void rng_free(struct rng *r) {
  mbedtls_ctr_drbg_free(&r->drbg);
  mbedtls_entropy_free(&r->entropy);
}

static void mbed_reason(char *err, size_t errlen, const char *what, int rc) {
  char m[128];
  mbedtls_strerror(rc, m, sizeof m);
  snprintf(err, errlen, "%s: %s", what, m);
}

static void fmt_time(time_t t, char out[16]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

#define EKU_SERVER 1
#define EKU_CLIENT 2

/* SEQUENCE { OBJECT IDENTIFIER purpose... } */
static int der_eku(unsigned char *buf, size_t size, int eku, unsigned char **start) {
  unsigned char *p = buf + size;
  size_t len = 0;
  int ret; /* MBEDTLS_ASN1_CHK_ADD returns through it */
  if (eku & EKU_CLIENT)
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)));
  if (eku & EKU_SERVER)
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  *start = p;
  return (int)len;
}

/* SEQUENCE { [2] IMPLICIT IA5String dNSName } */
static int der_san(unsigned char *buf, size_t size, const char *name, unsigned char **start) {
  unsigned char *p = buf + size;
  size_t len = 0, n = strlen(name);
  int ret;
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p, buf, (const unsigned char *)name, n));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, n));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  *start = p;
  return (int)len;
}

static int gen_key(mbedtls_pk_context *key, struct rng *r) {
  int rc = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (rc != 0) return rc;
  return mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key), mbedtls_ctr_drbg_random,
                             &r->drbg);
}

struct cert_spec {
  const char *subject, *issuer;
  mbedtls_pk_context *subject_key, *issuer_key;
  int is_ca;
  const char *san;           /* NULL for the CA */
  int eku;                   /* EKU_* purposes; 0 for the CA */
  time_t not_before, not_after;
};

static int write_cert(const struct cert_spec *s, struct rng *r, unsigned char *pem, size_t pem_size,
                      unsigned char serial_out[16], char *err, size_t errlen) {
  mbedtls_x509write_cert crt;
  mbedtls_mpi serial;
  unsigned char serial_bytes[16], ext[512], *start;
  char nb[16], na[16];
  int rc, len;
  mbedtls_x509write_crt_init(&crt);
  mbedtls_mpi_init(&serial);
  mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(&crt, s->subject_key);
  mbedtls_x509write_crt_set_issuer_key(&crt, s->issuer_key);
  if ((rc = mbedtls_ctr_drbg_random(&r->drbg, serial_bytes, sizeof serial_bytes)) != 0) goto fail;
  serial_bytes[0] &= 0x7f; /* positive, RFC 5280 4.1.2.2 */
  serial_bytes[0] |= 0x01;
  if (serial_out) memcpy(serial_out, serial_bytes, sizeof serial_bytes);
  fmt_time(s->not_before, nb);
  fmt_time(s->not_after, na);
#if FY_MBEDTLS3
  (void)serial;
  if ((rc = mbedtls_x509write_crt_set_serial_raw(&crt, serial_bytes, sizeof serial_bytes)) != 0 ||
#else
  if ((rc = mbedtls_mpi_read_binary(&serial, serial_bytes, sizeof serial_bytes)) != 0 ||
      (rc = mbedtls_x509write_crt_set_serial(&crt, &serial)) != 0 ||
#endif
      (rc = mbedtls_x509write_crt_set_subject_name(&crt, s->subject)) != 0 ||
      (rc = mbedtls_x509write_crt_set_issuer_name(&crt, s->issuer)) != 0 ||
      (rc = mbedtls_x509write_crt_set_validity(&crt, nb, na)) != 0 ||
      (rc = mbedtls_x509write_crt_set_basic_constraints(&crt, s->is_ca, s->is_ca ? 0 : -1)) != 0 ||
      (rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt)) != 0 ||
      (rc = mbedtls_x509write_crt_set_authority_key_identifier(&crt)) != 0 ||
      (rc = mbedtls_x509write_crt_set_key_usage(
           &crt, s->is_ca ? (MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN)
                          : MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0)
    goto fail;
  if (s->eku) {
    if ((len = der_eku(ext, sizeof ext, s->eku, &start)) < 0) { rc = len; goto fail; }
    if ((rc = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                                  start, (size_t)len)) != 0)
      goto fail;
  }
  if (s->san) {
    if ((len = der_san(ext, sizeof ext, s->san, &start)) < 0) { rc = len; goto fail; }
    if ((rc = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                                  start, (size_t)len)) != 0)
      goto fail;
  }
  rc = mbedtls_x509write_crt_pem(&crt, pem, pem_size, mbedtls_ctr_drbg_random, &r->drbg);
  if (rc != 0) goto fail;
  mbedtls_mpi_free(&serial);
  mbedtls_x509write_crt_free(&crt);
  return FY_OK;
fail:
  mbed_reason(err, errlen, "writing the certificate", rc);
  mbedtls_mpi_free(&serial);
  mbedtls_x509write_crt_free(&crt);
  return FY_ETLS;
}

#define CRL_MAX_REVOKED FY_X509_CRL_MAX

/* An X.509 v2 CRL over the revoked serials, signed by the CA key, written backwards into buf
 * as mbedTLS's ASN.1 writers do. Returns the DER's length or a negative mbedTLS error. */
static int write_time(unsigned char **p, unsigned char *start, time_t t) {
  struct tm tm;
  char s[20];
  gmtime_r(&t, &tm);
  int gen = tm.tm_year + 1900 >= 2050; /* RFC 5280: UTCTime until 2049 */
  int n = gen ? snprintf(s, sizeof s, "%04d%02d%02d%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                         tm.tm_min, tm.tm_sec)
              : snprintf(s, sizeof s, "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                         tm.tm_min, tm.tm_sec);
  int len = 0, rc;
  if ((rc = mbedtls_asn1_write_raw_buffer(p, start, (const unsigned char *)s, (size_t)n)) < 0) return rc;
  len += rc;
  if ((rc = mbedtls_asn1_write_len(p, start, (size_t)len)) < 0) return rc;
  len += rc;
  if ((rc = mbedtls_asn1_write_tag(p, start, gen ? MBEDTLS_ASN1_GENERALIZED_TIME : MBEDTLS_ASN1_UTC_TIME)) < 0) return rc;
  return len + rc;
}

/* SEQUENCE { OID ecdsa-with-SHA256 } (no parameters, RFC 5758) */
static int write_sig_alg(unsigned char **p, unsigned char *start) {
  static const char oid[] = MBEDTLS_OID_ECDSA_SHA256;
  int len = 0, rc;
  if ((rc = mbedtls_asn1_write_oid(p, start, oid, sizeof oid - 1)) < 0) return rc;
  len += rc;
  if ((rc = mbedtls_asn1_write_len(p, start, (size_t)len)) < 0) return rc;
  len += rc;
  if ((rc = mbedtls_asn1_write_tag(p, start, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) < 0) return rc;
  return len + rc;
}

#define CHK(x)                                                                                     \
  do {                                                                                             \
    int r_ = (x);                                                                                  \
    if (r_ < 0) return r_;                                                                         \
    len += (size_t)r_;                                                                             \
  } while (0)

static int wrap(unsigned char **p, unsigned char *start, size_t len, unsigned char tag) {
  int a = mbedtls_asn1_write_len(p, start, len);
  if (a < 0) return a;
  int b = mbedtls_asn1_write_tag(p, start, tag);
  return b < 0 ? b : a + b;
}

static int write_tbs(unsigned char *buf, size_t size, const mbedtls_x509_crt *ca, const unsigned char (*serials)[16],
                     const time_t *dates, size_t n, long number, time_t now, unsigned char **out) {
  unsigned char *p = buf + size;
  size_t len = 0, sub;
  /* crlExtensions [0] { Extension { cRLNumber, OCTET STRING { INTEGER number } } } */
  sub = len;
  CHK(mbedtls_asn1_write_int(&p, buf, (int)number));
  CHK(wrap(&p, buf, len - sub, MBEDTLS_ASN1_OCTET_STRING));
  CHK(mbedtls_asn1_write_oid(&p, buf, "\x55\x1d\x14", 3)); /* 2.5.29.20 cRLNumber */
  CHK(wrap(&p, buf, len - sub, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  CHK(wrap(&p, buf, len - sub, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  CHK(wrap(&p, buf, len - sub, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0));
  if (n) { /* revokedCertificates */
    sub = len;
    for (size_t i = n; i-- > 0;) {
      size_t one = len;
      CHK(write_time(&p, buf, dates[i]));
      CHK(mbedtls_asn1_write_raw_buffer(&p, buf, serials[i], 16)); /* positive: the top bit is clear */
      CHK(wrap(&p, buf, 16, MBEDTLS_ASN1_INTEGER));
      CHK(wrap(&p, buf, len - one, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
    }
    CHK(wrap(&p, buf, len - sub, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  }
  CHK(write_time(&p, buf, now + 3650L * 86400)); /* nextUpdate: agents check the list's signature, not its age */
  CHK(write_time(&p, buf, now));                  /* thisUpdate: a newer list replaces an older one */
  CHK(mbedtls_asn1_write_raw_buffer(&p, buf, ca->subject_raw.p, ca->subject_raw.len)); /* issuer */
  CHK(write_sig_alg(&p, buf));
  CHK(mbedtls_asn1_write_int(&p, buf, 1)); /* v2 */
  CHK(wrap(&p, buf, len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  *out = p;
  return (int)len;
}

static int write_crl_pem(const mbedtls_x509_crt *ca, mbedtls_pk_context *key, struct rng *r, const unsigned char (*serials)[16],
                         const time_t *dates, size_t n, long number, unsigned char *pem, size_t pem_size) {
  static unsigned char tbs_buf[CRL_MAX_REVOKED * 48 + 2048], der[CRL_MAX_REVOKED * 48 + 2048];
  unsigned char *tbs, hash[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
  size_t sig_len = 0, olen = 0, len = 0;
  int tbs_len = write_tbs(tbs_buf, sizeof tbs_buf, ca, serials, dates, n, number, time(NULL), &tbs);
  if (tbs_len < 0) return tbs_len;
  int rc = fy_mbed_sha256(tbs, (size_t)tbs_len, hash);
  if (rc == 0) rc = fy_mbed_pk_sign(key, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, sizeof sig, &sig_len, &r->drbg);
  if (rc != 0) return rc;
  unsigned char *p = der + sizeof der;
  CHK(mbedtls_asn1_write_bitstring(&p, der, sig, sig_len * 8));
  CHK(write_sig_alg(&p, der));
  CHK(mbedtls_asn1_write_raw_buffer(&p, der, tbs, (size_t)tbs_len));
  CHK(wrap(&p, der, len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
  return mbedtls_pem_write_buffer("-----BEGIN X509 CRL-----\n", "-----END X509 CRL-----\n", p, len, pem, pem_size, &olen);
}
#undef CHK

void fy_x509_wipe(void *p, size_t n) { mbedtls_platform_zeroize(p, n); }

/* PEM text is NUL-terminated for mbedTLS, the NUL counted in the length. */
static int parse_ca(const char *ca_pem, size_t ca_len, const char *key_pem, size_t key_len, mbedtls_x509_crt *crt,
                    mbedtls_pk_context *key, struct rng *r, char *err, size_t errlen) {
  char *z = malloc(ca_len + key_len + 2);
  int rc;
  if (!z) {
    snprintf(err, errlen, "out of memory");
    return FY_ENOMEM;
  }
  memcpy(z, ca_pem, ca_len);
  z[ca_len] = '\0';
  memcpy(z + ca_len + 1, key_pem, key_len);
  z[ca_len + 1 + key_len] = '\0';
  int ret = FY_ETLS;
  if ((rc = mbedtls_x509_crt_parse(crt, (unsigned char *)z, ca_len + 1)) != 0) mbed_reason(err, errlen, "ca.pem", rc);
  else if ((rc = fy_mbed_pk_parse_key(key, (unsigned char *)z + ca_len + 1, key_len + 1, &r->drbg)) != 0)
    mbed_reason(err, errlen, "ca-key.pem", rc);
  else ret = FY_OK;
  mbedtls_platform_zeroize(z, ca_len + key_len + 2);
  free(z);
  return ret;
}

int fy_x509_new_ca(int days, char *cert_pem, size_t cert_cap, char *key_pem, size_t key_cap, char *err, size_t errlen) {
  struct rng r;
  mbedtls_pk_context key;
  int ret = FY_ETLS, rc;
  mbedtls_pk_init(&key);
  if ((rc = rng_setup(&r)) != 0 || (rc = gen_key(&key, &r)) != 0) {
    mbed_reason(err, errlen, "generating the CA key", rc);
    goto cleanup;
  }
  time_t now = time(NULL);
  struct cert_spec s = {
      .subject = "CN=ferry fleet CA,O=ferry", .issuer = "CN=ferry fleet CA,O=ferry",
      .subject_key = &key, .issuer_key = &key, .is_ca = 1,
      .not_before = now - 3600, .not_after = now + (time_t)days * 86400,
  };
  if ((ret = write_cert(&s, &r, (unsigned char *)cert_pem, cert_cap, NULL, err, errlen)) != FY_OK) goto cleanup;
  if ((rc = mbedtls_pk_write_key_pem(&key, (unsigned char *)key_pem, key_cap)) != 0) {
    mbed_reason(err, errlen, "writing the CA key", rc);
    ret = FY_ETLS;
  }
cleanup:
  mbedtls_pk_free(&key);
  rng_free(&r);
  return ret;
}

int fy_x509_issue(const char *ca_pem, size_t ca_len, const char *ca_key_pem, size_t ca_key_len, const char *name,
                  int role, int days, long not_before_offset_s, char *cert_pem, size_t cert_cap, char *key_pem,
                  size_t key_cap, unsigned char serial[16], long long *not_after, char *err, size_t errlen) {
  struct rng r;
  mbedtls_pk_context ca_key, key;
  mbedtls_x509_crt ca_crt;
  char issuer[512], subject[256];
  int ret = FY_ETLS, rc;
  mbedtls_pk_init(&ca_key);
  mbedtls_pk_init(&key);
  mbedtls_x509_crt_init(&ca_crt);
  if ((rc = rng_setup(&r)) != 0) {
    mbed_reason(err, errlen, "seeding the RNG", rc);
    goto cleanup;
  }
  if ((ret = parse_ca(ca_pem, ca_len, ca_key_pem, ca_key_len, &ca_crt, &ca_key, &r, err, errlen)) != FY_OK) goto cleanup;
  ret = FY_ETLS;
  if (mbedtls_x509_dn_gets(issuer, sizeof issuer, &ca_crt.subject) < 0) {
    snprintf(err, errlen, "ca.pem: cannot read the subject");
    goto cleanup;
  }
  if ((rc = gen_key(&key, &r)) != 0) {
    mbed_reason(err, errlen, "generating the key", rc);
    goto cleanup;
  }
  if (role != FY_X509_AGENT && role != FY_X509_PUSHER && role != FY_X509_BROKER) {
    snprintf(err, errlen, "unknown certificate role %d", role);
    goto cleanup;
  }
  snprintf(subject, sizeof subject, "CN=%s,O=ferry,OU=%s", name,
           role == FY_X509_AGENT ? "agent" : role == FY_X509_PUSHER ? "pusher" : "broker");
  time_t now = time(NULL) + not_before_offset_s;
  struct cert_spec s = {
      .subject = subject, .issuer = issuer, .subject_key = &key, .issuer_key = &ca_key,
      .san = name,
      /* an agent serves pushers and is a client of a broker; a pusher is a client; a broker serves */
      .eku = role == FY_X509_AGENT ? EKU_SERVER | EKU_CLIENT : role == FY_X509_PUSHER ? EKU_CLIENT : EKU_SERVER,
      .not_before = now - 300, .not_after = now + (time_t)days * 86400,
  };
  *not_after = (long long)s.not_after;
  if ((ret = write_cert(&s, &r, (unsigned char *)cert_pem, cert_cap, serial, err, errlen)) != FY_OK) goto cleanup;
  if ((rc = mbedtls_pk_write_key_pem(&key, (unsigned char *)key_pem, key_cap)) != 0) {
    mbed_reason(err, errlen, "writing the key", rc);
    ret = FY_ETLS;
  }
cleanup:
  mbedtls_x509_crt_free(&ca_crt);
  mbedtls_pk_free(&key);
  mbedtls_pk_free(&ca_key);
  rng_free(&r);
  return ret;
}

int fy_x509_crl(const char *ca_pem, size_t ca_len, const char *ca_key_pem, size_t ca_key_len,
                const unsigned char (*serials)[16], const time_t *dates, size_t n, char *pem, size_t pem_cap, char *err,
                size_t errlen) {
  struct rng r;
  mbedtls_pk_context key;
  mbedtls_x509_crt ca;
  int ret, rc;
  mbedtls_pk_init(&key);
  mbedtls_x509_crt_init(&ca);
  if (n > CRL_MAX_REVOKED) {
    snprintf(err, errlen, "the revocation list is full (%d certificates): start a new fleet CA", CRL_MAX_REVOKED);
    ret = FY_ETOOBIG;
    goto done;
  }
  if ((rc = rng_setup(&r)) != 0) {
    mbed_reason(err, errlen, "seeding the RNG", rc);
    ret = FY_ETLS;
    goto cleanup;
  }
  if ((ret = parse_ca(ca_pem, ca_len, ca_key_pem, ca_key_len, &ca, &key, &r, err, errlen)) != FY_OK) goto cleanup;
  if ((rc = write_crl_pem(&ca, &key, &r, serials, dates, n, (long)n, (unsigned char *)pem, pem_cap)) != 0) {
    mbed_reason(err, errlen, "writing the revocation list", rc);
    ret = FY_ETLS;
  }
cleanup:
  rng_free(&r);
done:
  mbedtls_x509_crt_free(&ca);
  mbedtls_pk_free(&key);
  return ret;
}
