/* ferry's configuration of mbedTLS 3.6 for the static agents and the cross-built pushers
 * (scripts/deps.sh builds the library with it and installs it as the library's own
 * mbedtls/mbedtls_config.h). It keeps what ferry uses and nothing more:
 *   - TLS 1.3 and 1.2, client and server; ECDHE-ECDSA on P-256; AEAD only (ChaCha20-Poly1305,
 *     AES-GCM); no renegotiation, no session tickets, no PSK, no RSA, no CBC;
 *   - SHA-256 and SHA-512 (SHA-384 for the AES-256-GCM suites), with the A64 crypto-extension
 *     (SHA-256, SHA-512, AES) and AES-NI code paths chosen at run time where the CPU has them;
 *   - X.509 parsing and verification with revocation lists; certificate writing for
 *     'ferry cert' (an agent's link drops it: every object is built with -ffunction-sections);
 *   - PK ECDSA for release signatures, the CTR-DRBG (ferry turns prediction resistance on);
 *   - TLS buffers sized to what is negotiated (MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH).
 * Host builds link Debian's mbedTLS 2.28 with its own configuration; protocol/src/tls.c speaks
 * to both. */
#ifndef FERRY_MBEDTLS_CONFIG_H
#define FERRY_MBEDTLS_CONFIG_H

/* System */
#define MBEDTLS_HAVE_ASM
#define MBEDTLS_HAVE_TIME
#define MBEDTLS_HAVE_TIME_DATE
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_DEPRECATED_REMOVED
#define MBEDTLS_ERROR_C

/* Randomness: the kernel's getrandom() through the entropy module, a CTR-DRBG on top. */
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_CTR_DRBG_C

/* Hashes (SHA-1 only for the key identifiers of the certificates `ferry cert` writes) */
#define MBEDTLS_SHA1_C
#define MBEDTLS_MD_C
#define MBEDTLS_SHA224_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C
#if defined(__aarch64__)
#define MBEDTLS_SHA256_USE_ARMV8_A_CRYPTO_IF_PRESENT
#define MBEDTLS_SHA512_USE_A64_CRYPTO_IF_PRESENT
#endif

/* Ciphers: AEAD only */
#define MBEDTLS_CIPHER_C
#define MBEDTLS_AES_C
#define MBEDTLS_GCM_C
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C
#if defined(__aarch64__)
#define MBEDTLS_AESCE_C
#endif
#if defined(__x86_64__)
#define MBEDTLS_AESNI_C
#endif
#define MBEDTLS_AES_ROM_TABLES
#define MBEDTLS_AES_FEWER_TABLES

/* Public keys: ECDSA and ECDH on P-256 */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
/* Registries on the web PKI (Docker Hub, GHCR, ECR, Let's Encrypt chains): P-384 and RSA
 * certificates, for the agent's registry client only (the fleet's own TLS stays P-256 ECDSA). */
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_RSA_C
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDH_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_BASE64_C
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_PEM_WRITE_C

/* X.509 */
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_CRL_PARSE_C
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CRT_WRITE_C

/* PSA crypto: TLS 1.3 computes its key schedule through it. */
#define MBEDTLS_PSA_CRYPTO_C
#define MBEDTLS_HKDF_C

/* TLS */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_CLI_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH

#endif /* FERRY_MBEDTLS_CONFIG_H */
