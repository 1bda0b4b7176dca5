/* Label selectors and node affinity against Kubernetes' semantics, table-driven. */
#include "check.h"
#include "ferry/selector.h"

static const char *const labels_json =
    "{\"kubernetes.io/arch\": \"arm64\", \"ferry.dev/board\": \"rpi4\", \"site\": \"kitchen\", \"cores\": \"4\"}";

static const struct {
  const char *sel;
  int match;
} table[] = {
    {"", 1},
    {"kubernetes.io/arch=arm64", 1},
    {"kubernetes.io/arch==arm64", 1},
    {"kubernetes.io/arch=amd64", 0},
    {"kubernetes.io/arch!=amd64", 1},
    {"zone!=a", 1},                       /* absent key: != holds (Kubernetes) */
    {"site in (kitchen,garage)", 1},
    {"site in (garage)", 0},
    {"site notin (garage, lab)", 1},
    {"zone notin (a)", 1},                /* absent key: notin holds */
    {"zone in (a)", 0},
    {"site", 1},
    {"zone", 0},
    {"!zone", 1},
    {"!site", 0},
    {"site=kitchen,kubernetes.io/arch=arm64", 1},
    {"site=kitchen,kubernetes.io/arch=amd64", 0},
    {" site = kitchen , ferry.dev/board in ( rpi4 , rpi5 ) ", 1},
    {"cores>2", 1},
    {"cores<4", 0},
    {"site=", 0},
};

static const char *const bad[] = {
    "site in kitchen", "site in (kitchen", "=x", "site=kit chen", "site=a,", "site ~ a", "si te=a", "site=a/b",
    "k>", ",", "site in (a b)",
};

static void test_selectors(void) {
  json_t *labels = json_loads(labels_json, 0, NULL);
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    fy_selector s;
    char err[200], again[400];
    int rc = fy_selector_parse(table[i].sel, &s, err, sizeof err);
    CHECK_INT(rc, FY_OK);
    if (rc != FY_OK) { fprintf(stderr, "  '%s': %s\n", table[i].sel, err); continue; }
    if (fy_selector_match(&s, labels) != table[i].match) fprintf(stderr, "  selector '%s'\n", table[i].sel);
    CHECK_INT(fy_selector_match(&s, labels), table[i].match);
    /* The canonical text parses back to the same meaning. */
    fy_selector s2;
    fy_selector_format(&s, again, sizeof again);
    CHECK_INT(fy_selector_parse(again, &s2, err, sizeof err), FY_OK);
    CHECK_INT(fy_selector_match(&s2, labels), table[i].match);
    fy_selector_free(&s2);
    fy_selector_free(&s);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fy_selector s;
    char err[200] = "";
    int rc = fy_selector_parse(bad[i], &s, err, sizeof err);
    if (rc == FY_OK) fprintf(stderr, "  accepted bad selector '%s'\n", bad[i]);
    CHECK_INT(rc, FY_EINVAL);
    CHECK(err[0] != '\0');
  }
  json_decref(labels);
}

