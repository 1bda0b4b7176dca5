/* The only file that talks to mbedTLS's SSL API (TLS stays in one file). It builds against
 * Debian's mbedTLS 2.28 (the host presets: TLS 1.2) and against 3.6 LTS (the static presets,
 * protocol/mbedtls_config.h: TLS 1.3 preferred, 1.2 for older peers). It reads no private
 * field of either: the alert a peer sent is read off the wire by the record watcher below, and
 * a CRL's signature is checked from the list's own DER. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/md.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

#include "ferry/mbedtls_compat.h"
#if FY_MBEDTLS3
#include <psa/crypto.h>
#endif

#include "ferry/buf.h"
#include "ferry/tls.h"

struct fy_tls_conf {
  fy_tls_role role;
  mbedtls_ssl_config conf;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;
  mbedtls_x509_crt cert;
  mbedtls_pk_context key;
  char name[FY_TLS_NAME_MAX];
  mbedtls_x509_crl crl;      /* the fleet's revocation list, when one was given */
  int have_crl;
  size_t nrevoked;
  char *crl_pem;             /* its PEM text, for a pusher to carry to agents */
  mbedtls_x509_crt server_ca; /* FY_TLS_BROKER with broker.ca: what the broker's certificate chains to */
  int have_server_ca;
};

struct fy_tls {
  fy_tls_conf *conf;
  mbedtls_ssl_context ssl;
  fy_buf in;
  size_t in_off;
  fy_buf out;
  /* The record watcher: where the incoming byte stream is in the current record, and the last
   * alert the peer sent in the clear (-1: none). TLS 1.3 encrypts its alerts; then the reason
   * is told from our own certificate (own_diagnosis). */
  uint8_t rec_hdr[5];
  unsigned rec_hdr_len;
  size_t rec_left;
  int rec_alert_pos;        /* bytes of a plaintext alert's body seen, or -1 */
  int rec_alert_level;
  int alert;
  int got_data;             /* application data has been read */
  int established;
  char peer[FY_TLS_NAME_MAX];
  char err[320];
};

/* ChaCha20-Poly1305 first; ECDSA P-256 identities, so ECDSA suites only. */
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define TLS13_SUITES MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, MBEDTLS_TLS1_3_AES_128_GCM_SHA256, MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
#else
#define TLS13_SUITES
#endif
#define ECDSA_SUITES                                                                                  \
  TLS13_SUITES MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
      MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
/* A registry on the web PKI: the same AEAD suites, and RSA certificates where the build has RSA. */
#if defined(MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED)
#define RSA_SUITES                                                                                    \
  MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,  \
      MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
#else
#define RSA_SUITES
#endif
static const int suites[] = {ECDSA_SUITES 0};
static const int web_suites[] = {ECDSA_SUITES RSA_SUITES 0};

static void san_name(const mbedtls_x509_crt *crt, char *out, size_t n) {
  out[0] = '\0';
  for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL; s = s->next) {
    if (s->buf.p == NULL) continue;
    if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME)) {
      size_t len = s->buf.len < n - 1 ? s->buf.len : n - 1;
      memcpy(out, s->buf.p, len);
      out[len] = '\0';
      return;
    }
  }
}

/* mbedTLS's EKU check passes a certificate that has no EKU extension at all. */
static int has_eku(const mbedtls_x509_crt *crt, const char *oid, size_t oid_len) {
#if FY_MBEDTLS3
  int present = mbedtls_x509_crt_has_ext_type(crt, MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE);
#else
  int present = (crt->ext_types & MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE) != 0;
#endif
  return present && mbedtls_x509_crt_check_extended_key_usage(crt, oid, oid_len) == 0;
}

static int has_server_auth(const mbedtls_x509_crt *crt) {
  return has_eku(crt, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH));
}
static int has_client_auth(const mbedtls_x509_crt *crt) {
  return has_eku(crt, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH));
}

/* A broker's certificate (ferry cert issue --role broker): OU=broker in its subject. */
static int is_broker_cert(const mbedtls_x509_crt *crt) {
  for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next)
    if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORG_UNIT, &n->oid) == 0 && n->val.len == 6 && memcmp(n->val.p, "broker", 6) == 0)
      return 1;
  return 0;
}

/* The role check: the leaf must carry the EKU our peer's role needs. mbedTLS itself accepts a
 * leaf without the extension; ferry does not. A pusher's certificate is clientAuth alone: an
 * agent's (which is also a broker's client) or a broker's identity cannot push. An agent's is
 * serverAuth, and never a broker's. */
/* The revocation list's dates say nothing here: its signature was checked when it was taken in,
 * and a node whose clock is behind the CA's must not lock every peer out. */
static int crl_dates_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  (void)ctx;
  (void)crt;
  (void)depth;
  *flags &= ~(uint32_t)(MBEDTLS_X509_BADCRL_FUTURE | MBEDTLS_X509_BADCRL_EXPIRED);
  return 0;
}

