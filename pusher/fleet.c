#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/fsutil.h"
#include "ferry/runspec.h"
#include "ferry/text.h"
#include "ferry/wire.h"
#include "ferry/yaml.h"
#include "ferry/imageref.h"
#include "ferry/mqtt.h"
#include "fleet.h"
#include "pki.h"

#define REQUIRE FY_REQUIRE

static int scalar(const fy_ynode *n) { return n && n->kind == FY_YAML_SCALAR; }

void fy_fleet_free(fy_fleet *f) {
  if (!f) return;
  for (size_t i = 0; i < f->n; i++) json_decref(f->labels[i]);
  for (size_t g = 0; g < f->ngroups; g++) {
    for (size_t i = 0; i < f->groups[g].n; i++) free(f->groups[g].members[i]);
    free(f->groups[g].members);
  }
  for (size_t i = 0; f->settings && i < f->n; i++) json_decref(f->settings[i]);
  free(f->settings);
  free(f->node_maps);
  f->settings = NULL;
  f->node_maps = NULL;
  free(f->groups);
  free(f->targets);
  free(f->labels);
  fy_affinity_free(&f->affinity);
  memset(f, 0, sizeof *f);
  f->revert_on_halt = -1;
}

const fy_fleet_group *fy_fleet_group_find(const fy_fleet *f, const char *name) {
  for (size_t g = 0; g < f->ngroups; g++)
    if (strcmp(f->groups[g].name, name) == 0) return &f->groups[g];
  return NULL;
}

static int node_index(const fy_fleet *f, const char *name) {
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->targets[i].name, name) == 0) return (int)i;
  return -1;
}

/* "N" or "P%" as the flags take them. */
static int count_or_percent(const char *s) {
  long v;
  size_t n = strlen(s);
  if (n > 1 && s[n - 1] == '%') {
    char tmp[16];
    if (n >= sizeof tmp) return 0;
    memcpy(tmp, s, n - 1);
    tmp[n - 1] = '\0';
    return fy_parse_long(tmp, 1, 100, &v) == FY_OK;
  }
  return fy_parse_long(s, 0, FY_FLEET_MAX_NODES, &v) == FY_OK;
}

/* env, files and secrets of one level (the file, a group, a node) over what `into` holds:
 * {"env":{K:V}, "files":{"/in/app": "/local/file"}, "secrets":{name: "/local/file"}}. Local
 * paths are relative to the fleet file's directory; they are read at push time. */
static int merge_settings(const char *path, const fy_ynode *map, json_t *into, char *err, size_t errlen) {
  static const char *const kinds[] = {"env", "files", "secrets"};
  int ret = FY_OK;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  for (int k = 0; k < 3; k++) {
    const fy_ynode *m = fy_yaml_get(map, kinds[k]);
    if (!m) continue;
    REQUIRE(m->kind == FY_YAML_MAP, m->line, "%s: a map of %s", kinds[k],
            k == 0 ? "NAME: value" : k == 1 ? "/path/in/the/app: local-file" : "name: local-file");
    json_t *dst = json_object_get(into, kinds[k]);
    if (!dst) json_object_set_new(into, kinds[k], dst = json_object());
    for (size_t i = 0; i < m->n; i++) {
      const char *key = m->keys[i];
      const fy_ynode *v = m->items[i];
      REQUIRE(scalar(v), v->line, "%s.%s: a string", kinds[k], key);
      if (k == 0) {
        REQUIRE(fy_settings_env_key_ok(key), m->key_lines[i],
                "env %s cannot be set from outside the image (LD_* and FERRY_* never; keys are A-Z a-z 0-9 _)", key);
        REQUIRE(strlen(v->str) <= FY_SETTINGS_VALUE_MAX, v->line, "env %s: at most %u bytes", key, FY_SETTINGS_VALUE_MAX);
        json_object_set_new(dst, key, json_string(v->str));
        continue;
      }
      if (k == 1)
        REQUIRE(fy_app_path_clean(key) && strncmp(key, "/proc/", 6) && strncmp(key, "/sys/", 5) && strncmp(key, "/dev/", 5) &&
                    strncmp(key, "/run/secrets/", 13),
                m->key_lines[i], "files: '%s' is not a clean absolute path outside /proc, /sys, /dev, /run/secrets", key);
      if (k == 2) REQUIRE(fy_volume_name_valid(key), m->key_lines[i], "secrets: '%s' is not a secret name (1-32 of a-z, 0-9, '-', '_')", key);
      char local[8300];
      REQUIRE(v->str[0] && fy_path_fmt(local, sizeof local, "%s%s%s", v->str[0] == '/' ? "" : dir, v->str[0] == '/' ? "" : "/", v->str) == FY_OK,
              v->line, "%s.%s: a local file's path", kinds[k], key);
      json_object_set_new(dst, key, json_string(local));
    }
  }
cleanup:
  return ret;
}