static void test_affinity(void) {
  static const char *const doc =
      "affinity:\n"
      "  required:\n"
      "    - matchExpressions:\n"
      "        - {key: kubernetes.io/arch, operator: In, values: [arm64, amd64]}\n"
      "        - {key: site, operator: Exists}\n"
      "    - \"tier=gold\"\n"
      "  preferred:\n"
      "    - weight: 80\n"
      "      preference: {matchExpressions: [{key: ferry.dev/board, operator: In, values: [rpi4]}]}\n"
      "    - weight: 5\n"
      "      preference: \"cores>8\"\n";
  fy_ynode *root;
  char err[300];
  CHECK_INT(fy_yaml_load(doc, strlen(doc), &root, err, sizeof err), FY_OK);
  fy_affinity a;
  CHECK_INT(fy_affinity_load(fy_yaml_get(root, "affinity"), &a, err, sizeof err), FY_OK);
  json_t *pi = json_loads(labels_json, 0, NULL);
  json_t *gold = json_loads("{\"tier\": \"gold\", \"cores\": \"16\"}", 0, NULL);
  json_t *none = json_loads("{\"kubernetes.io/arch\": \"riscv64\", \"site\": \"x\"}", 0, NULL);
  CHECK_INT(fy_affinity_required_match(&a, pi), 1);
  CHECK_INT(fy_affinity_required_match(&a, gold), 1);   /* the second term */
  CHECK_INT(fy_affinity_required_match(&a, none), 0);
  CHECK_INT(fy_affinity_score(&a, pi), 80);
  CHECK_INT(fy_affinity_score(&a, gold), 5);
  /* Through JSON (how an image carries a recipe's affinity) and back. */
  json_t *j = fy_affinity_to_json(&a);
  fy_affinity b;
  CHECK_INT(fy_affinity_from_json(j, &b, err, sizeof err), FY_OK);
  CHECK_INT(fy_affinity_score(&b, pi), 80);
  CHECK_INT(fy_affinity_required_match(&b, none), 0);
  fy_affinity_free(&b);
  json_decref(j);
  fy_affinity_free(&a);
  fy_yaml_free(root);
  /* Kubernetes' edge cases: an empty matchExpressions term matches no node (beside another
   * term it adds nothing; alone, nothing matches); an empty preference is a no-op; an empty
   * term list and an empty value list are refused. */
  {
    const char *edoc = "affinity:\n  required:\n    - matchExpressions: []\n  preferred:\n    - {weight: 50, preference: {matchExpressions: []}}\n";
    fy_ynode *r2 = NULL;
    CHECK_INT(fy_yaml_load(edoc, strlen(edoc), &r2, err, sizeof err), FY_OK);
    fy_affinity e;
    CHECK_INT(fy_affinity_load(fy_yaml_get(r2, "affinity"), &e, err, sizeof err), FY_OK);
    CHECK_INT(fy_affinity_required_match(&e, pi), 0);
    CHECK_INT(fy_affinity_required_match(&e, gold), 0);
    CHECK_INT(fy_affinity_score(&e, pi), 0);
    json_t *ej = fy_affinity_to_json(&e);
    fy_affinity e2;
    CHECK_INT(fy_affinity_from_json(ej, &e2, err, sizeof err), FY_OK); /* carried in an image */
    CHECK_INT(fy_affinity_required_match(&e2, pi), 0);
    fy_affinity_free(&e2);
    json_decref(ej);
    fy_affinity_free(&e);
    fy_yaml_free(r2);
    edoc = "affinity:\n  required:\n    - matchExpressions: []\n    - tier=gold\n";
    CHECK_INT(fy_yaml_load(edoc, strlen(edoc), &r2, err, sizeof err), FY_OK);
    CHECK_INT(fy_affinity_load(fy_yaml_get(r2, "affinity"), &e, err, sizeof err), FY_OK);
    CHECK_INT(fy_affinity_required_match(&e, pi), 0);
    CHECK_INT(fy_affinity_required_match(&e, gold), 1);
    fy_affinity_free(&e);
    fy_yaml_free(r2);
  }
  fy_selector zs;
  CHECK_INT(fy_selector_parse("zone in ()", &zs, err, sizeof err), FY_EINVAL);
  CHECK_CONTAINS(err, "needs at least one value");
  /* Errors name the line. */
  static const struct { const char *doc, *want; } bad_docs[] = {
      {"affinity:\n  preferred:\n    - {weight: 0, preference: a=b}\n", "line 3: affinity.preferred[0].weight: 1 to 100"},
      {"affinity:\n  required:\n    - matchExpressions:\n        - {key: a, operator: Near, values: [b]}\n", "line 4: operator 'Near'"},
      {"affinity:\n  required:\n    - matchExpressions:\n        - {key: a, operator: In}\n", "In needs values"},
      {"affinity:\n  requird: []\n", "unknown key 'affinity.requird'"},
      {"affinity:\n  required: [\"a in b\"]\n", "expected '('"},
      {"affinity:\n  required: []\n", "affinity.required needs at least one term"},
      {"affinity:\n  required:\n    - matchExpressions:\n        - {key: zone, operator: In, values: []}\n", "In needs values"},
  };
  for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
    CHECK_INT(fy_yaml_load(bad_docs[i].doc, strlen(bad_docs[i].doc), &root, err, sizeof err), FY_OK);
    err[0] = '\0';
    CHECK_INT(fy_affinity_load(fy_yaml_get(root, "affinity"), &a, err, sizeof err), FY_EINVAL);
    if (!strstr(err, bad_docs[i].want)) fprintf(stderr, "  got '%s', want '%s'\n", err, bad_docs[i].want);
    CHECK(strstr(err, bad_docs[i].want) != NULL);
    fy_yaml_free(root);
  }
  json_decref(pi);
  json_decref(gold);
  json_decref(none);
}

int main(void) {
  test_selectors();
  test_affinity();
  return check_done("test_selector");
}
