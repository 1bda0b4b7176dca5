/* Release signatures (sign.h): keys, signatures over claims, and every way a claim or a
 * signature can be wrong. Real ECDSA P-256 through mbedTLS. */
#include <stdlib.h>

#include "check.h"
#include "ferry/sign.h"

static fy_sign_key *load(const char *pem, int priv) {
  fy_sign_key *k = NULL;
  char err[200];
  if (fy_sign_key_parse(pem, strlen(pem), priv, &k, err, sizeof err) != FY_OK) fprintf(stderr, "%s\n", err);
  return k;
}

int main(void) {
  char *priv = NULL, *pub = NULL, *priv2 = NULL, *pub2 = NULL, err[300];
  CHECK_INT(fy_sign_keygen(&priv, &pub, err, sizeof err), FY_OK);
  CHECK_INT(fy_sign_keygen(&priv2, &pub2, err, sizeof err), FY_OK);
  CHECK(priv && strstr(priv, "BEGIN EC PRIVATE KEY"));
  CHECK(pub && strstr(pub, "BEGIN PUBLIC KEY"));
  fy_sign_key *sk = load(priv, 1), *pk = load(pub, 0), *pk_from_priv = load(priv, 0), *other = load(pub2, 0);
  CHECK(sk && pk && pk_from_priv && other);
  if (!sk || !pk || !pk_from_priv || !other) return 1;
  CHECK(strncmp(fy_sign_key_id(pk), "sha256:", 7) == 0 && strlen(fy_sign_key_id(pk)) == 71);
  CHECK(strcmp(fy_sign_key_id(sk), fy_sign_key_id(pk)) == 0);          /* one id per key pair */
  CHECK(strcmp(fy_sign_key_id(pk_from_priv), fy_sign_key_id(pk)) == 0);
  CHECK(strcmp(fy_sign_key_id(other), fy_sign_key_id(pk)) != 0);
  fy_sign_key *nope = NULL;
  CHECK_INT(fy_sign_key_parse(pub, strlen(pub), 1, &nope, err, sizeof err), FY_EINVAL); /* a public key cannot sign */
  CHECK(strstr(err, "not a PEM private key") != NULL);
  CHECK_INT(fy_sign_key_parse("garbage", 7, 0, &nope, err, sizeof err), FY_EINVAL);
  CHECK_INT(fy_sign_key_parse("", 0, 0, &nope, err, sizeof err), FY_EINVAL);
  CHECK(nope == NULL);

  /* claims */
  fy_claim c, back;
  memset(&c, 0, sizeof c);
  snprintf(c.app, sizeof c.app, "hello");
  CHECK_INT(fy_digest_parse("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &c.digest), FY_OK);
  c.version = 42;
  CHECK_INT(fy_time_parse_utc("2027-03-01T00:00:00Z", &c.expires), FY_OK);
  CHECK_INT(c.expires, 1803859200);
  char *claim = fy_claim_format(&c);
  CHECK(claim && strcmp(claim, "{\"app\":\"hello\",\"digest\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef"
                               "0123456789abcdef\",\"version\":42,\"expires\":\"2027-03-01T00:00:00Z\"}") == 0);
  CHECK_INT(fy_claim_parse(claim, strlen(claim), &back, err, sizeof err), FY_OK);
  CHECK(strcmp(back.app, "hello") == 0 && back.version == 42 && back.expires == c.expires &&
        fy_digest_equal(&back.digest, &c.digest));
  static const char *const bad[] = {
      "", "[]", "{}", "{\"app\":\"\",\"digest\":\"sha256:00\",\"version\":1,\"expires\":\"2027-03-01T00:00:00Z\"}",
      "{\"app\":\"a\",\"digest\":\"md5:00\",\"version\":1,\"expires\":\"2027-03-01T00:00:00Z\"}",
      "{\"app\":\"a\",\"digest\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"version\":-1,"
      "\"expires\":\"2027-03-01T00:00:00Z\"}",
      "{\"app\":\"a\",\"digest\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"version\":\"1\","
      "\"expires\":\"2027-03-01T00:00:00Z\"}",
      "{\"app\":\"a\",\"digest\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"version\":1,"
      "\"expires\":\"tomorrow\"}",
      "{\"app\":\"a\",\"app\":\"b\",\"digest\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
      "\"version\":1,\"expires\":\"2027-03-01T00:00:00Z\"}", /* duplicate keys: which one was signed? */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_INT(fy_claim_parse(bad[i], strlen(bad[i]), &back, err, sizeof err), FY_ESIGNATURE);
  char big[FY_CLAIM_MAX + 2];
  memset(big, ' ', sizeof big);
  CHECK_INT(fy_claim_parse(big, sizeof big, &back, err, sizeof err), FY_ESIGNATURE);
  int64_t t;
  CHECK_INT(fy_time_parse_utc("2027-03-01 00:00:00", &t), FY_EINVAL);
  CHECK_INT(fy_time_parse_utc("2027-03-01T00:00:00Zjunk", &t), FY_EINVAL);
  char ts[32];
  fy_time_format_utc(1803859200, ts, sizeof ts);
  CHECK(strcmp(ts, "2027-03-01T00:00:00Z") == 0);

  /* signatures */
  char sig[FY_SIG_B64_MAX + 1], sig2[FY_SIG_B64_MAX + 1];
  CHECK_INT(fy_sign_data(sk, claim, strlen(claim), sig, sizeof sig), FY_OK);
  CHECK_INT(fy_sign_verify(pk, claim, strlen(claim), sig), FY_OK);
  CHECK_INT(fy_sign_verify(pk_from_priv, claim, strlen(claim), sig), FY_OK);
  CHECK_INT(fy_sign_verify(other, claim, strlen(claim), sig), FY_ESIGNATURE);   /* another key */
  CHECK_INT(fy_sign_data(pk, claim, strlen(claim), sig2, sizeof sig2), FY_EINVAL); /* public only */
  claim[strlen(claim) - 3] ^= 1;                                                 /* one bit of the claim */
  CHECK_INT(fy_sign_verify(pk, claim, strlen(claim), sig), FY_ESIGNATURE);
  claim[strlen(claim) - 3] ^= 1;
  snprintf(sig2, sizeof sig2, "%s", sig);
  sig2[10] = sig2[10] == 'A' ? 'B' : 'A';                                        /* one char of the signature */
  CHECK_INT(fy_sign_verify(pk, claim, strlen(claim), sig2), FY_ESIGNATURE);
  CHECK_INT(fy_sign_verify(pk, claim, strlen(claim), ""), FY_ESIGNATURE);
  CHECK_INT(fy_sign_verify(pk, claim, strlen(claim), "!!!not base64!!!"), FY_ESIGNATURE);
  char longsig[FY_SIG_B64_MAX + 20];
  memset(longsig, 'A', sizeof longsig - 1);
  longsig[sizeof longsig - 1] = '\0';
  CHECK_INT(fy_sign_verify(pk, claim, strlen(claim), longsig), FY_ESIGNATURE);
  /* ECDSA signatures are randomized: a second signature differs and verifies too. */
  CHECK_INT(fy_sign_data(sk, claim, strlen(claim), sig2, sizeof sig2), FY_OK);
  CHECK_INT(fy_sign_verify(pk, claim, strlen(claim), sig2), FY_OK);

  free(claim);
  fy_sign_key_free(sk);
  fy_sign_key_free(pk);
  fy_sign_key_free(pk_from_priv);
  fy_sign_key_free(other);
  free(priv);
  free(pub);
  free(priv2);
  free(pub2);
  return check_done("test_sign");
}