static int load_nodes(const char *path, const fy_ynode *nodes, fy_fleet *f, char *err, size_t errlen) {
  static const char *const allowed[] = {"name", "address", "labels", "env", "files", "secrets", NULL};
  int ret = FY_OK, line;
  /* A fleet reached through a broker may start empty: install-agent --broker adds its nodes. */
  int none = !nodes || (nodes->kind == FY_YAML_SCALAR && (!nodes->str || !nodes->str[0])) || (nodes->kind == FY_YAML_SEQ && nodes->n == 0);
  if (none && f->have_broker) return FY_OK;
  REQUIRE(nodes && nodes->kind == FY_YAML_SEQ && nodes->n > 0, nodes ? nodes->line : 1,
          "'nodes' is a list of {name, address, labels}");
  REQUIRE(nodes->n <= FY_FLEET_MAX_NODES, nodes->line, "more than %d nodes", FY_FLEET_MAX_NODES);
  f->targets = calloc(nodes->n, sizeof *f->targets);
  f->labels = calloc(nodes->n, sizeof *f->labels);
  f->settings = calloc(nodes->n, sizeof *f->settings);
  f->node_maps = calloc(nodes->n, sizeof *f->node_maps);
  if (!f->targets || !f->labels || !f->settings || !f->node_maps) return FY_ENOMEM;
  for (size_t i = 0; i < nodes->n; i++) {
    const fy_ynode *n = nodes->items[i];
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "a node is a map {name, address, labels}");
    const char *bad = fy_yaml_unknown_key(n, allowed, &line);
    REQUIRE(!bad, line, "unknown key '%s' in a node (name, address, labels, env, files, secrets)", bad);
    const fy_ynode *name = fy_yaml_get(n, "name"), *addr = fy_yaml_get(n, "address"), *labels = fy_yaml_get(n, "labels");
    REQUIRE(scalar(name) && fy_pki_valid_name(name->str), name ? name->line : n->line,
            "a node needs a name: letters, digits, '.', '-', '_' (the name in its certificate)");
    REQUIRE(node_index(f, name->str) < 0, name->line, "node '%s' is listed twice", name->str);
    REQUIRE(scalar(addr) || f->have_broker, n->line, "node '%s' needs an address (HOST or HOST:PORT), or the fleet a broker:", name->str);
    char spec[400], terr[400];
    if (!addr) { /* reached only through the broker (listen: none) */
      fy_target *t = &f->targets[f->n];
      memset(t, 0, sizeof *t);
      snprintf(t->name, sizeof t->name, "%s", name->str);
      snprintf(t->address, sizeof t->address, "(broker)");
    } else {
    const char *colon = strrchr(addr->str, ':');
    int has_port = colon && (addr->str[0] != '[' || colon > strchr(addr->str, ']'));
    snprintf(spec, sizeof spec, "%s@%s%s", name->str, addr->str, has_port ? "" : ":7433");
    REQUIRE(fy_target_parse(spec, &f->targets[f->n], terr, sizeof terr) == FY_OK, addr->line, "node '%s': address '%s': expected HOST or HOST:PORT",
            name->str, addr->str);
    }
    json_t *lj = f->labels[f->n] = json_object();
    f->node_maps[f->n] = n;
    f->n++;
    if (!lj) return FY_ENOMEM;
    if (labels) {
      REQUIRE(labels->kind == FY_YAML_MAP, labels->line, "labels is a map of key: value");
      for (size_t k = 0; k < labels->n; k++) {
        REQUIRE(fy_label_key_valid(labels->keys[k]), labels->key_lines[k], "'%s' is not a valid label key", labels->keys[k]);
        REQUIRE(scalar(labels->items[k]) && fy_label_value_valid(labels->items[k]->str), labels->items[k]->line,
                "label '%s': a value of at most 63 of [A-Za-z0-9._-]", labels->keys[k]);
        json_object_set_new(lj, labels->keys[k], json_string(labels->items[k]->str));
      }
    }
  }
