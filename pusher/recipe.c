#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/fsutil.h"
#include "ferry/oci.h"
#include "ferry/runspec.h"
#include "ferry/wire.h"
#include "ferry/text.h"
#include "ferry/yaml.h"
#include "recipe.h"

#define FAIL_AT(line, ...)                                                                          \
  do {                                                                                            \
    int o_ = snprintf(err, errlen, "%s:%d: ", path, (line));                                      \
    if (o_ > 0 && (size_t)o_ < errlen) snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__);      \
    ret = FY_ECONFIG;                                                                             \
    goto cleanup;                                                                                 \
  } while (0)
#define REQUIRE(cond, line, ...) do { if (!(cond)) FAIL_AT(line, __VA_ARGS__); } while (0)

static int scalar(const fy_ynode *n) { return n && n->kind == FY_YAML_SCALAR; }

static int copy(char *dst, size_t cap, const fy_ynode *n) {
  if (!scalar(n) || strlen(n->str) >= cap) return 0;
  memcpy(dst, n->str, strlen(n->str) + 1);
  return 1;
}

/* A list of strings (or one string, for argv-like keys). */
static int strlist(const fy_ynode *n, char **out, size_t *count, int allow_scalar) {
  *count = 0;
  if (allow_scalar && scalar(n)) {
    out[0] = strdup(n->str);
    *count = out[0] ? 1 : 0;
    return *count == 1;
  }
  if (!n || n->kind != FY_YAML_SEQ || n->n > FY_RECIPE_MAX_LIST) return 0;
  for (size_t i = 0; i < n->n; i++) {
    if (!scalar(n->items[i])) return 0;
    if (!(out[i] = strdup(n->items[i]->str))) return 0;
    (*count)++;
  }
  return 1;
}

void fy_recipe_free(fy_recipe *r) {
  char **lists[] = {r->cmake_options, r->entrypoint, r->cmd, r->env, r->test, r->health_argv};
  size_t *counts[] = {&r->ncmake_options, &r->nentrypoint, &r->ncmd, &r->nenv, &r->ntest, &r->nhealth_argv};
  for (int k = 0; k < 6; k++) {
    for (size_t i = 0; i < *counts[k]; i++) free(lists[k][i]);
    *counts[k] = 0;
  }
  fy_affinity_free(&r->affinity);
  json_decref(r->config_decl);
  r->config_decl = NULL;
}

/* A YAML map of scalars and lists of scalars as JSON (capabilities and resources), NULL if it
 * is anything else. */
static json_t *yaml_json(const fy_ynode *n) {
  if (n->kind == FY_YAML_SCALAR) return json_string(n->str);
  if (n->kind == FY_YAML_SEQ) {
    json_t *a = json_array();
    for (size_t i = 0; i < n->n; i++) {
      if (n->items[i]->kind != FY_YAML_SCALAR) {
        json_decref(a);
        return NULL;
      }
      json_array_append_new(a, json_string(n->items[i]->str));
    }
    return a;
  }
  json_t *o = json_object();
  for (size_t i = 0; i < n->n; i++) {
    json_t *v = yaml_json(n->items[i]);
    if (!v || n->items[i]->kind == FY_YAML_MAP) {
      json_decref(v);
      json_decref(o);
      return NULL;
    }
    json_object_set_new(o, n->keys[i], v);
  }
  return o;
}

/* Long on purpose: ferry.yaml's schema reads top to bottom here, one FY_REQUIRE per rule with the
 * line it points at; split into helpers, the rules of one key would be spread over several. */