static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  const fy_tls_conf *c = ctx;
  (void)crl_dates_cb(NULL, crt, depth, flags);
  /* the web PKI, and a broker whose certificate another CA issued (broker.ca): chain and host
   * name, mbedTLS's own checks. A certificate the fleet CA issued still needs the broker role
   * (a broker.ca that holds the fleet CA too must not let a node's certificate be the broker). */
  if (depth != 0 || c->role == FY_TLS_WEB) return 0;
  if (c->role == FY_TLS_BROKER && c->have_server_ca &&
      (crt->issuer_raw.len != c->ca.subject_raw.len || memcmp(crt->issuer_raw.p, c->ca.subject_raw.p, crt->issuer_raw.len) != 0))
    return 0;
  int ok = c->role == FY_TLS_AGENT    ? has_client_auth(crt) && !has_server_auth(crt)
           : c->role == FY_TLS_PUSHER ? has_server_auth(crt) && !is_broker_cert(crt)
                                      : has_server_auth(crt) && is_broker_cert(crt); /* FY_TLS_BROKER: ferry cert issue --role broker */
  if (!ok) *flags |= MBEDTLS_X509_BADCERT_EXT_KEY_USAGE;
  return 0;
}

static int parse_pem_crt(mbedtls_x509_crt *crt, const void *pem, size_t len) {
  /* mbedTLS wants PEM NUL-terminated, with the NUL counted in the length. */
  char *z = malloc(len + 1);
  if (!z) return MBEDTLS_ERR_X509_ALLOC_FAILED;
  memcpy(z, pem, len);
  z[len] = '\0';
  int rc = mbedtls_x509_crt_parse(crt, (const unsigned char *)z, len + 1);
  free(z);
  return rc;
}

static int parse_pem_key(mbedtls_pk_context *pk, const void *pem, size_t len, mbedtls_ctr_drbg_context *drbg) {
  char *z = malloc(len + 1);
  if (!z) return MBEDTLS_ERR_PK_ALLOC_FAILED;
  memcpy(z, pem, len);
  z[len] = '\0';
  int rc = fy_mbed_pk_parse_key(pk, (const unsigned char *)z, len + 1, drbg);
  mbedtls_platform_zeroize(z, len);
  free(z);
  return rc;
}

static void mbed_err(char *err, size_t errlen, const char *what, int rc) {
  char m[160];
  mbedtls_strerror(rc, m, sizeof m);
  snprintf(err, errlen, "%s: %s (-0x%04x)", what, m, (unsigned)-rc);
}

/* A conf with every context initialised and the DRBG seeded: what both constructors start from.
 * On failure *out is NULL (what was made is freed) and err says why. */
static int conf_alloc(fy_tls_conf **out, fy_tls_role role, char *err, size_t errlen) {
  static const char pers[] = "ferry";
  int rc;
  fy_tls_conf *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return FY_ENOMEM;
  c->role = role;
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_entropy_init(&c->entropy);
  mbedtls_ctr_drbg_init(&c->drbg);
  mbedtls_x509_crt_init(&c->ca);
  mbedtls_x509_crt_init(&c->server_ca);
  mbedtls_x509_crt_init(&c->cert);
  mbedtls_pk_init(&c->key);
  mbedtls_x509_crl_init(&c->crl);
#if FY_MBEDTLS3
  /* TLS 1.3's key schedule runs through PSA (idempotent). */
  if (psa_crypto_init() != PSA_SUCCESS) {
    snprintf(err, errlen, "starting PSA crypto failed");
    fy_tls_conf_free(c);
    return FY_ECONFIG;
  }
#endif
  if ((rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, (const unsigned char *)pers, sizeof pers - 1)) != 0) {
    mbed_err(err, errlen, "seeding the RNG", rc);
    fy_tls_conf_free(c);
    return FY_ECONFIG;
  }
  /* Reseed from the kernel before every output: a child forked with this conf in memory (a
   * build worker, a helper) cannot replay the parent's random stream. */
  mbedtls_ctr_drbg_set_prediction_resistance(&c->drbg, MBEDTLS_CTR_DRBG_PR_ON);
  *out = c;
  return FY_OK;
}

/* The policy every conf shares (tls.h): the peer verified against c->ca, TLS 1.2 or later (1.3
 * first on mbedTLS 3), these AEAD suites, no renegotiation, verify_cb. Nonzero on failure. */