cleanup:
  return ret;
}

static int load_groups(const char *path, const fy_ynode *groups, fy_fleet *f, char *err, size_t errlen) {
  int ret = FY_OK;
  REQUIRE(groups->kind == FY_YAML_MAP, groups->line, "groups is a map: NAME: [node, ...]");
  f->groups = calloc(groups->n + 1, sizeof *f->groups);
  if (!f->groups) return FY_ENOMEM;
  for (size_t g = 0; g < groups->n; g++) {
    const fy_ynode *m = groups->items[g];
    fy_fleet_group *grp = &f->groups[f->ngroups++];
    REQUIRE(strlen(groups->keys[g]) < sizeof grp->name && fy_pki_valid_name(groups->keys[g]), groups->key_lines[g],
            "'%s' is not a valid group name", groups->keys[g]);
    snprintf(grp->name, sizeof grp->name, "%s", groups->keys[g]);
    if (m->kind == FY_YAML_MAP) { /* {nodes: [...], env, files, secrets} */
      static const char *const gkeys[] = {"nodes", "env", "files", "secrets", NULL};
      int gl;
      const char *gbad = fy_yaml_unknown_key(m, gkeys, &gl);
      REQUIRE(!gbad, gl, "unknown key '%s' in group '%s' (nodes, env, files, secrets)", gbad, grp->name);
      grp->map = m;
      m = fy_yaml_get(m, "nodes");
      REQUIRE(m, grp->map->line, "group '%s' needs nodes: [...]", grp->name);
    }
    REQUIRE(m->kind == FY_YAML_SEQ, m->line, "group '%s' is a list of node names (or {nodes: [...], env: ...})", grp->name);
    grp->members = calloc(m->n + 1, sizeof *grp->members);
    if (!grp->members) return FY_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
      REQUIRE(scalar(m->items[i]) && node_index(f, m->items[i]->str) >= 0, m->items[i]->line,
              "group '%s': '%s' is not a node of this fleet", grp->name, scalar(m->items[i]) ? m->items[i]->str : "?");
      if (!(grp->members[grp->n++] = strdup(m->items[i]->str))) return FY_ENOMEM;
    }
  }
cleanup:
  return ret;
}

