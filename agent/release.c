/* The release model on disk (see release.h).
 *
 * Crash safety: a release is unpacked into releases/<id>.partial and renamed when complete;
 * `current` and `previous` are symlinks replaced with rename(2) of a fresh link, the directory
 * fsynced after. So at any instant `current` names a complete release or nothing, and start-up
 * only has to delete *.partial directories. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "release.h"
#include "ferry/fsutil.h"
#include "ferry/wire.h"
#include "ferry/store.h"
#include "ferry/text.h"
#include "ferry/unpack.h"
#include "ferry/work.h"

#define RUN_JSON_MAX (1024u * 1024u) /* the one ceiling for a release's run.json */

void fy_app_dir(const fy_agent *a, const char *app, char *buf, size_t len) {
  snprintf(buf, len, "%s/apps/%s", a->cfg.state_dir, app);
}

void fy_release_read_link(const char *dir, const char *name, char *out, size_t len) {
  char path[4200], buf[512];
  out[0] = '\0';
  snprintf(path, sizeof path, "%s/%s", dir, name);
  ssize_t n = readlink(path, buf, sizeof buf - 1);
  if (n <= 0) return;
  buf[n] = '\0';
  const char *id = strncmp(buf, "releases/", 9) == 0 ? buf + 9 : buf;
  if (fy_path_fmt(out, len, "%s", id) != FY_OK) out[0] = '\0'; /* too long for a release id: names none */
}

static int set_link(const char *dir, const char *name, const char *id) {
  char tmp[4200], dst[4200], target[FY_RELEASE_ID_MAX + 16];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  snprintf(dst, sizeof dst, "%s/%s", dir, name);
  if (!id || !id[0]) return unlink(dst) == 0 || errno == ENOENT ? FY_OK : fy_err_from_errno(errno);
  snprintf(target, sizeof target, "releases/%s", id);
  unlink(tmp);
  if (symlink(target, tmp) != 0) return fy_err_from_errno(errno);
  if (rename(tmp, dst) != 0) return fy_err_from_errno(errno);
  return FY_OK;
}

static void fsync_path(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

int fy_app_switch(fy_app *app, const char *id, const char *previous) {
  char dir[4200];
  int rc;
  fy_app_dir(app->agent, app->name, dir, sizeof dir);
  /* previous first: a crash between the two renames leaves previous == current, both complete. */
  if ((rc = set_link(dir, "previous", previous)) != FY_OK) return rc;
  if ((rc = set_link(dir, "current", id)) != FY_OK) return rc;
  fsync_path(dir);
  snprintf(app->previous, sizeof app->previous, "%s", previous ? previous : "");
  snprintf(app->release, sizeof app->release, "%s", id ? id : "");
  app->version = app->release[0] ? fy_trust_release_version(app->agent, app->name, app->release) : 0;
  return FY_OK;
}

int fy_app_new_release_id(const fy_agent *a, const char *app, const char *manifest_digest, char *id, size_t len) {
  char dir[4200], path[4400], ts[32];
  struct stat st;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
  fy_app_dir(a, app, dir, sizeof dir);
  const char *hex = strchr(manifest_digest, ':') ? strchr(manifest_digest, ':') + 1 : manifest_digest;
  for (int n = 0; n < 1000; n++) {
    if (n == 0) snprintf(id, len, "%s-%.8s", ts, hex);
    else snprintf(id, len, "%s-%.8s-%d", ts, hex, n);
    snprintf(path, sizeof path, "%s/releases/%s", dir, id);
    if (stat(path, &st) != 0) return FY_OK;
  }
  return FY_EEXIST;
}

json_t *fy_release_run(const fy_agent *a, const char *app, const char *id) {
  char path[4400], dir[4200], *text = NULL;
  size_t len;
  fy_app_dir(a, app, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/releases/%s/run.json", dir, id);
  if (fy_file_read(path, RUN_JSON_MAX, &text, &len) != FY_OK) return NULL;
  json_t *j = json_loadb(text, len, 0, NULL);
  free(text);
  return j;
}

/* Adds the blobs release id of app uses to keep. FY_OK, or the reason the set is incomplete (the
 * caller must then delete no blob: a blob a release needs is never removed on a guess). */
static int keep_one(fy_digest **keep, size_t *n, size_t *cap, const fy_digest *d) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    fy_digest *k = realloc(*keep, nc * sizeof *k);
    if (!k) return FY_ENOMEM;
    *keep = k;
    *cap = nc;
  }
  (*keep)[(*n)++] = *d;
  return FY_OK;
}

