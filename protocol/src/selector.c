/* Kubernetes label selectors (k8s.io/apimachinery labels.Parse) and nodeAffinity terms.
 * Differences from Kubernetes: none in what matches; keys and values are checked against the
 * label character set ([A-Za-z0-9._/-], values without '/') and their length ceilings. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/selector.h"
#include "ferry/text.h"

static const char *const op_names[] = {"=", "!=", "in", "notin", "", "!", ">", "<"};
static const char *const k8s_ops[] = {"", "", "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"};

static int key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_' || c == '/';
}

static void req_free(fy_sel_req *r) {
  free(r->key);
  for (size_t i = 0; i < r->nvalues; i++) free(r->values[i]);
  free(r->values);
  memset(r, 0, sizeof *r);
}

void fy_selector_free(fy_selector *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n; i++) req_free(&s->reqs[i]);
  free(s->reqs);
  s->reqs = NULL;
  s->n = 0;
}

static int valid_value(const char *v, size_t n) {
  if (n > FY_LABEL_VALUE_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!key_char(v[i]) || v[i] == '/') return 0;
  return 1;
}

int fy_label_key_valid(const char *k) {
  size_t n = strlen(k);
  if (n == 0 || n > FY_LABEL_KEY_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!key_char(k[i])) return 0;
  return 1;
}

int fy_label_value_valid(const char *v) { return valid_value(v, strlen(v)); }

static int add_value(fy_sel_req *r, const char *v, size_t n, char *err, size_t errlen) {
  if (!valid_value(v, n)) return fy_text_fail(err, errlen, FY_EINVAL, "'%.*s' is not a valid label value", (int)(n > 80 ? 80 : n), v);
  if (r->nvalues >= FY_SEL_MAX_VALUES) return fy_text_fail(err, errlen, FY_EINVAL, "more than %d values for '%s'", FY_SEL_MAX_VALUES, r->key);
  char **nv = realloc(r->values, (r->nvalues + 1) * sizeof *nv);
  if (!nv) return FY_ENOMEM;
  r->values = nv;
  if (!(r->values[r->nvalues] = strndup(v, n))) return FY_ENOMEM;
  r->nvalues++;
  return FY_OK;
}

static int set_key(fy_sel_req *r, const char *k, size_t n, char *err, size_t errlen) {
  if (n == 0) return fy_text_fail(err, errlen, FY_EINVAL, "a requirement without a label key");
  if (n > FY_LABEL_KEY_MAX) return fy_text_fail(err, errlen, FY_EINVAL, "label key longer than %d characters", FY_LABEL_KEY_MAX);
  for (size_t i = 0; i < n; i++)
    if (!key_char(k[i])) return fy_text_fail(err, errlen, FY_EINVAL, "'%.*s' is not a valid label key", (int)(n > 80 ? 80 : n), k);
  return (r->key = strndup(k, n)) ? FY_OK : FY_ENOMEM;
}

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t') p++;
  return p;
}

static int push_req(fy_selector *s, fy_sel_req *r, char *err, size_t errlen) {
  if (s->n >= FY_SEL_MAX_REQS) {
    req_free(r);
    return fy_text_fail(err, errlen, FY_EINVAL, "more than %d requirements", FY_SEL_MAX_REQS);
  }
  fy_sel_req *nr = realloc(s->reqs, (s->n + 1) * sizeof *nr);
  if (!nr) {
    req_free(r);
    return FY_ENOMEM;
  }
  s->reqs = nr;
  s->reqs[s->n++] = *r;
  return FY_OK;
}

/* One requirement starting at *pp; leaves *pp after it (at ',' or the end). */
static int parse_req(const char **pp, fy_sel_req *r, char *err, size_t errlen) {
  const char *p = skip_ws(*pp), *k;
  int rc;
  memset(r, 0, sizeof *r);
  if (*p == '!') {
    p = skip_ws(p + 1);
    for (k = p; key_char(*p); p++) {}
    if ((rc = set_key(r, k, (size_t)(p - k), err, errlen)) != FY_OK) return rc;
    r->op = FY_SEL_NOTEXISTS;
    *pp = skip_ws(p);
    return FY_OK;
  }
  for (k = p; key_char(*p); p++) {}
  if ((rc = set_key(r, k, (size_t)(p - k), err, errlen)) != FY_OK) return rc;
  p = skip_ws(p);
  if (*p == '\0' || *p == ',') {
    r->op = FY_SEL_EXISTS;
    *pp = p;
    return FY_OK;
  }
  int set = 0;
  if (p[0] == '!' && p[1] == '=') { r->op = FY_SEL_NE; p += 2; }
  else if (p[0] == '=' && p[1] == '=') { r->op = FY_SEL_EQ; p += 2; }
  else if (p[0] == '=') { r->op = FY_SEL_EQ; p += 1; }
  else if (p[0] == '>' || p[0] == '<') { r->op = p[0] == '>' ? FY_SEL_GT : FY_SEL_LT; p += 1; }
  else if (strncmp(p, "notin", 5) == 0 && (p[5] == ' ' || p[5] == '(')) { r->op = FY_SEL_NOTIN; p += 5; set = 1; }
  else if (strncmp(p, "in", 2) == 0 && (p[2] == ' ' || p[2] == '(')) { r->op = FY_SEL_IN; p += 2; set = 1; }
  else return fy_text_fail(err, errlen, FY_EINVAL, "after '%s': expected =, ==, !=, in (...), notin (...) or ','", r->key);
  p = skip_ws(p);
  if (set) {
    if (*p != '(') return fy_text_fail(err, errlen, FY_EINVAL, "'%s %s': expected '(' and a list of values", r->key, op_names[r->op]);
    p++;
    for (;;) {
      p = skip_ws(p);
      const char *v = p;
      while (*p && *p != ',' && *p != ')' && *p != ' ' && *p != '\t') p++;
      if ((rc = add_value(r, v, (size_t)(p - v), err, errlen)) != FY_OK) return rc;
      p = skip_ws(p);
      if (*p == ',') { p++; continue; }
      if (*p == ')') { p++; break; }
      return fy_text_fail(err, errlen, FY_EINVAL, "'%s %s (': missing ')'", r->key, op_names[r->op]);
    }
    if (r->nvalues == 1 && r->values[0][0] == '\0') /* "zone in ()": Kubernetes wants at least one value */
      return fy_text_fail(err, errlen, FY_EINVAL, "'%s %s ()': needs at least one value", r->key, op_names[r->op]);
  } else {
    const char *v = p;
    while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
    if ((r->op == FY_SEL_GT || r->op == FY_SEL_LT) && p == v) return fy_text_fail(err, errlen, FY_EINVAL, "'%s %s': expected a number", r->key, op_names[r->op]);
    if ((rc = add_value(r, v, (size_t)(p - v), err, errlen)) != FY_OK) return rc;
  }
  p = skip_ws(p);
  if (*p && *p != ',') return fy_text_fail(err, errlen, FY_EINVAL, "unexpected '%.20s' after the requirement on '%s'", p, r->key);
  *pp = p;
  return FY_OK;
}