static int load_rollout(const char *path, const fy_ynode *r, fy_fleet *f, char *err, size_t errlen) {
  static const char *const allowed[] = {"canary", "max_parallel", "max_failures", "revert_on_halt", "spread_by", NULL};
  int ret = FY_OK, line;
  REQUIRE(r->kind == FY_YAML_MAP, r->line, "rollout is a map (canary, max_parallel, max_failures, revert_on_halt, spread_by)");
  const char *bad = fy_yaml_unknown_key(r, allowed, &line);
  REQUIRE(!bad, line, "unknown key 'rollout.%s' (canary, max_parallel, max_failures, revert_on_halt, spread_by)", bad);
  static const char *const counts[] = {"canary", "max_parallel", "max_failures"};
  char *dst[] = {f->canary, f->max_parallel, f->max_failures};
  for (int i = 0; i < 3; i++) {
    const fy_ynode *v = fy_yaml_get(r, counts[i]);
    if (!v) continue;
    REQUIRE(scalar(v) && strlen(v->str) < 16 && count_or_percent(v->str), v->line, "rollout.%s: a count or a percentage (\"25%%\")", counts[i]);
    snprintf(dst[i], 16, "%s", v->str);
  }
  const fy_ynode *rv = fy_yaml_get(r, "revert_on_halt"), *sb = fy_yaml_get(r, "spread_by");
  REQUIRE(!rv || (scalar(rv) && fy_parse_bool(rv->str, &f->revert_on_halt) == FY_OK), rv ? rv->line : 0, "rollout.revert_on_halt: true or false");
  REQUIRE(!sb || (scalar(sb) && fy_label_key_valid(sb->str)), sb ? sb->line : 0, "rollout.spread_by: a label key");
  if (sb) snprintf(f->spread_by, sizeof f->spread_by, "%s", sb->str);
cleanup:
  return ret;
}

/* A path the fleet file names, relative to the file's own directory; 0 when too long. */
static int beside(const char *fleet_path, const char *p, char *out, size_t outlen) {
  char *dir = strdup(fleet_path);
  const char *d = dir ? dirname(dir) : ".";
  int w = p[0] == '/' ? snprintf(out, outlen, "%s", p) : snprintf(out, outlen, "%s/%s", d, p);
  free(dir);
  return w > 0 && (size_t)w < outlen;
}