static int conf_policy(fy_tls_conf *c, int endpoint, const int *list, char *err, size_t errlen) {
  int rc = mbedtls_ssl_config_defaults(&c->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) {
    mbed_err(err, errlen, "TLS defaults", rc);
    return rc;
  }
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
#if FY_MBEDTLS3
  /* TLS 1.3 first, both ways; 1.2 for peers on mbedTLS 2.28. */
  mbedtls_ssl_conf_min_tls_version(&c->conf, MBEDTLS_SSL_VERSION_TLS1_2);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
  /* FERRY_TLS_MAX=1.2 holds a side to TLS 1.2: the interoperability tests and the 1.3-against-
   * 1.2 benchmark use it. */
  const char *cap = getenv("FERRY_TLS_MAX");
  mbedtls_ssl_conf_max_tls_version(&c->conf, cap && strcmp(cap, "1.2") == 0 ? MBEDTLS_SSL_VERSION_TLS1_2
                                                                           : MBEDTLS_SSL_VERSION_TLS1_3);
#endif
#else
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
  mbedtls_ssl_conf_ciphersuites(&c->conf, list);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
  mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
  mbedtls_ssl_conf_verify(&c->conf, verify_cb, c);
  return 0;
}

int fy_tls_conf_new(fy_tls_conf **out, fy_tls_role role, const void *ca_pem, size_t ca_len,
                    const void *cert_pem, size_t cert_len, const void *key_pem, size_t key_len,
                    char *err, size_t errlen) {
  int ret = FY_ECONFIG, rc;
  fy_tls_conf *c = NULL;
  *out = NULL;
  if ((rc = conf_alloc(&c, role, err, errlen)) != FY_OK) {
    ret = rc;
    goto cleanup;
  }
  if ((rc = parse_pem_crt(&c->ca, ca_pem, ca_len)) != 0) {
    mbed_err(err, errlen, "ca.pem", rc);
    goto cleanup;
  }
  if ((rc = parse_pem_crt(&c->cert, cert_pem, cert_len)) != 0) {
    mbed_err(err, errlen, "cert.pem", rc);
    goto cleanup;
  }
  if ((rc = parse_pem_key(&c->key, key_pem, key_len, &c->drbg)) != 0) {
    mbed_err(err, errlen, "key.pem", rc);
    goto cleanup;
  }
#if FY_MBEDTLS3
  rc = mbedtls_pk_check_pair(&c->cert.pk, &c->key, mbedtls_ctr_drbg_random, &c->drbg);
#else
  rc = mbedtls_pk_check_pair(&c->cert.pk, &c->key);
#endif
  if (rc != 0) {
    snprintf(err, errlen, "key.pem does not belong to cert.pem");
    goto cleanup;
  }
  san_name(&c->cert, c->name, sizeof c->name);
  /* An agent must hold an agent certificate: mbedTLS would otherwise fail every handshake
   * with a bare handshake_failure. (A pusher identity is not checked here: the agent's refusal
   * of a wrong-role client is the security boundary, and tests exercise it.) */
  if (role == FY_TLS_AGENT && !has_server_auth(&c->cert)) {
    snprintf(err, errlen, "cert.pem is not an agent certificate (no serverAuth); issue one with "
                          "'ferry cert issue --role agent'");
    goto cleanup;
  }
  if (role == FY_TLS_BROKER && !has_client_auth(&c->cert)) {
    snprintf(err, errlen, "cert.pem cannot authenticate to a broker (no clientAuth: an agent certificate issued before "
                          "brokers); issue it again with 'ferry cert issue --role agent'");
    goto cleanup;
  }
  if ((rc = conf_policy(c, role == FY_TLS_AGENT ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT, suites, err, errlen)) != 0)
    goto cleanup;
  if ((rc = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key)) != 0) {
    mbed_err(err, errlen, "own certificate", rc);
    goto cleanup;
  }
  *out = c;
  c = NULL;
  ret = FY_OK;
cleanup:
  fy_tls_conf_free(c);
  return ret;
}

int fy_tls_conf_new_web(fy_tls_conf **out, const void *ca_pem, size_t ca_len, char *err, size_t errlen) {
  int ret = FY_ECONFIG, rc;
  fy_tls_conf *c = NULL;
  *out = NULL;
  if ((rc = conf_alloc(&c, FY_TLS_WEB, err, errlen)) != FY_OK) {
    ret = rc;
    goto cleanup;
  }
  /* A system bundle holds certificates of every kind; those this build cannot read are skipped
   * (mbedtls_x509_crt_parse counts them), as long as one CA is usable. */
  rc = parse_pem_crt(&c->ca, ca_pem, ca_len);
  if (rc < 0 || c->ca.version == 0) {
    if (rc < 0) mbed_err(err, errlen, "the registry CA bundle", rc);
    else snprintf(err, errlen, "the registry CA bundle holds no certificate this build can use");
    goto cleanup;
  }
  if (conf_policy(c, MBEDTLS_SSL_IS_CLIENT, web_suites, err, errlen) != 0) goto cleanup;
  *out = c;
  c = NULL;
  ret = FY_OK;
cleanup:
  fy_tls_conf_free(c);
  return ret;
}

