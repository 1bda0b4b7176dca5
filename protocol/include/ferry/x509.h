/* The fleet CA's certificates and revocation lists, in memory (protocol/src/x509.c): what
 * 'ferry ca init', 'ferry cert issue' and 'ferry cert revoke' write. ECDSA P-256 keys, SHA-256
 * signatures. Returns FY_OK, FY_ETLS (with err) or FY_ETOOBIG. */
#ifndef FERRY_X509_H
#define FERRY_X509_H

#include <stddef.h>
#include <time.h>

#include "ferry/error.h"

#define FY_X509_PEM_MAX 4096   /* a certificate or a key */
#define FY_X509_CRL_MAX 4096   /* revoked certificates one list holds */
#define FY_X509_CRL_PEM_MAX (FY_X509_CRL_MAX * 70 + 4096)

/* A new self-signed fleet CA valid for `days`. */
int fy_x509_new_ca(int days, char *cert_pem, size_t cert_cap, char *key_pem, size_t key_cap, char *err,
                   size_t errlen) FY_WUR;

/* Certificate roles, told apart by extended key usage (and OU, for people reading them):
 *   agent   serverAuth + clientAuth  serves pushers; a client of an MQTT broker (OpenSSL brokers
 *                                    want clientAuth on a client certificate)
 *   pusher  clientAuth only          an agent refuses a client certificate that has serverAuth,
 *                                    so neither an agent's nor a broker's identity can push
 *   broker  serverAuth only          the fleet's MQTT broker; a pusher refuses it as an agent */
#define FY_X509_AGENT 1
#define FY_X509_PUSHER 2
#define FY_X509_BROKER 3

/* A new key and a certificate for `name` in a role above, issued by the CA, the name as its DNS
 * subjectAltName. Its serial and notAfter come back. */
int fy_x509_issue(const char *ca_pem, size_t ca_len, const char *ca_key_pem, size_t ca_key_len, const char *name,
                  int role, int days, long not_before_offset_s, char *cert_pem, size_t cert_cap, char *key_pem,
                  size_t key_cap, unsigned char serial[16], long long *not_after, char *err, size_t errlen) FY_WUR;

/* An X.509 v2 CRL over the n serials (revoked at dates[i]), signed by the CA. */
int fy_x509_crl(const char *ca_pem, size_t ca_len, const char *ca_key_pem, size_t ca_key_len,
                const unsigned char (*serials)[16], const time_t *dates, size_t n, char *pem, size_t pem_cap, char *err,
                size_t errlen) FY_WUR;

/* Wipes key material from memory (one the compiler does not drop). */
void fy_x509_wipe(void *p, size_t n);

#endif
