#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/board.h"
#include "ferry/yaml.h"

#define CHECK(cond, line, ...)                         \
  do {                                                 \
    if (!(cond)) {                                     \
      int o_ = snprintf(err, errlen, "line %d: ", (line)); \
      if (o_ > 0 && (size_t)o_ < errlen) snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__); \
      ret = FY_ECONFIG;                                \
      goto cleanup;                                    \
    }                                                  \
  } while (0)

static int scalar(const fy_ynode *n) { return n && n->kind == FY_YAML_SCALAR; }

static int copy_str(char *dst, size_t cap, const fy_ynode *n) {
  if (!scalar(n) || strlen(n->str) >= cap) return 0;
  memcpy(dst, n->str, strlen(n->str) + 1);
  return 1;
}

static int parse_hex(const char *s, unsigned *out) {
  char *end;
  unsigned long v = strtoul(s, &end, 0);
  if (*s == '\0' || *end != '\0' || v > 0xffffffffUL) return 0;
  *out = (unsigned)v;
  return 1;
}

int fy_board_parse(const char *yaml, size_t len, fy_board *b, char *err, size_t errlen) {
  static const char *const top_keys[] = {"name", "description", "platforms", "cpu", "match",
                                         "labels", "fallback", NULL};
  static const char *const cpu_keys[] = {"model", "mcpu", "qemu_cpu", "variant", NULL};
  static const char *const rule_keys[] = {"device_tree_model", "dmi_vendor", "dmi_product",
                                          "midr_part", "midr_implementer", NULL};
  fy_ynode *root = NULL;
  int ret = FY_OK, line;
  const char *bad;
  memset(b, 0, sizeof *b);
  if (fy_yaml_load(yaml, len, &root, err, errlen) != FY_OK) return FY_ECONFIG;
  CHECK(root->kind == FY_YAML_MAP, root->line, "a board profile is a map");
  bad = fy_yaml_unknown_key(root, top_keys, &line);
  CHECK(!bad, line, "unknown key '%s'", bad);
  const fy_ynode *n = fy_yaml_get(root, "name");
  CHECK(copy_str(b->name, sizeof b->name, n), n ? n->line : root->line, "'name' is required (a short string)");
  n = fy_yaml_get(root, "description");
  if (n) CHECK(copy_str(b->description, sizeof b->description, n), n->line, "description too long");
  n = fy_yaml_get(root, "platforms");
  CHECK(n && n->kind == FY_YAML_SEQ && n->n > 0 && n->n <= FY_BOARD_MAX_PLATFORMS,
        n ? n->line : root->line, "'platforms' is a list of 1 to %d platforms", FY_BOARD_MAX_PLATFORMS);
  for (size_t i = 0; i < n->n; i++) {
    const fy_ynode *p = n->items[i];
    CHECK(scalar(p) && fy_platform_parse(p->str, &b->platforms[i]) == FY_OK, p->line,
          "not a platform: expected os/arch[/variant]");
  }
  b->nplatforms = n->n;
  if ((n = fy_yaml_get(root, "cpu")) != NULL) {
    CHECK(n->kind == FY_YAML_MAP, n->line, "'cpu' is a map");
    bad = fy_yaml_unknown_key(n, cpu_keys, &line);
    CHECK(!bad, line, "unknown key 'cpu.%s'", bad);
    const fy_ynode *v;
    if ((v = fy_yaml_get(n, "model"))) CHECK(copy_str(b->cpu_model, sizeof b->cpu_model, v), v->line, "cpu.model: short string expected");
    if ((v = fy_yaml_get(n, "mcpu"))) CHECK(copy_str(b->mcpu, sizeof b->mcpu, v), v->line, "cpu.mcpu: short string expected");
    if ((v = fy_yaml_get(n, "qemu_cpu"))) CHECK(copy_str(b->qemu_cpu, sizeof b->qemu_cpu, v), v->line, "cpu.qemu_cpu: short string expected");
    if ((v = fy_yaml_get(n, "variant"))) CHECK(copy_str(b->variant, sizeof b->variant, v), v->line, "cpu.variant: short string expected");
  }
  if ((n = fy_yaml_get(root, "fallback")) != NULL)
    CHECK(scalar(n) && fy_parse_bool(n->str, &b->fallback) == FY_OK, n->line, "fallback: true or false");
  if ((n = fy_yaml_get(root, "match")) != NULL) {
    CHECK(n->kind == FY_YAML_SEQ && n->n <= FY_BOARD_MAX_RULES, n->line, "'match' is a list of at most %d rules", FY_BOARD_MAX_RULES);
    for (size_t i = 0; i < n->n; i++) {
      const fy_ynode *r = n->items[i], *v;
      fy_board_rule *rule = &b->rules[i];
      CHECK(r->kind == FY_YAML_MAP && r->n > 0, r->line, "a match rule is a non-empty map");
      bad = fy_yaml_unknown_key(r, rule_keys, &line);
      CHECK(!bad, line, "unknown match key '%s'", bad);
      if ((v = fy_yaml_get(r, "device_tree_model"))) CHECK(copy_str(rule->dt_model, sizeof rule->dt_model, v), v->line, "device_tree_model: string expected");
      if ((v = fy_yaml_get(r, "dmi_vendor"))) CHECK(copy_str(rule->dmi_vendor, sizeof rule->dmi_vendor, v), v->line, "dmi_vendor: string expected");
      if ((v = fy_yaml_get(r, "dmi_product"))) CHECK(copy_str(rule->dmi_product, sizeof rule->dmi_product, v), v->line, "dmi_product: string expected");
      if ((v = fy_yaml_get(r, "midr_part"))) CHECK(scalar(v) && parse_hex(v->str, &rule->midr_part) && rule->midr_part <= 0xfff, v->line, "midr_part: a number like 0xd08");
      if ((v = fy_yaml_get(r, "midr_implementer"))) CHECK(scalar(v) && parse_hex(v->str, &rule->midr_impl) && rule->midr_impl <= 0xff, v->line, "midr_implementer: a number like 0x41");
    }
    b->nrules = n->n;
  }
  if ((n = fy_yaml_get(root, "labels")) != NULL) {
    CHECK(n->kind == FY_YAML_MAP && n->n <= FY_BOARD_MAX_LABELS, n->line, "'labels' is a map of at most %d labels", FY_BOARD_MAX_LABELS);
    for (size_t i = 0; i < n->n; i++) {
      CHECK(strlen(n->keys[i]) < 64 && copy_str(b->label_vals[i], 64, n->items[i]), n->key_lines[i], "label too long");
      memcpy(b->label_keys[i], n->keys[i], strlen(n->keys[i]) + 1);
    }
    b->nlabels = n->n;
  }
cleanup:
  fy_yaml_free(root);
  return ret;
}