int fy_tls_conf_set_broker_ca(fy_tls_conf *c, const void *pem, size_t len, char *err, size_t errlen) {
  if (c->role != FY_TLS_BROKER) {
    snprintf(err, errlen, "broker.ca: only for a broker client");
    return FY_ECONFIG;
  }
  mbedtls_x509_crt_free(&c->server_ca);
  mbedtls_x509_crt_init(&c->server_ca);
  c->have_server_ca = 0;
  int rc = parse_pem_crt(&c->server_ca, pem, len);
  if (rc < 0 || c->server_ca.version == 0) {
    if (rc < 0) mbed_err(err, errlen, "not a PEM file of certificates", rc);
    else snprintf(err, errlen, "no certificate this build can use in it");
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, c->have_crl ? &c->crl : NULL);
    return FY_ECONFIG;
  }
  c->have_server_ca = 1;
  mbedtls_ssl_conf_ca_chain(&c->conf, &c->server_ca, NULL);
  mbedtls_ssl_conf_ciphersuites(&c->conf, web_suites); /* such brokers often have RSA keys */
  return FY_OK;
}

void fy_tls_conf_free(fy_tls_conf *c) {
  if (c == NULL) return;
  mbedtls_ssl_config_free(&c->conf);
  mbedtls_x509_crl_free(&c->crl);
  free(c->crl_pem);
  mbedtls_pk_free(&c->key); /* zeroizes the key */
  mbedtls_x509_crt_free(&c->cert);
  mbedtls_x509_crt_free(&c->ca);
  mbedtls_x509_crt_free(&c->server_ca);
  mbedtls_ctr_drbg_free(&c->drbg);
  mbedtls_entropy_free(&c->entropy);
  free(c);
}

const char *fy_tls_conf_name(const fy_tls_conf *c) { return c->name; }

int fy_tls_conf_reseed(fy_tls_conf *c) {
  return mbedtls_ctr_drbg_reseed(&c->drbg, NULL, 0) == 0 ? FY_OK : FY_ETLS;
}

int fy_tls_conf_random(fy_tls_conf *c, void *buf, size_t n) {
  if (n > 1024) return FY_EINVAL;
  return mbedtls_ctr_drbg_random(&c->drbg, buf, n) == 0 ? FY_OK : FY_ETLS;
}

static int bio_send(void *ctx, const unsigned char *p, size_t n) {
  fy_tls *t = ctx;
  size_t room = t->out.max - t->out.len;
  if (room == 0) return MBEDTLS_ERR_SSL_WANT_WRITE;
  if (n > room) n = room;
  if (fy_buf_append(&t->out, p, n) != FY_OK) return MBEDTLS_ERR_SSL_WANT_WRITE;
  return (int)n;
}

/* Follows the record layer of what the peer sends, to keep the last alert it sent in the clear
 * (TLS 1.2 handshake alerts are; the library keeps them to itself). Only headers are looked at
 * byte by byte; record bodies are skipped whole. */
static void watch_records(fy_tls *t, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (t->rec_left == 0) {
      t->rec_hdr[t->rec_hdr_len++] = *p++;
      n--;
      if (t->rec_hdr_len == 5) {
        t->rec_hdr_len = 0;
        t->rec_left = (size_t)t->rec_hdr[3] << 8 | t->rec_hdr[4];
        t->rec_alert_pos = t->rec_hdr[0] == MBEDTLS_SSL_MSG_ALERT && t->rec_left == 2 ? 0 : -1;
        if (t->rec_alert_pos == 0) t->alert = -1; /* the newest alert is the one that counts */
      }
      continue;
    }
    size_t k = n < t->rec_left ? n : t->rec_left;
    if (t->rec_alert_pos >= 0) { /* level, then description: only a fatal one is kept */
      for (size_t i = 0; i < k; i++, t->rec_alert_pos++) {
        if (t->rec_alert_pos == 0) t->rec_alert_level = p[i];
        else if (t->rec_alert_pos == 1) t->alert = t->rec_alert_level == MBEDTLS_SSL_ALERT_LEVEL_FATAL ? p[i] : -1;
      }
    }
    p += k;
    n -= k;
    t->rec_left -= k;
  }
}

