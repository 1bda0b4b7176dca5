/* ferry build: one recipe, every platform (and board-tuned variant), one OCI image layout.
 * Each variant is built by its own child process (in parallel, as many as there are cores):
 * configure, build, install into a staging root, check the ELF files, pack one deterministic
 * layer, write config and manifest. The parent then writes the image index over all of them. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "elfcheck.h"
#include "ferry/clock.h"
#include "ferry/unpack.h"
#include "ferry/fsutil.h"
#include "ferry/oci.h"
#include "pack.h"
#include "recipe.h"

struct variant {
  fy_platform plat;      /* as written in the index (board variants carry the board's variant) */
  fy_platform base;      /* the platform the toolchain targets */
  const fy_board *board;
  char key[128];
  char label[96];        /* "linux/arm64" or "linux/arm64/v8.2 (graviton3)" */
  char dir[4300];
  pid_t pid;
  int ok;
  double secs;
};

/* A label whose value is JSON (compact); takes the reference to value. */
static void json_label(json_t *labels, const char *key, json_t *value) {
  char *text = value ? json_dumps(value, JSON_COMPACT) : NULL;
  if (text) json_object_set_new(labels, key, json_string(text));
  free(text);
  json_decref(value);
}

static void step(const struct variant *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void step(const struct variant *v, const char *fmt, ...) {
  va_list ap;
  char line[1024];
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  printf("[%s] %s\n", v->label, line);
  fflush(stdout);
}

/* Runs argv with its output appended to log; returns the exit status (or 127). */
static int run_logged(char *const argv[], const char *cwd, const char *log, char *const extra_env[]) {
  pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) dup2(nul, 0);
    if (cwd && chdir(cwd) != 0) _exit(127);
    for (size_t i = 0; extra_env && extra_env[i]; i++) putenv(extra_env[i]);
    dprintf(1, "$");
    for (size_t i = 0; argv[i]; i++) dprintf(1, " %s", argv[i]);
    dprintf(1, "\n");
    execvp(argv[0], argv);
    dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void show_log_tail(const struct variant *v, const char *log, int lines) {
  char *text = NULL;
  size_t len;
  if (fy_file_read(log, 8u << 20, &text, &len) != FY_OK) return;
  char *p = text + len;
  int seen = 0;
  while (p > text && seen <= lines) if (*--p == '\n') seen++;
  if (*p == '\n') p++;
  char *save = NULL;
  for (char *line = strtok_r(p, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) printf("[%s]   | %s\n", v->label, line);
  fflush(stdout); /* the child leaves with _exit */
  free(text);
}

static int have_program(const char *name) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
  return system(cmd) == 0;
}

static json_t *strv_json(char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(v[i]));
  return a;
}


/* The child: everything for one variant. Exit status 0 on success, the manifest descriptor in
 * v->dir/result.json. */
/* Long on purpose: one variant's build as the child runs it, step by step (toolchain, configure,
 * build, stage, ELF check, pack), each step logging what it did; the order is the contract. */
