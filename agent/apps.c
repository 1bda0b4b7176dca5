/* The supervisor (see apps.h): every app's process, from start to stop, restart with backoff,
 * take-over after an agent re-exec, and shutdown. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "applog.h"
#include "health.h"
#include "launch.h"
#include "release.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"
#include "ferry/yaml.h"

#define BACKOFF_MAX_MS 30000


const char *fy_app_state_name(fy_app_state s) {
  switch (s) {
  case FY_APP_STARTING:
  case FY_APP_RUNNING: return "running";
  case FY_APP_EXITED: return "exited";
  case FY_APP_FAILED: return "failed";
  case FY_APP_RECOVERING: return "recovering";
  case FY_APP_UNHEALTHY: return "unhealthy";
  default: return "stopped";
  }
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
  p->out_fd[0] = p->out_fd[1] = -1;
  uv_timer_init(a->loop, &p->restart_timer);
  uv_timer_init(a->loop, &p->stop_timer);
  uv_timer_init(a->loop, &p->health_timer);
  p->restart_timer.data = p->stop_timer.data = p->health_timer.data = p;
  p->open_handles = 3;
  p->next = a->apps;
  a->apps = p;
  return p;
}

/* --- processes ------------------------------------------------------------------------ */

/* The close callback of every handle an app holds: the last one frees a closing app. */
void fy__app_handle_done(fy_app *app) {
  if (--app->open_handles > 0 || !app->closing) return;
  fy_agent *a = app->agent;
  for (fy_app **pp = &a->apps; *pp; pp = &(*pp)->next)
    if (*pp == app) {
      *pp = app->next;
      break;
    }
  if (app->log_fd >= 0) close(app->log_fd);
  json_decref(app->health_argv);
  json_decref(app->volumes_seen);
  fy_applog_unfollow_all(app, NULL);
  free(app);
}
static void app_handle_closed(uv_handle_t *h) { fy__app_handle_done(h->data); }

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
  int clean = status == 0 && sig == 0;
  if (app->want_running && !app->agent->stopping &&
      (app->restart_policy == FY_RESTART_NEVER || (app->restart_policy == FY_RESTART_ON_FAILURE && clean))) {
    app->want_running = 0;
    fy_log("info", "app %s: not restarted (restart policy %s)", app->name, fy_restart_name((fy_restart)app->restart_policy));
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
  app->exit_reason[0] = '\0';
  uint64_t kills = fy_cgroup_oom_kills(&app->cg);
  if (sig == SIGKILL && kills > app->oom_kills) {
    fy_text_fmt(app->exit_reason, sizeof app->exit_reason, "out of memory (its limit is %.1f MiB)",
                (double)app->limits.memory / (1024.0 * 1024.0));
  }
  app->oom_kills = kills;
  if (app->exit_reason[0]) fy_applog_line(app, "ferryd: %s was killed: %s", app->name, app->exit_reason);
  else if (sig) fy_applog_line(app, "ferryd: %s exited on signal %d", app->name, sig);
  else fy_applog_line(app, "ferryd: %s exited with status %lld", app->name, (long long)status);
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

static int runs_from(long pid, const char *marker);

int fy_app_adopt(fy_app *app, int pid, int out_fd, int err_fd, int restarts, uint64_t age_ms) {
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
  /* How it stops, from its release (its limits stay as they were set; only the OOM reason of a
   * kill is not told for a workload taken over). */
  json_t *run = fy_release_run(app->agent, app->name, app->release);
  fy_run_meta meta;
  char err[160];
  if (run && fy_run_meta_decode(run, &meta, err, sizeof err) == FY_OK) {
    app->stop_signal = meta.stop_signal;
    app->stop_timeout_ms = meta.stop_timeout_ms > 0 ? (uint64_t)meta.stop_timeout_ms : 0;
  }
  json_decref(run);
  if (!app->adopt_timer_open) {
    uv_timer_init(app->agent->loop, &app->adopt_timer);
    app->adopt_timer_open = 1;
    app->open_handles++;
  }
  app->adopt_timer.data = app;
  uv_timer_start(&app->adopt_timer, adopt_poll, 200, 200);
  if (out_fd >= 0) {
    fcntl(out_fd, F_SETFD, FD_CLOEXEC);
    fy_applog_watch(app, out_fd, FY_OUT_STDOUT);
  }
  if (err_fd >= 0) {
    fcntl(err_fd, F_SETFD, FD_CLOEXEC);
    fy_applog_watch(app, err_fd, FY_OUT_STDERR);
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

/* Spawns the plan with the workload's stdout and stderr each on a pipe into its log. */
static int spawn(fy_app *app, const fy_launch_plan *p) {
  fy_agent *a = app->agent;
  int fds[2], efds[2];
  if (uv_pipe(fds, 0, 0) != 0) {
    snprintf(app->exec_error, sizeof app->exec_error, "cannot create the log pipe");
    return FY_EEXEC;
  }
  if (uv_pipe(efds, 0, 0) != 0) {
    close(fds[0]);
    close(fds[1]);
    snprintf(app->exec_error, sizeof app->exec_error, "cannot create the log pipe");
    return FY_EEXEC;
  }
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = fds[1];
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = efds[1];
  uv_process_options_t opts;
  memset(&opts, 0, sizeof opts);
  opts.file = p->argv[0];
  opts.args = p->argv;
  opts.env = p->env;
  opts.cwd = p->cwd[0] ? p->cwd : NULL;
  opts.exit_cb = on_proc_exit;
  opts.stdio = stdio;
  opts.stdio_count = 3;
  if (p->set_ids) {
    opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
    opts.uid = p->uid;
    opts.gid = p->gid;
  }
  app->proc.data = app;
  int rc = uv_spawn(a->loop, &app->proc, &opts);
  close(fds[1]);
  close(efds[1]);
  if (rc != 0) {
    close(fds[0]);
    close(efds[0]);
    fy_text_fmt(app->exec_error, sizeof app->exec_error, "cannot execute %s: %s", p->prog, uv_strerror(rc));
    app->proc_closing = 1;
    uv_close((uv_handle_t *)&app->proc, proc_spawn_failed_closed);
    return FY_EEXEC;
  }
  app->proc_alive = 1;
  app->adopted_pid = 0;
  fy_applog_watch(app, fds[0], FY_OUT_STDOUT);
  fy_applog_watch(app, efds[0], FY_OUT_STDERR);
  return FY_OK;
}

/* STATE/apps/<app>/volumes/<name> for each volume the release declares: created when missing,
 * owned by the user the app runs as (when ferryd can give it away), never a symlink or
 * anything but a directory. What is in them is the app's and stays across releases. */
static int prepare_volumes(fy_app *app, const char *dir, const fy_launch_plan *p) {
  char path[4400];
  if (p->set_ids && geteuid() == 0) { /* uncontained as another user: its secrets must be its own to read */
    fy_text_fmt(path, sizeof path, "%s/releases/%s/secrets", dir, app->release);
    int sfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *sd = sfd >= 0 ? fdopendir(sfd) : NULL;
    struct dirent *e;
    while (sd && (e = readdir(sd)))
      if (e->d_name[0] != '.') (void)fchownat(dirfd(sd), e->d_name, p->uid, p->gid, AT_SYMLINK_NOFOLLOW);
    if (sd) {
      (void)fchown(dirfd(sd), p->uid, p->gid);
      closedir(sd);
    } else if (sfd >= 0) {
      close(sfd);
    }
  }
  if (!p->mounts.nvolumes) return FY_OK;
  int owned = geteuid() == 0 && (p->mode == FY_LAUNCH_CONTAIN || p->set_ids);
  for (size_t i = 0; i <= p->mounts.nvolumes; i++) {
    if (i == 0) fy_text_fmt(path, sizeof path, "%s/volumes", dir);
    else fy_text_fmt(path, sizeof path, "%s/volumes/%s", dir, p->mounts.volumes[i - 1].name);
    struct stat st;
    if (mkdir(path, i == 0 ? 0711 : 0750) != 0 && errno != EEXIST) {
      fy_text_fmt(app->exec_error, sizeof app->exec_error, "cannot create %s: %s", path, strerror(errno));
      return FY_EEXEC;
    }
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
      fy_text_fmt(app->exec_error, sizeof app->exec_error, "%s is not a directory: the volume is not mounted", path);
      return FY_EEXEC;
    }
    if (i > 0 && owned && (st.st_uid != p->uid || st.st_gid != p->gid) && lchown(path, p->uid, p->gid) != 0) {
      fy_text_fmt(app->exec_error, sizeof app->exec_error, "cannot give %s to uid %u: %s", path, p->uid, strerror(errno));
      return FY_EEXEC;
    }
  }
  return FY_OK;
}

/* RELEASE/hostname: the node's name, which the runtime helper mounts at /etc/hostname. */
static int write_hostname(fy_app *app, const char *dir) {
  char path[4400], text[80];
  if (fy_path_fmt(path, sizeof path, "%s/releases/%s/hostname", dir, app->release) != FY_OK) return FY_EEXEC;
  int n = snprintf(text, sizeof text, "%s\n", app->agent->cfg.name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
  if (fd < 0 || write(fd, text, (size_t)n) != n) {
    fy_text_fmt(app->exec_error, sizeof app->exec_error, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return FY_EEXEC;
  }
  close(fd);
  return FY_OK;
}

/* The app's resource limits: its cgroups made and joined by the helper (contained mode only). */
static void limits(fy_app *app, const json_t *run, fy_launch_in *in, const char **dirs) {
  fy_run_meta meta;
  char err[200];
  memset(&app->limits, 0, sizeof app->limits);
  memset(&app->cg, 0, sizeof app->cg);
  json_decref(app->health_argv);
  app->health_argv = NULL;
  app->health_port = 0;
  app->restart_policy = FY_RESTART_ALWAYS;
  if (!run || fy_run_meta_decode(run, &meta, err, sizeof err) != FY_OK) return;
  if (meta.nhealth) app->health_argv = json_deep_copy(meta.health);
  snprintf(app->health_text, sizeof app->health_text, "%s", meta.health_text);
  app->health_port = meta.health_port;
  app->health_interval_ms = meta.health_interval_ms > 0 ? (uint64_t)meta.health_interval_ms : FY_HEALTH_INTERVAL_DEFAULT_MS;
  app->restart_policy = meta.restart;
  app->limits = meta.spec;
  int resources = meta.spec.memory || meta.spec.cpu_milli || meta.spec.pids;
  const fy_agent_config *cfg = &app->agent->cfg;
  if (!fy_config_contained(cfg, geteuid() == 0)) {
    if (resources)
      snprintf(app->cg.not_enforced, sizeof app->cg.not_enforced, "the app runs without containment (%s)",
               cfg->nwrapper ? "exec_wrapper" : geteuid() != 0 ? "ferryd is not root" : "isolation: none");
  } else if (resources || meta.mounts.ndevices) {
    if (resources) fy_cgroup_prepare(&app->agent->cgroups, app->name, &meta.spec, &app->cg);
    const char *devs[FY_DEVICES_MAX];
    char real[FY_DEVICES_MAX][4096];
    size_t nd = 0;
    for (size_t i = 0; i < meta.mounts.ndevices; i++)
      if (realpath(meta.mounts.devices[i], real[nd])) devs[nd] = real[nd], nd++;
    fy_cgroup_devices(&app->agent->cgroups, app->name, devs, nd, &app->cg);
    for (size_t i = 0; i < app->cg.ndirs; i++) dirs[i] = app->cg.dirs[i];
    in->cgroups = dirs;
    in->ncgroups = app->cg.ndirs;
    app->oom_kills = fy_cgroup_oom_kills(&app->cg);
  }
  if (app->cg.not_enforced[0]) fy_applog_line(app, "ferryd: limits not enforced: %s", app->cg.not_enforced);
}

int fy_app_health_plan(fy_app *app, const json_t *argv, fy_launch_plan *plan, char *err, size_t errlen) {
  fy_agent *a = app->agent;
  char dir[4200], rootfs[4400], self[4096];
  memset(plan, 0, sizeof *plan);
  fy_app_dir(a, app->name, dir, sizeof dir);
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  if (fy_path_fmt(rootfs, sizeof rootfs, "%s/releases/%s/rootfs", dir, app->release) != FY_OK) {
    fy_text_fmt(err, errlen, "the release's path is too long");
    return FY_EEXEC;
  }
  json_t *run = fy_release_run(a, app->name, app->release);
  const char *cgdirs[FY_CG_MAX_DIRS];
  for (size_t i = 0; i < app->cg.ndirs; i++) cgdirs[i] = app->cg.dirs[i];
  fy_launch_in in = {.run = run, .rootfs = rootfs, .app = app->name, .release = app->release, .node = a->cfg.name, .app_dir = dir,
                     .cfg = &a->cfg, .facts = &a->facts, .is_root = geteuid() == 0, .self_exe = self,
                     .cgroups = cgdirs, .ncgroups = app->cg.ndirs, .argv_override = argv, .join_pid = fy_app_pid(app)};
  int rc = FY_EEXEC;
  if (!run) fy_text_fmt(err, errlen, "release %s has no run.json", app->release);
  else if (!in.join_pid) fy_text_fmt(err, errlen, "%s is not running", app->name);
  else rc = fy_launch_plan_make(&in, plan, err, errlen);
  json_decref(run);
  return rc;
}

/* One line of /proc/net/tcp{,6}: a listening socket on port -> its inode. */
static int listening_inodes(int port, unsigned long *inodes, int max) {
  static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  int n = 0;
  for (int f = 0; f < 2; f++) {
    FILE *fp = fopen(files[f], "re");
    char line[512];
    if (!fp) continue;
    while (fgets(line, sizeof line, fp) && n < max) {
      char local[128];
      unsigned st;
      unsigned long inode;
      /* sl local rem st tx:rx tr:when retr uid timeout inode */
      if (sscanf(line, " %*s %127s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &inode) != 3 || st != 0x0A) continue;
      const char *colon = strrchr(local, ':');
      if (colon && strtol(colon + 1, NULL, 16) == port) inodes[n++] = inode;
    }
    fclose(fp);
  }
  return n;
}

/* ppid of pid from /proc/PID/stat, or -1. */
static long parent_of(long pid) {
  char path[64], st[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, st, sizeof st - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return -1;
  st[n] = '\0';
  const char *rp = strrchr(st, ')');
  long ppid;
  char state;
  return rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 ? ppid : -1;
}

int fy_app_owns_port(fy_app *app, int port) {
  long root = fy_app_pid(app);
  unsigned long inodes[16];
  int ni = listening_inodes(port, inodes, 16);
  if (root <= 0 || ni == 0) return 0;
  DIR *proc = opendir("/proc");
  struct dirent *e;
  int found = 0;
  while (proc && !found && (e = readdir(proc)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    long p = pid;
    for (int depth = 0; p > 1 && p != root && depth < 64; depth++) p = parent_of(p);
    if (p != root) continue; /* not the app's helper or one of its descendants */
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/%ld/fd", pid);
    DIR *fds = opendir(fdpath);
    struct dirent *f;
    while (fds && !found && (f = readdir(fds)) != NULL) {
      char link[340], target[64];
      snprintf(link, sizeof link, "%s/%s", fdpath, f->d_name);
      ssize_t n = readlink(link, target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      unsigned long ino;
      if (sscanf(target, "socket:[%lu]", &ino) != 1) continue;
      for (int i = 0; i < ni; i++) found |= ino == inodes[i];
    }
    if (fds) closedir(fds);
  }
  if (proc) closedir(proc);
  return found;
}

/* --- health after the settle window -------------------------------------------------------- */

static void unhealthy_stopped(fy_app *app, void *ud) {
  (void)ud;
  if (app->agent->stopping || app->deploying || app->closing) return;
  app->want_running = 1; /* the restart, with the backoff an exit would get */
  app->backoff_ms = app->backoff_ms ? app->backoff_ms * 2 : 1000;
  if (app->backoff_ms > BACKOFF_MAX_MS) app->backoff_ms = BACKOFF_MAX_MS;
  app->state = FY_APP_UNHEALTHY;
  uv_timer_start(&app->restart_timer, restart_cb, app->backoff_ms, 0);
}

static void health_answer(fy_app *app, int ok, const char *why, void *ud) {
  (void)ud;
  app->hcheck = NULL;
  app->health_known = 1;
  if (!app->proc_alive || app->stop_pending) return;
  if (ok) {
    if (app->state == FY_APP_UNHEALTHY) fy_applog_line(app, "ferryd: %s is healthy again", app->name);
    app->health_failures = 0;
    if (app->state == FY_APP_UNHEALTHY) app->state = FY_APP_RUNNING;
    return;
  }
  snprintf(app->health_last_failure, sizeof app->health_last_failure, "%s", why);
  if (++app->health_failures < FY_HEALTH_RETRIES || app->state == FY_APP_UNHEALTHY) return;
  app->state = FY_APP_UNHEALTHY;
  fy_applog_line(app, "ferryd: %s is unhealthy after %d failed checks: %s", app->name, app->health_failures, why);
  fy_log("warn", "app %s: unhealthy: %s", app->name, why);
  if (app->restart_policy == FY_RESTART_NEVER) return; /* it keeps running, marked unhealthy */
  fy_log("info", "app %s: restarting it (restart policy %s)", app->name, fy_restart_name((fy_restart)app->restart_policy));
  fy_app_stop(app, unhealthy_stopped, NULL);
}

static void health_tick(uv_timer_t *t) {
  fy_app *app = t->data;
  /* A deploy checks its own release in the settle window; one check at a time. */
  if (!app->proc_alive || app->deploying || app->stop_pending || app->hcheck || app->agent->stopping) return;
  app->hcheck = fy_hcheck_start(app, app->health_port ? NULL : app->health_argv, app->health_text, app->health_port,
                                FY_HEALTH_TIMEOUT_MS < app->health_interval_ms ? FY_HEALTH_TIMEOUT_MS : app->health_interval_ms,
                                health_answer, NULL);
}

int fy_app_start(fy_app *app) {
  fy_agent *a = app->agent;
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
  char dir[4200], rootfs[4400], self[4096];
  fy_app_dir(a, app->name, dir, sizeof dir);
  json_t *run = fy_release_run(a, app->name, app->release);
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  fy_launch_in in = {.run = run, .rootfs = rootfs, .app = app->name, .release = app->release, .node = a->cfg.name, .app_dir = dir,
                     .cfg = &a->cfg, .facts = &a->facts, .is_root = geteuid() == 0, .self_exe = self};
  fy_launch_plan plan = {0};
  int ret = FY_EEXEC;
  const char *cgdirs[FY_CG_MAX_DIRS];
  limits(app, run, &in, cgdirs);
  if (!run) {
    snprintf(app->exec_error, sizeof app->exec_error, "release %s has no run.json", app->release);
  } else if (fy_path_fmt(rootfs, sizeof rootfs, "%s/releases/%s/rootfs", dir, app->release) != FY_OK) {
    snprintf(app->exec_error, sizeof app->exec_error, "the release's path is too long");
  } else if ((ret = write_hostname(app, dir)) == FY_OK &&
             (ret = fy_launch_plan_make(&in, &plan, app->exec_error, sizeof app->exec_error)) == FY_OK &&
             (ret = prepare_volumes(app, dir, &plan)) == FY_OK && (ret = spawn(app, &plan)) == FY_OK) {
    write_pidfile(app);
    app->volumes_seen_ms = 0; /* measured again at the next hello */
    app->stop_signal = plan.stop_signal;
    app->stop_timeout_ms = plan.stop_timeout_ms;
    app->state = FY_APP_RUNNING;
    app->want_running = 1;
    app->started_ms = uv_now(a->loop);
    app->health_failures = app->health_known = 0; /* the last failure stays: status shows why it restarted */
    if (app->health_argv || app->health_port)
      uv_timer_start(&app->health_timer, health_tick, app->health_interval_ms, app->health_interval_ms);
    if (app->user_stopped && fy_app_set_user_stopped(app, 0) != FY_OK) fy_log("warn", "app %s: cannot clear its stopped mark", app->name);
    fy_applog_line(app, "ferryd: starting %s release %s (%s)", app->name, app->release, fy_launch_mode_name(plan.mode));
    fy_log("info", "app %s: started release %s, pid %d", app->name, app->release, app->proc.pid);
  }
  if (ret != FY_OK) {
    app->state = FY_APP_FAILED;
    if (app->exec_error[0]) fy_applog_line(app, "ferryd: %s", app->exec_error);
  }
  fy_launch_plan_free(&plan);
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
  uv_timer_stop(&app->health_timer);
  fy_hcheck_cancel(app->hcheck);
  app->hcheck = NULL;
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
  app_kill(app, app->stop_signal ? app->stop_signal : SIGTERM);
  uv_timer_start(&app->stop_timer, stop_kill, app->stop_timeout_ms ? app->stop_timeout_ms : FY_STOP_TIMEOUT_DEFAULT_MS, 0);
}

/* Closes every handle of an app that runs nothing; it is freed in the last close callback. */
static void app_close(fy_app *app) {
  if (app->closing) return;
  app->closing = 1;
  uv_close((uv_handle_t *)&app->restart_timer, app_handle_closed);
  uv_close((uv_handle_t *)&app->stop_timer, app_handle_closed);
  uv_close((uv_handle_t *)&app->health_timer, app_handle_closed);
  if (app->adopt_timer_open) uv_close((uv_handle_t *)&app->adopt_timer, app_handle_closed);
  fy_applog_close_pipes(app);
}

void fy_app_released(fy_app *app) {
  if (app->agent->stopping && !app->deploying && !app->proc_alive && !app->stop_pending) app_close(app);
}

static void shutdown_stopped(fy_app *app, void *ud) {
  (void)ud;
  fy_app_released(app);
}

void fy_apps_shutdown(fy_agent *a) {
  fy_apps_recover_cancel(a);
  /* fy_app_stop may call back at once, and app_close frees nothing before its close callbacks:
   * the list stays walkable. */
  for (fy_app *app = a->apps; app; app = app->next) fy_app_stop(app, shutdown_stopped, NULL);
}


void fy_app_meta(fy_app *app) {
  if (strcmp(app->meta_release, app->release) == 0) return;
  snprintf(app->meta_release, sizeof app->meta_release, "%s", app->release);
  app->manifest[0] = app->options[0] = '\0';
  json_t *run = app->release[0] ? fy_release_run(app->agent, app->name, app->release) : NULL;
  fy_run_meta m;
  char err[200];
  if (run && fy_run_meta_decode(run, &m, err, sizeof err) == FY_OK) {
    snprintf(app->manifest, sizeof app->manifest, "%s", m.manifest);
    snprintf(app->options, sizeof app->options, "%s", m.options);
  }
  json_decref(run);
}

static void stopped_marker(const fy_app *app, char *path, size_t len) {
  char dir[4200];
  fy_app_dir(app->agent, app->name, dir, sizeof dir);
  snprintf(path, len, "%s/stopped", dir);
}

int fy_app_set_user_stopped(fy_app *app, int stopped) {
  char path[4300];
  stopped_marker(app, path, sizeof path);
  int rc = FY_OK;
  if (stopped) rc = fy_file_write_atomic(path, "stopped by a pusher (ferry stop)\n", 33, 0644);
  else if (unlink(path) != 0 && errno != ENOENT) rc = fy_err_from_errno(errno);
  if (rc == FY_OK) app->user_stopped = stopped;
  return rc;
}

/* The bytes under a directory (its files' sizes), without following symlinks, over at most
 * *budget entries and 64 levels: a status answer never walks an app's whole disk. */
static uint64_t tree_bytes(int fd0, int depth, long *budget) {
  DIR *d = fdopendir(fd0);
  if (!d) {
    close(fd0);
    return 0;
  }
  uint64_t sum = 0;
  struct dirent *e;
  while ((e = readdir(d)) && --*budget > 0) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISREG(st.st_mode)) sum += (uint64_t)st.st_size;
    if (S_ISDIR(st.st_mode) && depth < 64) {
      int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) sum += tree_bytes(fd, depth + 1, budget);
    }
  }
  closedir(d);
  return sum;
}

/* [{"name","bytes"}] for STATE/apps/<app>/volumes/<name>, NULL when there are none. */
static json_t *volumes_json(fy_agent *a, const char *app) {
  char dir[4300];
  fy_app_dir(a, app, dir, sizeof dir);
  strncat(dir, "/volumes", sizeof dir - strlen(dir) - 1);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return NULL;
  }
  json_t *arr = json_array();
  struct dirent *e;
  long budget = 100000;
  while (arr && (e = readdir(d)) && json_array_size(arr) < FY_VOLUMES_MAX) {
    if (e->d_name[0] == '.') continue;
    int vfd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (vfd < 0) continue;
    uint64_t bytes = tree_bytes(vfd, 0, &budget);
    json_array_append_new(arr, json_pack("{s:s, s:I}", "name", e->d_name, "bytes", (json_int_t)bytes));
  }
  closedir(d);
  if (arr && json_array_size(arr) == 0) {
    json_decref(arr);
    return NULL;
  }
  return arr;
}

json_t *fy_apps_json(fy_agent *a) {
  json_t *arr = json_array();
  for (fy_app *app = a->apps; app; app = app->next) {
    if (!app->release[0] && app->state != FY_APP_RECOVERING) continue;
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
    fy_app_meta(app);
    if (o && app->manifest[0]) json_object_set_new(o, "manifest", json_string(app->manifest));
    if (o && app->options[0]) json_object_set_new(o, "options", json_string(app->options));
    if (o && app->exit_reason[0]) json_object_set_new(o, "reason", json_string(app->exit_reason));
    uint64_t now_ms = uv_now(a->loop);
    if (!app->volumes_seen_ms || now_ms - app->volumes_seen_ms >= FY_VOLUME_SIZES_MS) {
      json_decref(app->volumes_seen);
      app->volumes_seen = volumes_json(a, app->name);
      app->volumes_seen_ms = now_ms ? now_ms : 1;
    }
    if (o && app->volumes_seen) json_object_set(o, "volumes", app->volumes_seen);
    if (o && (app->health_argv || app->health_port) && app->release[0]) {
      const char *hs = app->state == FY_APP_UNHEALTHY ? "unhealthy" : !app->proc_alive ? "none" : app->health_known && !app->health_failures ? "healthy" : "starting";
      json_t *h = json_pack("{s:s}", "state", hs);
      if (h && app->health_last_failure[0]) json_object_set_new(h, "last_failure", json_string(app->health_last_failure));
      if (h) json_object_set_new(o, "health", h);
    }
    if (o && (app->limits.memory || app->limits.cpu_milli || app->limits.pids)) {
      json_t *l = fy_resources_to_json(&app->limits);
      json_object_set_new(l, "enforced", json_boolean(!app->cg.not_enforced[0]));
      if (app->cg.not_enforced[0]) json_object_set_new(l, "not_enforced", json_string(app->cg.not_enforced));
      json_object_set_new(o, "limits", l);
    }
    if (o) json_array_append_new(arr, o);
  }
  return arr;
}

/* A pipe the previous agent handed over: a descriptor above stderr, else none (-1). */
static int handed_fd(const json_t *h, const char *key) {
  const json_t *v = json_object_get(h, key);
  json_int_t fd = json_is_integer(v) ? json_integer_value(v) : -1;
  return fd > 2 && fd < 65536 ? (int)fd : -1;
}

/* One app: what the old loop did for each, now one per loop turn. */
static void recover_one(fy_agent *a, const char *name) {
  char dir[4200];
  fy_app_dir(a, name, dir, sizeof dir);
  fy_release_clean_partials(a, name);
  fy_app *app = fy_app_find(a, name);
  if (!app) return;
  app->state = FY_APP_STOPPED;
  fy_release_read_link(dir, "current", app->release, sizeof app->release);
  fy_release_read_link(dir, "previous", app->previous, sizeof app->previous);
  /* After an agent upgrade's exec the workloads are still ours: take them over. */
  const json_t *h = app->release[0] ? fy_upgrade_handoff_app(a, app->name) : NULL;
  int adopted = h && fy_app_adopt(app, (int)json_integer_value(json_object_get(h, "pid")),
                                  handed_fd(h, "fd"), handed_fd(h, "err_fd"),
                                  (int)json_integer_value(json_object_get(h, "restarts")),
                                  (uint64_t)json_integer_value(json_object_get(h, "age_ms"))) == FY_OK;
  if (!adopted) kill_orphan(a, app->name);
  /* A kill between a switch and the counter's write: the current release's version wins. */
  app->version = app->release[0] ? fy_trust_release_version(a, app->name, app->release) : 0;
  if (app->release[0] && fy_trust_record(a, app->name, app->version) != FY_OK)
    fy_log("warn", "app %s: cannot record its version", app->name);
  char marker[4300];
  struct stat st;
  stopped_marker(app, marker, sizeof marker);
  app->user_stopped = lstat(marker, &st) == 0;
  if (app->release[0] && !adopted && app->user_stopped) {
    fy_log("info", "app %s: stays stopped (ferry stop; ferry start starts it)", app->name);
  } else if (app->release[0] && !adopted) {
    if (fy_app_start(app) != FY_OK) fy_log("warn", "app %s: %s", app->name, app->exec_error);
  }
}

static void recover_timer_closed(uv_handle_t *h) { free(h); }

static void recover_end(fy_agent *a) {
  if (a->recover_timer) {
    uv_close((uv_handle_t *)a->recover_timer, recover_timer_closed);
    a->recover_timer = NULL;
  }
  free(a->recover_names);
  a->recover_names = NULL;
  fy_upgrade_handoff_done(a);
  a->recovering = 0;
  if (!a->stopping) fy_log("info", "ready: %zu app(s) recovered", a->nrecover);
}

static void recover_step(uv_timer_t *t) {
  fy_agent *a = t->data;
  if (a->stopping || a->recover_next >= a->nrecover) {
    recover_end(a);
    return;
  }
  const char *name = a->recover_names[a->recover_next++];
  fy_app *app = fy_app_find(a, name);
  if (app && app->state == FY_APP_RECOVERING) recover_one(a, name); /* else a request got to it first */
}

void fy_app_recover_now(fy_app *app) {
  if (app->state == FY_APP_RECOVERING) recover_one(app->agent, app->name);
}

void fy_apps_recover_cancel(fy_agent *a) {
  if (a->recovering) {
    for (size_t i = a->recover_next; i < a->nrecover; i++) {
      fy_app *app = fy_app_find(a, a->recover_names[i]);
      if (app && app->state == FY_APP_RECOVERING) app->state = FY_APP_STOPPED;
    }
    recover_end(a);
  }
}

int fy_apps_recover(fy_agent *a) {
  char apps[4200];
  snprintf(apps, sizeof apps, "%s/apps", a->cfg.state_dir);
  int rc = fy_mkdirs(apps, 0755);
  if (rc != FY_OK) return rc;
  DIR *d = opendir(apps);
  if (!d) return fy_err_from_errno(errno);
  struct dirent *e;
  size_t cap = 0;
  a->nrecover = a->recover_next = 0;
  while ((e = readdir(d)) != NULL) {
    if (!fy_app_valid_name(e->d_name)) continue;
    if (a->nrecover == cap) {
      size_t nc = cap ? cap * 2 : 16;
      char(*names)[64] = realloc(a->recover_names, nc * sizeof *names);
      if (!names) break;
      a->recover_names = names;
      cap = nc;
    }
    size_t nl = strlen(e->d_name); /* a valid app name: at most 63 characters */
    memcpy(a->recover_names[a->nrecover++], e->d_name, nl + 1);
    fy_app *app = fy_app_get(a, e->d_name);
    if (app) app->state = FY_APP_RECOVERING;
  }
  closedir(d);
  a->recovering = 1;
  a->recover_timer = malloc(sizeof *a->recover_timer);
  if (!a->recover_timer) {
    while (a->recover_next < a->nrecover) recover_one(a, a->recover_names[a->recover_next++]);
    recover_end(a);
    return FY_OK;
  }
  uv_timer_init(a->loop, a->recover_timer);
  a->recover_timer->data = a;
  uv_timer_start(a->recover_timer, recover_step, 0, 1); /* one app per turn of the loop */
  return FY_OK;
}
