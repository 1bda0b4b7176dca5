/* Release signature policy; see trust.h. */
#include <stdarg.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "release.h"
#include "ferry/fsutil.h"
#include "ferry/wire.h"
#include "ferry/msg.h"
#include "ferry/oci.h"
#include "ferry/yaml.h"
#include "trust.h"

int fy_trust_open(fy_trust *t, const fy_agent_config *cfg, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  t->require = cfg->require_signature;
  t->allow_downgrade = cfg->allow_downgrade;
  for (size_t i = 0; i < cfg->ntrust_keys; i++) {
    char *pem = NULL, why[200];
    size_t len;
    int rc = fy_file_read(cfg->trust_keys[i], FY_KEY_PEM_MAX, &pem, &len);
    if (rc != FY_OK) {
      snprintf(err, errlen, "trust.keys: %s: %s", cfg->trust_keys[i], fy_strerror(rc));
      fy_trust_close(t);
      return FY_ECONFIG;
    }
    rc = fy_sign_key_parse(pem, len, 0, &t->keys[t->nkeys], why, sizeof why);
    free(pem);
    if (rc != FY_OK) {
      snprintf(err, errlen, "trust.keys: %s: %s", cfg->trust_keys[i], why);
      fy_trust_close(t);
      return FY_ECONFIG;
    }
    t->nkeys++;
  }
  return FY_OK;
}

void fy_trust_close(fy_trust *t) {
  for (size_t i = 0; i < t->nkeys; i++) fy_sign_key_free(t->keys[i]);
  t->nkeys = 0;
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

/* chain[0] hashes to the signed digest; each index lists the next one's digest, the last one
 * lists the manifest. No chain: the signed digest is the manifest's own. */
static int check_chain(const fy_digest *signed_digest, const json_t *chain, const fy_digest *manifest, char *err,
                       size_t errlen) {
  char s1[FY_DIGEST_STR], s2[FY_DIGEST_STR], why[300];
  size_t n = json_is_array(chain) ? json_array_size(chain) : 0;
  if (chain && !json_is_array(chain)) return fail(err, errlen, FY_ESIGNATURE, "plan: chain is not a list");
  if (n > FY_SIGN_CHAIN_MAX) return fail(err, errlen, FY_ESIGNATURE, "plan: %zu nested indexes, at most %d", n, FY_SIGN_CHAIN_MAX);
  if (n == 0) {
    if (!fy_digest_equal(signed_digest, manifest))
      return fail(err, errlen, FY_ESIGNATURE, "tampered with: the signature covers %s, the manifest sent is %s",
                  fy_digest_format(signed_digest, s1), fy_digest_format(manifest, s2));
    return FY_OK;
  }
  fy_digest want = *signed_digest;
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(chain, i);
    if (!json_is_string(e)) return fail(err, errlen, FY_ESIGNATURE, "plan: chain[%zu] is not a string", i);
    fy_digest got;
    fy_sha256_once(json_string_value(e), json_string_length(e), &got);
    if (!fy_digest_equal(&got, &want))
      return fail(err, errlen, FY_ESIGNATURE, "tampered with: the signature covers %s, the index sent hashes to %s",
                  fy_digest_format(&want, s1), fy_digest_format(&got, s2));
    fy_index ix;
    if (fy_oci_index_parse(json_string_value(e), json_string_length(e), &ix, why, sizeof why) != FY_OK)
      return fail(err, errlen, FY_ESIGNATURE, "plan: chain[%zu]: %s", i, why);
    const fy_digest *next = manifest;
    fy_digest nd;
    if (i + 1 < n) {
      const json_t *ne = json_array_get(chain, i + 1);
      if (!json_is_string(ne)) {
        fy_oci_index_free(&ix);
        return fail(err, errlen, FY_ESIGNATURE, "plan: chain[%zu] is not a string", i + 1);
      }
      fy_sha256_once(json_string_value(ne), json_string_length(ne), &nd);
      next = &nd;
    }
    int listed = 0;
    for (size_t k = 0; k < ix.n && !listed; k++) listed = fy_digest_equal(&ix.entries[k].digest, next);
    fy_oci_index_free(&ix);
    if (!listed)
      return fail(err, errlen, FY_ESIGNATURE, "tampered with: %s is not part of the signed image %s",
                  fy_digest_format(next, s1), fy_digest_format(signed_digest, s2));
    want = *next;
  }
  return FY_OK;
}

