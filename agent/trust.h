/* The release signature policy (config `trust:`; docs/security.md).
 *
 * A plan may carry `signature` {payload, signature, key} and `chain` (the raw indexes from the
 * signed digest down to the one that lists the manifest). The agent accepts a release when:
 * the key is one of trust.keys, the signature verifies over the payload (a claim, sign.h), the
 * claim names this app, the chain links the signed digest to the manifest it was sent, the claim
 * has not expired, and its version is not below the app's installed version (unless
 * allow_downgrade). Unsigned plans pass only when require_signature is off.
 *
 * The installed version is STATE/apps/<app>/version, written (fsync'd, then renamed) when a
 * signed release becomes current; each release's run.json records its own version. A health
 * rollback returns to the previous release without lowering the counter: it is not a
 * downgrade. A manual `ferry rollback` is: refused when keys are configured, allow_downgrade is
 * off and the previous release's version is below the counter. */
#ifndef FERRY_AGENT_TRUST_H
#define FERRY_AGENT_TRUST_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "ferry/digest.h"
#include "ferry/sign.h"

struct fy_agent;

typedef struct fy_trust {
  fy_sign_key *keys[FY_CFG_MAX_KEYS];
  size_t nkeys;
  int require;
  int allow_downgrade;
} fy_trust;

/* Loads trust.keys; an unreadable or malformed key file is a configuration error. */
int fy_trust_open(fy_trust *t, const fy_agent_config *cfg, char *err, size_t errlen) FY_WUR;
void fy_trust_close(fy_trust *t);

/* Checks a plan for app whose manifest hashes to manifest. *version: the signed version, or 0
 * when the plan is unsigned (or carries a signature no key is configured to check). Returns
 * FY_EUNSIGNED, FY_EUNTRUSTED, FY_ESIGNATURE, FY_EEXPIRED or FY_EDOWNGRADE with the reason. */
int fy_trust_check_plan(struct fy_agent *a, const char *app, const json_t *plan, const fy_digest *manifest,
                        uint64_t *version, char *err, size_t errlen) FY_WUR;

/* The app's installed version into *v (0: none recorded). A counter that exists but cannot be
 * read, or does not hold a number from 0 to 2^63-1, fails closed: FY_EIO / FY_EINVAL with what
 * to do in err. */
int fy_trust_installed(struct fy_agent *a, const char *app, uint64_t *v, char *err, size_t errlen) FY_WUR;
/* Raises the app's counter to version (no-op when not higher); written durably. A corrupt
 * counter is replaced (the release being recorded passed the check that refuses while it is
 * corrupt, so this happens only after a repair). */
int fy_trust_record(struct fy_agent *a, const char *app, uint64_t version) FY_WUR;
/* The version a release was installed as (its run.json), 0 for an unsigned one. */
uint64_t fy_trust_release_version(struct fy_agent *a, const char *app, const char *release);
/* May `ferry rollback` switch app to its previous release? FY_EDOWNGRADE with the reason if not. */
int fy_trust_check_rollback(struct fy_agent *a, const char *app, const char *previous, char *err, size_t errlen) FY_WUR;

#endif