static int keep_blobs(const fy_agent *a, const char *app, const char *id, fy_digest **keep, size_t *n, size_t *cap) {
  if (!id[0]) return FY_OK;
  json_t *run = fy_release_run(a, app, id);
  fy_run_meta m;
  char err[200];
  int rc = run ? fy_run_meta_decode(run, &m, err, sizeof err) : FY_ENOENT;
  size_t i;
  json_t *v;
  json_array_foreach(rc == FY_OK ? m.blobs : NULL, i, v) {
    fy_digest d;
    if (fy_digest_parse(json_string_value(v), &d) != FY_OK) {
      rc = FY_EINVAL;
      break;
    }
    if (*n == *cap) {
      size_t nc = *cap ? *cap * 2 : 64;
      fy_digest *k = realloc(*keep, nc * sizeof *k);
      if (!k) {
        rc = FY_ENOMEM;
        break;
      }
      *keep = k;
      *cap = nc;
    }
    (*keep)[(*n)++] = d;
  }
  json_decref(run);
  return rc;
}

/* Release trees to remove, renamed out of the way on the loop and removed on a worker. */
struct gc_job {
  fy_agent *a;
  void (*done)(void *ud);
  void *ud;
  size_t n;
  char (*paths)[4400];  /* STATE/apps/<app>/releases/<id>.partial */
};