int fy_fleet_load(const char *path, fy_fleet *f, char *err, size_t errlen) {
  static const char *const allowed[] = {"nodes", "groups", "affinity", "rollout", "env", "files", "secrets", "registry",
                                        "registry_auth", "broker", NULL};
  char *data = NULL, yerr[300];
  size_t len = 0;
  fy_ynode *root = NULL;
  int ret, line;
  memset(f, 0, sizeof *f);
  f->revert_on_halt = -1;
  snprintf(f->path, sizeof f->path, "%s", path);
  if ((ret = fy_file_read(path, FY_FLEET_MAX_BYTES, &data, &len)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, ret == FY_ETOOBIG ? "over 4 MiB: not a fleet file" : fy_strerror(ret));
    return ret;
  }
  if ((ret = fy_yaml_load(data, len, &root, yerr, sizeof yerr)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, yerr);
    ret = FY_ECONFIG;
    goto cleanup;
  }
  ret = FY_OK;
  REQUIRE(root->kind == FY_YAML_MAP, root->line, "a fleet file is a map with nodes, groups, affinity, rollout");
  const char *bad = fy_yaml_unknown_key(root, allowed, &line);
  REQUIRE(!bad, line, "unknown key '%s' (nodes, groups, affinity, rollout, env, files, secrets, registry, registry_auth, broker)", bad);
  const fy_ynode *bk = fy_yaml_get(root, "broker");
  snprintf(f->topic_prefix, sizeof f->topic_prefix, "ferry");
  if (bk) {
    static const char *const bkeys[] = {"url", "topic_prefix", "ca", NULL};
    REQUIRE(bk->kind == FY_YAML_MAP, bk->line, "broker: expected a map {url: mqtts://HOST[:PORT], topic_prefix: ferry/FLEET}");
    bad = fy_yaml_unknown_key(bk, bkeys, &line);
    REQUIRE(!bad, line, "unknown key 'broker.%s' (url, topic_prefix, ca)", bad);
    const fy_ynode *u = fy_yaml_get(bk, "url"), *tp = fy_yaml_get(bk, "topic_prefix"), *ca = fy_yaml_get(bk, "ca");
    REQUIRE(scalar(u) && fy_mqtt_url_parse(u->str, f->broker_host, sizeof f->broker_host, &f->broker_port) == FY_OK,
            u ? u->line : bk->line, "broker.url: expected mqtts://HOST[:PORT]");
    if (tp) {
      REQUIRE(scalar(tp) && strlen(tp->str) < 200 && fy_mqtt_topic_valid(tp->str, strlen(tp->str), 0) && tp->str[0] != '/' &&
                  tp->str[strlen(tp->str) - 1] != '/',
              tp->line, "broker.topic_prefix: expected topic levels such as ferry/site1, as the agents have it");
      snprintf(f->topic_prefix, sizeof f->topic_prefix, "%s", tp->str);
    }
    if (ca)
      REQUIRE(scalar(ca) && ca->str[0] && beside(path, ca->str, f->broker_ca, sizeof f->broker_ca), ca->line,
              "broker.ca: expected the path of a PEM file with the CA certificates of a broker whose certificate another CA issued");
    f->have_broker = 1;
  }
  const fy_ynode *reg = fy_yaml_get(root, "registry"), *ra = fy_yaml_get(root, "registry_auth");
  if (reg) {
    fy_image_name in;
    char why[300];
    REQUIRE(scalar(reg) && strlen(reg->str) < sizeof f->registry && fy_image_name_parse(reg->str, &in, why, sizeof why) == FY_OK &&
                in.transport == FY_IMG_DOCKER,
            reg->line, "registry: expected docker://HOST[:PORT]/REPO, where the devices pull from");
    snprintf(f->registry, sizeof f->registry, "%s", reg->str);
  }
  if (ra) {
    REQUIRE(scalar(ra) && ra->str[0], ra->line, "registry_auth: expected the path of an auth.json holding a read-only credential");
    REQUIRE(beside(path, ra->str, f->registry_auth, sizeof f->registry_auth), ra->line, "registry_auth: path too long");
  }
  if ((ret = load_nodes(path, fy_yaml_get(root, "nodes"), f, err, errlen)) != FY_OK) goto cleanup;
  const fy_ynode *g = fy_yaml_get(root, "groups"), *a = fy_yaml_get(root, "affinity"), *r = fy_yaml_get(root, "rollout");
  if (g && (ret = load_groups(path, g, f, err, errlen)) != FY_OK) goto cleanup;
  /* Each node's settings: the file's, then its groups' in the file's order, then its own. */
  for (size_t i = 0; i < f->n; i++) {
    if (!(f->settings[i] = json_object())) { ret = FY_ENOMEM; goto cleanup; }
    if ((ret = merge_settings(path, root, f->settings[i], err, errlen)) != FY_OK) goto cleanup;
    for (size_t k = 0; k < f->ngroups; k++) {
      int member = 0;
      for (size_t m = 0; m < f->groups[k].n; m++) member |= strcmp(f->groups[k].members[m], f->targets[i].name) == 0;
      if (member && f->groups[k].map && (ret = merge_settings(path, f->groups[k].map, f->settings[i], err, errlen)) != FY_OK) goto cleanup;
    }
    if ((ret = merge_settings(path, f->node_maps[i], f->settings[i], err, errlen)) != FY_OK) goto cleanup;
  }
  for (size_t k = 0; k < f->ngroups; k++) f->groups[k].map = NULL; /* the YAML tree goes below */
  if (r && (ret = load_rollout(path, r, f, err, errlen)) != FY_OK) goto cleanup;
  if (a) {
    char aerr[400];
    if ((ret = fy_affinity_load(a, &f->affinity, aerr, sizeof aerr)) != FY_OK) {
      snprintf(err, errlen, "%s: %s", path, aerr); /* aerr starts with "line N:" */
      ret = FY_ECONFIG;
    }
  }
cleanup:
  if (ret != FY_OK) fy_fleet_free(f);
  fy_yaml_free(root);
  free(data);
  return ret;
}

