/* The fleet PKI: `ferry ca init`, `ferry cert issue` and `ferry cert revoke`. Keys are ECDSA P-256; files are PEM
 * that openssl reads too. */
#ifndef FERRY_PUSHER_PKI_H
#define FERRY_PUSHER_PKI_H

#include "ferry/error.h"
#include "ferry/x509.h"

typedef enum { FY_ROLE_AGENT = FY_X509_AGENT, FY_ROLE_PUSHER = FY_X509_PUSHER, FY_ROLE_BROKER = FY_X509_BROKER } fy_role;

/* Creates DIR/ca.pem and DIR/ca-key.pem (0600). Refuses to replace an existing CA unless
 * force. Errors: FY_EEXIST, FY_EIO, FY_ETLS, with the reason in err. */
int fy_pki_ca_init(const char *dir, int days, int force, char *err, size_t errlen) FY_WUR;

/* Issues an identity for name and role into outdir: ca.pem, cert.pem, key.pem (0600).
 * not_before_offset_s shifts the start of validity (negative: in the past), for tests of
 * expired and not-yet-valid certificates. */
int fy_pki_issue(const char *ca_dir, const char *name, fy_role role, const char *outdir, int days,
                 long not_before_offset_s, char *err, size_t errlen) FY_WUR;

/* Revokes every certificate issued to name (CA/issued.txt), or the one with serial_hex (32 hex
 * digits), and rewrites CA/crl.pem: an X.509 v2 CRL signed by the CA that mbedTLS and openssl
 * read, with every serial revoked so far (CA/revoked.txt). *nnew: newly revoked; *ntotal: on
 * the list. FY_ENOENT when name has no certificate here. */
int fy_pki_revoke(const char *ca_dir, const char *name, const char *serial_hex, size_t *nnew, size_t *ntotal, char *err,
                  size_t errlen) FY_WUR;

/* Node names: 1..63 of [a-z0-9-.], starting with a letter or digit (a DNS label or name). */
int fy_pki_valid_name(const char *name);

#endif
