/* Sans-I/O mutual TLS over mbedTLS (ciphertext in, ciphertext out), used by both sides.
 *
 * All mbedTLS calls live in src/tls.c so that moving from the 2.28 branch (Debian 12) to 3.6 is
 * a change of one file. Policy, fixed here and not configurable:
 *   - TLS 1.2 or later; ECDHE-ECDSA with AEAD suites only, ChaCha20-Poly1305 first (boards
 *     without AES instructions, like the Pi 4, run it several times faster);
 *   - the peer's certificate is REQUIRED and must chain to the fleet CA;
 *   - roles by extended key usage: an agent (TLS server) must present serverAuth, a pusher (TLS
 *     client) clientAuth; a certificate without the EKU extension is refused;
 *   - no renegotiation.
 * The caller moves bytes: fy_tls_feed() what the socket delivered, send what fy_tls_out() holds. */
#ifndef FERRY_TLS_H
#define FERRY_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"

/* FY_TLS_BROKER: a client of the fleet's MQTT broker (an agent's or a pusher's identity, which
 * must carry clientAuth); the broker's certificate must chain to the fleet CA, carry serverAuth
 * and the host name fy_tls_new's expected_peer names. */
typedef enum { FY_TLS_AGENT = 1, FY_TLS_PUSHER = 2, FY_TLS_WEB = 3, FY_TLS_BROKER = 4 } fy_tls_role;

typedef struct fy_tls_conf fy_tls_conf;
typedef struct fy_tls fy_tls;

#define FY_TLS_IN_MAX (256u * 1024u)       /* ciphertext buffered before the reader catches up */
#define FY_TLS_OUT_MAX (4u * 1024u * 1024u) /* ciphertext waiting for the socket */
#define FY_TLS_NAME_MAX 256

/* Loads an identity from PEM bytes (not NUL-terminated is fine). On failure returns FY_ECONFIG
 * or FY_ENOMEM with a reason in err. The PEM buffers are copied; *out is owned by the caller. */
int fy_tls_conf_new(fy_tls_conf **out, fy_tls_role role, const void *ca_pem, size_t ca_len,
                    const void *cert_pem, size_t cert_len, const void *key_pem, size_t key_len,
                    char *err, size_t errlen) FY_WUR;
/* A client for HTTPS servers outside the fleet (OCI registries, their mirrors): the server's
 * certificate must chain to a CA of ca_pem (a bundle: the system's and the agent config's
 * registry_ca) and carry the host name fy_tls_new's expected_peer names; no client certificate,
 * no role check. The same TLS versions and AEAD suites, RSA certificates too where the build
 * has RSA. */
int fy_tls_conf_new_web(fy_tls_conf **out, const void *ca_pem, size_t ca_len, char *err, size_t errlen) FY_WUR;
/* NULL-safe; wipes the private key. */
/* FY_TLS_BROKER: the broker's certificate is checked against this bundle (PEM) and its host
 * name, as a web server's is, instead of against the fleet CA with the broker role: for a broker
 * whose certificate another CA issued (AWS IoT Core, a hosted EMQX or HiveMQ). The fleet CA
 * still checks everything signed (statuses, desired states), and a broker certificate it issued
 * still needs the broker role. Once, right after the conf is made, before any session. */
int fy_tls_conf_set_broker_ca(fy_tls_conf *c, const void *pem, size_t len, char *err, size_t errlen) FY_WUR;
void fy_tls_conf_free(fy_tls_conf *c);
/* Checks a certificate (PEM) the way a handshake checks a peer's: it chains to c's CA, is within
 * its dates and not on c's revocation list, and is of the role `want` (FY_TLS_PUSHER: clientAuth
 * without serverAuth; FY_TLS_AGENT: serverAuth, not a broker's). Writes its name and its public
 * key (PEM). FY_ECERT or FY_EROLE with the reason ("its certificate …") in err. For messages
 * signed by an identity of the fleet (desired state through a broker). */
