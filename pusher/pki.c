/* Certificates with mbedTLS 2.28's x509write. 2.28 has no setters for subjectAltName and
 * extendedKeyUsage, so those two extensions are DER-encoded here (RFC 5280 4.2.1.6, 4.2.1.12). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "ferry/fsutil.h"
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
                      char *err, size_t errlen) {
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
  fmt_time(s->not_before, nb);
  fmt_time(s->not_after, na);
  if ((rc = mbedtls_mpi_read_binary(&serial, serial_bytes, sizeof serial_bytes)) != 0 ||
      (rc = mbedtls_x509write_crt_set_serial(&crt, &serial)) != 0 ||
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
  if ((ret = write_cert(&s, &r, cert_pem, sizeof cert_pem, err, errlen)) != FY_OK) goto cleanup;
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
  unsigned char cert_pem[PEM_BUF], key_pem[PEM_BUF];
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
  if ((rc = mbedtls_pk_parse_key(&ca_key, (unsigned char *)ca_key_pem, ca_key_len + 1, NULL, 0)) != 0) {
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
  if ((ret = write_cert(&s, &r, cert_pem, sizeof cert_pem, err, errlen)) != FY_OK) goto cleanup;
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
