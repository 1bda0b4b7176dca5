/* Certificates with mbedTLS 2.28's x509write. 2.28 has no setters for subjectAltName and
 * extendedKeyUsage, so those two extensions are DER-encoded here (RFC 5280 4.2.1.6, 4.2.1.12). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/sha256.h>
#include <mbedtls/pem.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "ferry/fsutil.h"
#include "ferry/mbedtls_compat.h"
#include "pki.h"

#define PEM_BUF 4096

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

int fy_pki_valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || ((c == '-' || c == '.') && i > 0);
    if (!ok) return 0;
  }
  return 1;
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

/* SEQUENCE { OBJECT IDENTIFIER purpose } */
static int der_eku(unsigned char *buf, size_t size, const char *oid, size_t oid_len,
                   unsigned char **start) {
  unsigned char *p = buf + size;
  size_t len = 0;
  int ret; /* MBEDTLS_ASN1_CHK_ADD returns through it */
  MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, oid, oid_len));
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
  const char *eku_oid;       /* NULL for the CA */
  size_t eku_len;
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
  if (s->eku_oid) {
    if ((len = der_eku(ext, sizeof ext, s->eku_oid, s->eku_len, &start)) < 0) { rc = len; goto fail; }
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

static int write_file(const char *dir, const char *name, const void *data, mode_t mode, char *err,
                      size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int rc = fy_file_write_atomic(path, data, strlen(data), mode);
  if (rc != FY_OK) snprintf(err, errlen, "%s: %s", path, fy_strerror(rc));
  return rc;
}

static int file_exists(const char *dir, const char *name) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return stat(path, &st) == 0;
}

