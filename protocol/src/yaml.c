#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "ferry/yaml.h"

struct loader {
  yaml_parser_t parser;
  size_t nodes;
  char *err;
  size_t errlen;
};

static int fail(struct loader *L, int line, int rc, const char *fmt, ...) {
  va_list ap;
  int off = snprintf(L->err, L->errlen, "line %d: ", line);
  if (off < 0 || (size_t)off >= L->errlen) return rc;
  va_start(ap, fmt);
  vsnprintf(L->err + off, L->errlen - (size_t)off, fmt, ap);
  va_end(ap);
  return rc;
}

void fy_yaml_free(fy_ynode *n) {
  if (n == NULL) return;
  for (size_t i = 0; i < n->n; i++) {
    fy_yaml_free(n->items[i]);
    if (n->keys) free(n->keys[i]);
  }
  free(n->items);
  free(n->keys);
  free(n->key_lines);
  free(n->str);
  free(n);
}

static fy_ynode *new_node(struct loader *L, fy_yaml_kind kind, int line) {
  if (++L->nodes > FY_YAML_MAX_NODES) return NULL;
  fy_ynode *n = calloc(1, sizeof *n);
  if (n) {
    n->kind = kind;
    n->line = line;
  }
  return n;
}

static int add_item(fy_ynode *parent, fy_ynode *child, char *key, int key_line) {
  size_t m = parent->n + 1;
  fy_ynode **items = realloc(parent->items, m * sizeof *items);
  if (!items) return FY_ENOMEM;
  parent->items = items;
  if (parent->kind == FY_YAML_MAP) {
    char **keys = realloc(parent->keys, m * sizeof *keys);
    if (!keys) return FY_ENOMEM;
    parent->keys = keys;
    int *kl = realloc(parent->key_lines, m * sizeof *kl);
    if (!kl) return FY_ENOMEM;
    parent->key_lines = kl;
    keys[parent->n] = key;
    kl[parent->n] = key_line;
  }
  items[parent->n] = child;
  parent->n = m;
  return FY_OK;
}

static int next(struct loader *L, yaml_event_t *ev) {
  if (!yaml_parser_parse(&L->parser, ev)) {
    int line = (int)L->parser.problem_mark.line + 1;
    return fail(L, line, FY_ESYNTAX, "%s%s%s", L->parser.problem ? L->parser.problem : "syntax error",
                L->parser.context ? " " : "", L->parser.context ? L->parser.context : "");
  }
  return FY_OK;
}

/* Builds the node that starts with `ev` (already parsed); consumes through its end event. */
static int build(struct loader *L, yaml_event_t *ev, int depth, fy_ynode **out) {
  int line = (int)ev->start_mark.line + 1;
  int rc;
  *out = NULL;
  if (depth > FY_YAML_MAX_DEPTH) return fail(L, line, FY_ETOOBIG, "nesting deeper than %d", FY_YAML_MAX_DEPTH);
  switch (ev->type) {
  case YAML_ALIAS_EVENT:
    return fail(L, line, FY_ESYNTAX, "aliases (*name) are not supported");
  case YAML_SCALAR_EVENT: {
    if (ev->data.scalar.length > FY_YAML_MAX_SCALAR)
      return fail(L, line, FY_ETOOBIG, "value longer than %d bytes", FY_YAML_MAX_SCALAR);
    fy_ynode *n = new_node(L, FY_YAML_SCALAR, line);
    if (!n) return fail(L, line, FY_ETOOBIG, "too many nodes");
    n->str = malloc(ev->data.scalar.length + 1);
    if (!n->str) { fy_yaml_free(n); return FY_ENOMEM; }
    memcpy(n->str, ev->data.scalar.value, ev->data.scalar.length);
    n->str[ev->data.scalar.length] = '\0';
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    *out = n;
    return FY_OK;
  }
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT: {
    int is_map = ev->type == YAML_MAPPING_START_EVENT;
    yaml_event_type_t end = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    fy_ynode *n = new_node(L, is_map ? FY_YAML_MAP : FY_YAML_SEQ, line);
    if (!n) return fail(L, line, FY_ETOOBIG, "too many nodes");
    n->flow = is_map ? ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE
                     : ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
    for (;;) {
      yaml_event_t e;
      char *key = NULL;
      int key_line = 0;
      if ((rc = next(L, &e)) != FY_OK) goto bad;
      if (e.type == end) { yaml_event_delete(&e); break; }
      if (is_map) {
        key_line = (int)e.start_mark.line + 1;
        if (e.type != YAML_SCALAR_EVENT) {
          yaml_event_delete(&e);
          rc = fail(L, key_line, FY_ESYNTAX, "map keys must be plain strings");
          goto bad;
        }
        if (e.data.scalar.length > 256) {
          yaml_event_delete(&e);
          rc = fail(L, key_line, FY_ETOOBIG, "key longer than 256 bytes");
          goto bad;
        }
        key = strndup((const char *)e.data.scalar.value, e.data.scalar.length);
        yaml_event_delete(&e);
        if (!key) { rc = FY_ENOMEM; goto bad; }
        if (fy_yaml_get(n, key)) {
          rc = fail(L, key_line, FY_ESYNTAX, "duplicate key '%s'", key);
          free(key);
          goto bad;
        }
        if ((rc = next(L, &e)) != FY_OK) { free(key); goto bad; }
      }
      fy_ynode *child;
      rc = build(L, &e, depth + 1, &child);
      yaml_event_delete(&e);
      if (rc != FY_OK) { free(key); goto bad; }
      if ((rc = add_item(n, child, key, key_line)) != FY_OK) { free(key); fy_yaml_free(child); goto bad; }
    }
    *out = n;
    return FY_OK;
  bad:
    fy_yaml_free(n);
    return rc;
  }
  default:
    return fail(L, line, FY_ESYNTAX, "unexpected YAML event");
  }
}