/* --- removing a node (ferry uninstall-agent) ----------------------------------------------- */

/* A line to drop, or a flow list on it ("home: [a, b]") to drop `name` from. */
enum { LINE_KEEP, LINE_DROP, LINE_UNLIST, LINE_EMPTIED };

static int blank_or_comment(const char *line, size_t len) {
  size_t i = 0;
  while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
  return i == len || line[i] == '#' || line[i] == '\r';
}

/* The flow list on line[0..len) without the member `name` (quoted or not), appended to out. */
static size_t unlist(const char *line, size_t len, const char *name, char *out) {
  const char *open = memchr(line, '[', len), *close = open ? memchr(open, ']', len - (size_t)(open - line)) : NULL;
  if (!open || !close) {
    memcpy(out, line, len);
    return len;
  }
  size_t o = (size_t)(open - line) + 1, first = 1;
  memcpy(out, line, o);
  for (const char *p = open + 1; p < close;) {
    const char *end = memchr(p, ',', (size_t)(close - p));
    if (!end) end = close;
    const char *a = p, *b = end;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    if (b - a >= 2 && (*a == '"' || *a == '\'') && b[-1] == *a) a++, b--;
    int same = (size_t)(b - a) == strlen(name) && memcmp(a, name, (size_t)(b - a)) == 0;
    if (!same && end > p) {
      const char *s = p, *e = end;
      while (s < e && (*s == ' ' || *s == '\t')) s++;
      while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
      if (!first) out[o++] = ',', out[o++] = ' ';
      memcpy(out + o, s, (size_t)(e - s));
      o += (size_t)(e - s);
      first = 0;
    }
    p = end + 1;
  }
  size_t rest = len - (size_t)(close - line);
  memcpy(out + o, close, rest);
  return o + rest;
}

/* "  solo:   # c\n" -> "  solo: []   # c\n": the key line of a group with no member left. */
static size_t emptied(const char *line, size_t len, char *out) {
  const char *colon = memchr(line, ':', len);
  if (!colon) {
    memcpy(out, line, len);
    return len;
  }
  size_t head = (size_t)(colon - line) + 1;
  memcpy(out, line, head);
  memcpy(out + head, " []", 3);
  memcpy(out + head + 3, line + head, len - head);
  return len + 3;
}