int fy_selector_parse(const char *text, fy_selector *s, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  if (strlen(text) > 8192) return fy_text_fail(err, errlen, FY_EINVAL, "selector longer than 8192 characters");
  const char *p = skip_ws(text);
  if (*p == '\0') return FY_OK;
  for (;;) {
    fy_sel_req r;
    int rc = parse_req(&p, &r, err, errlen);
    if (rc == FY_OK) rc = push_req(s, &r, err, errlen);
    else req_free(&r);
    if (rc != FY_OK) {
      fy_selector_free(s);
      return rc;
    }
    if (*p == '\0') return FY_OK;
    p++; /* ',' */
    if (*skip_ws(p) == '\0') {
      fy_selector_free(s);
      return fy_text_fail(err, errlen, FY_EINVAL, "selector ends with ','");
    }
  }
}

static int to_long(const char *s, long long *out) {
  char *end;
  if (!*s) return 0;
  *out = strtoll(s, &end, 10);
  return *end == '\0';
}

static int req_match(const fy_sel_req *r, const json_t *labels) {
  const json_t *v = json_object_get(labels, r->key);
  const char *val = json_is_string(v) ? json_string_value(v) : NULL;
  int in = 0;
  for (size_t i = 0; val && i < r->nvalues; i++) in |= strcmp(val, r->values[i]) == 0;
  long long a, b;
  switch (r->op) {
  case FY_SEL_EQ: case FY_SEL_IN: return in;
  case FY_SEL_NE: case FY_SEL_NOTIN: return !in;
  case FY_SEL_EXISTS: return val != NULL;
  case FY_SEL_NOTEXISTS: return val == NULL;
  case FY_SEL_GT: return val && r->nvalues == 1 && to_long(val, &a) && to_long(r->values[0], &b) && a > b;
  case FY_SEL_LT: return val && r->nvalues == 1 && to_long(val, &a) && to_long(r->values[0], &b) && a < b;
  }
  return 0;
}

