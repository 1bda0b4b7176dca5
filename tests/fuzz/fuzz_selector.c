/* libFuzzer target: label selector text (--selector, affinity terms) and the affinity block of a
 * fleet file or recipe. The input is tried as selector text and as a YAML document. */
#include <stdlib.h>
#include <string.h>

#include "ferry/selector.h"
#include "ferry/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  char err[256], again[16384];
  char *text = malloc(n + 1);
  if (!text) return 0;
  memcpy(text, p, n);
  text[n] = '\0';
  fy_selector s;
  json_t *labels = json_pack("{s:s, s:s}", "kubernetes.io/arch", "arm64", "site", "kitchen");
  if (fy_selector_parse(text, &s, err, sizeof err) == FY_OK) {
    int m = fy_selector_match(&s, labels);
    fy_selector s2;
    fy_selector_format(&s, again, sizeof again);
    /* What ferry prints must read back with the same meaning. */
    if (strlen(again) + 1 < sizeof again) {
      if (fy_selector_parse(again, &s2, err, sizeof err) != FY_OK || fy_selector_match(&s2, labels) != m) abort();
      fy_selector_free(&s2);
    }
    fy_selector_free(&s);
  }
  fy_ynode *root = NULL;
  if (fy_yaml_load(text, n, &root, err, sizeof err) == FY_OK) {
    fy_affinity a;
    const fy_ynode *af = fy_yaml_get(root, "affinity");
    if (af && fy_affinity_load(af, &a, err, sizeof err) == FY_OK) {
      (void)fy_affinity_score(&a, labels);
      json_t *j = fy_affinity_to_json(&a);
      fy_affinity b;
      if (fy_affinity_from_json(j, &b, err, sizeof err) == FY_OK) fy_affinity_free(&b);
      json_decref(j);
      fy_affinity_free(&a);
    }
    fy_yaml_free(root);
  }
  json_decref(labels);
  free(text);
  return 0;
}
