/* ferryd --check-state: the state directory's invariants, for tests and for people after a
 * crash. Read-only. For every app: `current` and `previous` are absent or name a complete
 * release (a directory under releases/ that is not *.partial and holds run.json and rootfs/),
 * and every blob such a release lists is complete in the store (re-hashed with --verify). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "release.h"
#include "ferry/fsutil.h"
#include "ferry/wire.h"
#include "ferry/text.h"

static int check_release(const fy_agent *a, const char *app, const char *link, int verify, int *problems) {
  char dir[4200], path[4400], target[512], id[512];
  fy_app_dir(a, app, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/%s", dir, link);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return 0; /* absent: fine */
  target[n] = '\0';
  if (strncmp(target, "releases/", 9) != 0 || strchr(target + 9, '/')) {
    printf("app %s: %s -> %s does not name a release\n", app, link, target);
    return ++*problems;
  }
  snprintf(id, sizeof id, "%s", target + 9);
  size_t il = strlen(id);
  if (il > 8 && strcmp(id + il - 8, ".partial") == 0) {
    printf("app %s: %s names an unfinished release %s\n", app, link, id);
    return ++*problems;
  }
  struct stat st;
  int ok = fy_path_fmt(path, sizeof path, "%s/releases/%s/rootfs", dir, id) == FY_OK && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
  json_t *run = ok ? fy_release_run(a, app, id) : NULL;
  if (!run) {
    printf("app %s: %s -> %s is not a complete release (rootfs/ or run.json missing)\n", app, link, id);
    return ++*problems;
  }
  size_t i;
  json_t *b;
  fy_run_meta meta;
  char merr[200];
  if (fy_run_meta_decode(run, &meta, merr, sizeof merr) != FY_OK) {
    printf("app %s: release %s: %s\n", app, id, merr);
    json_decref(run);
    return ++*problems;
  }
  json_array_foreach(meta.blobs, i, b) {
    fy_digest d;
    char bp[4200];
    if (fy_digest_parse(json_string_value(b), &d) != FY_OK) continue;
    fy_store_path(&a->store, &d, bp, sizeof bp);
    if (stat(bp, &st) != 0) {
      printf("app %s: release %s needs blob %s, which is not in the store\n", app, id, json_string_value(b));
      ++*problems;
    } else if (verify && fy_store_verify(&a->store, &d, (uint64_t)st.st_size) != FY_OK) {
      printf("app %s: blob %s does not match its digest\n", app, json_string_value(b));
      ++*problems;
    }
  }
  json_decref(run);
  return 0;
}

int fy_check_state(fy_agent *a, int verify) {
  char apps[4200];
  int problems = 0, napps = 0, partials = 0;
  snprintf(apps, sizeof apps, "%s/apps", a->cfg.state_dir);
  DIR *d = opendir(apps);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (!fy_app_valid_name(e->d_name)) continue;
    napps++;
    check_release(a, e->d_name, "current", verify, &problems);
    check_release(a, e->d_name, "previous", verify, &problems);
    char rel[4400];
    DIR *r = fy_path_fmt(rel, sizeof rel, "%s/%s/releases", apps, e->d_name) == FY_OK ? opendir(rel) : NULL;
    struct dirent *re;
    while (r && (re = readdir(r)) != NULL) {
      size_t n = strlen(re->d_name);
      if (n > 8 && strcmp(re->d_name + n - 8, ".partial") == 0) partials++;
    }
    if (r) closedir(r);
  }
  if (d) closedir(d);
  printf("state %s: %d app(s), %d unfinished release(s) (removed at the next start), %d problem(s)\n",
         a->cfg.state_dir, napps, partials, problems);
  return problems ? 1 : 0;
}