int fy_selector_match(const fy_selector *s, const json_t *labels) {
  for (size_t i = 0; i < s->n; i++)
    if (!req_match(&s->reqs[i], labels)) return 0;
  return 1;
}

char *fy_selector_format(const fy_selector *s, char *buf, size_t len) {
  size_t off = 0;
  buf[0] = '\0';
#define PUT(...) do { int w_ = snprintf(buf + off, len - off, __VA_ARGS__); if (w_ < 0 || (size_t)w_ >= len - off) return buf; off += (size_t)w_; } while (0)
  for (size_t i = 0; i < s->n; i++) {
    const fy_sel_req *r = &s->reqs[i];
    if (i) PUT(",");
    switch (r->op) {
    case FY_SEL_EXISTS: PUT("%s", r->key); break;
    case FY_SEL_NOTEXISTS: PUT("!%s", r->key); break;
    case FY_SEL_IN: case FY_SEL_NOTIN:
      PUT("%s %s (", r->key, op_names[r->op]);
      for (size_t k = 0; k < r->nvalues; k++) PUT("%s%s", k ? "," : "", r->values[k]);
      PUT(")");
      break;
    default: PUT("%s%s%s", r->key, op_names[r->op], r->nvalues ? r->values[0] : ""); break;
    }
  }
#undef PUT
  return buf;
}

/* ---- affinity ---- */

void fy_affinity_free(fy_affinity *a) {
  if (!a) return;
  for (size_t i = 0; i < a->nrequired; i++) fy_selector_free(&a->required[i]);
  for (size_t i = 0; i < a->npreferred; i++) fy_selector_free(&a->preferred[i]);
  free(a->required);
  free(a->preferred);
  free(a->weights);
  memset(a, 0, sizeof *a);
}