int fy_yaml_load(const char *buf, size_t len, fy_ynode **root, char *err, size_t errlen) {
  struct loader L = {.err = err, .errlen = errlen};
  yaml_event_t ev;
  int rc = FY_ESYNTAX;
  *root = NULL;
  if (errlen) err[0] = '\0';
  if (!yaml_parser_initialize(&L.parser)) return FY_ENOMEM;
  yaml_parser_set_input_string(&L.parser, (const unsigned char *)buf, len);
  /* STREAM-START, then DOCUMENT-START or STREAM-END. */
  if ((rc = next(&L, &ev)) != FY_OK) goto out;
  yaml_event_delete(&ev);
  if ((rc = next(&L, &ev)) != FY_OK) goto out;
  if (ev.type == YAML_STREAM_END_EVENT) {
    yaml_event_delete(&ev);
    *root = new_node(&L, FY_YAML_MAP, 1);
    rc = *root ? FY_OK : FY_ENOMEM;
    goto out;
  }
  yaml_event_delete(&ev);
  if ((rc = next(&L, &ev)) != FY_OK) goto out;
  rc = build(&L, &ev, 0, root);
  yaml_event_delete(&ev);
  if (rc != FY_OK) goto out;
  if ((rc = next(&L, &ev)) != FY_OK) goto out; /* DOCUMENT-END */
  yaml_event_delete(&ev);
  if ((rc = next(&L, &ev)) != FY_OK) goto out;
  if (ev.type != YAML_STREAM_END_EVENT) {
    rc = fail(&L, (int)ev.start_mark.line + 1, FY_ESYNTAX, "only one YAML document is allowed");
  }
  yaml_event_delete(&ev);
out:
  if (rc != FY_OK) {
    fy_yaml_free(*root);
    *root = NULL;
  }
  yaml_parser_delete(&L.parser);
  return rc;
}

const fy_ynode *fy_yaml_get(const fy_ynode *map, const char *key) {
  if (map == NULL || map->kind != FY_YAML_MAP) return NULL;
  for (size_t i = 0; i < map->n; i++)
    if (strcmp(map->keys[i], key) == 0) return map->items[i];
  return NULL;
}

const char *fy_yaml_unknown_key(const fy_ynode *map, const char *const *allowed, int *line) {
  if (map == NULL || map->kind != FY_YAML_MAP) return NULL;
  for (size_t i = 0; i < map->n; i++) {
    size_t k = 0;
    while (allowed[k] && strcmp(allowed[k], map->keys[i]) != 0) k++;
    if (allowed[k] == NULL) {
      *line = map->key_lines[i];
      return map->keys[i];
    }
  }
  return NULL;
}

struct unit {
  const char *suffix;
  uint64_t mul;
};

/* Digits then one of the suffixes, overflow-checked. */
static int parse_scaled(const char *s, const struct unit *units, size_t nunits, uint64_t *out) {
  uint64_t v = 0;
  const char *p = s;
  if (*p < '0' || *p > '9') return FY_EINVAL;
  while (*p >= '0' && *p <= '9') {
    uint64_t d = (uint64_t)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return FY_EINVAL;
    v = v * 10 + d;
    p++;
  }
  while (*p == ' ') p++;
  for (size_t i = 0; i < nunits; i++) {
    if (strcmp(p, units[i].suffix) == 0) {
      if (v > UINT64_MAX / units[i].mul) return FY_EINVAL;
      *out = v * units[i].mul;
      return FY_OK;
    }
  }
  return FY_EINVAL;
}

int fy_parse_size(const char *s, uint64_t *out) {
  static const struct unit units[] = {
      {"", 1},          {"B", 1},
      {"K", 1000ull},   {"KB", 1000ull},   {"KiB", 1ull << 10},
      {"M", 1000000ull}, {"MB", 1000000ull}, {"MiB", 1ull << 20},
      {"G", 1000000000ull}, {"GB", 1000000000ull}, {"GiB", 1ull << 30},
      {"T", 1000000000000ull}, {"TB", 1000000000000ull}, {"TiB", 1ull << 40},
  };
  return parse_scaled(s, units, sizeof units / sizeof units[0], out);
}

int fy_parse_duration_ms(const char *s, uint64_t *out) {
  static const struct unit units[] = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  return parse_scaled(s, units, sizeof units / sizeof units[0], out);
}

int fy_parse_long(const char *s, long min, long max, long *out) {
  char *end;
  if (!s || !*s) return FY_EINVAL;
  errno = 0;
  long v = strtol(s, &end, 10);
  while (*end == ' ' || *end == '\n') end++;
  if (errno || *end || v < min || v > max) return FY_EINVAL;
  *out = v;
  return FY_OK;
}

int fy_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  const char *p = s;
  if (!s || *p < '0' || *p > '9') return FY_EINVAL;
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return FY_EINVAL;
    v = v * 10 + d;
  }
  while (*p == ' ' || *p == '\n') p++;
  if (*p || v < min || v > max) return FY_EINVAL;
  *out = v;
  return FY_OK;
}

int fy_parse_bool(const char *s, int *out) {
  static const char *const t[] = {"true", "yes", "on", NULL}, *const f[] = {"false", "no", "off", NULL};
  for (int i = 0; t[i]; i++) if (strcmp(s, t[i]) == 0) { *out = 1; return FY_OK; }
  for (int i = 0; f[i]; i++) if (strcmp(s, f[i]) == 0) { *out = 0; return FY_OK; }
  return FY_EINVAL;
}