int fy_fleet_remove_node(const char *path, const char *name, char *err, size_t errlen) {
  char *text = NULL, yerr[300];
  size_t len = 0;
  fy_ynode *root = NULL;
  int rc = fy_file_read(path, FY_FLEET_MAX_BYTES, &text, &len), *mark = NULL, nlines = 1;
  if (rc != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, fy_strerror(rc));
    return rc;
  }
  for (size_t i = 0; i < len; i++) nlines += text[i] == '\n';
  if ((rc = fy_yaml_load(text, len, &root, yerr, sizeof yerr)) != FY_OK || root->kind != FY_YAML_MAP) {
    snprintf(err, errlen, "%s: %s", path, rc != FY_OK ? yerr : "not a fleet file");
    rc = FY_ECONFIG;
    goto out;
  }
  const fy_ynode *nodes = fy_yaml_get(root, "nodes"), *groups = fy_yaml_get(root, "groups");
  int from = 0, to = 0;
  for (size_t i = 0; nodes && nodes->kind == FY_YAML_SEQ && i < nodes->n && !from; i++) {
    const fy_ynode *nm = fy_yaml_get(nodes->items[i], "name");
    if (!scalar(nm) || strcmp(nm->str, name) != 0) continue;
    if (nodes->flow) {
      snprintf(err, errlen, "%s: `nodes:` is a flow list; remove %s by hand", path, name);
      rc = FY_ECONFIG;
      goto out;
    }
    from = nodes->items[i]->line;
    to = i + 1 < nodes->n ? nodes->items[i + 1]->line : nlines + 1;
    for (size_t k = 0; k < root->n && i + 1 == nodes->n; k++) /* the last node ends where the next key starts */
      if (root->key_lines[k] > from && root->key_lines[k] < to) to = root->key_lines[k];
  }
  if (!from) {
    rc = FY_ENOENT;
    snprintf(err, errlen, "%s does not list %s", path, name);
    goto out;
  }
  if (!(mark = calloc((size_t)nlines + 2, sizeof *mark))) {
    rc = FY_ENOMEM;
    goto out;
  }
  for (int l = from; l < to; l++) mark[l] = LINE_DROP;
  for (size_t g = 0; groups && groups->kind == FY_YAML_MAP && g < groups->n; g++) {
    const fy_ynode *m = groups->items[g];
    int key_line = groups->key_lines[g];
    if (m->kind == FY_YAML_MAP) { /* {nodes: [...], env: ...}: its nodes list */
      const fy_ynode *gm = m;
      m = fy_yaml_get(gm, "nodes");
      for (size_t k = 0; m && k < gm->n; k++)
        if (strcmp(gm->keys[k], "nodes") == 0) key_line = gm->key_lines[k];
      if (!m) continue;
    }
    size_t dropped = 0;
    for (size_t i = 0; m->kind == FY_YAML_SEQ && i < m->n; i++)
      if (scalar(m->items[i]) && strcmp(m->items[i]->str, name) == 0 && m->items[i]->line <= nlines) {
        mark[m->items[i]->line] = m->flow ? LINE_UNLIST : LINE_DROP;
        dropped++;
      }
    /* A block list that loses its only member becomes "key: []" (an empty group still loads). */
    if (!m->flow && m->n && dropped == m->n && key_line <= nlines) mark[key_line] = LINE_EMPTIED;
  }
  /* Lines: blank lines and comments at the end of the node's entry stay (they head what follows). */
  const char **start = calloc((size_t)nlines + 2, sizeof *start);
  size_t *llen = calloc((size_t)nlines + 2, sizeof *llen);
  char *out = malloc(2 * len + 3 * (size_t)nlines + 16); /* flow lists may gain spaces, emptied groups " []" */
  if (!start || !llen || !out) {
    rc = FY_ENOMEM;
  } else {
    const char *p = text;
    for (int l = 1; l <= nlines; l++) {
      const char *nl = memchr(p, '\n', len - (size_t)(p - text));
      start[l] = p;
      llen[l] = nl ? (size_t)(nl - p) + 1 : len - (size_t)(p - text);
      p += llen[l];
    }
    for (int l = to - 1; l > from && mark[l] == LINE_DROP && blank_or_comment(start[l], llen[l]); l--) mark[l] = LINE_KEEP;
    size_t o = 0;
    for (int l = 1; l <= nlines; l++) {
      if (mark[l] == LINE_DROP) continue;
      if (mark[l] == LINE_UNLIST) o += unlist(start[l], llen[l], name, out + o);
      else if (mark[l] == LINE_EMPTIED) o += emptied(start[l], llen[l], out + o);
      else memcpy(out + o, start[l], llen[l]), o += llen[l];
    }
    rc = fy_file_write_atomic(path, out, o, 0644);
    if (rc != FY_OK) snprintf(err, errlen, "%s: %s", path, fy_strerror(rc));
    fy_fleet f;
    char lerr[600];
    if (rc == FY_OK && fy_fleet_load(path, &f, lerr, sizeof lerr) != FY_OK) { /* never leave a broken file */
      rc = fy_file_write_atomic(path, text, len, 0644) == FY_OK ? FY_ECONFIG : FY_EIO;
      snprintf(err, errlen, "%s: without %s the file would not load (%s); remove it by hand", path, name, lerr);
    } else if (rc == FY_OK) {
      fy_fleet_free(&f);
    }
  }
  free(start);
  free(llen);
  free(out);
out:
  free(mark);
  fy_yaml_free(root);
  free(text);
  return rc;
}