static int bio_recv(void *ctx, unsigned char *p, size_t n) {
  fy_tls *t = ctx;
  size_t avail = t->in.len - t->in_off;
  if (avail == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  if (n > avail) n = avail;
  memcpy(p, t->in.data + t->in_off, n);
  watch_records(t, p, n);
  t->in_off += n;
  if (t->in_off == t->in.len) {
    t->in.len = 0;
    t->in_off = 0;
  }
  return (int)n;
}

int fy_tls_new(fy_tls **out, fy_tls_conf *conf, const char *expected_peer) {
  int rc;
  fy_tls *t = calloc(1, sizeof *t);
  *out = NULL;
  if (!t) return FY_ENOMEM;
  t->conf = conf;
  t->alert = -1;
  t->rec_alert_pos = -1;
  fy_buf_init(&t->in, FY_TLS_IN_MAX);
  fy_buf_init(&t->out, FY_TLS_OUT_MAX);
  mbedtls_ssl_init(&t->ssl);
  if ((rc = mbedtls_ssl_setup(&t->ssl, &conf->conf)) != 0 ||
      (expected_peer && (rc = mbedtls_ssl_set_hostname(&t->ssl, expected_peer)) != 0) ||
      /* A pusher that names no node checks the CA and the role only; mbedTLS 3.6 wants that
       * said out loud. */
      (FY_MBEDTLS3 && !expected_peer && conf->role == FY_TLS_PUSHER && (rc = mbedtls_ssl_set_hostname(&t->ssl, NULL)) != 0)) {
    fy_tls_free(t);
    return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? FY_ENOMEM : FY_EINVAL;
  }
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  *out = t;
  return FY_OK;
}

void fy_tls_free(fy_tls *t) {
  if (t == NULL) return;
  mbedtls_ssl_free(&t->ssl);
  fy_buf_free(&t->in, 1);
  fy_buf_free(&t->out, 0);
  free(t);
}

int fy_tls_feed(fy_tls *t, const uint8_t *p, size_t n) {
  if (t->in_off > 0 && t->in_off == t->in.len) {
    t->in.len = t->in_off = 0;
  } else if (t->in_off > 0 && n > t->in.max - t->in.len) {
    fy_buf_consume(&t->in, t->in_off);
    t->in_off = 0;
  }
  int rc = fy_buf_append(&t->in, p, n);
  return rc == FY_ETOOBIG ? FY_EBUSY : rc;
}

/* The peer ended the handshake with an alert we could not read (TLS 1.3 encrypts them): tell
 * why from what we know of our own certificate, the reasons a ferry peer refuses one. */
static int own_diagnosis(fy_tls *t) {
  const char *who = t->conf->role == FY_TLS_AGENT ? "pusher" : t->conf->role == FY_TLS_BROKER ? "broker" : "agent";
  const fy_tls_conf *c = t->conf;
  int client = c->role == FY_TLS_PUSHER || c->role == FY_TLS_BROKER;
  if (client ? !has_client_auth(&c->cert) : !has_server_auth(&c->cert)) {
    snprintf(t->err, sizeof t->err, "the %s refused our certificate: wrong role (ours has no %s)", who,
             client ? "clientAuth" : "serverAuth");
    return FY_EROLE;
  }
  if (c->role == FY_TLS_PUSHER && has_server_auth(&c->cert)) {
    snprintf(t->err, sizeof t->err, "the %s refused our certificate: wrong role (ours is an agent's or a broker's: serverAuth)", who);
    return FY_EROLE;
  }
  if (c->have_crl && mbedtls_x509_crt_is_revoked(&c->cert, &c->crl)) {
    snprintf(t->err, sizeof t->err, "the %s refused our certificate: it has been revoked", who);
    return FY_ECERT;
  }
  if (mbedtls_x509_time_is_past(&c->cert.valid_to)) {
    snprintf(t->err, sizeof t->err, "the %s refused our certificate: it expired", who);
    return FY_ECERT;
  }
  if (mbedtls_x509_time_is_future(&c->cert.valid_from)) {
    snprintf(t->err, sizeof t->err, "the %s refused our certificate: it is not valid yet", who);
    return FY_ECERT;
  }
  snprintf(t->err, sizeof t->err, "the %s refused our certificate (an encrypted TLS 1.3 alert: another fleet's CA, "
           "or revoked on the %s's list; its log says which)", who, who);
  return FY_ECERT;
}

/* Why a handshake failed, in words a person can act on, from our verify flags or the alert
 * the peer sent. */
static int explain(fy_tls *t, int rc) {
  const char *who = t->conf->role == FY_TLS_AGENT    ? "pusher"
                    : t->conf->role == FY_TLS_WEB    ? "registry"
                    : t->conf->role == FY_TLS_BROKER ? "broker"
                                                     : "agent";
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    uint32_t f = mbedtls_ssl_get_verify_result(&t->ssl);
    if (f & MBEDTLS_X509_BADCERT_EXT_KEY_USAGE) {
      snprintf(t->err, sizeof t->err, "the %s's certificate lacks the %s role (extended key usage %s)", who, who,
               t->conf->role == FY_TLS_AGENT    ? "clientAuth without serverAuth: an agent's or a broker's identity cannot push"
               : t->conf->role == FY_TLS_PUSHER ? "serverAuth, and not a broker's certificate"
                                                : "serverAuth and OU=broker: ferry cert issue --role broker");
      return FY_EROLE;
    }
    if (f & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
      snprintf(t->err, sizeof t->err, "the %s's certificate does not carry the expected name", who);
      return FY_ENAME;
    }
    if (f & MBEDTLS_X509_BADCERT_REVOKED) {
      snprintf(t->err, sizeof t->err, "the %s's certificate has been revoked (it is on the fleet's revocation list)", who);
      return FY_ECERT;
    }
    if (f & MBEDTLS_X509_BADCERT_EXPIRED) {
      snprintf(t->err, sizeof t->err, "the %s's certificate has expired", who);
      return FY_ECERT;
    }
    if (f & MBEDTLS_X509_BADCERT_FUTURE) {
      snprintf(t->err, sizeof t->err, "the %s's certificate is not valid yet", who);
      return FY_ECERT;
    }
    char info[200];
    mbedtls_x509_crt_verify_info(info, sizeof info, "", f);
    for (char *q = info; *q; q++) if (*q == '\n') *q = ' ';
    snprintf(t->err, sizeof t->err, "the %s's certificate is not signed by %s (%.120s)", who,
             t->conf->role == FY_TLS_WEB                             ? "a CA this node trusts (registry_ca in its config)"
             : t->conf->role == FY_TLS_BROKER && t->conf->have_server_ca ? "the CA in broker.ca"
             : t->conf->role == FY_TLS_BROKER ? "the fleet CA; a broker whose certificate another CA issued needs broker.ca"
                                              : "the fleet CA",
             info);
    return FY_ECERT;
  }
  if (rc == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE) {
    /* mbedTLS 2.28 ends here silently; tell the client, as OpenSSL servers do (3.6 does). */
    if (!FY_MBEDTLS3)
      (void)mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                           MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
    snprintf(t->err, sizeof t->err, "the pusher sent no certificate");
    return FY_ECERT;
  }
  if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && t->alert < 0 && t->conf->role != FY_TLS_WEB) return own_diagnosis(t);
  if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
    unsigned alert = (unsigned)t->alert;
    switch (alert) {
    case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT:
      snprintf(t->err, sizeof t->err, "the %s refused our certificate: wrong role (alert %u)", who, alert);
      return FY_EROLE;
    case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA:
      snprintf(t->err, sizeof t->err, "the %s does not trust our certificate: unknown CA (alert %u)", who, alert);
      return FY_ECERT;
    case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED:
      snprintf(t->err, sizeof t->err, "the %s says our certificate expired (alert %u)", who, alert);
      return FY_ECERT;
    case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED:
      snprintf(t->err, sizeof t->err, "the %s refused our certificate: it has been revoked (alert %u)", who, alert);
      return FY_ECERT;
    case MBEDTLS_SSL_ALERT_MSG_BAD_CERT:
    case MBEDTLS_SSL_ALERT_MSG_NO_CERT:
    case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN:
      snprintf(t->err, sizeof t->err, "the %s refused our certificate (alert %u)", who, alert);
      return FY_ECERT;
    default:
      snprintf(t->err, sizeof t->err, "the %s ended the handshake (TLS alert %u)%s", who, alert,
               t->conf->role == FY_TLS_BROKER && !t->conf->have_server_ca && alert == MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE
                   ? ": no cipher suite in common, as with a broker whose certificate has an RSA key (another CA's: "
                     "broker.ca names it)"
                   : "");
      return FY_ETLS;
    }
  }
  if (rc == MBEDTLS_ERR_SSL_INVALID_RECORD || rc == MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY ||
      rc == MBEDTLS_ERR_SSL_BAD_INPUT_DATA || rc == MBEDTLS_ERR_SSL_INVALID_MAC ||
#if FY_MBEDTLS3
      rc == MBEDTLS_ERR_SSL_DECODE_ERROR || rc == MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION ||
#else
      rc == MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO ||
#endif
      0) {
    mbed_err(t->err, sizeof t->err, "not a TLS peer, or a broken one", rc);
    return FY_ETLS;
  }
  mbed_err(t->err, sizeof t->err, "TLS handshake", rc);
  return FY_ETLS;
}