static void gc_work(void *ud) {
  struct gc_job *g = ud;
  for (size_t i = 0; i < g->n; i++) {
    char *slash = strrchr(g->paths[i], '/');
    *slash = '\0';
    int dfd = open(g->paths[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fy_remove_tree(dfd, slash + 1) != FY_OK) fy_log("warn", "cannot remove %s/%s", g->paths[i], slash + 1);
    if (dfd >= 0) close(dfd);
  }
}

static void gc_done(void *ud) {
  struct gc_job *g = ud;
  void (*done)(void *) = g->done;
  void *dud = g->ud;
  free(g->paths);
  free(g);
  if (done) done(dud);
}

/* Deciding what goes happens here, on the loop, so that it is atomic with plans (a plan that
 * comes after sees a removed blob as missing and asks for it): old releases are renamed to
 * <id>.partial (what a restart removes anyway) and blobs no release uses are unlinked (one
 * unlink each). Only the removal of the release trees, which can hold thousands of files, goes
 * to a worker. */
void fy_app_gc(fy_agent *a, void (*done)(void *ud), void *ud) {
  if (a->recovering) { /* apps not recovered yet show no releases: nothing may be judged unused now */
    if (done) done(ud);
    return;
  }
  fy_digest *keep = NULL;
  size_t n = 0, cap = 0, removed = 0;
  int complete = 1;
  struct gc_job *g = calloc(1, sizeof *g);
  size_t gcap = 0;
  for (fy_app *app = a->apps; app; app = app->next) {
    char dir[4200], rel[4400];
    fy_app_dir(a, app->name, dir, sizeof dir);
    snprintf(rel, sizeof rel, "%s/releases", dir);
    int dfd = app->deploying ? -1 : open(rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* an unpack owns its partial */
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d && dfd >= 0) close(dfd);
    struct dirent *e;
    while (g && d && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      if (strcmp(e->d_name, app->release) == 0 || strcmp(e->d_name, app->previous) == 0) continue;
      if (g->n == gcap) {
        size_t nc = gcap ? gcap * 2 : 8;
        char(*p)[4400] = realloc(g->paths, nc * sizeof *p);
        if (!p) break;
        g->paths = p;
        gcap = nc;
      }
      /* <id>.partial: an earlier GC's, being removed (a restart removes any left) */
      size_t len = strlen(e->d_name);
      if (len > 8 && strcmp(e->d_name + len - 8, ".partial") == 0) continue;
      int w = snprintf(g->paths[g->n], sizeof g->paths[g->n], "%s/%s.partial", rel, e->d_name);
      if (w < 0 || (size_t)w >= sizeof g->paths[g->n]) continue;
      if (renameat(dirfd(d), e->d_name, dirfd(d), strrchr(g->paths[g->n], '/') + 1) != 0) {
        fy_log("warn", "app %s: cannot set aside old release %s: %s", app->name, e->d_name, strerror(errno));
        continue;
      }
      g->n++;
    }
    if (d) closedir(d);
    if (keep_blobs(a, app->name, app->release, &keep, &n, &cap) != FY_OK ||
        keep_blobs(a, app->name, app->previous, &keep, &n, &cap) != FY_OK) {
      fy_log("warn", "app %s: cannot tell which blobs its releases use; no blob is removed", app->name);
      complete = 0;
    }
  }
  int deploying = 0;
  for (fy_app *app = a->apps; app; app = app->next) deploying |= app->deploying;
  /* the last failed deploy's blobs stay as a bounded cache: fixing a config and pushing again
   * re-sends nothing (fy_release_reclaim removes them first when space is needed) */
  for (size_t i = 0; i < a->nfailed_keep && complete; i++)
    if (keep_one(&keep, &n, &cap, &a->failed_keep[i]) != FY_OK) complete = 0;
  if (complete && !deploying && fy_store_gc(&a->store, keep, n, &removed) == FY_OK && removed)
    fy_log("info", "removed %zu blobs and partial blobs no release uses", removed);
  free(keep);
  if (g && g->n > 0) {
    g->a = a;
    g->done = done;
    g->ud = ud;
    if (fy_work_queue(a->loop, gc_work, gc_done, g) == FY_OK) return;
    /* not queued: the trees stay as <id>.partial, which the next start removes */
  }
  if (g) free(g->paths);
  free(g);
  if (done) done(ud);
}

void fy_release_clean_partials(fy_agent *a, const char *app) {
  char dir[4200], rel[4400];
  fy_app_dir(a, app, dir, sizeof dir);
  if (fy_path_fmt(rel, sizeof rel, "%s/releases", dir) != FY_OK) return;
  int rfd = open(rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0) return;
  DIR *rd = fdopendir(rfd);
  if (!rd) {
    close(rfd);
    return;
  }
  struct dirent *re;
  while ((re = readdir(rd)) != NULL) {
    size_t n = strlen(re->d_name);
    if (n > 8 && strcmp(re->d_name + n - 8, ".partial") == 0) {
      fy_log("info", "app %s: removing the unfinished release %s", app, re->d_name);
      if (fy_remove_tree(rfd, re->d_name) != FY_OK) fy_log("warn", "cannot remove %s", re->d_name);
    }
  }
  closedir(rd);
}

void fy_release_failed_cache(fy_agent *a, const fy_digest *blobs, size_t n) {
  free(a->failed_keep);
  a->failed_keep = n ? malloc(n * sizeof *blobs) : NULL;
  a->nfailed_keep = a->failed_keep ? n : 0;
  if (a->failed_keep) memcpy(a->failed_keep, blobs, n * sizeof *blobs);
}

uint64_t fy_release_reclaim(fy_agent *a, const fy_digest *also, size_t nalso, uint64_t want, uint64_t *reclaimable) {
  fy_digest *keep = NULL;
  size_t n = 0, cap = 0;
  int ok = !a->recovering; /* until every app is recovered, what they use is not known */
  *reclaimable = 0;
  for (fy_app *app = a->apps; app && ok; app = app->next)
    ok = keep_blobs(a, app->name, app->release, &keep, &n, &cap) == FY_OK &&
         keep_blobs(a, app->name, app->previous, &keep, &n, &cap) == FY_OK;
  for (size_t i = 0; i < nalso && ok; i++) ok = keep_one(&keep, &n, &cap, &also[i]) == FY_OK;
  uint64_t freed = 0;
  if (ok) {
    *reclaimable = fy_store_reclaimable(&a->store, keep, n);
    size_t removed = 0;
    if (want && *reclaimable >= want && fy_store_gc_ex(&a->store, keep, n, 0, &removed, &freed) == FY_OK) {
      fy_release_failed_cache(a, NULL, 0);
      fy_log("info", "made room: removed %zu partial or cached blob(s), %llu bytes", removed, (unsigned long long)freed);
    }
  }
  free(keep);
  return freed;
}
