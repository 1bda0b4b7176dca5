/* libFuzzer target: the release policy's check of a deploy plan (agent/trust.c) — the
 * signature object, the signed claim and the chain of indexes are all the peer's bytes. The
 * node trusts one fixed test key (below; used nowhere else) and app "hello" is installed at
 * version 5. Property: whatever the input, a plan that passes carries a claim for "hello" at
 * version 5 or more (never a downgrade), and nothing crashes.
 *
 * Input: a plan as JSON ({"manifest_digest": ..., "signature": {...}, "chain": [...]}). */
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "ferry/text.h"
#include "ferry/fsutil.h"
#include "fuzz_file.h"

static const char test_key[] =
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEICnDyaUz9LOXZZcfv2IE4ZrSDhIeVXezvoRLLBA6IOUioAoGCCqGSM49\n"
    "AwEHoUQDQgAEhZWjB+qG8lxFLw3PKjn8fYfeS/LWwAbnJlCpXQMBVb6pYH96a3QQ\n"
    "NApf4VAaaTdnA0b7YW3k8ZcOrN1N060DRQ==\n"
    "-----END EC PRIVATE KEY-----\n";

static fy_agent *agent(void) {
  static fy_agent a;
  static int ready;
  if (ready) return &a;
  char err[300], path[600];
  if (fy_path_fmt(a.cfg.state_dir, sizeof a.cfg.state_dir, "%s/state", fuzz_dir()) != FY_OK ||
      fy_path_fmt(path, sizeof path, "%s/apps/hello", a.cfg.state_dir) != FY_OK)
    abort();
  if (fy_mkdirs(path, 0700) != FY_OK) abort();
  strncat(path, "/version", sizeof path - strlen(path) - 1);
  if (fy_file_write_atomic(path, "5\n", 2, 0644) != FY_OK) abort();
  if (fy_sign_key_parse(test_key, strlen(test_key), 0, &a.trust.keys[0], err, sizeof err) != FY_OK) abort();
  a.trust.nkeys = 1;
  a.trust.require = 1;
  ready = 1;
  return &a;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  fy_agent *a = agent();
  json_t *plan = json_loadb((const char *)p, n, 0, NULL);
  if (!plan) return 0;
  fy_digest md;
  const char *mds = json_string_value(json_object_get(plan, "manifest_digest"));
  if (!mds || fy_digest_parse(mds, &md) != FY_OK) memset(&md, 0, sizeof md);
  uint64_t version = 0;
  char err[600];
  if (fy_trust_check_plan(a, "hello", plan, &md, &version, err, sizeof err) == FY_OK) {
    fy_claim c;
    const char *payload = json_string_value(json_object_get(json_object_get(plan, "signature"), "payload"));
    if (version < 5 || !payload || fy_claim_parse(payload, strlen(payload), &c, err, sizeof err) != FY_OK ||
        strcmp(c.app, "hello") != 0 || c.version != version)
      abort();
  }
  json_decref(plan);
  return 0;
}
