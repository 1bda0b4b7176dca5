/* Agent self-upgrade; see upgrade.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "release.h"
#include "ferry/elf.h"
#include "ferry/fsutil.h"
#include "ferry/msg.h"
#include "ferry/yaml.h"
#include "upgrade.h"

#define AGENT_BIN_MAX (256u << 20)

static void agent_file(const fy_agent *a, const char *name, char *buf, size_t len) {
  snprintf(buf, len, "%s/agent/%s", a->cfg.state_dir, name);
}

static int file_digest(const char *path, char *out) {
  char *data = NULL;
  size_t len;
  int rc = fy_file_read(path, AGENT_BIN_MAX, &data, &len);
  if (rc != FY_OK) return rc;
  fy_digest d;
  fy_sha256_once(data, len, &d);
  fy_digest_format(&d, out);
  free(data);
  return FY_OK;
}

static json_t *load_json(const char *path) {
  char *text = NULL;
  size_t len;
  if (fy_file_read(path, 1u << 20, &text, &len) != FY_OK) return NULL;
  json_t *j = json_loadb(text, len, 0, NULL);
  free(text);
  return j;
}

/* The watchdog is this process's child (forked by the previous image): reap it when it ends. */
static void reap_watchdog(uv_timer_t *t) {
  fy_agent *a = t->data;
  if (a->watchdog_pid <= 0 || waitpid(a->watchdog_pid, NULL, WNOHANG) != 0) {
    a->watchdog_pid = 0;
    a->watchdog_reaper = NULL;
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
  }
}

void fy_upgrade_startup(fy_agent *a, int argc, char **argv) {
  char path[4300];
  a->argc = argc;
  a->argv = argv;
  ssize_t n = readlink("/proc/self/exe", a->self_path, sizeof a->self_path - 1);
  a->self_path[n > 0 ? n : 0] = '\0';
  if (file_digest(a->self_path, a->self_digest) != FY_OK) snprintf(a->self_digest, sizeof a->self_digest, "unknown");
  agent_file(a, "", path, sizeof path);
  if (fy_mkdirs(path, 0700) != FY_OK) fy_log("warn", "cannot create %s", path);
  agent_file(a, "handoff.json", path, sizeof path);
  json_t *h = load_json(path);
  if (h && json_integer_value(json_object_get(h, "pid")) == (json_int_t)getpid()) {
    a->handoff = h;
    json_int_t w = json_integer_value(json_object_get(h, "watchdog"));
    if (w > 0) a->watchdog_pid = (int)w;
  } else {
    json_decref(h);
  }
  unlink(path);
  uv_timer_t *t = a->watchdog_pid > 0 ? calloc(1, sizeof *t) : NULL;
  if (t) {
    uv_timer_init(a->loop, t);
    t->data = a;
    uv_timer_start(t, reap_watchdog, 500, 500);
    uv_unref((uv_handle_t *)t);
    a->watchdog_reaper = t;
  }
  agent_file(a, "upgrade.json", path, sizeof path);
  json_t *u = load_json(path);
  const char *want = json_string_value(json_object_get(u, "digest"));
  if (u && json_integer_value(json_object_get(u, "pid")) == (json_int_t)getpid() && want && strcmp(want, a->self_digest) == 0) {
    a->upgrade_pending = 1;
    fy_log("info", "upgraded in place to %.19s...; waiting for a pusher to confirm", a->self_digest);
  }
  json_decref(u);
}

const json_t *fy_upgrade_handoff_app(fy_agent *a, const char *app) {
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(a->handoff, "apps"), i, e) {
    const char *n = json_string_value(json_object_get(e, "name"));
    if (n && strcmp(n, app) == 0) return e;
  }
  return NULL;
}

void fy_upgrade_handoff_done(fy_agent *a) {
  /* fds handed over for apps that are no longer here */
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(a->handoff, "apps"), i, e) {
    const char *n = json_string_value(json_object_get(e, "name"));
    json_int_t fd = json_integer_value(json_object_get(e, "fd"));
    fy_app *app = n ? fy_app_find(a, n) : NULL;
    json_int_t efd = json_integer_value(json_object_get(e, "err_fd"));
    if (fd > 2 && (!app || app->out_fd[0] != (int)fd)) close((int)fd);
    if (efd > 2 && (!app || app->out_fd[1] != (int)efd)) close((int)efd);
  }
  json_decref(a->handoff);
  a->handoff = NULL;
}

void fy_upgrade_answered(fy_agent *a) {
  if (!a->upgrade_pending) return;
  char path[4300];
  agent_file(a, "upgrade.json", path, sizeof path);
  unlink(path);
  a->upgrade_pending = 0;
  fy_log("info", "agent upgrade confirmed: a pusher reached this agent");
}