static int build_variant(const fy_recipe *r, struct variant *v, const fy_store *store) {
  char stage[4400], bdir[4400], log[4400], err[1024], tc[4096], plat[FY_PLATFORM_STR];
  const char *triplet = fy_platform_triplet(&v->base);
  fy_platform_format(&v->base, plat, sizeof plat);
  snprintf(stage, sizeof stage, "%s/stage", v->dir);
  snprintf(bdir, sizeof bdir, "%s/build", v->dir);
  snprintf(log, sizeof log, "%s/build.log", v->dir);
  if (!triplet) {
    step(v, "ERROR no toolchain for %s (ferry builds linux/amd64, linux/arm64 and linux/arm/v7)", plat);
    return 1;
  }
  char cc[128];
  snprintf(cc, sizeof cc, "%s-gcc", triplet);
  if (!have_program(cc)) {
    step(v, "ERROR no cross compiler %s: apt-get install gcc-%s (see 'ferry doctor')", cc, triplet);
    return 1;
  }
  if (fy_remove_path(stage) != FY_OK || fy_remove_path(log) != FY_OK || fy_mkdirs(stage, 0755) != FY_OK ||
      fy_mkdirs(bdir, 0755) != FY_OK) {
    step(v, "ERROR cannot prepare %s", v->dir);
    return 1;
  }
  char cflags[256];
  snprintf(cflags, sizeof cflags, "-O2%s%s", v->board && v->board->mcpu[0] ? (strcmp(v->base.arch, "amd64") == 0 ? " -march=" : " -mcpu=") : "",
           v->board && v->board->mcpu[0] ? v->board->mcpu : "");
  double t0 = (fy_mono_ms() / 1e3);
  int st;
  if (r->cmake_dir[0]) {
    char tcrel[128];
    snprintf(tcrel, sizeof tcrel, "toolchains/%s.cmake", triplet);
    if (!fy_cli_data_path(tcrel, tc, sizeof tc)) {
      step(v, "ERROR cannot find %s (set FERRY_DATA_DIR to ferry's source or share/ferry directory)", tcrel);
      return 1;
    }
    char def_tc[4200], def_cf[300], def_cxf[300];
    snprintf(def_tc, sizeof def_tc, "-DCMAKE_TOOLCHAIN_FILE=%s", tc);
    snprintf(def_cf, sizeof def_cf, "-DCMAKE_C_FLAGS=%s", cflags);
    snprintf(def_cxf, sizeof def_cxf, "-DCMAKE_CXX_FLAGS=%s", cflags);
    char *argv[FY_RECIPE_MAX_LIST + 16];
    size_t n = 0;
    argv[n++] = "cmake";
    argv[n++] = "-S";
    argv[n++] = (char *)r->cmake_dir;
    argv[n++] = "-B";
    argv[n++] = bdir;
    argv[n++] = def_tc;
    argv[n++] = "-DCMAKE_BUILD_TYPE=Release";
    argv[n++] = "-DCMAKE_INSTALL_PREFIX=/";
    argv[n++] = def_cf;
    argv[n++] = def_cxf;
    for (size_t i = 0; i < r->ncmake_options; i++) argv[n++] = r->cmake_options[i];
    argv[n] = NULL;
    step(v, "configure: cmake, %s%s%s", triplet, v->board ? ", " : "", v->board ? cflags + 4 : "");
    if ((st = run_logged(argv, r->dir, log, NULL)) != 0) goto failed;
    char *bargv[] = {"cmake", "--build", bdir, NULL};
    step(v, "build");
    if ((st = run_logged(bargv, r->dir, log, NULL)) != 0) goto failed;
    char destdir[4500];
    snprintf(destdir, sizeof destdir, "DESTDIR=%s", stage);
    char *env[] = {destdir, NULL};
    char *iargv[] = {"cmake", "--install", bdir, NULL};
    step(v, "install into the staging root");
    if ((st = run_logged(iargv, r->dir, log, env)) != 0) goto failed;
  } else {
    char e_cc[200], e_cflags[300], e_trip[200], e_dest[4500], e_plat[200];
    snprintf(e_cc, sizeof e_cc, "CC=%s", cc);
    snprintf(e_cflags, sizeof e_cflags, "CFLAGS=%s", cflags);
    snprintf(e_trip, sizeof e_trip, "TRIPLET=%s", triplet);
    snprintf(e_dest, sizeof e_dest, "DESTDIR=%s", stage);
    snprintf(e_plat, sizeof e_plat, "FERRY_PLATFORM=%s", plat);
    char *env[] = {e_cc, e_cflags, e_trip, e_dest, e_plat, NULL};
    char *argv[] = {"/bin/sh", "-c", (char *)r->command, NULL};
    step(v, "build: %s (CC=%s)", r->command, cc);
    if ((st = run_logged(argv, r->dir, log, env)) != 0) goto failed;
  }
  step(v, "compiled in %.1fs", (fy_mono_ms() / 1e3) - t0);

  fy_packed pk;
  if (fy_pack_stage(r, stage, &v->base, store, &pk, err, sizeof err) != FY_OK) {
    step(v, "ERROR %s", err);
    return 1;
  }
  char ds[FY_DIGEST_STR], h1[32], h2[32];
  step(v, "layer %s: %zu files, %s -> %s zstd-%d", fy_digest_format(&pk.digest, ds), pk.nfiles,
       fy_human_bytes(pk.raw_size, h1, sizeof h1), fy_human_bytes(pk.size, h2, sizeof h2), r->zstd_level);

  /* The image config. Labels carry what `ferry test` and `ferry push` want to know. */
  char created[40];
  time_t mt = (time_t)r->mtime;
  struct tm tm;
  gmtime_r(&mt, &tm);
  strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_t *env = json_array();
  int have_path = 0;
  for (size_t i = 0; i < r->nenv; i++) {
    have_path |= strncmp(r->env[i], "PATH=", 5) == 0;
    json_array_append_new(env, json_string(r->env[i]));
  }
  if (!have_path) json_array_insert_new(env, 0, json_string("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  json_t *labels = json_object();
  if (r->ntest) {
    json_t *t = strv_json(r->test, r->ntest);
    char *ts = json_dumps(t, JSON_COMPACT);
    json_object_set_new(labels, "dev.ferry.test", json_string(ts));
    free(ts);
    json_decref(t);
  }
  char num[32];
  snprintf(num, sizeof num, "%llu", (unsigned long long)r->settle_ms);
  json_object_set_new(labels, "dev.ferry.settle_ms", json_string(num));
  if (r->health_port) {
    snprintf(num, sizeof num, "%d", r->health_port);
    json_object_set_new(labels, "dev.ferry.health_port", json_string(num));
  }
  /* The health command: Docker's Healthcheck (what buildah and docker write too), and for the
   * shell form also the label agents before the runtime read. */
  json_t *health = NULL;
  if (r->health_cmd[0]) {
    json_object_set_new(labels, "dev.ferry.health_cmd", json_string(r->health_cmd));
    health = json_pack("{s:[s, s]}", "Test", "CMD-SHELL", r->health_cmd);
  } else if (r->nhealth_argv) {
    json_t *t = strv_json(r->health_argv, r->nhealth_argv);
    json_array_insert_new(t, 0, json_string("CMD"));
    health = json_pack("{s:o}", "Test", t);
  }
  if (health && r->health_interval_ms > 0) { /* Docker's unit: nanoseconds */
    json_object_set_new(health, "Interval", json_integer((json_int_t)r->health_interval_ms * 1000000));
  } else if (r->health_interval_ms > 0) { /* a port check has no Healthcheck to carry it */
    snprintf(num, sizeof num, "%lld", (long long)r->health_interval_ms);
    json_object_set_new(labels, "dev.ferry.health_interval_ms", json_string(num));
  }
  if (r->restart[0]) json_object_set_new(labels, "dev.ferry.restart", json_string(r->restart));
  if (r->stop_timeout_ms >= 0) {
    snprintf(num, sizeof num, "%lld", (long long)r->stop_timeout_ms);
    json_object_set_new(labels, "dev.ferry.stop_timeout_ms", json_string(num));
  }
  if (r->spec.cap_add || r->spec.cap_drop) json_label(labels, "dev.ferry.capabilities", fy_caps_to_json(&r->spec));
  if (r->spec.memory || r->spec.cpu_milli || r->spec.pids) json_label(labels, "dev.ferry.resources", fy_resources_to_json(&r->spec));
  if (r->mounts.nvolumes) json_label(labels, "dev.ferry.volumes", fy_volumes_to_json(&r->mounts));
  if (r->config_decl) json_label(labels, "dev.ferry.config", json_incref(r->config_decl));
  if (r->mounts.ndevices) json_label(labels, "dev.ferry.devices", fy_devices_to_json(&r->mounts));
  if (v->board) json_object_set_new(labels, "dev.ferry.board", json_string(v->board->name));
  if (r->affinity.nrequired || r->affinity.npreferred || r->affinity.match_none)
    json_label(labels, "dev.ferry.affinity", fy_affinity_to_json(&r->affinity));
  json_t *cfg = fy_pack_platform_json(&v->plat);
  json_object_set_new(cfg, "created", json_string(created));
  json_t *ccfg = json_pack("{s:o, s:o, s:o, s:s, s:o}", "Entrypoint", strv_json(r->entrypoint, r->nentrypoint), "Cmd",
                         strv_json(r->cmd, r->ncmd), "Env", env, "WorkingDir", r->workdir, "Labels", labels);
  if (r->user[0]) json_object_set_new(ccfg, "User", json_string(r->user));
  if (r->stop_signal[0]) json_object_set_new(ccfg, "StopSignal", json_string(r->stop_signal));
  if (r->mounts.nvolumes) { /* the standard field too, for tools that read it */
    json_t *vols = json_object();
    for (size_t i = 0; i < r->mounts.nvolumes; i++) json_object_set_new(vols, r->mounts.volumes[i].path, json_object());
    json_object_set_new(ccfg, "Volumes", vols);
  }
  if (health) json_object_set_new(ccfg, "Healthcheck", health);
  json_object_set_new(cfg, "config", ccfg);
  json_object_set_new(cfg, "rootfs", json_pack("{s:s, s:[s]}", "type", "layers", "diff_ids", fy_digest_format(&pk.diff_id, ds)));
  fy_digest cd, md;
  size_t clen, mlen;
  if (fy_pack_put_json(store, cfg, &cd, &clen) != FY_OK) { json_decref(cfg); step(v, "ERROR writing the config"); return 1; }
  json_decref(cfg);
  char cds[FY_DIGEST_STR], lds[FY_DIGEST_STR];
  json_t *man = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[{s:s, s:s, s:I}], s:{s:s}}", "schemaVersion", 2, "mediaType",
                          FY_MT_OCI_MANIFEST, "config", "mediaType", FY_MT_OCI_CONFIG, "digest", fy_digest_format(&cd, cds),
                          "size", (json_int_t)clen, "layers", "mediaType", FY_MT_OCI_LAYER_ZSTD, "digest",
                          fy_digest_format(&pk.digest, lds), "size", (json_int_t)pk.size, "annotations",
                          "org.opencontainers.image.version", r->version);
  if (!man || fy_pack_put_json(store, man, &md, &mlen) != FY_OK) { json_decref(man); step(v, "ERROR writing the manifest"); return 1; }
  json_decref(man);
  json_t *res = json_pack("{s:s, s:I}", "digest", fy_digest_format(&md, ds), "size", (json_int_t)mlen);
  char rp[4400];
  snprintf(rp, sizeof rp, "%s/result.json", v->dir);
  char *text = json_dumps(res, JSON_COMPACT);
  json_decref(res);
  int wrc = fy_file_write_atomic(rp, text, strlen(text), 0644);
  free(text);
  if (wrc != FY_OK) return 1;
  step(v, "manifest %s", ds);
  return 0;
failed:
  step(v, "ERROR the build failed (exit %d); the end of %s:", st, log);
  show_log_tail(v, log, 25);
  return 1;
}