int fy_trust_check_plan(fy_agent *a, const char *app, const json_t *plan, const fy_digest *manifest, uint64_t *version,
                        char *err, size_t errlen) {
  const fy_trust *t = &a->trust;
  const json_t *sig = json_object_get(plan, "signature");
  *version = 0;
  if (!sig) {
    if (t->require)
      return fail(err, errlen, FY_EUNSIGNED,
                  "the release is not signed and trust.require_signature is on (sign it: ferry sign LAYOUT --key KEY "
                  "--version N)");
    return FY_OK;
  }
  if (t->nkeys == 0) {
    fy_log("info", "app %s: the release is signed, but trust.keys is empty: the signature is not checked", app);
    return FY_OK;
  }
  const char *payload = fy_msg_str(sig, "payload", FY_CLAIM_MAX), *sg = fy_msg_str(sig, "signature", FY_SIG_B64_MAX),
             *kid = fy_msg_str(sig, "key", FY_DIGEST_STR);
  if (!json_is_object(sig) || !payload || !sg || !kid)
    return fail(err, errlen, FY_ESIGNATURE, "plan: a signature needs payload, signature and key");
  const fy_sign_key *key = NULL;
  for (size_t i = 0; i < t->nkeys && !key; i++)
    if (strcmp(fy_sign_key_id(t->keys[i]), kid) == 0) key = t->keys[i];
  if (!key)
    return fail(err, errlen, FY_EUNTRUSTED, "the release is signed by key %.23s…, which is not in trust.keys", kid);
  if (fy_sign_verify(key, payload, strlen(payload), sg) != FY_OK)
    return fail(err, errlen, FY_ESIGNATURE, "tampered with: the signature does not verify with key %.23s…", kid);
  fy_claim c;
  char why[300];
  if (fy_claim_parse(payload, strlen(payload), &c, why, sizeof why) != FY_OK)
    return fail(err, errlen, FY_ESIGNATURE, "%s", why);
  if (strcmp(c.app, app) != 0)
    return fail(err, errlen, FY_ESIGNATURE, "the signature is for app '%s', not '%s'", c.app, app);
  int rc = check_chain(&c.digest, json_object_get(plan, "chain"), manifest, err, errlen);
  if (rc != FY_OK) return rc;
  time_t now = time(NULL);
  if ((int64_t)now >= c.expires) {
    char e[32];
    fy_time_format_utc(c.expires, e, sizeof e);
    return fail(err, errlen, FY_EEXPIRED, "the signature expired at %s (re-sign the release with a later --expires)", e);
  }
  uint64_t installed;
  if ((rc = fy_trust_installed(a, app, &installed, err, errlen)) != FY_OK) return rc;
  if (c.version < installed && !t->allow_downgrade)
    return fail(err, errlen, FY_EDOWNGRADE,
                "version %llu is lower than the installed version %llu of %s: refused as a rollback attack "
                "(trust.allow_downgrade is off)",
                (unsigned long long)c.version, (unsigned long long)installed, app);
  *version = c.version;
  return FY_OK;
}

static void counter_path(fy_agent *a, const char *app, char *buf, size_t len) {
  char dir[4200];
  fy_app_dir(a, app, dir, sizeof dir);
  snprintf(buf, len, "%s/version", dir);
}

int fy_trust_installed(fy_agent *a, const char *app, uint64_t *v, char *err, size_t errlen) {
  char path[4300], *text = NULL;
  size_t len;
  *v = 0;
  counter_path(a, app, path, sizeof path);
  int rc = fy_file_read(path, 64, &text, &len);
  if (rc == FY_ENOENT) return FY_OK;
  if (rc == FY_OK && fy_parse_u64(text, 0, FY_VERSION_MAX, v) != FY_OK) rc = FY_EINVAL;
  free(text);
  if (rc != FY_OK)
    return fail(err, errlen, rc == FY_EINVAL ? FY_EINVAL : FY_EIO,
                "the version counter %s is %s: signed releases of %s are refused until it is repaired (write the "
                "highest version installed into it, or remove it to accept any signed version)",
                path, rc == FY_EINVAL ? "corrupt (not a number from 0 to 2^63-1)" : "unreadable", app);
  return FY_OK;
}

int fy_trust_record(fy_agent *a, const char *app, uint64_t version) {
  char path[4300], text[32], err[400];
  uint64_t installed = 0;
  if (version == 0 || (fy_trust_installed(a, app, &installed, err, sizeof err) == FY_OK && version <= installed)) return FY_OK;
  counter_path(a, app, path, sizeof path);
  int n = snprintf(text, sizeof text, "%llu\n", (unsigned long long)version);
  return fy_file_write_atomic(path, text, (size_t)n, 0644); /* fsync'd file and directory */
}

uint64_t fy_trust_release_version(fy_agent *a, const char *app, const char *release) {
  json_t *j = fy_release_run(a, app, release);
  fy_run_meta m;
  char err[200];
  uint64_t version = j && fy_run_meta_decode(j, &m, err, sizeof err) == FY_OK ? m.version : 0;
  json_decref(j);
  return version;
}

int fy_trust_check_rollback(fy_agent *a, const char *app, const char *previous, char *err, size_t errlen) {
  if (a->trust.nkeys == 0 || a->trust.allow_downgrade) return FY_OK;
  uint64_t installed, prev = fy_trust_release_version(a, app, previous);
  int rc = fy_trust_installed(a, app, &installed, err, errlen);
  if (rc != FY_OK) return rc;
  if (prev >= installed) return FY_OK;
  return fail(err, errlen, FY_EDOWNGRADE,
              "the previous release of %s is version %llu, below the installed version %llu: a rollback would be a "
              "downgrade, and trust.allow_downgrade is off (push a newer signed release instead)",
              app, (unsigned long long)prev, (unsigned long long)installed);
}
