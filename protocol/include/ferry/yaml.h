/* A small YAML document tree over libyaml, with line numbers, for every config and recipe
 * file ferry reads (agent config, boards/, ferry.yaml, fleet.yaml).
 *
 * Pure: the caller reads the file and passes the bytes. Bounded: nesting depth, node count and
 * scalar size have ceilings; aliases are refused (no "billion laughs"). */
#ifndef FERRY_YAML_H
#define FERRY_YAML_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"

#define FY_YAML_MAX_DEPTH 32
#define FY_YAML_MAX_NODES 100000
#define FY_YAML_MAX_SCALAR 65536

typedef enum { FY_YAML_SCALAR, FY_YAML_SEQ, FY_YAML_MAP } fy_yaml_kind;

typedef struct fy_ynode {
  fy_yaml_kind kind;
  int line;             /* 1-based line where the node starts */
  char *str;            /* SCALAR: the text, NUL-terminated */
  int plain;            /* SCALAR: unquoted (so "null"/"~" mean null) */
  int flow;             /* SEQ, MAP: written in flow style ([a, b] or {k: v}) */
  size_t n;             /* SEQ: items; MAP: pairs */
  struct fy_ynode **items;
  char **keys;          /* MAP: keys[i] names items[i] */
  int *key_lines;
} fy_ynode;

/* Parses one document. On error returns FY_ESYNTAX (or FY_ETOOBIG, FY_ENOMEM) and writes
 * "line N: what" into err. An empty document gives an empty map. *root is owned by the caller:
 * free it with fy_yaml_free. */
int fy_yaml_load(const char *buf, size_t len, fy_ynode **root, char *err, size_t errlen) FY_WUR;
void fy_yaml_free(fy_ynode *n); /* NULL-safe */

/* Map lookup; NULL when absent or when `map` is not a map. */
const fy_ynode *fy_yaml_get(const fy_ynode *map, const char *key);

/* The first key of `map` that is not in the NULL-terminated list `allowed`, or NULL.
 * *line receives its line. */
const char *fy_yaml_unknown_key(const fy_ynode *map, const char *const *allowed, int *line);

/* "2GiB", "512MiB", "64KiB", "1G", "1000" -> bytes. FY_EINVAL on anything else or overflow. */
int fy_parse_size(const char *s, uint64_t *out) FY_WUR;
/* "10s", "500ms", "2m", "3" (seconds) -> milliseconds. */
int fy_parse_duration_ms(const char *s, uint64_t *out) FY_WUR;
/* A decimal integer in [min, max], nothing else (no sign games, no overflow). */
int fy_parse_long(const char *s, long min, long max, long *out) FY_WUR;
/* A decimal integer of 64 bits in [min, max] (the same on 32-bit arm as on 64-bit boards):
 * digits only, no sign, no overflow; trailing spaces and newlines are allowed. */
int fy_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) FY_WUR;
#define FY_VERSION_MAX 9223372036854775807ULL /* 2^63 - 1: what JSON (jansson) carries as an integer */
/* true/false/yes/no/on/off. */
int fy_parse_bool(const char *s, int *out) FY_WUR;

/* Check-and-fail for the YAML loaders. In a function with `path`, `err`, `errlen`, an
 * int `ret` and a `cleanup:` label: when cond is false, writes "PATH:LINE: message" into err, sets
 * ret to FY_ECONFIG and jumps to cleanup. */
#define FY_REQUIRE(cond, line_, ...)                                                          \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      int o_ = snprintf(err, errlen, "%s:%d: ", path, (line_));                               \
      if (o_ > 0 && (size_t)o_ < errlen) snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__); \
      ret = FY_ECONFIG;                                                                       \
      goto cleanup;                                                                           \
    }                                                                                         \
  } while (0)

#endif