/* {key, operator, values} -> one requirement. */
static int load_expr(const fy_ynode *e, fy_sel_req *r, char *err, size_t errlen) {
  static const char *const allowed[] = {"key", "operator", "values", NULL};
  int line;
  memset(r, 0, sizeof *r);
  if (!e || e->kind != FY_YAML_MAP) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: an expression is a map {key, operator, values}", e ? e->line : 0);
  const char *bad = fy_yaml_unknown_key(e, allowed, &line);
  if (bad) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: unknown key '%s' in an expression (key, operator, values)", line, bad);
  const fy_ynode *k = fy_yaml_get(e, "key"), *o = fy_yaml_get(e, "operator"), *vs = fy_yaml_get(e, "values");
  if (!k || k->kind != FY_YAML_SCALAR || !o || o->kind != FY_YAML_SCALAR)
    return fy_text_fail(err, errlen, FY_EINVAL, "line %d: an expression needs key and operator", e->line);
  char sub[200];
  int rc = set_key(r, k->str, strlen(k->str), sub, sizeof sub);
  if (rc != FY_OK) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: %s", k->line, sub);
  int op = -1;
  for (int i = FY_SEL_IN; i <= FY_SEL_LT; i++)
    if (strcmp(o->str, k8s_ops[i]) == 0) op = i;
  if (op < 0) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: operator '%s': expected In, NotIn, Exists, DoesNotExist, Gt or Lt", o->line, o->str);
  r->op = (fy_sel_op)op;
  int want_values = op == FY_SEL_IN || op == FY_SEL_NOTIN || op == FY_SEL_GT || op == FY_SEL_LT;
  if (want_values != (vs != NULL && !(vs->kind == FY_YAML_SEQ && vs->n == 0)))
    return fy_text_fail(err, errlen, FY_EINVAL, "line %d: %s %s values", e->line, o->str, want_values ? "needs" : "takes no");
  if (vs && vs->kind != FY_YAML_SEQ) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: values is a list", vs->line);
  for (size_t i = 0; vs && i < vs->n; i++) {
    const fy_ynode *v = vs->items[i];
    if (v->kind != FY_YAML_SCALAR) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: values are strings", v->line);
    if ((rc = add_value(r, v->str, strlen(v->str), sub, sizeof sub)) != FY_OK) return rc == FY_ENOMEM ? rc : fy_text_fail(err, errlen, FY_EINVAL, "line %d: %s", v->line, sub);
  }
  if ((op == FY_SEL_GT || op == FY_SEL_LT) && r->nvalues != 1) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: %s takes one value", e->line, o->str);
  return FY_OK;
}

/* A term: selector text, or {matchExpressions: [...]}. *empty: it had no expression (in
 * Kubernetes an empty term matches no node; as a preference it is a no-op). */
static int load_term(const fy_ynode *t, fy_selector *s, const char *what, int *empty, char *err, size_t errlen) {
  char sub[300];
  int rc;
  memset(s, 0, sizeof *s);
  *empty = 0;
  if (t->kind == FY_YAML_SCALAR) {
    if ((rc = fy_selector_parse(t->str, s, sub, sizeof sub)) != FY_OK) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: %s: %s", t->line, what, sub);
    return FY_OK;
  }
  const fy_ynode *me = t->kind == FY_YAML_MAP ? fy_yaml_get(t, "matchExpressions") : NULL;
  if (!me || me->kind != FY_YAML_SEQ || t->n != 1)
    return fy_text_fail(err, errlen, FY_EINVAL, "line %d: %s: expected selector text or {matchExpressions: [...]}", t->line, what);
  if (me->n > FY_SEL_MAX_REQS) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: more than %d expressions", me->line, FY_SEL_MAX_REQS);
  *empty = me->n == 0;
  for (size_t i = 0; i < me->n; i++) {
    fy_sel_req r;
    if ((rc = load_expr(me->items[i], &r, err, errlen)) == FY_OK) rc = push_req(s, &r, err, errlen);
    else req_free(&r);
    if (rc != FY_OK) {
      fy_selector_free(s);
      return rc;
    }
  }
  return FY_OK;
}