static void build_usage(FILE *f) {
  fprintf(f, "usage: ferry build [-f ferry.yaml] [--platform P[,P...]] -o LAYOUT\n"
             "Cross-compiles the recipe for every platform (and board in 'boards:'), packs one\n"
             "deterministic zstd layer each, checks every ELF file against its platform, and writes an\n"
             "OCI image layout tagged with the recipe's version. SOURCE_DATE_EPOCH sets file times.\n");
}

/* Long on purpose: the verb's whole sequence in one place (options, recipe, one child per variant,
 * their results gathered into one index), each step a few lines that only make sense in order. */
int fy_cmd_build(int argc, char **argv) {
  static const struct option opts[] = {{"file", required_argument, 0, 'f'}, {"platform", required_argument, 0, 'p'},
                                       {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *file = "ferry.yaml", *outdir = NULL;
  fy_platform only[FY_RECIPE_MAX_LIST];
  size_t nonly = 0;
  fy_recipe r;
  fy_board *boards = NULL;
  size_t nboards = 0;
  char err[1200];
  int c, ret = 2;
  int loaded = 0;
  struct variant *vs = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "f:p:o:", opts, NULL)) != -1) {
    switch (c) {
    case 'f': file = optarg; break;
    case 'o': outdir = optarg; break;
    case 'p': {
      char *copy = strdup(optarg), *save = NULL;
      for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (nonly == FY_RECIPE_MAX_LIST || fy_platform_parse(t, &only[nonly]) != FY_OK) {
          fy_cli_err("--platform: '%s' is not a platform name (e.g. linux/arm64, arm64, aarch64)", t);
          free(copy);
          return 2;
        }
        nonly++;
      }
      free(copy);
      break;
    }
    case 'h': build_usage(stdout); return 0;
    default: build_usage(stderr); return 2;
    }
  }
  if (!outdir || optind != argc) {
    fy_cli_err("build needs -o LAYOUT");
    build_usage(stderr);
    return 2;
  }
  if (fy_recipe_load(file, &r, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    return 1;
  }
  loaded = 1;
  ret = 1;
  if (fy_board_load_builtin(&boards, &nboards, err, sizeof err) != FY_OK) { fy_cli_err("%s", err); goto cleanup; }
  vs = calloc(r.nplatforms + r.nboards + 1, sizeof *vs);
  size_t nv = 0;
  for (size_t i = 0; i < r.nplatforms; i++) {
    struct variant *v = &vs[nv++];
    v->plat = v->base = r.platforms[i];
    fy_platform_format(&v->plat, v->label, sizeof v->label);
  }
  for (size_t i = 0; i < r.nboards; i++) {
    struct variant *v = &vs[nv++];
    v->board = fy_board_find(boards, nboards, r.boards[i]);
    v->base = v->board->platforms[0];
    v->plat = v->base;
    if (v->board->variant[0]) snprintf(v->plat.variant, sizeof v->plat.variant, "%s", v->board->variant);
    char p[FY_PLATFORM_STR];
    snprintf(v->label, sizeof v->label, "%s %s", fy_platform_format(&v->plat, p, sizeof p), v->board->name);
  }
  /* --platform keeps the variants whose target platform was asked for. */
  size_t keep = 0;
  for (size_t i = 0; i < nv; i++) {
    int ok = nonly == 0;
    for (size_t k = 0; k < nonly; k++) ok |= fy_platform_equal(&only[k], &vs[i].base) || fy_platform_equal(&only[k], &vs[i].plat);
    if (ok) vs[keep++] = vs[i];
  }
  if (keep == 0) {
    fy_cli_err("--platform matches none of the recipe's platforms");
    goto cleanup;
  }
  nv = keep;

  fy_store store;
  if (fy_store_open(&store, outdir, 1) != FY_OK) { fy_cli_err("%s: cannot create the layout", outdir); goto cleanup; }
  char path[4400];
  snprintf(path, sizeof path, "%s/oci-layout", outdir);
  if (fy_file_write_atomic(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30, 0644) != FY_OK) { fy_cli_err("%s: cannot write", path); goto cleanup; }
  printf("building %s %s for %zu variant(s) from %s\n", r.name, r.version, nv, r.path);
  fflush(stdout);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  size_t running = 0, next = 0, done = 0;
  double t0 = (fy_mono_ms() / 1e3);
  while (done < nv) {
    while (next < nv && running < (size_t)(cores > 0 ? cores : 1)) {
      struct variant *v = &vs[next++];
      snprintf(v->key, sizeof v->key, "%s", v->label);
      for (char *q = v->key; *q; q++) if (*q == '/' || *q == ' ') *q = '-';
      snprintf(v->dir, sizeof v->dir, "%s/.ferry-build/%s", r.dir, v->key);
      if (fy_mkdirs(v->dir, 0755) != FY_OK) { fy_cli_err("cannot create %s", v->dir); goto cleanup; }
      v->secs = (fy_mono_ms() / 1e3);
      v->pid = fork();
      if (v->pid == 0) _exit(build_variant(&r, v, &store));
      if (v->pid < 0) { fy_cli_err("fork: %s", strerror(errno)); goto cleanup; }
      running++;
    }
    int st;
    pid_t pid = wait(&st);
    if (pid < 0) break;
    for (size_t i = 0; i < nv; i++) {
      if (vs[i].pid != pid) continue;
      vs[i].ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
      vs[i].secs = (fy_mono_ms() / 1e3) - vs[i].secs;
      printf("[%s] %s in %.1fs\n", vs[i].label, vs[i].ok ? "DONE" : "FAILED", vs[i].secs);
      fflush(stdout);
      running--;
      done++;
    }
  }
  int failed = 0;
  for (size_t i = 0; i < nv; i++) failed += !vs[i].ok;
  if (failed) {
    fy_cli_err("%d of %zu variant(s) failed; no image was written", failed, nv);
    goto cleanup;
  }
  json_t *mans = json_array();
  for (size_t i = 0; i < nv; i++) {
    char rp[4400], *text = NULL;
    size_t len;
    snprintf(rp, sizeof rp, "%s/result.json", vs[i].dir);
    json_t *res = fy_file_read(rp, 4096, &text, &len) == FY_OK ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    if (!res) { json_decref(mans); fy_cli_err("%s: missing result", rp); goto cleanup; }
    json_t *e = json_pack("{s:s, s:O, s:O, s:o}", "mediaType", FY_MT_OCI_MANIFEST, "digest", json_object_get(res, "digest"),
                          "size", json_object_get(res, "size"), "platform", fy_pack_platform_json(&vs[i].plat));
    if (vs[i].board) json_object_set_new(e, "annotations", json_pack("{s:s}", "dev.ferry.board", vs[i].board->name));
    json_array_append_new(mans, e);
    json_decref(res);
  }
  json_t *ix = json_pack("{s:i, s:s, s:o, s:{s:s}}", "schemaVersion", 2, "mediaType", FY_MT_OCI_INDEX, "manifests", mans,
                         "annotations", "org.opencontainers.image.version", r.version);
  fy_digest id;
  size_t ilen;
  if (fy_pack_put_json(&store, ix, &id, &ilen) != FY_OK) { json_decref(ix); fy_cli_err("writing the index"); goto cleanup; }
  json_decref(ix);
  /* index.json: keep other tags, replace this version's. */
  snprintf(path, sizeof path, "%s/index.json", outdir);
  char *text = NULL, ds[FY_DIGEST_STR];
  size_t len;
  json_t *top = fy_file_read(path, FY_OCI_JSON_MAX, &text, &len) == FY_OK ? json_loadb(text, len, 0, NULL) : NULL;
  free(text);
  if (!json_is_object(top) || !json_is_array(json_object_get(top, "manifests"))) {
    json_decref(top);
    top = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType", FY_MT_OCI_INDEX, "manifests");
  }
  json_t *list = json_object_get(top, "manifests"), *kept = json_array(), *m;
  size_t mi;
  json_array_foreach(list, mi, m) {
    const char *ref = json_string_value(json_object_get(json_object_get(m, "annotations"), FY_ANNOT_REF_NAME));
    if (!ref || strcmp(ref, r.version) != 0) json_array_append(kept, m);
  }
  json_array_append_new(kept, json_pack("{s:s, s:s, s:I, s:{s:s, s:s}}", "mediaType", FY_MT_OCI_INDEX, "digest",
                                        fy_digest_format(&id, ds), "size", (json_int_t)ilen, "annotations", FY_ANNOT_REF_NAME,
                                        r.version, "org.opencontainers.image.title", r.name));
  json_object_set_new(top, "manifests", kept);
  text = json_dumps(top, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(top);
  int wrc = text ? fy_file_write_atomic(path, text, strlen(text), 0644) : FY_ENOMEM;
  free(text);
  if (wrc != FY_OK) { fy_cli_err("%s: %s", path, fy_strerror(wrc)); goto cleanup; }
  printf("image %s:%s  index %s  (%zu variant(s), %.1fs)\n", outdir, r.version, ds, nv, (fy_mono_ms() / 1e3) - t0);
  ret = 0;
cleanup:
  free(vs);
  free(boards);
  if (loaded) fy_recipe_free(&r);
  return ret;
}