static int prefix(const char *have, const char *want) {
  return want[0] == '\0' || (have[0] != '\0' && strncmp(have, want, strlen(want)) == 0);
}

static int rule_matches(const fy_board_rule *r, const fy_board_probe *p) {
  if (r->dt_model[0] && !prefix(p->dt_model, r->dt_model)) return 0;
  if (r->dmi_vendor[0] && !prefix(p->dmi_vendor, r->dmi_vendor)) return 0;
  if (r->dmi_product[0] && !prefix(p->dmi_product, r->dmi_product)) return 0;
  if (r->midr_part && (p->midr == 0 || ((p->midr >> 4) & 0xfff) != r->midr_part)) return 0;
  if (r->midr_impl && (p->midr == 0 || (p->midr >> 24) != r->midr_impl)) return 0;
  return 1;
}

static int runs_on(const fy_board *b, const fy_platform *self) {
  for (size_t i = 0; i < b->nplatforms; i++)
    if (fy_platform_equal(&b->platforms[i], self)) return 1;
  return 0;
}

int fy_board_match(const fy_board *boards, size_t n, const fy_board_probe *probe,
                   const fy_platform *self) {
  for (size_t i = 0; i < n; i++) {
    if (boards[i].fallback || !runs_on(&boards[i], self)) continue;
    for (size_t r = 0; r < boards[i].nrules; r++)
      if (rule_matches(&boards[i].rules[r], probe)) return (int)i;
  }
  for (size_t i = 0; i < n; i++)
    if (boards[i].fallback && runs_on(&boards[i], self)) return (int)i;
  return -1;
}

int fy_board_load_builtin(fy_board **out, size_t *count, char *err, size_t errlen) {
  size_t n = 0;
  while (fy_board_builtin[n].file) n++;
  fy_board *b = calloc(n ? n : 1, sizeof *b);
  if (!b) return FY_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    char why[256];
    if (fy_board_parse(fy_board_builtin[i].text, strlen(fy_board_builtin[i].text), &b[i], why, sizeof why) != FY_OK) {
      snprintf(err, errlen, "boards/%s: %s", fy_board_builtin[i].file, why);
      free(b);
      return FY_ECONFIG;
    }
  }
  *out = b;
  *count = n;
  return FY_OK;
}

const fy_board *fy_board_find(const fy_board *boards, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(boards[i].name, name) == 0) return &boards[i];
  return NULL;
}