int fy_affinity_load(const fy_ynode *n, fy_affinity *a, char *err, size_t errlen) {
  static const char *const allowed[] = {"required", "preferred", NULL};
  int line, rc = FY_OK;
  char what[64];
  memset(a, 0, sizeof *a);
  if (n->kind != FY_YAML_MAP) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: affinity is a map with required and preferred", n->line);
  const char *bad = fy_yaml_unknown_key(n, allowed, &line);
  if (bad) return fy_text_fail(err, errlen, FY_EINVAL, "line %d: unknown key 'affinity.%s' (required, preferred)", line, bad);
  const fy_ynode *req = fy_yaml_get(n, "required"), *pref = fy_yaml_get(n, "preferred");
  /* Kubernetes' nodeSelectorTerms wrapper is accepted too. */
  if (req && req->kind == FY_YAML_MAP && fy_yaml_get(req, "nodeSelectorTerms")) req = fy_yaml_get(req, "nodeSelectorTerms");
  int empty = 0;
  if (req && req->kind == FY_YAML_SCALAR) {
    a->required = calloc(1, sizeof *a->required);
    if (!a->required) return FY_ENOMEM;
    a->nrequired = 1;
    if ((rc = load_term(req, &a->required[0], "affinity.required", &empty, err, errlen)) != FY_OK) goto fail;
  } else if (req) {
    if (req->kind != FY_YAML_SEQ || req->n > FY_SEL_MAX_TERMS) {
      rc = fy_text_fail(err, errlen, FY_EINVAL, "line %d: affinity.required is a list of at most %d terms", req->line, FY_SEL_MAX_TERMS);
      goto fail;
    }
    if (req->n == 0) { /* Kubernetes refuses empty nodeSelectorTerms */
      rc = fy_text_fail(err, errlen, FY_EINVAL, "line %d: affinity.required needs at least one term (leave it out for no requirement)", req->line);
      goto fail;
    }
    a->required = calloc(req->n + 1, sizeof *a->required);
    if (!a->required) return FY_ENOMEM;
    size_t kept = 0;
    for (size_t i = 0; i < req->n; i++) {
      snprintf(what, sizeof what, "affinity.required[%zu]", i);
      if ((rc = load_term(req->items[i], &a->required[kept], what, &empty, err, errlen)) != FY_OK) {
        a->nrequired = kept + 1;
        goto fail;
      }
      if (!empty) kept++; /* an empty term matches no node: it adds nothing to the OR */
    }
    a->nrequired = kept;
    a->match_none = kept == 0;
  }
  if (pref) {
    if (pref->kind != FY_YAML_SEQ || pref->n > FY_SEL_MAX_TERMS) {
      rc = fy_text_fail(err, errlen, FY_EINVAL, "line %d: affinity.preferred is a list of at most %d {weight, preference}", pref->line, FY_SEL_MAX_TERMS);
      goto fail;
    }
    a->preferred = calloc(pref->n + 1, sizeof *a->preferred);
    a->weights = calloc(pref->n + 1, sizeof *a->weights);
    if (!a->preferred || !a->weights) { rc = FY_ENOMEM; goto fail; }
    for (size_t i = 0; i < pref->n; i++) {
      static const char *const pk[] = {"weight", "preference", "match", NULL};
      const fy_ynode *p = pref->items[i];
      if (p->kind != FY_YAML_MAP || (bad = fy_yaml_unknown_key(p, pk, &line))) {
        rc = fy_text_fail(err, errlen, FY_EINVAL, "line %d: affinity.preferred[%zu]: expected {weight: 1-100, preference: TERM}", p->line, i);
        goto fail;
      }
      const fy_ynode *w = fy_yaml_get(p, "weight"), *t = fy_yaml_get(p, "preference");
      if (!t) t = fy_yaml_get(p, "match");
      long wv;
      if (!w || w->kind != FY_YAML_SCALAR || fy_parse_long(w->str, 1, 100, &wv) != FY_OK) {
        rc = fy_text_fail(err, errlen, FY_EINVAL, "line %d: affinity.preferred[%zu].weight: 1 to 100", w ? w->line : p->line, i);
        goto fail;
      }
      if (!t) {
        rc = fy_text_fail(err, errlen, FY_EINVAL, "line %d: affinity.preferred[%zu] needs a preference", p->line, i);
        goto fail;
      }
      snprintf(what, sizeof what, "affinity.preferred[%zu].preference", i);
      if ((rc = load_term(t, &a->preferred[a->npreferred], what, &empty, err, errlen)) != FY_OK) {
        a->npreferred++;
        goto fail;
      }
      if (empty) continue; /* an empty preference is a no-op */
      a->weights[a->npreferred] = (int)wv;
      a->npreferred++;
    }
  }
  return FY_OK;
fail:
  fy_affinity_free(a);
  return rc;
}