int fy_tls_handshake(fy_tls *t) {
  if (t->established) return FY_OK;
  int rc = mbedtls_ssl_handshake(&t->ssl);
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return FY_EAGAIN;
  if (rc != 0) return explain(t, rc);
  const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
  if (peer) san_name(peer, t->peer, sizeof t->peer);
  t->established = 1;
  return FY_OK;
}

int fy_tls_established(const fy_tls *t) { return t->established; }

/* A TLS 1.3 pusher that has read nothing yet: an alert or a record it cannot open is the
 * agent's refusal of its certificate (see fy_tls_read). */
static int refused_after_finished(const fy_tls *t) {
#if FY_MBEDTLS3
  return !t->got_data && t->conf->role == FY_TLS_PUSHER &&
         mbedtls_ssl_get_version_number(&t->ssl) == MBEDTLS_SSL_VERSION_TLS1_3;
#else
  (void)t;
  return 0;
#endif
}

int fy_tls_read(fy_tls *t, uint8_t *buf, size_t cap, size_t *got) {
  *got = 0;
  if (!t->established) return FY_EAGAIN;
  int rc = mbedtls_ssl_read(&t->ssl, buf, cap);
  if (rc > 0) {
    *got = (size_t)rc;
    t->got_data = 1;
    return FY_OK;
  }
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return FY_EAGAIN;
  if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return FY_EEOF;
  /* A TLS 1.3 client is done before the server has checked its certificate: the refusal
   * arrives here. */
  /* mbedTLS 3.6 as a TLS 1.3 server sends that refusal under its handshake keys while the
   * client already reads with the application keys: the record fails its MAC. Before any
   * data came, either is the agent refusing our certificate. */
  if ((rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE || rc == MBEDTLS_ERR_SSL_INVALID_MAC) && refused_after_finished(t))
    return explain(t, MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE);
  mbed_err(t->err, sizeof t->err, "TLS read", rc);
  return FY_ETLS;
}