int fy_recipe_load(const char *path, fy_recipe *r, char *err, size_t errlen) {
  static const char *const top[] = {"name", "version", "platforms", "boards", "build", "files", "run", "test",
                                    "affinity", "compression_level", "mtime", "volumes", "devices", "config", NULL};
  static const char *const build_keys[] = {"cmake", "options", "command", NULL};
  static const char *const run_keys[] = {"entrypoint", "cmd", "env", "workdir", "settle", "health", "user", "stop_signal",
                                         "stop_timeout", "capabilities", "resources", "restart", NULL};
  static const char *const health_keys[] = {"port", "cmd", "interval", NULL};
  static const char *const test_keys[] = {"command", NULL};
  char *text = NULL, *dcopy = NULL, yerr[300];
  size_t len;
  fy_ynode *root = NULL;
  const fy_ynode *n, *v;
  const char *bad;
  int ret, line = 1;
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  r->zstd_level = 19;
  r->settle_ms = 3000;
  r->stop_timeout_ms = -1;
  r->health_interval_ms = -1;
  snprintf(r->workdir, sizeof r->workdir, "/");
  ret = fy_file_read(path, 256 * 1024, &text, &len);
  if (ret != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, fy_strerror(ret));
    return ret == FY_ENOENT ? FY_ENOENT : FY_ECONFIG;
  }
  dcopy = strdup(path);
  char abs[4096];
  snprintf(r->dir, sizeof r->dir, "%s", realpath(dirname(dcopy), abs) ? abs : ".");
  if (fy_yaml_load(text, len, &root, yerr, sizeof yerr) != FY_OK) {
    snprintf(err, errlen, "%s:%s", path, yerr + 5);
    ret = FY_ECONFIG;
    goto cleanup;
  }
  ret = FY_OK;
  REQUIRE(root->kind == FY_YAML_MAP, root->line, "a recipe is a map (name:, version:, build:, ...)");
  bad = fy_yaml_unknown_key(root, top, &line);
  REQUIRE(!bad, line, "unknown key '%s' (expected name, version, platforms, boards, build, files, run, test, compression_level, mtime)", bad);
  n = fy_yaml_get(root, "name");
  REQUIRE(copy(r->name, sizeof r->name, n) && r->name[0], n ? n->line : 1, "'name' is required: the application's name");
  n = fy_yaml_get(root, "version");
  REQUIRE(copy(r->version, sizeof r->version, n) && r->version[0], n ? n->line : 1, "'version' is required, e.g. 1.0.0 (it tags the image)");

  if ((n = fy_yaml_get(root, "platforms"))) {
    REQUIRE(n->kind == FY_YAML_SEQ && n->n > 0 && n->n <= FY_RECIPE_MAX_LIST, n->line, "platforms: a list such as [linux/amd64, linux/arm64]");
    for (size_t i = 0; i < n->n; i++) {
      const fy_ynode *p = n->items[i];
      REQUIRE(scalar(p) && fy_platform_parse(p->str, &r->platforms[i]) == FY_OK, p->line,
              "'%s' is not a platform name (os/arch[/variant], e.g. linux/arm64)", scalar(p) ? p->str : "?");
      for (size_t k = 0; k < i; k++)
        REQUIRE(!fy_platform_equal(&r->platforms[k], &r->platforms[i]), p->line, "platform '%s' is listed twice (after normalization)", p->str);
    }
    r->nplatforms = n->n;
  } else {
    static const char *const defaults[] = {"linux/amd64", "linux/arm64", "linux/arm/v7"};
    for (int i = 0; i < 3; i++)
      if (fy_platform_parse(defaults[i], &r->platforms[i]) != FY_OK) return FY_EINVAL;
    r->nplatforms = 3;
  }
  if ((n = fy_yaml_get(root, "boards"))) {
    REQUIRE(n->kind == FY_YAML_SEQ && n->n <= FY_RECIPE_MAX_LIST, n->line, "boards: a list of profiles from boards/, e.g. [rpi4, graviton3]");
    fy_board *boards = NULL;
    size_t nb = 0;
    char why[256];
    if (fy_board_load_builtin(&boards, &nb, why, sizeof why) != FY_OK) FAIL_AT(n->line, "%s", why);
    for (size_t i = 0; i < n->n; i++) {
      const fy_ynode *b = n->items[i];
      int known = scalar(b) && fy_board_find(boards, nb, b->str) != NULL;
      if (!known) {
        char names[512] = "";
        for (size_t k = 0; k < nb; k++) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "", boards[k].name);
        free(boards);
        FAIL_AT(b->line, "unknown board '%s' (known: %s)", scalar(b) ? b->str : "?", names);
      }
      snprintf(r->boards[i], sizeof r->boards[i], "%s", b->str);
    }
    free(boards);
    r->nboards = n->n;
  }

  n = fy_yaml_get(root, "build");
  REQUIRE(n && n->kind == FY_YAML_MAP, n ? n->line : 1, "'build' is required: {cmake: SRC_DIR} or {command: \"...\"}");
  bad = fy_yaml_unknown_key(n, build_keys, &line);
  REQUIRE(!bad, line, "unknown key 'build.%s' (expected cmake, options, command)", bad);
  const fy_ynode *cm = fy_yaml_get(n, "cmake"), *cmdn = fy_yaml_get(n, "command");
  REQUIRE((cm != NULL) != (cmdn != NULL), n->line, "build: give exactly one of 'cmake' (a source dir) or 'command'");
  if (cm) {
    REQUIRE(scalar(cm) && cm->str[0], cm->line, "build.cmake: the CMake source directory, relative to the recipe");
    REQUIRE(fy_path_fmt(r->cmake_dir, sizeof r->cmake_dir, "%s%s%s", cm->str[0] == '/' ? "" : r->dir,
                        cm->str[0] == '/' ? "" : "/", cm->str) == FY_OK,
            cm->line, "build.cmake: the path is too long");
    if ((v = fy_yaml_get(n, "options")))
      REQUIRE(strlist(v, r->cmake_options, &r->ncmake_options, 0), v->line, "build.options: a list of CMake arguments");
  } else {
    REQUIRE(copy(r->command, sizeof r->command, cmdn) && r->command[0], cmdn->line, "build.command: a shell command");
    REQUIRE(!fy_yaml_get(n, "options"), fy_yaml_get(n, "options")->line, "build.options goes with build.cmake");
  }

  if ((n = fy_yaml_get(root, "files"))) {
    REQUIRE(n->kind == FY_YAML_SEQ && n->n <= FY_RECIPE_MAX_LIST, n->line, "files: a list of paths, or {from: STAGED, to: /IN/IMAGE}");
    for (size_t i = 0; i < n->n; i++) {
      const fy_ynode *f = n->items[i];
      fy_recipe_file *rf = &r->files[i];
      if (scalar(f)) {
        REQUIRE(copy(rf->from, sizeof rf->from, f), f->line, "files: path too long");
        snprintf(rf->to, sizeof rf->to, "%s%s", f->str[0] == '/' ? "" : "/", f->str);
      } else {
        REQUIRE(f->kind == FY_YAML_MAP && copy(rf->from, sizeof rf->from, fy_yaml_get(f, "from")) &&
                copy(rf->to, sizeof rf->to, fy_yaml_get(f, "to")) && rf->to[0] == '/', f->line,
                "files: each item is a path or {from: STAGED_PATH, to: /ABSOLUTE/IN/IMAGE}");
      }
      REQUIRE(!strstr(rf->from, "..") && !strstr(rf->to, ".."), f->line, "files: '..' is not allowed");
    }
    r->nfiles = n->n;
  }

  if ((n = fy_yaml_get(root, "run"))) {
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "run: a map (entrypoint, cmd, env, workdir, settle, health, user, ...)");
    bad = fy_yaml_unknown_key(n, run_keys, &line);
    REQUIRE(!bad, line,
            "unknown key 'run.%s' (expected entrypoint, cmd, env, workdir, settle, health, user, stop_signal, stop_timeout, "
            "capabilities, resources, restart)",
            bad);
    if ((v = fy_yaml_get(n, "user"))) REQUIRE(copy(r->user, sizeof r->user, v) && r->user[0], v->line, "run.user: a user such as app, 1000 or 1000:1000");
    if ((v = fy_yaml_get(n, "stop_signal"))) {
      int sig;
      REQUIRE(copy(r->stop_signal, sizeof r->stop_signal, v) && fy_signal_parse(r->stop_signal, &sig) == FY_OK, v->line,
              "run.stop_signal: a signal such as SIGTERM, SIGINT or SIGQUIT");
    }
    if ((v = fy_yaml_get(n, "restart"))) {
      fy_restart rp;
      REQUIRE(copy(r->restart, sizeof r->restart, v) && fy_restart_parse(r->restart, &rp) == FY_OK, v->line,
              "run.restart: always, on-failure or never");
    }
    if ((v = fy_yaml_get(n, "stop_timeout"))) {
      uint64_t ms;
      REQUIRE(scalar(v) && fy_parse_duration_ms(v->str, &ms) == FY_OK && ms <= FY_STOP_TIMEOUT_MAX_MS, v->line,
              "run.stop_timeout: a duration such as 10s (at most 10m)");
      r->stop_timeout_ms = (int64_t)ms;
    }
    static const struct {
      const char *key, *example;
      int (*parse)(const json_t *, fy_runspec *, char *, size_t);
    } specs[] = {{"capabilities", "capabilities: {add: [NET_ADMIN], drop: [NET_RAW]}", fy_caps_from_json},
                 {"resources", "resources: {memory: 64MiB, cpus: 0.5, pids: 100}", fy_resources_from_json}};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
      if (!(v = fy_yaml_get(n, specs[k].key))) continue;
      json_t *j = yaml_json(v);
      char why[300];
      int crc = j ? specs[k].parse(j, &r->spec, why, sizeof why) : FY_EINVAL;
      json_decref(j);
      REQUIRE(crc == FY_OK, v->line, "run.%s", j ? why : specs[k].example);
    }
    if ((v = fy_yaml_get(n, "entrypoint"))) REQUIRE(strlist(v, r->entrypoint, &r->nentrypoint, 1), v->line, "run.entrypoint: a list such as [/app/hello]");
    if ((v = fy_yaml_get(n, "cmd"))) REQUIRE(strlist(v, r->cmd, &r->ncmd, 1), v->line, "run.cmd: a list of arguments");
    if ((v = fy_yaml_get(n, "env"))) {
      REQUIRE(v->kind == FY_YAML_MAP && v->n <= FY_RECIPE_MAX_LIST, v->line, "run.env: a map such as {PORT: \"8080\"}");
      for (size_t i = 0; i < v->n; i++) {
        REQUIRE(scalar(v->items[i]), v->items[i]->line, "run.env.%s: a string", v->keys[i]);
        size_t l = strlen(v->keys[i]) + strlen(v->items[i]->str) + 2;
        r->env[i] = malloc(l);
        if (!r->env[i]) { ret = FY_ENOMEM; goto cleanup; }
        snprintf(r->env[i], l, "%s=%s", v->keys[i], v->items[i]->str);
        r->nenv++;
      }
    }
    if ((v = fy_yaml_get(n, "workdir"))) REQUIRE(copy(r->workdir, sizeof r->workdir, v) && r->workdir[0] == '/', v->line, "run.workdir: an absolute path");
    if ((v = fy_yaml_get(n, "settle"))) REQUIRE(scalar(v) && fy_parse_duration_ms(v->str, &r->settle_ms) == FY_OK, v->line, "run.settle: a duration such as 3s");
    if ((v = fy_yaml_get(n, "health"))) {
      REQUIRE(v->kind == FY_YAML_MAP, v->line, "run.health: {port: N} or {cmd: \"...\"} or {cmd: [PROGRAM, ARGS...]}");
      bad = fy_yaml_unknown_key(v, health_keys, &line);
      REQUIRE(!bad, line, "unknown key 'run.health.%s' (expected port, cmd, interval)", bad);
      const fy_ynode *hp = fy_yaml_get(v, "port"), *hc = fy_yaml_get(v, "cmd"), *hi = fy_yaml_get(v, "interval");
      if (hi) {
        uint64_t ms;
        REQUIRE(scalar(hi) && fy_parse_duration_ms(hi->str, &ms) == FY_OK && ms >= FY_HEALTH_INTERVAL_MIN_MS &&
                    ms <= FY_HEALTH_INTERVAL_MAX_MS,
                hi->line, "run.health.interval: a duration from 1s to 24h, such as 30s");
        r->health_interval_ms = (int64_t)ms;
      }
      if (hp) {
        long num = 0;
        REQUIRE(scalar(hp) && fy_parse_long(hp->str, 1, 65535, &num) == FY_OK, hp->line, "run.health.port: 1-65535");
        r->health_port = (int)num;
      }
      if (hc && hc->kind == FY_YAML_SEQ)
        REQUIRE(strlist(hc, r->health_argv, &r->nhealth_argv, 0) && r->nhealth_argv > 0, hc->line,
                "run.health.cmd: a list [PROGRAM, ARGS...] (run directly) or a string (run by the image's /bin/sh)");
      else if (hc)
        REQUIRE(copy(r->health_cmd, sizeof r->health_cmd, hc), hc->line,
                "run.health.cmd: a string (run by the image's /bin/sh) or a list [PROGRAM, ARGS...] (run directly)");
    }
  }
  if ((n = fy_yaml_get(root, "test"))) {
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "test: {command: [PROGRAM, ARGS...]}");
    bad = fy_yaml_unknown_key(n, test_keys, &line);
    REQUIRE(!bad, line, "unknown key 'test.%s' (expected command)", bad);
    if ((v = fy_yaml_get(n, "command"))) REQUIRE(strlist(v, r->test, &r->ntest, 1), v->line, "test.command: a list such as [/app/hello, --self-test]");
  }
  /* volumes: {name: /path}; devices: [/dev/x]: checked as the agent will check them */
  if ((n = fy_yaml_get(root, "volumes"))) {
    json_t *j = json_object();
    int ok = n->kind == FY_YAML_MAP;
    for (size_t i = 0; ok && i < n->n; i++) ok = scalar(n->items[i]) && json_object_set_new(j, n->keys[i], json_string(n->items[i]->str)) == 0;
    char why[300] = "volumes: expected a map of name: /path/in/the/app";
    int vrc = ok ? fy_volumes_from_json(j, &r->mounts, why, sizeof why) : FY_EINVAL;
    json_decref(j);
    REQUIRE(vrc == FY_OK, n->line, "%s", why);
  }
  if ((n = fy_yaml_get(root, "devices"))) {
    json_t *j = json_array();
    int ok = n->kind == FY_YAML_SEQ;
    for (size_t i = 0; ok && i < n->n; i++) ok = scalar(n->items[i]) && json_array_append_new(j, json_string(n->items[i]->str)) == 0;
    char why[300] = "devices: expected a list of device paths such as [/dev/i2c-1]";
    int drc = ok ? fy_devices_from_json(j, &r->mounts, why, sizeof why) : FY_EINVAL;
    json_decref(j);
    REQUIRE(drc == FY_OK, n->line, "%s", why);
  }
  /* config: {env: [KEYS], files: [PATHS], secrets: [NAMES]}: what nodes that require signatures
   * let a fleet file or --env set on this signed image */
  if ((n = fy_yaml_get(root, "config"))) {
    static const char *const ck[] = {"env", "files", "secrets", NULL};
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "config: a map {env: [KEYS], files: [PATHS], secrets: [NAMES]}");
    bad = fy_yaml_unknown_key(n, ck, &line);
    REQUIRE(!bad, line, "unknown key 'config.%s' (expected env, files, secrets)", bad);
    r->config_decl = json_object();
    for (int k = 0; k < 3; k++) {
      const fy_ynode *l = fy_yaml_get(n, ck[k]);
      if (!l) continue;
      REQUIRE(l->kind == FY_YAML_SEQ && l->n <= 256, l->line, "config.%s: a list", ck[k]);
      json_t *arr = json_array();
      for (size_t i = 0; i < l->n; i++) {
        const fy_ynode *e = l->items[i];
        int ok = scalar(e) && (k == 0 ? fy_settings_env_key_ok(e->str) : k == 1 ? fy_app_path_clean(e->str) : fy_volume_name_valid(e->str));
        if (!ok) json_decref(arr);
        REQUIRE(ok, e->line, "config.%s: '%s' is not %s", ck[k], scalar(e) ? e->str : "?",
                k == 0 ? "a settable env key (A-Z a-z 0-9 _, never LD_* or FERRY_*)" : k == 1 ? "a clean absolute path" : "a secret name");
        json_array_append_new(arr, json_string(e->str));
      }
      json_object_set_new(r->config_decl, ck[k], arr);
    }
  }
  if ((n = fy_yaml_get(root, "affinity"))) {
    char aerr[400];
    int arc = fy_affinity_load(n, &r->affinity, aerr, sizeof aerr);
    if (arc != FY_OK) {
      snprintf(err, errlen, "%s: %s", path, aerr); /* aerr starts with "line N:" */
      ret = arc == FY_ENOMEM ? arc : FY_ECONFIG;
      goto cleanup;
    }
  }
  if ((n = fy_yaml_get(root, "compression_level"))) {
    long num = 0;
    REQUIRE(scalar(n) && fy_parse_long(n->str, 1, 22, &num) == FY_OK, n->line, "compression_level: a zstd level from 1 to 22");
    r->zstd_level = (int)num;
  }
  const char *sde = getenv("SOURCE_DATE_EPOCH");
  if (sde && *sde) r->mtime = strtoll(sde, NULL, 10);
  else if ((n = fy_yaml_get(root, "mtime"))) {
    char *end;
    REQUIRE(scalar(n) && (r->mtime = strtoll(n->str, &end, 10)) >= 0 && !*end, n->line, "mtime: seconds since 1970 for every file in the image");
  }
cleanup:
  if (ret != FY_OK) fy_recipe_free(r);
  fy_yaml_free(root);
  free(dcopy);
  free(text);
  return ret;
}
