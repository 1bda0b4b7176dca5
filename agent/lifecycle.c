/* The app verbs a pusher asks for: stop, start, restart and remove (ferry stop | start | restart
 * | rm). Each answers with one result frame once the node's state is final.
 *
 *   stop     the process is stopped and STATE/apps/<app>/stopped written: the app stays stopped
 *            across agent restarts until start, a deploy or a rollback starts it again;
 *   start    starts current (at once: "started" means the process is running, not that it is
 *            healthy; a push's settle window is for that);
 *   restart  stop, then start;
 *   remove   stop, current and previous cleared, the releases and the blobs no other release
 *            uses collected, then everything under STATE/apps/<app> but volumes/ and the signed
 *            version counter removed on a worker; with purge those go too.
 *
 * An app is owned by one thing at a time: a deploy, a manual rollback or a removal sets
 * app->deploying (removal also app->removing, so that plans wait for it to finish). */
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
#include "applog.h"
#include "release.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"
#include "ferry/unpack.h"
#include "ferry/wire.h"
#include "ferry/work.h"

struct verb {
  fy_agent *a;
  uint64_t conn;                 /* may be gone by the time the work is done */
  char app[FY_APP_NAME_MAX];     /* found again by name */
  fy_request_op op;
  int purge;
  int rc;
  char msg[400];
  char dir[4200];                /* remove: STATE/apps/<app> */
};

#define refuse fy_conn_refuse

static fy_result done_result(fy_request_op op) {
  switch (op) {
  case FY_REQ_STOP: return FY_RESULT_STOPPED;
  case FY_REQ_START: return FY_RESULT_STARTED;
  case FY_REQ_RESTART: return FY_RESULT_RESTARTED;
  default: return FY_RESULT_REMOVED;
  }
}

/* The answer, to the connection if it is still there; frees v. */
static void answer(struct verb *v) {
  fy_agent_conn *c = fy_conn_find(v->a, v->conn);
  fy_app *app = fy_app_find(v->a, v->app);
  const char *release = app ? app->release : "", *previous = app ? app->previous : "";
  fy_result res = v->rc == FY_OK ? done_result(v->op) : FY_RESULT_FAILED;
  fy_log(v->rc == FY_OK ? "info" : "warn", "app %s: %s%s%s", v->app, fy_result_name(res), v->msg[0] ? ": " : "", v->msg);
  if (c) {
    fy_result_msg rm = {.result = res, .app = v->app, .code = v->rc, .message = v->msg, .release = release, .previous = previous};
    json_t *j = fy_result_encode(&rm);
    fy_conn_hold(c, 0);
    if (!j || fy_conn_send_json(c, FY_FT_RESULT, j) != FY_OK) fy_log("warn", "app %s: cannot send the result", v->app);
    json_decref(j);
  }
  free(v);
}

/* --- stop, start, restart ----------------------------------------------------------------- */

static void start_now(fy_app *app, struct verb *v) {
  if (fy_app_start(app) != FY_OK) {
    v->rc = FY_EEXEC;
    snprintf(v->msg, sizeof v->msg, "%s", app->exec_error);
  }
}

static void verb_stopped(fy_app *app, void *ud) {
  struct verb *v = ud;
  app->deploying = 0;
  if (v->op == FY_REQ_STOP) {
    if ((v->rc = fy_app_set_user_stopped(app, 1)) != FY_OK)
      snprintf(v->msg, sizeof v->msg, "stopped, but cannot record it (it starts again with the agent): %s", fy_strerror(v->rc));
  } else if (!v->a->stopping) {
    app->restarts = 0;
    app->backoff_ms = 0;
    start_now(app, v);
  } else {
    v->rc = FY_ECANCELED;
    snprintf(v->msg, sizeof v->msg, "the agent is shutting down");
  }
  fy_app_released(app);
  answer(v);
}

/* --- remove ------------------------------------------------------------------------------- */

/* On the worker: everything in the app's directory but its volumes and version counter, or
 * (purge) the directory itself. */
static void remove_work(void *ud) {
  struct verb *v = ud;
  if (v->purge) {
    v->rc = fy_remove_path(v->dir);
    if (v->rc != FY_OK) fy_text_fmt(v->msg, sizeof v->msg, "cannot remove %s: %s", v->dir, fy_strerror(v->rc));
    return;
  }
  DIR *d = opendir(v->dir);
  if (!d) {
    if (errno != ENOENT) {
      v->rc = fy_err_from_errno(errno);
      fy_text_fmt(v->msg, sizeof v->msg, "cannot read %s: %s", v->dir, strerror(errno));
    }
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (strcmp(e->d_name, "volumes") == 0 || strcmp(e->d_name, "version") == 0) continue;
    char path[4500];
    if (fy_path_fmt(path, sizeof path, "%s/%s", v->dir, e->d_name) != FY_OK) continue;
    int rc = fy_remove_path(path);
    if (rc != FY_OK && v->rc == FY_OK) {
      v->rc = rc;
      fy_text_fmt(v->msg, sizeof v->msg, "cannot remove %s: %s", path, fy_strerror(rc));
    }
  }
  closedir(d);
}

