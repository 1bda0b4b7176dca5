/* Label selectors and node affinity with Kubernetes semantics, over a node's labels.
 *
 * Selector text (labels.Parse): requirements joined by commas, all must hold:
 *   k=v  k==v  k!=v  k in (a,b)  k notin (a,b)  k  !k
 * "k!=v" and "k notin (...)" also hold when k is absent, as in Kubernetes.
 * Affinity (nodeAffinity): `required` is a list of terms, any one of which must hold (each term
 * all of its expressions); `preferred` adds each matching term's weight (1-100) to a score.
 * Expressions use the operators In, NotIn, Exists, DoesNotExist, Gt, Lt.
 *
 * Pure: no I/O. Labels are a JSON object of strings (what an agent reports). */
#ifndef FERRY_SELECTOR_H
#define FERRY_SELECTOR_H

#include <stddef.h>

#include <jansson.h>

#include "ferry/error.h"
#include "ferry/yaml.h"

#define FY_SEL_MAX_REQS 64
#define FY_SEL_MAX_VALUES 64
#define FY_SEL_MAX_TERMS 32
#define FY_LABEL_KEY_MAX 253
#define FY_LABEL_VALUE_MAX 63

typedef enum { FY_SEL_EQ, FY_SEL_NE, FY_SEL_IN, FY_SEL_NOTIN, FY_SEL_EXISTS, FY_SEL_NOTEXISTS, FY_SEL_GT, FY_SEL_LT } fy_sel_op;

typedef struct fy_sel_req {
  char *key;
  fy_sel_op op;
  char **values;
  size_t nvalues;
} fy_sel_req;

typedef struct fy_selector {
  fy_sel_req *reqs;
  size_t n;        /* 0: matches everything */
} fy_selector;

typedef struct fy_affinity {
  fy_selector *required;  /* terms, OR'ed; none: no requirement */
  size_t nrequired;
  fy_selector *preferred;
  int *weights;
  size_t npreferred;
  int match_none;         /* every required term was empty: as in Kubernetes, no node matches */
} fy_affinity;

/* Label keys: 1-253 of [A-Za-z0-9._/-]; values: 0-63 of [A-Za-z0-9._-]. */
int fy_label_key_valid(const char *k);
int fy_label_value_valid(const char *v);

/* Parses selector text. FY_EINVAL with the reason in err. free with fy_selector_free. */
int fy_selector_parse(const char *text, fy_selector *s, char *err, size_t errlen) FY_WUR;
void fy_selector_free(fy_selector *s); /* NULL-safe, leaves an empty selector */
int fy_selector_match(const fy_selector *s, const json_t *labels);
/* Canonical text ("a=b,c in (d,e)") into buf. */
char *fy_selector_format(const fy_selector *s, char *buf, size_t len);

/* Reads an `affinity:` map: {required: [TERM...], preferred: [{weight: N, preference: TERM}...]}
 * where a TERM is {matchExpressions: [{key, operator, values}]} or selector text. Errors name the
 * line: "line 12: affinity.preferred[0].weight: 1 to 100". */
int fy_affinity_load(const fy_ynode *n, fy_affinity *a, char *err, size_t errlen) FY_WUR;
/* A fleet file's and an image's affinity both apply: evaluate each; a node must meet both
 * required parts, and the scores add. */
void fy_affinity_free(fy_affinity *a); /* NULL-safe */
int fy_affinity_required_match(const fy_affinity *a, const json_t *labels);
int fy_affinity_score(const fy_affinity *a, const json_t *labels);

/* The affinity as JSON ({"required": ["sel", ...], "preferred": [{"weight", "match"}]}) and back:
 * how `ferry build` carries a recipe's affinity in the image index annotations. */
json_t *fy_affinity_to_json(const fy_affinity *a);
int fy_affinity_from_json(const json_t *j, fy_affinity *a, char *err, size_t errlen) FY_WUR;

#endif