/* Worst-case bytes a record adds: header 5 + explicit nonce 8 + tag 16, rounded up. */
#define RECORD_OVERHEAD 64u
#define RECORD_PLAINTEXT 16384u

size_t fy_tls_write_room(const fy_tls *t) {
  size_t room = t->out.max - t->out.len;
  size_t records = room / (RECORD_PLAINTEXT + RECORD_OVERHEAD) + 1;
  size_t over = records * RECORD_OVERHEAD;
  return room > over ? room - over : 0;
}

int fy_tls_write(fy_tls *t, const uint8_t *p, size_t n) {
  if (!t->established) return FY_EINVAL;
  if (n > fy_tls_write_room(t)) return FY_EBUSY;
  while (n > 0) {
    int rc = mbedtls_ssl_write(&t->ssl, p, n);
    if (rc <= 0) {
      mbed_err(t->err, sizeof t->err, "TLS write", rc);
      return FY_ETLS;
    }
    p += rc;
    n -= (size_t)rc;
  }
  return FY_OK;
}

int fy_tls_close_notify(fy_tls *t) {
  int rc = mbedtls_ssl_close_notify(&t->ssl);
  return rc == 0 || rc == MBEDTLS_ERR_SSL_WANT_WRITE ? FY_OK : FY_ETLS;
}

const uint8_t *fy_tls_out(const fy_tls *t, size_t *len) {
  *len = t->out.len;
  return t->out.data;
}

void fy_tls_out_consume(fy_tls *t, size_t n) { fy_buf_consume(&t->out, n); }

const char *fy_tls_peer_name(const fy_tls *t) { return t->peer; }
const char *fy_tls_errmsg(const fy_tls *t) { return t->err; }
const char *fy_tls_suite(const fy_tls *t) { return mbedtls_ssl_get_ciphersuite(&t->ssl); }
const char *fy_tls_version(const fy_tls *t) { return mbedtls_ssl_get_version(&t->ssl); }

/* a before b (to the second)? */
static int time_cmp(const mbedtls_x509_time *a, const mbedtls_x509_time *b) {
  const int av[6] = {a->year, a->mon, a->day, a->hour, a->min, a->sec}, bv[6] = {b->year, b->mon, b->day, b->hour, b->min, b->sec};
  for (int i = 0; i < 6; i++)
    if (av[i] != bv[i]) return av[i] < bv[i] ? -1 : 1;
  return 0;
}

/* The list's signature, checked with the CA's key from the list's own DER (public fields only):
 * raw is SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }, and ferry's
 * lists are ecdsa-with-SHA256 (the CA must also carry the cRLSign usage). */
static int crl_signed_by(const mbedtls_x509_crl *crl, mbedtls_x509_crt *ca) {
  static const char ecdsa_sha256[] = MBEDTLS_OID_ECDSA_SHA256;
  unsigned char *p = crl->raw.p, *end = crl->raw.p + crl->raw.len, hash[32];
  size_t len, siglen;
  mbedtls_asn1_buf alg, params;
  if (crl->sig_oid.len != sizeof ecdsa_sha256 - 1 || memcmp(crl->sig_oid.p, ecdsa_sha256, crl->sig_oid.len) != 0 ||
      mbedtls_x509_crt_check_key_usage(ca, MBEDTLS_X509_KU_CRL_SIGN) != 0)
    return 0;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0 || len != (size_t)(end - p) ||
      crl->tbs.p != p || crl->tbs.len > len)
    return 0;
  p += crl->tbs.len;
  if (mbedtls_asn1_get_alg(&p, end, &alg, &params) != 0 || alg.len != crl->sig_oid.len ||
      memcmp(alg.p, crl->sig_oid.p, alg.len) != 0 || mbedtls_asn1_get_bitstring_null(&p, end, &siglen) != 0 ||
      siglen != (size_t)(end - p) || fy_mbed_sha256(crl->tbs.p, crl->tbs.len, hash) != 0)
    return 0;
  return mbedtls_pk_verify(&ca->pk, MBEDTLS_MD_SHA256, hash, sizeof hash, p, siglen) == 0;
}