static void remove_done(void *ud) {
  struct verb *v = ud;
  fy_app *app = fy_app_find(v->a, v->app);
  if (app) {
    app->removing = 0;
    app->deploying = 0;
    app->user_stopped = 0;
    app->restarts = 0;
    app->state = FY_APP_STOPPED;
    app->exit_reason[0] = app->exec_error[0] = app->health_last_failure[0] = '\0';
    fy_app_released(app);
  }
  if (v->rc == FY_OK)
    snprintf(v->msg, sizeof v->msg, "%s", v->purge ? "removed with its volumes and version counter" : "removed (its volumes are kept)");
  answer(v);
}

static void remove_after_gc(void *ud) {
  struct verb *v = ud;
  if (fy_work_queue(v->a->loop, remove_work, remove_done, v) != FY_OK) {
    v->rc = FY_ENOMEM;
    snprintf(v->msg, sizeof v->msg, "cannot queue the removal");
    remove_done(v);
  }
}

static void remove_stopped(fy_app *app, void *ud) {
  struct verb *v = ud;
  /* current and previous go first: from here on, a kill -9 leaves an app with no release, and
   * the next GC (or a second rm) removes the rest. */
  int rc = fy_app_switch(app, "", "");
  if (rc != FY_OK) {
    app->removing = app->deploying = 0;
    v->rc = rc;
    snprintf(v->msg, sizeof v->msg, "cannot clear the current release: %s", fy_strerror(rc));
    fy_app_released(app);
    answer(v);
    return;
  }
  if (app->log_fd >= 0) close(app->log_fd); /* the log goes with the app, and whoever follows it */
  app->log_fd = -1;
  fy_applog_unfollow_all(app, "the app was removed (ferry rm)");
  app->volumes_seen_ms = 0;
  app->log_size = 0;
  app->version = 0;
  app->deploying = 0; /* the GC collects releases of apps nobody deploys */
  fy_log("info", "app %s: removing%s", app->name, v->purge ? " with its volumes" : "");
  fy_app_gc(v->a, remove_after_gc, v);
}

/* --- the request ------------------------------------------------------------------------- */

int fy_lifecycle_request(fy_agent_conn *c, const fy_request_msg *rq, fy_app *ap) {
  fy_agent *a = fy_conn_agent(c);
  char dir[4200];
  struct stat st;
  const char *op = fy_request_op_name(rq->op);
  fy_app_dir(a, rq->app, dir, sizeof dir);
  int purge_only = rq->op == FY_REQ_REMOVE && rq->purge && ap && !ap->release[0] && lstat(dir, &st) == 0;
  if (!ap || (!ap->release[0] && !purge_only)) return refuse(c, FY_ENOAPP, "no app '%s' on %s", rq->app, a->name);
  if (ap->deploying) return refuse(c, FY_EBUSY, "a deploy or another request for %s is in progress; %s it after that", ap->name, op);
  if (rq->op == FY_REQ_REMOVE && a->recovering)
    return refuse(c, FY_EBUSY, "the agent is still recovering its apps; ferry rm again in a moment");
  if (a->stopping) return refuse(c, FY_ECANCELED, "the agent is shutting down");
  struct verb *v = calloc(1, sizeof *v);
  if (!v) return refuse(c, FY_ENOMEM, "out of memory");
  v->a = a;
  v->conn = fy_conn_id(c);
  v->op = rq->op;
  v->purge = rq->purge;
  snprintf(v->app, sizeof v->app, "%s", ap->name);
  snprintf(v->dir, sizeof v->dir, "%s", dir);
  int running = ap->proc_alive || ap->state == FY_APP_RUNNING || ap->state == FY_APP_STARTING;
  fy_log("info", "app %s: %s, asked by %s", ap->name, op, fy_conn_peer(c));
  switch (rq->op) {
  case FY_REQ_START:
    if (running && ap->want_running) {
      snprintf(v->msg, sizeof v->msg, "already running");
    } else {
      uv_timer_stop(&ap->restart_timer);
      ap->restarts = 0;
      ap->backoff_ms = 0;
      start_now(ap, v);
    }
    answer(v);
    return FY_OK;
  case FY_REQ_STOP:
    if (!running) snprintf(v->msg, sizeof v->msg, "was not running");
    /* fall through */
  case FY_REQ_RESTART:
    ap->deploying = 1;
    fy_conn_hold(c, 1);
    fy_app_stop(ap, verb_stopped, v);
    return FY_OK;
  default:
    ap->deploying = ap->removing = 1;
    fy_conn_hold(c, 1);
    fy_app_stop(ap, remove_stopped, v);
    return FY_OK;
  }
}