/* Runs argv with a deadline; 0 when it exited 0. Its stdout (first line) into out. */
static int run_checked(char *const argv[], int timeout_s, char *out, size_t outlen) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    execv(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  if (pid < 0) {
    close(p[0]);
    return -1;
  }
  int st = 0, done = 0;
  for (int i = 0; i < timeout_s * 20 && !done; i++) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) done = 1;
    else usleep(50000);
  }
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
  }
  ssize_t n = read(p[0], out, outlen - 1);
  close(p[0]);
  out[n > 0 ? n : 0] = '\0';
  char *nl = strchr(out, '\n');
  if (nl) *nl = '\0';
  if (!done) {
    snprintf(out, outlen, "no answer within %d s", timeout_s);
    return -1;
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int fy_upgrade_prepare(fy_agent *a, const char *path, int timeout_s, char *digest, char *err, size_t errlen) {
  char newp[4200], prev[4200], out[512], desc[80], p2[FY_PLATFORM_STR];
  char *data = NULL;
  size_t len;
  int rc = fy_file_read(path, AGENT_BIN_MAX, &data, &len);
  if (rc != FY_OK) {
    snprintf(err, errlen, "the image has no /ferryd (%s)", fy_strerror(rc));
    return FY_EEXEC;
  }
  fy_platform p;
  if (fy_elf_header_platform((const unsigned char *)data, len, &p, desc, sizeof desc) != FY_OK ||
      strcmp(p.arch, a->facts.platform.arch) != 0) {
    snprintf(err, errlen, "the new ferryd is %s, this node runs %s", desc, fy_platform_format(&a->facts.platform, p2, sizeof p2));
    free(data);
    return FY_EEXEC;
  }
  snprintf(newp, sizeof newp, "%s.new", a->self_path);
  snprintf(prev, sizeof prev, "%s.prev", a->self_path);
  rc = fy_file_write_atomic(newp, data, len, 0755);
  fy_digest d;
  fy_sha256_once(data, len, &d);
  fy_digest_format(&d, digest);
  free(data);
  if (rc != FY_OK) {
    snprintf(err, errlen, "cannot write %s: %s", newp, fy_strerror(rc));
    return rc;
  }
  char *v_argv[] = {newp, "--version", NULL};
  if (run_checked(v_argv, 10, out, sizeof out) != 0 || strncmp(out, "ferryd ", 7) != 0) {
    snprintf(err, errlen, "the new ferryd does not run on this node: --version gave '%s'", out);
    unlink(newp);
    return FY_EEXEC;
  }
  char cfg_abs[4096];
  const char *cfg = realpath(a->config_path, cfg_abs) ? cfg_abs : a->config_path;
  char *c_argv[] = {newp, "--config", (char *)cfg, "--check-config", NULL};
  if (run_checked(c_argv, 10, out, sizeof out) != 0) {
    snprintf(err, errlen, "the new ferryd refuses this node's config: %s", out);
    unlink(newp);
    return FY_EEXEC;
  }
  unlink(prev);
  if (link(a->self_path, prev) != 0 || rename(newp, a->self_path) != 0) {
    snprintf(err, errlen, "cannot install the new ferryd beside %s: %s", a->self_path, strerror(errno));
    unlink(newp);
    return FY_EIO;
  }
  char up[4300], text[600], pidbuf[16], tbuf[16];
  agent_file(a, "upgrade.json", up, sizeof up);
  snprintf(text, sizeof text, "{\"pid\": %d, \"digest\": \"%s\", \"previous\": \"%s\"}\n", (int)getpid(), digest, "ferryd.prev");
  if ((rc = fy_file_write_atomic(up, text, strlen(text), 0600)) != FY_OK) {
    rename(prev, a->self_path);
    snprintf(err, errlen, "cannot write %s: %s", up, fy_strerror(rc));
    return rc;
  }
  snprintf(pidbuf, sizeof pidbuf, "%d", (int)getpid());
  snprintf(tbuf, sizeof tbuf, "%d", timeout_s);
  pid_t w = fork();
  if (w == 0) {
    char *w_argv[] = {prev, "__watchdog", pidbuf, up, tbuf, a->self_path, prev, (char *)cfg, NULL};
    execv(prev, w_argv);
    _exit(127);
  }
  if (w < 0) {
    unlink(up);
    rename(prev, a->self_path);
    snprintf(err, errlen, "cannot start the upgrade watchdog");
    return FY_EIO;
  }
  a->watchdog_pid = (int)w;
  fy_log("info", "new ferryd %.19s... installed as %s (the old one is %s); watchdog pid %d, %d s to confirm", digest,
         a->self_path, prev, (int)w, timeout_s);
  return FY_OK;
}

static void do_exec(uv_timer_t *t) {
  fy_agent *a = t->data;
  a->exec_timer = NULL;
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
  for (fy_app *app = a->apps; app; app = app->next)
    if (app->deploying) { /* a deploy started in the meantime: after it */
      fy_upgrade_exec_later(a, 1000);
      return;
    }
  json_t *apps = json_array();
  for (fy_app *app = a->apps; app; app = app->next) {
    int pid = fy_app_pid(app);
    if (!pid) continue;
    for (int k = 0; k < 2; k++)
      if (app->out_fd[k] >= 0) fcntl(app->out_fd[k], F_SETFD, 0); /* the pipes survive the exec */
    json_array_append_new(apps, json_pack("{s:s, s:i, s:i, s:i, s:i, s:I}", "name", app->name, "pid", pid, "fd", app->out_fd[0],
                                          "err_fd", app->out_fd[1],
                                          "restarts", app->restarts, "age_ms",
                                          (json_int_t)(uv_now(a->loop) - app->started_ms)));
  }
  size_t napps = json_array_size(apps);
  json_t *h = json_pack("{s:i, s:i, s:o}", "pid", (int)getpid(), "watchdog", a->watchdog_pid, "apps", apps);
  char path[4300], *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
  json_decref(h);
  agent_file(a, "handoff.json", path, sizeof path);
  if (!text || fy_file_write_atomic(path, text, strlen(text), 0600) != FY_OK) fy_log("warn", "cannot write %s", path);
  free(text);
  fy_log("info", "re-executing %s (%zu running app(s) handed over)", a->self_path, napps);
  fflush(stderr);
  execv(a->self_path, a->argv);
  /* Still the old image: put the old binary back and carry on; the watchdog sees upgrade.json
   * gone and ends. */
  fy_log("warn", "cannot re-execute %s: %s; staying on the old agent", a->self_path, strerror(errno));
  char prev[4200];
  snprintf(prev, sizeof prev, "%s.prev", a->self_path);
  if (rename(prev, a->self_path) != 0) fy_log("warn", "cannot restore %s", prev);
  unlink(path);
  agent_file(a, "upgrade.json", path, sizeof path);
  unlink(path);
  for (fy_app *app = a->apps; app; app = app->next)
    for (int k = 0; k < 2; k++)
      if (app->out_fd[k] >= 0) fcntl(app->out_fd[k], F_SETFD, FD_CLOEXEC);
}

void fy_upgrade_exec_later(fy_agent *a, unsigned delay_ms) {
  if (a->stopping || a->exec_timer) return;
  uv_timer_t *t = calloc(1, sizeof *t);
  if (!t) return;
  uv_timer_init(a->loop, t);
  t->data = a;
  uv_timer_start(t, do_exec, delay_ms, 0);
  a->exec_timer = t;
}

void fy_upgrade_shutdown(fy_agent *a) {
  /* A stopped agent does not re-execute; the watchdog, which is not ours to stop, restores the
   * old binary when the new one does not answer. */
  if (a->exec_timer) uv_close((uv_handle_t *)a->exec_timer, (uv_close_cb)free);
  if (a->watchdog_reaper) uv_close((uv_handle_t *)a->watchdog_reaper, (uv_close_cb)free);
  a->exec_timer = a->watchdog_reaper = NULL;
}

/* --- the watchdog ------------------------------------------------------------------------ */

static int gone(pid_t pid) { return (kill(pid, 0) != 0 && errno == ESRCH) || fy_proc_dead((long)pid); }

int fy_watchdog_main(int argc, char **argv) {
  /* ferryd __watchdog PID UPGRADE_JSON TIMEOUT_S BIN PREV CONFIG */
  if (argc != 8) return 2;
  long pid = 0, timeout = 0;
  if (fy_parse_long(argv[2], 2, 1L << 22, &pid) != FY_OK || fy_parse_long(argv[4], 1, 3600, &timeout) != FY_OK) return 2;
  const char *up = argv[3], *bin = argv[5], *prev = argv[6], *cfg = argv[7];
  struct stat st;
  time_t deadline = time(NULL) + timeout;
  const char *why = NULL;
  setsid(); /* not in the agent's process group: a signal to it is not one to us */
  for (;;) {
    if (stat(up, &st) != 0) return 0; /* confirmed (or the upgrade was called off) */
    if (gone((pid_t)pid)) { why = "the new agent exited"; break; }
    if (time(NULL) >= deadline) { why = "the new agent did not answer in time"; break; }
    usleep(100000);
  }
  fprintf(stderr, "ferryd: watchdog: %s (%ld s); restoring %s and starting it\n", why, timeout, prev);
  /* The old binary goes back first: under systemd the kill below ends this process too (the
   * unit's main process died), and Restart=always must find the restored binary. */
  int restored = rename(prev, bin) == 0;
  if (!restored) fprintf(stderr, "ferryd: watchdog: cannot restore %s: %s\n", prev, strerror(errno));
  unlink(up);
  char handoff[4300];
  snprintf(handoff, sizeof handoff, "%s", up);
  char *slash = strrchr(handoff, '/');
  if (slash) {
    snprintf(slash + 1, sizeof handoff - (size_t)(slash + 1 - handoff), "handoff.json");
    unlink(handoff);
  }
  kill((pid_t)pid, SIGKILL);
  for (int i = 0; i < 50 && !gone((pid_t)pid); i++) usleep(100000);
  if (!restored) return 1;
  if (getenv("INVOCATION_ID")) return 0; /* systemd: Restart=always starts the restored binary */
  char *a_argv[] = {(char *)bin, "--config", (char *)cfg, NULL};
  execv(bin, a_argv);
  fprintf(stderr, "ferryd: watchdog: cannot start %s: %s\n", bin, strerror(errno));
  return 1;
}