int fy_tls_conf_check_cert(const fy_tls_conf *c, const char *pem, size_t len, fy_tls_role want, char *name, size_t namelen,
                           char *pub_pem, size_t pubcap, char *err, size_t errlen) FY_WUR;
/* The name our own certificate carries (its first DNS SAN). */
const char *fy_tls_conf_name(const fy_tls_conf *c);
/* Reseeds the DRBG from fresh entropy. The DRBG also runs with prediction resistance (fresh
 * entropy before every output), so a forked child never repeats its parent's stream even if
 * nobody calls this. */
int fy_tls_conf_reseed(fy_tls_conf *c) FY_WUR;
/* n random bytes from the conf's DRBG (n <= 1024). */
int fy_tls_conf_random(fy_tls_conf *c, void *buf, size_t n) FY_WUR;

/* The fleet's revocation list (an X.509 CRL in PEM, signed by the fleet CA; `ferry cert revoke`
 * writes it): handshakes then refuse peers whose certificate it lists. A list not issued and
 * signed by this conf's CA is refused (FY_ECERT), one no newer than the current (thisUpdate) is
 * ignored (*changed 0). *nrevoked counts its entries. */
#define FY_CRL_PEM_MAX (256u * 1024u)
int fy_tls_conf_set_crl(fy_tls_conf *c, const void *pem, size_t len, int *changed, size_t *nrevoked, char *err,
                        size_t errlen) FY_WUR;
const char *fy_tls_conf_crl_pem(const fy_tls_conf *c); /* NULL when none */

/* One connection. expected_peer: for a pusher, the agent name the certificate must carry (NULL
 * accepts any agent of the fleet CA); agents pass NULL. */
int fy_tls_new(fy_tls **out, fy_tls_conf *conf, const char *expected_peer) FY_WUR;
void fy_tls_free(fy_tls *t); /* NULL-safe */
/* Is the (authenticated) peer's certificate on the conf's revocation list now? */
int fy_tls_peer_revoked(const fy_tls *t);

/* Appends ciphertext from the network. FY_EBUSY when FY_TLS_IN_MAX would be exceeded (read
 * plaintext first, or stop reading the socket). */
int fy_tls_feed(fy_tls *t, const uint8_t *p, size_t n) FY_WUR;

/* Drives the handshake. FY_OK when complete, FY_EAGAIN when it needs more input, else
 * FY_ECERT / FY_EROLE / FY_ENAME / FY_ETLS with the reason in fy_tls_errmsg(). */
int fy_tls_handshake(fy_tls *t) FY_WUR;
int fy_tls_established(const fy_tls *t);

/* Plaintext out of what was fed. FY_OK with *got > 0, FY_EAGAIN, FY_EEOF (close_notify), or an
 * error. */
int fy_tls_read(fy_tls *t, uint8_t *buf, size_t cap, size_t *got) FY_WUR;
/* Encrypts all n bytes or nothing: FY_EBUSY when the output buffer lacks room (send first). */
int fy_tls_write(fy_tls *t, const uint8_t *p, size_t n) FY_WUR;
/* Room left for plaintext in the output buffer (an estimate that accounts record overhead). */
size_t fy_tls_write_room(const fy_tls *t);
int fy_tls_close_notify(fy_tls *t) FY_WUR;

/* Ciphertext waiting to be sent, and how much of it was sent. */
const uint8_t *fy_tls_out(const fy_tls *t, size_t *len);
void fy_tls_out_consume(fy_tls *t, size_t n);

const char *fy_tls_peer_name(const fy_tls *t); /* "" before the handshake */
const char *fy_tls_errmsg(const fy_tls *t);
const char *fy_tls_suite(const fy_tls *t);
/* "TLSv1.3" or "TLSv1.2": what the handshake agreed on. */
const char *fy_tls_version(const fy_tls *t);

#endif
