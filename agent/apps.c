/* Releases on disk and the processes that run them.
 *
 * Crash safety: a release is unpacked into releases/<id>.partial and renamed when complete;
 * `current` and `previous` are symlinks replaced with rename(2) of a fresh link, the directory
 * fsynced after. So at any instant `current` names a complete release or nothing, and start-up
 * only has to delete *.partial directories. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "ferry/elf.h"
#include "ferry/text.h"
#include "apps.h"
#include "ferry/fsutil.h"
#include "ferry/store.h"
#include "ferry/unpack.h"
#include "ferry/yaml.h"
#include "ferry/work.h"

#define RUN_JSON_MAX (1024u * 1024u)
#define STOP_GRACE_MS 5000
#define BACKOFF_MAX_MS 30000

int fy_app_valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n >= FY_APP_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || ((c == '-' || c == '.' || c == '_') && i > 0)))
      return 0;
  }
  return 1;
}

const char *fy_app_state_name(fy_app_state s) {
  switch (s) {
  case FY_APP_STARTING:
  case FY_APP_RUNNING: return "running";
  case FY_APP_EXITED: return "exited";
  case FY_APP_FAILED: return "failed";
  default: return "stopped";
  }
}

void fy_app_dir(const fy_agent *a, const char *app, char *buf, size_t len) {
  snprintf(buf, len, "%s/apps/%s", a->cfg.state_dir, app);
}

fy_app *fy_app_find(fy_agent *a, const char *name) {
  for (fy_app *p = a->apps; p; p = p->next)
    if (strcmp(p->name, name) == 0) return p;
  return NULL;
}

fy_app *fy_app_get(fy_agent *a, const char *name) {
  fy_app *p = fy_app_find(a, name);
  if (p) return p;
  if (!(p = calloc(1, sizeof *p))) return NULL;
  p->agent = a;
  snprintf(p->name, sizeof p->name, "%s", name);
  p->log_fd = -1;
  p->out_fd = -1;
  uv_timer_init(a->loop, &p->restart_timer);
  uv_timer_init(a->loop, &p->stop_timer);
  p->restart_timer.data = p->stop_timer.data = p;
  p->open_handles = 2;
  p->next = a->apps;
  a->apps = p;
  return p;
}

static void read_link(const char *dir, const char *name, char *out, size_t len) {
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

static json_t *load_run(const fy_agent *a, const char *app, const char *id) {
  char path[4400], dir[4200], *text = NULL;
  size_t len;
  fy_app_dir(a, app, dir, sizeof dir);
  snprintf(path, sizeof path, "%s/releases/%s/run.json", dir, id);
  if (fy_file_read(path, RUN_JSON_MAX, &text, &len) != FY_OK) return NULL;
  json_t *j = json_loadb(text, len, 0, NULL);
  free(text);
  return j;
}

/* Collects the digests the given release still needs. */
/* Adds the blobs release id of app uses to keep. FY_OK, or the reason the set is incomplete (the
 * caller must then delete no blob: a blob a release needs is never removed on a guess). */