int fy_pki_ca_init(const char *dir, int days, int force, char *err, size_t errlen) {
  struct rng r;
  mbedtls_pk_context key;
  unsigned char cert_pem[PEM_BUF], key_pem[PEM_BUF];
  int ret = FY_ETLS, rc;
  mbedtls_pk_init(&key);
  if (!force && (file_exists(dir, "ca.pem") || file_exists(dir, "ca-key.pem"))) {
    snprintf(err, errlen, "%s already holds a CA (ca.pem); refusing to replace it (use --force)", dir);
    mbedtls_pk_free(&key);
    return FY_EEXIST;
  }
  if ((ret = fy_mkdirs(dir, 0700)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", dir, fy_strerror(ret));
    mbedtls_pk_free(&key);
    return ret;
  }
  ret = FY_ETLS;
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
  if ((ret = write_cert(&s, &r, cert_pem, sizeof cert_pem, NULL, err, errlen)) != FY_OK) goto cleanup;
  if ((rc = mbedtls_pk_write_key_pem(&key, key_pem, sizeof key_pem)) != 0) {
    mbed_reason(err, errlen, "writing the CA key", rc);
    ret = FY_ETLS;
    goto cleanup;
  }
  if ((ret = write_file(dir, "ca-key.pem", key_pem, 0600, err, errlen)) != FY_OK) goto cleanup;
  ret = write_file(dir, "ca.pem", cert_pem, 0644, err, errlen);
cleanup:
  mbedtls_platform_zeroize(key_pem, sizeof key_pem);
  mbedtls_pk_free(&key);
  rng_free(&r);
  return ret;
}

int fy_pki_issue(const char *ca_dir, const char *name, fy_role role, const char *outdir, int days,
                 long not_before_offset_s, char *err, size_t errlen) {
  struct rng r;
  mbedtls_pk_context ca_key, key;
  mbedtls_x509_crt ca_crt;
  char *ca_pem = NULL, *ca_key_pem = NULL, path[4096], issuer[512], subject[256];
  size_t ca_len = 0, ca_key_len = 0;
  unsigned char cert_pem[PEM_BUF], key_pem[PEM_BUF], serial[16];
  int ret, rc;
  mbedtls_pk_init(&ca_key);
  mbedtls_pk_init(&key);
  mbedtls_x509_crt_init(&ca_crt);
  int rng_rc = rng_setup(&r);

  if (!fy_pki_valid_name(name)) {
    snprintf(err, errlen, "invalid name '%s': use 1-63 of a-z, 0-9, '-' and '.'", name);
    ret = FY_EINVAL;
    goto cleanup;
  }
  snprintf(path, sizeof path, "%s/ca.pem", ca_dir);
  if ((ret = fy_file_read(path, 65536, &ca_pem, &ca_len)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, ret == FY_ENOENT ? "no CA here (run 'ferry ca init')" : fy_strerror(ret));
    goto cleanup;
  }
  snprintf(path, sizeof path, "%s/ca-key.pem", ca_dir);
  if ((ret = fy_file_read(path, 65536, &ca_key_pem, &ca_key_len)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, fy_strerror(ret));
    goto cleanup;
  }
  ret = FY_ETLS;
  if ((rc = mbedtls_x509_crt_parse(&ca_crt, (unsigned char *)ca_pem, ca_len + 1)) != 0) {
    mbed_reason(err, errlen, "ca.pem", rc);
    goto cleanup;
  }
  if ((rc = fy_mbed_pk_parse_key(&ca_key, (unsigned char *)ca_key_pem, ca_key_len + 1, &r.drbg)) != 0) {
    mbed_reason(err, errlen, "ca-key.pem", rc);
    goto cleanup;
  }
  if (mbedtls_x509_dn_gets(issuer, sizeof issuer, &ca_crt.subject) < 0) {
    snprintf(err, errlen, "ca.pem: cannot read the subject");
    goto cleanup;
  }
  if ((rc = rng_rc) != 0 || (rc = gen_key(&key, &r)) != 0) {
    mbed_reason(err, errlen, "generating the key", rc);
    goto cleanup;
  }
  snprintf(subject, sizeof subject, "CN=%s,O=ferry,OU=%s", name, role == FY_ROLE_AGENT ? "agent" : "pusher");
  time_t now = time(NULL) + not_before_offset_s;
  struct cert_spec s = {
      .subject = subject, .issuer = issuer, .subject_key = &key, .issuer_key = &ca_key,
      .san = name,
      .eku_oid = role == FY_ROLE_AGENT ? MBEDTLS_OID_SERVER_AUTH : MBEDTLS_OID_CLIENT_AUTH,
      .eku_len = role == FY_ROLE_AGENT ? MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)
                                       : MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH),
      .not_before = now - 300, .not_after = now + (time_t)days * 86400,
  };
  if ((ret = write_cert(&s, &r, cert_pem, sizeof cert_pem, serial, err, errlen)) != FY_OK) goto cleanup;
  if ((rc = mbedtls_pk_write_key_pem(&key, key_pem, sizeof key_pem)) != 0) {
    mbed_reason(err, errlen, "writing the key", rc);
    ret = FY_ETLS;
    goto cleanup;
  }
  if ((ret = fy_mkdirs(outdir, 0700)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", outdir, fy_strerror(ret));
    goto cleanup;
  }
  if ((ret = write_file(outdir, "key.pem", key_pem, 0600, err, errlen)) != FY_OK ||
      (ret = write_file(outdir, "cert.pem", cert_pem, 0644, err, errlen)) != FY_OK ||
      (ret = write_file(outdir, "ca.pem", ca_pem, 0644, err, errlen)) != FY_OK)
    goto cleanup;
  { /* CA/issued.txt: what `ferry cert revoke --name` finds the serials in */
    char line[160], hex[40];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", serial[i]);
    int n = snprintf(line, sizeof line, "%s %s %s %lld\n", hex, name, role == FY_ROLE_AGENT ? "agent" : "pusher",
                     (long long)s.not_after);
    snprintf(path, sizeof path, "%s/issued.txt", ca_dir);
    FILE *f = fopen(path, "a");
    if (!f || fwrite(line, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
      snprintf(err, errlen, "%s: cannot record the certificate's serial", path);
      ret = FY_EIO;
    }
  }
cleanup:
  mbedtls_platform_zeroize(key_pem, sizeof key_pem);
  if (ca_key_pem) mbedtls_platform_zeroize(ca_key_pem, ca_key_len);
  free(ca_key_pem);
  free(ca_pem);
  mbedtls_x509_crt_free(&ca_crt);
  mbedtls_pk_free(&key);
  mbedtls_pk_free(&ca_key);
  rng_free(&r);
  return ret;
}

/* --- revocation -------------------------------------------------------------------------- */

#define CRL_MAX_REVOKED 4096

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

static int hex_serial(const char *hex, unsigned char out[16]) {
  if (strlen(hex) != 32) return 0;
  for (int i = 0; i < 16; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
    out[i] = (unsigned char)v;
  }
  return 1;
}

int fy_pki_revoke(const char *ca_dir, const char *name, const char *serial_hex, size_t *nnew, size_t *ntotal, char *err,
                  size_t errlen) {
  static unsigned char serials[CRL_MAX_REVOKED][16], pem[CRL_MAX_REVOKED * 70 + 4096];
  static time_t dates[CRL_MAX_REVOKED];
  char path[4096], *text = NULL, line[256];
  size_t n = 0, len;
  int ret = FY_ETLS, rc;
  struct rng r;
  mbedtls_pk_context key;
  mbedtls_x509_crt ca;
  mbedtls_pk_init(&key);
  mbedtls_x509_crt_init(&ca);
  *nnew = *ntotal = 0;
  int rng_rc = rng_setup(&r);
  /* what was revoked before: CA/revoked.txt, "SERIAL UNIXTIME NAME" */
  snprintf(path, sizeof path, "%s/revoked.txt", ca_dir);
  FILE *f = fopen(path, "r");
  if (!f && errno != ENOENT) { /* an unreadable record must not become an empty list */
    snprintf(err, errlen, "%s: %s: nothing was revoked", path, strerror(errno));
    ret = FY_EIO;
    goto cleanup;
  }
  while (f && fgets(line, sizeof line, f)) {
    char hex[64];
    long long t;
    if (n == CRL_MAX_REVOKED) break;
    if (sscanf(line, "%63s %lld", hex, &t) == 2 && hex_serial(hex, serials[n])) dates[n++] = (time_t)t;
  }
  if (f && ferror(f)) {
    fclose(f);
    snprintf(err, errlen, "%s: cannot be read: nothing was revoked", path);
    ret = FY_EIO;
    goto cleanup;
  }
  if (f) fclose(f);
  size_t before = n;
  /* the new ones: the given serial, or every certificate issued to name (CA/issued.txt) */
  unsigned char want[16];
  if (serial_hex && !hex_serial(serial_hex, want)) {
    snprintf(err, errlen, "--serial: expected 32 hex digits (as openssl x509 -serial prints them), got '%s'", serial_hex);
    ret = FY_EINVAL;
    goto cleanup;
  }
  snprintf(path, sizeof path, "%s/issued.txt", ca_dir);
  f = fopen(path, "r");
  int found = serial_hex != NULL;
  while (f && fgets(line, sizeof line, f)) {
    char hex[64], who[128];
    unsigned char sn[16];
    if (sscanf(line, "%63s %127s", hex, who) != 2 || !hex_serial(hex, sn)) continue;
    if (serial_hex ? memcmp(sn, want, 16) != 0 : strcmp(who, name) != 0) continue;
    found = 1;
    int dup = 0;
    for (size_t i = 0; i < n; i++) dup |= memcmp(serials[i], sn, 16) == 0;
    if (!dup && n == CRL_MAX_REVOKED) {
      fclose(f);
      snprintf(err, errlen, "the revocation list is full (%d certificates): start a new fleet CA", CRL_MAX_REVOKED);
      ret = FY_ETOOBIG;
      goto cleanup;
    }
    if (!dup) {
      memcpy(serials[n], sn, 16);
      dates[n++] = time(NULL);
    }
  }
  if (f) fclose(f);
  if (serial_hex && n == before) { /* not issued here (or before ferry kept the index): revoked all the same */
    int dup = 0;
    for (size_t i = 0; i < n; i++) dup |= memcmp(serials[i], want, 16) == 0;
    if (!dup && n < CRL_MAX_REVOKED) {
      memcpy(serials[n], want, 16);
      dates[n++] = time(NULL);
    }
  }
  if (!found) {
    snprintf(err, errlen, "no certificate issued to '%s' in %s/issued.txt (give --serial, from openssl x509 -serial -noout)", name,
             ca_dir);
    ret = FY_ENOENT;
    goto cleanup;
  }
  snprintf(path, sizeof path, "%s/ca.pem", ca_dir);
  if ((ret = fy_file_read(path, 65536, &text, &len)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, fy_strerror(ret));
    goto cleanup;
  }
  ret = FY_ETLS;
  if ((rc = mbedtls_x509_crt_parse(&ca, (unsigned char *)text, len + 1)) != 0) { mbed_reason(err, errlen, "ca.pem", rc); goto cleanup; }
  free(text);
  text = NULL;
  snprintf(path, sizeof path, "%s/ca-key.pem", ca_dir);
  if ((ret = fy_file_read(path, 65536, &text, &len)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, fy_strerror(ret));
    goto cleanup;
  }
  ret = FY_ETLS;
  if ((rc = fy_mbed_pk_parse_key(&key, (unsigned char *)text, len + 1, &r.drbg)) != 0) { mbed_reason(err, errlen, "ca-key.pem", rc); goto cleanup; }
  if ((rc = rng_rc) != 0 || (rc = write_crl_pem(&ca, &key, &r, (const unsigned char(*)[16])serials, dates, n, (long)n, pem, sizeof pem)) != 0) {
    mbed_reason(err, errlen, "writing the revocation list", rc);
    goto cleanup;
  }
  /* the record first, durably, then the list: a list never holds less than the record says */
  snprintf(path, sizeof path, "%s/revoked.txt", ca_dir);
  f = fopen(path, "a");
  for (size_t i = before; f && i < n; i++) {
    char hex[40];
    for (int k = 0; k < 16; k++) snprintf(hex + 2 * k, 3, "%02x", serials[i][k]);
    fprintf(f, "%s %lld %s\n", hex, (long long)dates[i], name ? name : "-");
  }
  if (!f || fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
    if (f) fclose(f);
    snprintf(err, errlen, "%s: cannot record the revocation: nothing was revoked", path);
    ret = FY_EIO;
    goto cleanup;
  }
  if ((ret = write_file(ca_dir, "crl.pem", pem, 0644, err, errlen)) != FY_OK) goto cleanup;
  *nnew = n - before;
  *ntotal = n;
  ret = FY_OK;
cleanup:
  if (text) mbedtls_platform_zeroize(text, len);
  free(text);
  mbedtls_x509_crt_free(&ca);
  mbedtls_pk_free(&key);
  rng_free(&r);
  return ret;
}