int fy_affinity_required_match(const fy_affinity *a, const json_t *labels) {
  if (a->match_none) return 0;
  if (a->nrequired == 0) return 1;
  for (size_t i = 0; i < a->nrequired; i++)
    if (fy_selector_match(&a->required[i], labels)) return 1;
  return 0;
}

int fy_affinity_score(const fy_affinity *a, const json_t *labels) {
  int s = 0;
  for (size_t i = 0; i < a->npreferred; i++)
    if (fy_selector_match(&a->preferred[i], labels)) s += a->weights[i];
  return s;
}

json_t *fy_affinity_to_json(const fy_affinity *a) {
  char buf[8192];
  json_t *o = json_object(), *req = json_array(), *pref = json_array();
  for (size_t i = 0; i < a->nrequired; i++) json_array_append_new(req, json_string(fy_selector_format(&a->required[i], buf, sizeof buf)));
  for (size_t i = 0; i < a->npreferred; i++)
    json_array_append_new(pref, json_pack("{s:i, s:s}", "weight", a->weights[i], "match",
                                          fy_selector_format(&a->preferred[i], buf, sizeof buf)));
  json_object_set_new(o, "required", req);
  json_object_set_new(o, "preferred", pref);
  if (a->match_none) json_object_set_new(o, "match_none", json_true());
  return o;
}

int fy_affinity_from_json(const json_t *j, fy_affinity *a, char *err, size_t errlen) {
  const json_t *req = json_object_get(j, "required"), *pref = json_object_get(j, "preferred"), *v;
  size_t i;
  int rc = FY_OK;
  memset(a, 0, sizeof *a);
  if (!json_is_object(j) || json_array_size(req) > FY_SEL_MAX_TERMS || json_array_size(pref) > FY_SEL_MAX_TERMS)
    return fy_text_fail(err, errlen, FY_EINVAL, "affinity: expected {required: [...], preferred: [...]} with at most %d terms each", FY_SEL_MAX_TERMS);
  a->required = calloc(json_array_size(req) + 1, sizeof *a->required);
  a->preferred = calloc(json_array_size(pref) + 1, sizeof *a->preferred);
  a->weights = calloc(json_array_size(pref) + 1, sizeof *a->weights);
  if (!a->required || !a->preferred || !a->weights) { rc = FY_ENOMEM; goto fail; }
  json_array_foreach(req, i, v) {
    if (!json_is_string(v) || (rc = fy_selector_parse(json_string_value(v), &a->required[i], err, errlen)) != FY_OK) {
      if (rc == FY_OK) rc = fy_text_fail(err, errlen, FY_EINVAL, "affinity.required[%zu]: not a selector", i);
      goto fail;
    }
    a->nrequired++;
  }
  json_array_foreach(pref, i, v) {
    const json_t *w = json_object_get(v, "weight"), *m = json_object_get(v, "match");
    if (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > 100 || !json_is_string(m)) {
      rc = fy_text_fail(err, errlen, FY_EINVAL, "affinity.preferred[%zu]: expected {weight: 1-100, match: SELECTOR}", i);
      goto fail;
    }
    if ((rc = fy_selector_parse(json_string_value(m), &a->preferred[i], err, errlen)) != FY_OK) goto fail;
    a->weights[i] = (int)json_integer_value(w);
    a->npreferred++;
  }
  a->match_none = json_is_true(json_object_get(j, "match_none"));
  return FY_OK;
fail:
  fy_affinity_free(a);
  return rc;
}