static int keep_blobs(const fy_agent *a, const char *app, const char *id, fy_digest **keep, size_t *n, size_t *cap) {
  if (!id[0]) return FY_OK;
  json_t *run = load_run(a, app, id);
  const json_t *blobs = json_object_get(run, "blobs");
  int rc = json_is_array(blobs) ? FY_OK : FY_ENOENT;
  size_t i;
  json_t *v;
  json_array_foreach(blobs, i, v) {
    fy_digest d;
    if (!json_is_string(v) || fy_digest_parse(json_string_value(v), &d) != FY_OK) {
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
  if (complete && !deploying && fy_store_gc(&a->store, keep, n, &removed) == FY_OK && removed)
    fy_log("info", "removed %zu blobs no release uses", removed);
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

/* --- processes ------------------------------------------------------------------------ */

static void log_write(fy_app *app, const char *p, size_t n) {
  char path[4200], old[4210];
  if (app->log_fd < 0) {
    fy_app_dir(app->agent, app->name, path, sizeof path);
    strncat(path, "/log", sizeof path - strlen(path) - 1);
    app->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st;
    app->log_size = app->log_fd >= 0 && fstat(app->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (app->log_fd < 0) return;
  }
  if (write(app->log_fd, p, n) < 0) return;
  app->log_size += n;
  if (app->log_size > FY_LOG_CAP) { /* rotate: log -> log.1, one generation kept */
    fy_app_dir(app->agent, app->name, path, sizeof path);
    strncat(path, "/log", sizeof path - strlen(path) - 1);
    snprintf(old, sizeof old, "%s.1", path);
    rename(path, old);
    close(app->log_fd);
    app->log_fd = -1;
  }
}

static void log_line(fy_app *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(fy_app *app, const char *fmt, ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  log_write(app, buf, (size_t)n);
}

/* One pipe per process: the old one may still be draining when the next process starts. */
struct fy_outpipe {
  uv_pipe_t pipe;
  fy_app *app;
  struct fy_outpipe *next;  /* app->pipes */
};

/* The close callback of every handle an app holds: the last one frees a closing app. */
static void app_one_closed(fy_app *app) {
  if (--app->open_handles > 0 || !app->closing) return;
  fy_agent *a = app->agent;
  for (fy_app **pp = &a->apps; *pp; pp = &(*pp)->next)
    if (*pp == app) {
      *pp = app->next;
      break;
    }
  if (app->log_fd >= 0) close(app->log_fd);
  free(app);
}
static void app_handle_closed(uv_handle_t *h) { app_one_closed(h->data); }

static void out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  static char buf[16384];
  (void)h;
  (void)suggested;
  *b = uv_buf_init(buf, sizeof buf);
}

static int runs_from(long pid, const char *marker);

static int uv_fileno_or(const uv_handle_t *h) {
  uv_os_fd_t fd;
  return uv_fileno(h, &fd) == 0 ? fd : -2;
}

static void out_closed(uv_handle_t *h) {
  struct fy_outpipe *o = h->data;
  fy_app *app = o->app;
  for (struct fy_outpipe **pp = &app->pipes; *pp; pp = &(*pp)->next)
    if (*pp == o) {
      *pp = o->next;
      break;
    }
  free(o); /* h was inside it */
  app_one_closed(app);
}

static void out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct fy_outpipe *o = s->data;
  if (n > 0 && o->app) log_write(o->app, b->base, (size_t)n);
  if (n < 0 && !uv_is_closing((uv_handle_t *)s)) {
    if (o->app && o->app->out_fd == uv_fileno_or((uv_handle_t *)s)) o->app->out_fd = -1;
    uv_close((uv_handle_t *)s, out_closed);
  }
}

/* Reads the workload's output from fd into its log (fd is taken, even on failure). */
static void watch_output(fy_app *app, int fd) {
  struct fy_outpipe *op = calloc(1, sizeof *op);
  if (!op) {
    close(fd);
    return;
  }
  op->app = app;
  uv_pipe_init(app->agent->loop, &op->pipe, 0);
  op->pipe.data = op;
  op->next = app->pipes;
  app->pipes = op;
  app->open_handles++;
  if (uv_pipe_open(&op->pipe, fd) == 0) {
    app->out_fd = fd;
    uv_read_start((uv_stream_t *)&op->pipe, out_alloc, out_read);
  } else {
    close(fd);
    uv_close((uv_handle_t *)&op->pipe, out_closed);
  }
}

static void restart_cb(uv_timer_t *t);

/* Everything that follows an exit happens once the handle is closed, so that a restart can
 * reuse app->proc. */
static void proc_gone(fy_app *app);
static void proc_closed(uv_handle_t *h) {
  fy_app *app = h->data;
  app->proc_closing = 0;
  proc_gone(app);
}
static void proc_spawn_failed_closed(uv_handle_t *h) {
  fy_app *app = h->data;
  app->proc_closing = 0;
}

static void proc_gone(fy_app *app) {
  int64_t status = app->last_exit;
  int sig = app->last_signal;
  app->proc_alive = 0;
  if (app->on_exit) {
    fy_app_exit_cb cb = app->on_exit;
    app->on_exit = NULL;
    cb(app, status, sig, app->on_exit_ud);
    return;
  }
  if (app->want_running && !app->agent->stopping) {
    uint64_t up = uv_now(app->agent->loop) - app->started_ms;
    if (up > 60000) app->backoff_ms = 0;
    app->backoff_ms = app->backoff_ms ? app->backoff_ms * 2 : 1000;
    if (app->backoff_ms > BACKOFF_MAX_MS) app->backoff_ms = BACKOFF_MAX_MS;
    uv_timer_start(&app->restart_timer, restart_cb, app->backoff_ms, 0);
  }
}

static void note_exit(fy_app *app, int64_t status, int sig) {
  app->last_exit = status;
  app->last_signal = sig;
  app->state = (status == 0 && sig == 0) ? FY_APP_EXITED : FY_APP_FAILED;
  if (sig) log_line(app, "ferryd: %s exited on signal %d", app->name, sig);
  else log_line(app, "ferryd: %s exited with status %lld", app->name, (long long)status);
  fy_log("info", "app %s: release %s exited (status %lld, signal %d)", app->name, app->release, (long long)status, sig);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig) {
  fy_app *app = p->data;
  note_exit(app, status, sig);
  app->proc_closing = 1;
  uv_close((uv_handle_t *)p, proc_closed);
}

static void adopt_poll(uv_timer_t *t) {
  fy_app *app = t->data;
  int st = 0;
  pid_t r = waitpid(app->adopted_pid, &st, WNOHANG);
  if (r == 0 || (r < 0 && errno == EINTR)) return;
  uv_timer_stop(t);
  app->adopted_pid = 0;
  note_exit(app, r > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 0, r > 0 && WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  proc_gone(app);
}

int fy_app_adopt(fy_app *app, int pid, int out_fd, int restarts, uint64_t age_ms) {
  char marker[4300], dir[4200];
  fy_app_dir(app->agent, app->name, dir, sizeof dir);
  snprintf(marker, sizeof marker, "%s/releases/", dir);
  /* Ours (a child of this process) and running from this app's releases, or it is not taken. */
  char path[64], st[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, st, sizeof st - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return FY_ENOENT;
  st[n] = '\0';
  const char *rp = strrchr(st, ')');
  int ppid = 0;
  char state = '?';
  if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2 || ppid != (int)getpid() || state == 'Z' || !runs_from(pid, marker))
    return FY_ENOENT;
  app->adopted_pid = pid;
  app->proc_alive = 1;
  app->want_running = 1;
  app->state = FY_APP_RUNNING;
  app->restarts = restarts;
  uint64_t now = uv_now(app->agent->loop);
  app->started_ms = age_ms < now ? now - age_ms : 0;
  if (!app->adopt_timer_open) {
    uv_timer_init(app->agent->loop, &app->adopt_timer);
    app->adopt_timer_open = 1;
    app->open_handles++;
  }
  app->adopt_timer.data = app;
  uv_timer_start(&app->adopt_timer, adopt_poll, 200, 200);
  if (out_fd >= 0) {
    fcntl(out_fd, F_SETFD, FD_CLOEXEC);
    watch_output(app, out_fd);
  }
  fy_log("info", "app %s: took over release %s, pid %d, from the previous agent", app->name, app->release, pid);
  return FY_OK;
}

int fy_app_pid(const fy_app *app) {
  if (!app->proc_alive) return 0;
  return app->adopted_pid ? app->adopted_pid : app->proc.pid;
}

static int app_kill(fy_app *app, int sig) {
  if (app->adopted_pid) return kill(app->adopted_pid, sig);
  return uv_process_kill(&app->proc, sig);
}

/* STATE/apps/<app>/pid: after a kill -9 of ferryd, the workload it left behind is found and
 * stopped before the current release starts again (no duplicates). */
static void write_pidfile(fy_app *app) {
  char path[4200], text[32];
  fy_app_dir(app->agent, app->name, path, sizeof path);
  strncat(path, "/pid", sizeof path - strlen(path) - 1);
  snprintf(text, sizeof text, "%d\n", app->proc.pid);
  if (fy_file_write_atomic(path, text, strlen(text), 0644) != FY_OK) fy_log("warn", "app %s: cannot write %s", app->name, path);
}

/* A killed orphan stays a zombie until its new parent reaps it, which some container inits
 * never do: dead is dead. */
int fy_proc_dead(long pid) {
  char path[64], st[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, st, sizeof st - 1);
  close(fd);
  if (n <= 0) return 1;
  st[n] = '\0';
  const char *rp = strrchr(st, ')');
  return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* Whether /proc/PID/cmdline names a path under `marker` (this app's releases). */
static int runs_from(long pid, const char *marker) {
  char cmd[64], cl[8192];
  snprintf(cmd, sizeof cmd, "/proc/%ld/cmdline", pid);
  int fd = open(cmd, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, cl, sizeof cl - 1); /* /proc files report size 0: read, do not stat */
  close(fd);
  if (n <= 0) return 0;
  for (ssize_t i = 0; i < n; i++) if (cl[i] == '\0') cl[i] = ' ';
  cl[n] = '\0';
  return strstr(cl, marker) != NULL;
}

/* Stops what an earlier ferryd left running for this app. The pid file names the workload, but
 * a ferryd killed between spawning it and writing the file leaves one the file does not name:
 * so every process whose command line runs from this app's releases goes (only those: the
 * marker is an absolute path under state_dir). */
static void kill_orphan(fy_agent *a, const char *app) {
  char path[4200], marker[4300];
  fy_app_dir(a, app, path, sizeof path);
  snprintf(marker, sizeof marker, "%s/releases/", path);
  strncat(path, "/pid", sizeof path - strlen(path) - 1);
  unlink(path);
  DIR *d = opendir("/proc");
  if (!d) return;
  long killed[64];
  size_t nk = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && nk < sizeof killed / sizeof killed[0]) {
    long pid;
    if (fy_parse_long(e->d_name, 2, 1L << 22, &pid) != FY_OK || pid == (long)getpid()) continue;
    if (!runs_from(pid, marker)) continue;
    fy_log("info", "app %s: stopping pid %ld left behind by an earlier ferryd", app, pid);
    kill((pid_t)pid, SIGKILL);
    killed[nk++] = pid;
  }
  closedir(d);
  for (size_t k = 0; k < nk; k++)
    for (int i = 0; i < 100 && kill((pid_t)killed[k], 0) == 0 && !fy_proc_dead(killed[k]); i++) usleep(10000);
}

static void restart_cb(uv_timer_t *t) {
  fy_app *app = t->data;
  if (!app->want_running || app->proc_alive || app->deploying) return;
  app->restarts++;
  fy_log("info", "app %s: restart %d after %u ms", app->name, app->restarts, app->backoff_ms);
  if (fy_app_start(app) != FY_OK) fy_log("warn", "app %s: %s", app->name, app->exec_error);
}

/* Catches the wrong architecture before exec so the error says what the file is. */
static int check_elf(fy_app *app, const char *host_path, const char *shown) {
  uint8_t h[FY_ELF_HEADER];
  int fd = open(host_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fy_text_fmt(app->exec_error, sizeof app->exec_error, "cannot execute %s: %s", shown, strerror(errno));
    return FY_EEXEC;
  }
  ssize_t n = read(fd, h, sizeof h);
  close(fd);
  fy_platform p;
  char desc[64];
  int rc = fy_elf_header_platform(h, n > 0 ? (size_t)n : 0, &p, desc, sizeof desc);
  if (rc == FY_EINVAL) return FY_OK; /* scripts: the kernel decides */
  const fy_facts *f = &app->agent->facts;
  for (size_t k = 0; rc == FY_OK && k < f->naccepts; k++)
    if (strcmp(f->accepts[k].arch, p.arch) == 0) return FY_OK;
  char plat[FY_PLATFORM_STR];
  fy_text_fmt(app->exec_error, sizeof app->exec_error, "exec format error: %s is %s, this node runs %s", shown, desc,
           fy_platform_format(&f->platform, plat, sizeof plat));
  return FY_EEXEC;
}

/* Finds prog (no '/') in the image's PATH inside rootfs. */
static int resolve_prog(const char *rootfs, const char *prog, json_t *env, char *out, size_t len) {
  if (strchr(prog, '/')) {
    snprintf(out, len, "%s%s", prog[0] == '/' ? "" : "/", prog);
    return 1;
  }
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t i;
  json_t *v;
  json_array_foreach(env, i, v) {
    if (json_is_string(v) && strncmp(json_string_value(v), "PATH=", 5) == 0) path = json_string_value(v) + 5;
  }
  char dir[1024];
  while (*path) {
    size_t n = strcspn(path, ":");
    if (n < sizeof dir) {
      memcpy(dir, path, n);
      dir[n] = '\0';
      char host[4400];
      struct stat st;
      if (fy_path_fmt(host, sizeof host, "%s%s/%s", rootfs, dir, prog) == FY_OK && stat(host, &st) == 0 &&
          S_ISREG(st.st_mode)) {
        snprintf(out, len, "%s/%s", dir, prog);
        return 1;
      }
    }
    path += n;
    if (*path == ':') path++;
  }
  return 0;
}

/* "uid[:gid]" or a name from the rootfs's /etc/passwd (never the host's). */
static int resolve_user(const char *rootfs, const char *user, unsigned *uid, unsigned *gid) {
  char name[256], grp[256] = "";
  snprintf(name, sizeof name, "%s", user);
  char *colon = strchr(name, ':');
  if (colon) {
    *colon = '\0';
    snprintf(grp, sizeof grp, "%s", colon + 1);
  }
  char *end;
  unsigned long v = strtoul(name, &end, 10);
  int found = 0;
  if (*name && !*end) {
    *uid = (unsigned)v;
    *gid = (unsigned)v;
    found = 1;
  } else {
    char path[4200], *text = NULL;
    size_t len;
    if (fy_path_fmt(path, sizeof path, "%s/etc/passwd", rootfs) == FY_OK && fy_file_read(path, 1 << 20, &text, &len) == FY_OK) {
      char *save = NULL;
      for (char *line = strtok_r(text, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
        char *f[4] = {0};
        char *s = line;
        for (int i = 0; i < 4 && s; i++) {
          f[i] = s;
          s = strchr(s, ':');
          if (s) *s++ = '\0';
        }
        if (f[0] && f[2] && f[3] && strcmp(f[0], name) == 0) {
          *uid = (unsigned)strtoul(f[2], NULL, 10);
          *gid = (unsigned)strtoul(f[3], NULL, 10);
          found = 1;
        }
      }
      free(text);
    }
  }
  if (found && grp[0]) {
    v = strtoul(grp, &end, 10);
    if (*end) return 0; /* group names: numeric only for now */
    *gid = (unsigned)v;
  }
  return found;
}

static char *subst_rootfs(const char *arg, const char *rootfs) {
  const char *p = strstr(arg, "{rootfs}");
  if (!p) return strdup(arg);
  size_t n = strlen(arg) - 8 + strlen(rootfs) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%.*s%s%s", (int)(p - arg), arg, rootfs, p + 8);
  return s;
}

int fy_app_start(fy_app *app) {
  fy_agent *a = app->agent;
  char dir[4200], rootfs[4400], prog[4096], host_prog[8600], cwd[8600], selfexe[4096];
  char **argv = NULL, **env = NULL;
  size_t nargv = 0, nenv = 0;
  int ret = FY_EEXEC, fds[2] = {-1, -1};
  json_t *run = NULL;
  app->exec_error[0] = '\0';
  if (a->stopping || app->closing) {
    snprintf(app->exec_error, sizeof app->exec_error, "the agent is shutting down");
    return FY_ECANCELED;
  }
  if (app->proc_alive || app->proc_closing) {
    snprintf(app->exec_error, sizeof app->exec_error, "the last process of %s is not gone yet", app->name);
    return FY_EBUSY;
  }
  if (!app->release[0]) {
    snprintf(app->exec_error, sizeof app->exec_error, "no current release");
    return FY_ENOAPP;
  }
  fy_app_dir(a, app->name, dir, sizeof dir);
  snprintf(rootfs, sizeof rootfs, "%s/releases/%s/rootfs", dir, app->release);
  run = load_run(a, app->name, app->release);
  if (!run) {
    snprintf(app->exec_error, sizeof app->exec_error, "release %s has no run.json", app->release);
    goto cleanup;
  }
  json_t *jargs = json_object_get(run, "argv"), *jenv = json_object_get(run, "env");
  const char *workdir = json_string_value(json_object_get(run, "workdir"));
  const char *user = json_string_value(json_object_get(run, "user"));
  size_t nargs = json_array_size(jargs);
  if (nargs == 0 || !json_is_string(json_array_get(jargs, 0))) {
    snprintf(app->exec_error, sizeof app->exec_error, "the image config has no Entrypoint or Cmd");
    goto cleanup;
  }
  if (!resolve_prog(rootfs, json_string_value(json_array_get(jargs, 0)), jenv, prog, sizeof prog)) {
    snprintf(app->exec_error, sizeof app->exec_error, "cannot execute %s: not found in the image's PATH",
             json_string_value(json_array_get(jargs, 0)));
    goto cleanup;
  }
  snprintf(host_prog, sizeof host_prog, "%s%s", rootfs, prog);
  if ((ret = check_elf(app, host_prog, prog)) != FY_OK) goto cleanup;
  ret = FY_EEXEC;
  snprintf(cwd, sizeof cwd, "%s%s", rootfs, workdir && workdir[0] == '/' ? workdir : "/");

  int use_wrapper = a->cfg.nwrapper > 0;
  int use_chroot = !use_wrapper && (a->cfg.isolation == FY_ISOLATION_CHROOT ||
                                    (a->cfg.isolation == FY_ISOLATION_AUTO && geteuid() == 0));
  unsigned uid = 0, gid = 0;
  int have_user = user && user[0] && resolve_user(rootfs, user, &uid, &gid);
  if (user && user[0] && !have_user) {
    snprintf(app->exec_error, sizeof app->exec_error, "User '%s' is not in the image's /etc/passwd", user);
    goto cleanup;
  }

  argv = calloc(a->cfg.nwrapper + nargs + 16, sizeof *argv);
  env = calloc(json_array_size(jenv) + 5, sizeof *env);
  if (!argv || !env) goto cleanup;
  if (use_wrapper) {
    char w0[4096];
    if (!fy_find_in_path(a->cfg.exec_wrapper[0], w0, sizeof w0)) {
      fy_text_fmt(app->exec_error, sizeof app->exec_error, "exec_wrapper '%s' not found in PATH", a->cfg.exec_wrapper[0]);
      goto cleanup;
    }
    argv[nargv++] = strdup(w0);
    for (size_t i = 1; i < a->cfg.nwrapper; i++) argv[nargv++] = subst_rootfs(a->cfg.exec_wrapper[i], rootfs);
    argv[nargv++] = strdup(host_prog);
  } else if (use_chroot) {
    ssize_t n = readlink("/proc/self/exe", selfexe, sizeof selfexe - 1);
    if (n <= 0) {
      snprintf(app->exec_error, sizeof app->exec_error, "cannot find ferryd's own binary for the chroot helper");
      goto cleanup;
    }
    selfexe[n] = '\0';
    char num[32];
    argv[nargv++] = strdup(selfexe);
    argv[nargv++] = strdup("__exec");
    argv[nargv++] = strdup(rootfs);
    argv[nargv++] = strdup(workdir && workdir[0] == '/' ? workdir : "/");
    snprintf(num, sizeof num, "%d", have_user ? (int)uid : -1);
    argv[nargv++] = strdup(num);
    snprintf(num, sizeof num, "%d", have_user ? (int)gid : -1);
    argv[nargv++] = strdup(num);
    argv[nargv++] = strdup("--");
    argv[nargv++] = strdup(prog);
  } else {
    argv[nargv++] = strdup(host_prog);
  }
  for (size_t i = 1; i < nargs; i++) {
    const char *s = json_string_value(json_array_get(jargs, i));
    argv[nargv++] = strdup(s ? s : "");
  }
  size_t i;
  json_t *v;
  int have_path = 0;
  json_array_foreach(jenv, i, v) {
    if (!json_is_string(v)) continue;
    have_path |= strncmp(json_string_value(v), "PATH=", 5) == 0;
    env[nenv++] = strdup(json_string_value(v));
  }
  if (!have_path) env[nenv++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  char fa[128];
  snprintf(fa, sizeof fa, "FERRY_APP=%s", app->name);
  env[nenv++] = strdup(fa);
  snprintf(fa, sizeof fa, "FERRY_RELEASE=%s", app->release);
  env[nenv++] = strdup(fa);
  snprintf(fa, sizeof fa, "FERRY_NODE=%s", a->cfg.name);
  env[nenv++] = strdup(fa);

  if (uv_pipe(fds, 0, 0) != 0) {
    snprintf(app->exec_error, sizeof app->exec_error, "cannot create the log pipe");
    goto cleanup;
  }
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = fds[1];
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = fds[1];
  uv_process_options_t opts;
  memset(&opts, 0, sizeof opts);
  opts.file = argv[0];
  opts.args = argv;
  opts.env = env;
  opts.cwd = use_chroot ? NULL : cwd;
  opts.exit_cb = on_proc_exit;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  if (have_user && !use_chroot && geteuid() == 0) {
    opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
    opts.uid = uid;
    opts.gid = gid;
  }
  app->proc.data = app;
  int rc = uv_spawn(a->loop, &app->proc, &opts);
  close(fds[1]);
  fds[1] = -1;
  if (rc != 0) {
    fy_text_fmt(app->exec_error, sizeof app->exec_error, "cannot execute %s: %s", prog, uv_strerror(rc));
    app->proc_closing = 1;
    uv_close((uv_handle_t *)&app->proc, proc_spawn_failed_closed);
    goto cleanup;
  }
  app->proc_alive = 1;
  app->adopted_pid = 0;
  watch_output(app, fds[0]);
  fds[0] = -1;
  write_pidfile(app);
  app->state = FY_APP_RUNNING;
  app->want_running = 1;
  app->started_ms = uv_now(a->loop);
  log_line(app, "ferryd: starting %s release %s (%s)", app->name, app->release,
           use_wrapper ? "through exec_wrapper" : use_chroot ? "chroot + mount/PID namespaces" : "no isolation");
  fy_log("info", "app %s: started release %s, pid %d", app->name, app->release, app->proc.pid);
  ret = FY_OK;
cleanup:
  if (ret != FY_OK) {
    app->state = FY_APP_FAILED;
    if (app->exec_error[0]) log_line(app, "ferryd: %s", app->exec_error);
  }
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
  for (size_t k = 0; argv && k < nargv; k++) free(argv[k]);
  for (size_t k = 0; env && k < nenv; k++) free(env[k]);
  free(argv);
  free(env);
  json_decref(run);
  return ret;
}

/* --- stopping ---------------------------------------------------------------------------- */

static void stop_finish(fy_app *app, int64_t status, int sig, void *ud) {
  (void)status;
  (void)sig;
  (void)ud;
  uv_timer_stop(&app->stop_timer);
  app->stop_pending = 0;
  app->state = FY_APP_STOPPED;
  /* A waiter may start the app again or ask for another stop: take the list first. */
  int n = app->nstop_waiters;
  struct { fy_app_stopped_cb done; void *ud; } w[FY_APP_STOP_WAITERS];
  memcpy(w, app->stop_waiters, sizeof w);
  app->nstop_waiters = 0;
  for (int i = 0; i < n; i++) w[i].done(app, w[i].ud);
}

static void stop_kill(uv_timer_t *t) {
  fy_app *app = t->data;
  if (app->proc_alive) app_kill(app, SIGKILL);
}

void fy_app_stop(fy_app *app, fy_app_stopped_cb done, void *ud) {
  app->want_running = 0;
  uv_timer_stop(&app->restart_timer);
  if (!app->proc_alive) {
    app->state = FY_APP_STOPPED;
    if (done) done(app, ud);
    return;
  }
  if (done) {
    if (app->nstop_waiters == FY_APP_STOP_WAITERS) {
      fy_log("warn", "app %s: more than %d waiting for one stop", app->name, FY_APP_STOP_WAITERS);
      done(app, ud);
    } else {
      app->stop_waiters[app->nstop_waiters].done = done;
      app->stop_waiters[app->nstop_waiters++].ud = ud;
    }
  }
  if (app->stop_pending) return;
  app->stop_pending = 1;
  app->on_exit = stop_finish; /* replaces a deploy's settle watch: the deploy is one of the waiters */
  app->on_exit_ud = NULL;
  /* An exit already being closed (proc_alive until its close callback) needs no signal. */
  if (!app->adopted_pid && app->proc_closing) return;
  app_kill(app, SIGTERM);
  uv_timer_start(&app->stop_timer, stop_kill, STOP_GRACE_MS, 0);
}

/* Closes every handle of an app that runs nothing; it is freed in the last close callback. */
static void app_close(fy_app *app) {
  if (app->closing) return;
  app->closing = 1;
  uv_close((uv_handle_t *)&app->restart_timer, app_handle_closed);
  uv_close((uv_handle_t *)&app->stop_timer, app_handle_closed);
  if (app->adopt_timer_open) uv_close((uv_handle_t *)&app->adopt_timer, app_handle_closed);
  for (struct fy_outpipe *o = app->pipes; o; o = o->next)
    if (!uv_is_closing((uv_handle_t *)&o->pipe)) uv_close((uv_handle_t *)&o->pipe, out_closed);
}

void fy_app_released(fy_app *app) {
  if (app->agent->stopping && !app->deploying && !app->proc_alive && !app->stop_pending) app_close(app);
}

static void shutdown_stopped(fy_app *app, void *ud) {
  (void)ud;
  fy_app_released(app);
}

void fy_apps_shutdown(fy_agent *a) {
  /* fy_app_stop may call back at once, and app_close frees nothing before its close callbacks:
   * the list stays walkable. */
  for (fy_app *app = a->apps; app; app = app->next) fy_app_stop(app, shutdown_stopped, NULL);
}

char *fy_app_log_tail(const fy_agent *a, const char *app, int lines, size_t max) {
  char path[4200];
  fy_app_dir(a, app, path, sizeof path);
  strncat(path, "/log", sizeof path - strlen(path) - 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return strdup("");
  struct stat st;
  if (fstat(fd, &st) != 0) { close(fd); return strdup(""); }
  size_t want = (uint64_t)st.st_size < max ? (size_t)st.st_size : max;
  char *buf = malloc(want + 1);
  if (!buf) { close(fd); return NULL; }
  ssize_t n = pread(fd, buf, want, st.st_size - (off_t)want);
  close(fd);
  if (n < 0) n = 0;
  buf[n] = '\0';
  /* Keep the last `lines` lines. */
  char *p = buf + n;
  int seen = 0;
  if (p > buf && p[-1] == '\n') p--;
  while (p > buf) {
    if (p[-1] == '\n' && ++seen == lines) break;
    p--;
  }
  memmove(buf, p, strlen(p) + 1);
  return buf;
}

json_t *fy_apps_json(fy_agent *a) {
  json_t *arr = json_array();
  for (fy_app *app = a->apps; app; app = app->next) {
    if (!app->release[0]) continue;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", app->name, "release", app->release,
                          "previous", app->previous, "state", fy_app_state_name(app->state),
                          "restarts", (json_int_t)app->restarts);
    /* age_s: since `current` last switched (its mtime), measured on the node's clock. */
    char cur[4200];
    struct stat st;
    fy_app_dir(a, app->name, cur, sizeof cur);
    strncat(cur, "/current", sizeof cur - strlen(cur) - 1);
    time_t now = time(NULL);
    if (o && lstat(cur, &st) == 0 && now >= st.st_mtime) json_object_set_new(o, "age_s", json_integer((json_int_t)(now - st.st_mtime)));
    if (o && app->version) json_object_set_new(o, "version", json_integer((json_int_t)app->version));
    if (o) json_array_append_new(arr, o);
  }
  return arr;
}

int fy_apps_recover(fy_agent *a) {
  char apps[4200];
  snprintf(apps, sizeof apps, "%s/apps", a->cfg.state_dir);
  int rc = fy_mkdirs(apps, 0755);
  if (rc != FY_OK) return rc;
  DIR *d = opendir(apps);
  if (!d) return fy_err_from_errno(errno);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!fy_app_valid_name(e->d_name)) continue;
    char dir[4200], rel[4400];
    fy_app_dir(a, e->d_name, dir, sizeof dir);
    snprintf(rel, sizeof rel, "%s/releases", dir);
    int rfd = open(rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd >= 0) {
      DIR *rd = fdopendir(rfd);
      struct dirent *re;
      while (rd && (re = readdir(rd)) != NULL) {
        size_t n = strlen(re->d_name);
        if (n > 8 && strcmp(re->d_name + n - 8, ".partial") == 0) {
          fy_log("info", "app %s: removing the unfinished release %s", e->d_name, re->d_name);
          if (fy_remove_tree(rfd, re->d_name) != FY_OK) fy_log("warn", "cannot remove %s", re->d_name);
        }
      }
      if (rd) closedir(rd);
      else close(rfd);
    }
    fy_app *app = fy_app_get(a, e->d_name);
    if (!app) continue;
    read_link(dir, "current", app->release, sizeof app->release);
    read_link(dir, "previous", app->previous, sizeof app->previous);
    /* After an agent upgrade's exec the workloads are still ours: take them over. */
    const json_t *h = app->release[0] ? fy_upgrade_handoff_app(a, app->name) : NULL;
    int adopted = h && fy_app_adopt(app, (int)json_integer_value(json_object_get(h, "pid")),
                                    (int)json_integer_value(json_object_get(h, "fd")),
                                    (int)json_integer_value(json_object_get(h, "restarts")),
                                    (uint64_t)json_integer_value(json_object_get(h, "age_ms"))) == FY_OK;
    if (!adopted) kill_orphan(a, app->name);
    /* A kill between a switch and the counter's write: the current release's version wins. */
    app->version = app->release[0] ? fy_trust_release_version(a, app->name, app->release) : 0;
    if (app->release[0] && fy_trust_record(a, app->name, app->version) != FY_OK)
      fy_log("warn", "app %s: cannot record its version", app->name);
    if (app->release[0] && !adopted) {
      if (fy_app_start(app) != FY_OK) fy_log("warn", "app %s: %s", app->name, app->exec_error);
    }
  }
  closedir(d);
  fy_upgrade_handoff_done(a);
  return FY_OK;
}

/* The chroot helper, run as `ferryd __exec ROOTFS WORKDIR UID GID -- PROG ARGS...`: new mount
 * and PID namespaces, the workload as PID 1 of its namespace inside the release root. */
int fy_exec_helper_main(int argc, char **argv) {
  if (argc < 8 || strcmp(argv[6], "--") != 0) {
    fprintf(stderr, "ferryd __exec: bad arguments\n");
    return 125;
  }
  const char *rootfs = argv[2], *workdir = argv[3];
  long uid, gid;
  if (fy_parse_long(argv[4], -1, 0x7fffffff, &uid) != FY_OK || fy_parse_long(argv[5], -1, 0x7fffffff, &gid) != FY_OK) {
    fprintf(stderr, "ferryd __exec: bad uid/gid\n");
    return 125;
  }
  if (unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) {
    fprintf(stderr, "ferryd: cannot create namespaces (%s); running with chroot only\n", strerror(errno));
  } else {
    (void)mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
  }
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "ferryd: fork: %s\n", strerror(errno));
    return 125;
  }
  if (child == 0) prctl(PR_SET_PDEATHSIG, SIGKILL); /* the helper killed: the workload goes too */
  if (child > 0) {
    /* Forward termination to the workload and report its status as ours. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
      int status;
      pid_t r = waitpid(child, &status, WNOHANG);
      if (r == child) {
        if (WIFSIGNALED(status)) {
          signal(WTERMSIG(status), SIG_DFL);
          sigprocmask(SIG_UNBLOCK, &set, NULL);
          raise(WTERMSIG(status));
        }
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125); /* no atexit work (LSan) in a helper */
      }
      struct timespec ts = {0, 50 * 1000 * 1000};
      siginfo_t si;
      if (sigtimedwait(&set, &si, &ts) > 0) kill(child, si.si_signo);
    }
  }
  if (chroot(rootfs) != 0 || chdir(workdir) != 0) {
    if (chdir("/") != 0) {}
    fprintf(stderr, "ferryd: cannot enter %s (%s)\n", rootfs, strerror(errno));
    _exit(125);
  }
  if (gid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0)) {
    fprintf(stderr, "ferryd: setgid %ld: %s\n", gid, strerror(errno));
    _exit(125);
  }
  if (uid >= 0 && setuid((uid_t)uid) != 0) {
    fprintf(stderr, "ferryd: setuid %ld: %s\n", uid, strerror(errno));
    _exit(125);
  }
  execv(argv[7], argv + 7);
  fprintf(stderr, "ferryd: cannot execute %s: %s\n", argv[7], strerror(errno));
  _exit(errno == ENOEXEC ? 126 : 127);
}