int fy_tls_conf_set_crl(fy_tls_conf *c, const void *pem, size_t len, int *changed, size_t *nrevoked, char *err, size_t errlen) {
  mbedtls_x509_crl crl;
  *changed = 0;
  *nrevoked = 0;
  if (len > FY_CRL_PEM_MAX) {
    snprintf(err, errlen, "the revocation list is %zu bytes, over %u", len, FY_CRL_PEM_MAX);
    return FY_ETOOBIG;
  }
  if (c->crl_pem && strlen(c->crl_pem) == len && memcmp(c->crl_pem, pem, len) == 0) { /* the one in use */
    *nrevoked = c->nrevoked;
    return FY_OK;
  }
  char *z = malloc(len + 1);
  if (!z) return FY_ENOMEM;
  memcpy(z, pem, len);
  z[len] = '\0';
  mbedtls_x509_crl_init(&crl);
  int rc = mbedtls_x509_crl_parse(&crl, (const unsigned char *)z, len + 1);
  if (rc != 0 || crl.next) {
    if (rc != 0) mbed_err(err, errlen, "the revocation list", rc);
    else snprintf(err, errlen, "the revocation list holds more than one list");
    goto bad;
  }
  /* Issued by the fleet CA, and signed by it: a list from anyone else is refused. */
  if (crl.issuer_raw.len != c->ca.subject_raw.len || memcmp(crl.issuer_raw.p, c->ca.subject_raw.p, crl.issuer_raw.len) != 0 ||
      !crl_signed_by(&crl, &c->ca)) {
    snprintf(err, errlen, "the revocation list is not signed by the fleet CA");
    goto bad;
  }
  for (const mbedtls_x509_crl_entry *e = &crl.entry; e && e->raw.len; e = e->next) (*nrevoked)++;
  /* Newer: a later thisUpdate, or the same second with more entries (lists only grow). */
  int cmp = c->have_crl ? time_cmp(&crl.this_update, &c->crl.this_update) : 1;
  if (cmp < 0 || (cmp == 0 && *nrevoked <= c->nrevoked)) { /* not newer: kept as it is */
    mbedtls_x509_crl_free(&crl);
    free(z);
    return FY_OK;
  }
  mbedtls_x509_crl_free(&c->crl);
  c->crl = crl; /* the head moves; its entries stay where they are */
  c->have_crl = 1;
  c->nrevoked = *nrevoked;
  free(c->crl_pem);
  c->crl_pem = z;
  if (!c->have_server_ca) mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, &c->crl); /* (the fleet's list says nothing of another CA's broker) */
  *changed = 1;
  return FY_OK;
bad:
  mbedtls_x509_crl_free(&crl);
  free(z);
  return FY_ECERT;
}

const char *fy_tls_conf_crl_pem(const fy_tls_conf *c) { return c->crl_pem; }

int fy_tls_peer_revoked(const fy_tls *t) {
  const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
  /* the fleet's list names the fleet's certificates, not another CA's broker */
  return t->conf->have_crl && !t->conf->have_server_ca && peer && mbedtls_x509_crt_is_revoked(peer, &t->conf->crl);
}

int fy_tls_conf_check_cert(const fy_tls_conf *c, const char *pem, size_t len, fy_tls_role want, char *name, size_t namelen,
                           char *pub_pem, size_t pubcap, char *err, size_t errlen) {
  mbedtls_x509_crt crt;
  uint32_t flags = 0;
  int ret = FY_ECERT;
  mbedtls_x509_crt_init(&crt);
  if (len > 16384 || parse_pem_crt(&crt, pem, len) != 0 || crt.next != NULL) {
    snprintf(err, errlen, "not one PEM certificate");
    goto out;
  }
  /* the same chain, dates and revocation list as a handshake's; the role as verify_cb's */
  if (mbedtls_x509_crt_verify(&crt, (mbedtls_x509_crt *)&c->ca, c->have_crl ? (mbedtls_x509_crl *)&c->crl : NULL, NULL, &flags,
                              crl_dates_cb, NULL) != 0) {
    snprintf(err, errlen, "%s", flags & MBEDTLS_X509_BADCERT_REVOKED   ? "its certificate has been revoked"
                                : flags & MBEDTLS_X509_BADCERT_EXPIRED ? "its certificate has expired"
                                : flags & MBEDTLS_X509_BADCERT_FUTURE  ? "its certificate is not valid yet"
                                                                       : "its certificate is not signed by the fleet CA");
    goto out;
  }
  int ok = want == FY_TLS_PUSHER ? has_client_auth(&crt) && !has_server_auth(&crt)
           : want == FY_TLS_AGENT ? has_server_auth(&crt) && !is_broker_cert(&crt)
                                  : 0;
  if (!ok) {
    snprintf(err, errlen, "its certificate is not a %s's", want == FY_TLS_PUSHER ? "pusher" : "node");
    ret = FY_EROLE;
    goto out;
  }
  san_name(&crt, name, namelen);
  if (mbedtls_pk_write_pubkey_pem(&crt.pk, (unsigned char *)pub_pem, pubcap) != 0) {
    snprintf(err, errlen, "its public key cannot be written");
    goto out;
  }
  ret = FY_OK;
out:
  mbedtls_x509_crt_free(&crt);
  return ret;
}
