/* The supervisor: one record per app on the device, its process started from an exec plan
 * (launch.h), watched, restarted with backoff, stopped, taken over across an agent re-exec, and
 * closed at shutdown. The releases on disk are release.h's, the log applog.h's. */
#ifndef FERRY_AGENT_APPS_H
#define FERRY_AGENT_APPS_H

#include <jansson.h>
#include <uv.h>

#include "cgroup.h"
#include "ferry/error.h"
#include "ferry/wire.h"

#define FY_LOG_CAP (1024u * 1024u) /* the log rotates to log.1 past this */
#define FY_VOLUME_SIZES_MS 30000u  /* volume sizes in the facts are at most this old: every hello
                                    * does not walk every volume */

struct fy_agent;

typedef enum { FY_APP_STOPPED, FY_APP_STARTING, FY_APP_RUNNING, FY_APP_EXITED, FY_APP_FAILED, FY_APP_RECOVERING, FY_APP_UNHEALTHY } fy_app_state;

#define FY_HEALTH_RETRIES 3          /* failed checks in a row that make an app unhealthy (Docker's default) */
#define FY_HEALTH_TIMEOUT_MS 10000   /* one check's answer */

typedef struct fy_app fy_app;
/* Told when the process exits (deploys watch their settle window with it). */
typedef void (*fy_app_exit_cb)(fy_app *app, int64_t exit_status, int term_signal, void *ud);
typedef void (*fy_app_stopped_cb)(fy_app *app, void *ud);
#define FY_APP_STOP_WAITERS 4

struct fy_outpipe;
struct fy_hcheck;

struct fy_app {
  struct fy_agent *agent;
  char name[FY_APP_NAME_MAX];
  char release[FY_RELEASE_ID_MAX];  /* what current names, "" if none */
  char previous[FY_RELEASE_ID_MAX];
  uint64_t version;                 /* current's signed version (its run.json), 0 if unsigned */
  fy_app_state state;
  int restarts;
  int64_t last_exit;
  int last_signal;
  int deploying;                    /* a deploy owns this app */
  int removing;                     /* ferry rm is under way: plans and requests wait for it */
  int user_stopped;                 /* ferry stop: not started again until start, a deploy or a rollback
                                     * (STATE/apps/<app>/stopped, so across agent restarts too) */
  /* What current runs, from its run.json: read again whenever current names another release. */
  char meta_release[FY_RELEASE_ID_MAX];
  char manifest[FY_DIGEST_STR];     /* its manifest digest */
  char options[FY_DIGEST_STR];      /* the plan's options digest (fy_plan_options_digest), "" if older */
  uint64_t transfer;                /* the connection id of a deploy still receiving blobs, or 0 */
  uint64_t plan_waiting;            /* a connection whose plan waits for that transfer to end */
  int want_running;
  uv_process_t proc;
  int proc_alive;
  int proc_closing;                 /* proc is closing: no spawn into it until its close callback */
  uv_timer_t restart_timer;
  unsigned backoff_ms;
  uint64_t started_ms;
  int log_fd;
  uint64_t log_size;
  fy_app_exit_cb on_exit;
  void *on_exit_ud;
  char exec_error[256];             /* why the last start failed, if it did */
  char exit_reason[160];            /* why the kernel ended it ("out of memory (limit 64 MiB)"), or "" */
  int stop_signal;                  /* the image's StopSignal (SIGTERM by default) */
  uint64_t stop_timeout_ms;         /* then SIGKILL */
  fy_runspec limits;                /* the resources it asked for */
  fy_cgroup_app cg;                 /* where they are enforced */
  uint64_t oom_kills;               /* the memory cgroup's count when it started */
  int out_fd[2];                    /* read ends of the workload's stdout and stderr pipes, -1 if none */
  struct fy_follower *followers;    /* ferry logs -f connections (applog.c) */
  json_t *volumes_seen;             /* its volumes' sizes as last measured (owned), for the facts */
  uint64_t volumes_seen_ms;         /* when (loop time); measured again after FY_VOLUME_SIZES_MS */
  int adopted_pid;                  /* a workload taken over across an agent re-exec, 0 if none */
  uv_timer_t adopt_timer;           /* polls waitpid for it (libuv only waits for what it spawned) */
  int adopt_timer_open;
  /* A stop in progress: SIGTERM sent, SIGKILL after the grace on stop_timer; everyone who asked
   * is told once the process is gone. */
  uv_timer_t stop_timer;
  int stop_pending;
  int nstop_waiters;
  struct { fy_app_stopped_cb done; void *ud; } stop_waiters[FY_APP_STOP_WAITERS];
  struct fy_outpipe *pipes;         /* output pipes still open (a restart's old one drains to EOF) */
  /* Supervision after the settle window (run.json of current): a health check every interval,
   * FY_HEALTH_RETRIES failures in a row make it unhealthy, and the restart policy decides. */
  json_t *health_argv;              /* owned; NULL when the release has no health command */
  char health_text[FY_HEALTH_CMD_MAX];
  int health_port;
  uint64_t health_interval_ms;
  int restart_policy;               /* fy_restart */
  uv_timer_t health_timer;
  struct fy_hcheck *hcheck;         /* the check in flight */
  int health_failures;              /* in a row */
  int health_known;                 /* a check has answered since the start */
  char health_last_failure[400];
  /* Lifetime (one rule for every object holding handles): the handles open, and freed in the
   * last close callback once closing is set (fy_app_close). */
  int open_handles;
  int closing;
  fy_app *next;
};


/* Starts recovering every app under STATE/apps, after the listener is up: each gets a record in
 * state FY_APP_RECOVERING at once, then one app per loop turn (so status answers throughout)
 * has its stale partial releases removed, current/previous read, a workload an earlier agent
 * left behind taken over or stopped, and its current release started. a->recovering is set
 * until the last one is done; then ferryd logs "ready". */
int fy_apps_recover(struct fy_agent *a) FY_WUR;
/* A plan or a request for an app not recovered yet: it is recovered now, before anything else
 * touches it. */
void fy_app_recover_now(fy_app *app);
/* Shutdown during recovery: the apps not reached stay as they are on disk. */
void fy_apps_recover_cancel(struct fy_agent *a);
fy_app *fy_app_find(struct fy_agent *a, const char *name);
fy_app *fy_app_get(struct fy_agent *a, const char *name); /* creates the record if missing */

/* Starts the current release; what ran before must be stopped (FY_EBUSY otherwise), and nothing
 * starts once the agent is shutting down (FY_ECANCELED). FY_EEXEC with app->exec_error when it
 * cannot start at all. Blocking: reads run.json and the image's files, writes the pid file. */
int fy_app_start(fy_app *app) FY_WUR;
/* The health command's exec plan: argv (the image's or the plan's) run inside the running app,
 * the way the app runs (contained: in its namespaces, root, cgroups, as its user with its
 * capabilities and filter). Blocking like fy_app_start. */
struct fy_launch_plan;
int fy_app_health_plan(fy_app *app, const json_t *argv, struct fy_launch_plan *plan, char *err, size_t errlen) FY_WUR;
/* Is a socket listening on port held by the app's own processes (its /proc/net/tcp{,6} inode
 * among the fds of the app's process tree)? Not a neighbour that happens to hold the port. */
int fy_app_owns_port(fy_app *app, int port);

/* Stops the process (SIGTERM, then SIGKILL after a grace period); calls done (if not NULL) once
 * it is gone, at once when nothing runs. A stop already in progress gains one more waiter (at most
 * FY_APP_STOP_WAITERS; past that done is called at once, with a warning). */
void fy_app_stop(fy_app *app, fy_app_stopped_cb done, void *ud);

/* Shutdown: stops every app and frees each once its process is gone and no deploy holds it. */
void fy_apps_shutdown(struct fy_agent *a);
/* A deploy let go of the app: during shutdown that may be the last thing it waited for. */
void fy_app_released(fy_app *app);

/* Reads app->manifest and app->options from current's run.json unless they are for it already. */
void fy_app_meta(fy_app *app);
/* Records ferry stop (nonzero) or its end on disk and in app->user_stopped. */
int fy_app_set_user_stopped(fy_app *app, int stopped) FY_WUR;

/* [{name, release, previous, state, restarts, manifest, options}] */
json_t *fy_apps_json(struct fy_agent *a);
const char *fy_app_state_name(fy_app_state s);

/* Takes over a workload this process's previous image (same PID, before an agent upgrade's
 * exec) started: pid must be our child; out_fd, err_fd the read ends of its stdout and stderr
 * pipes (-1: none; an older agent handed over one pipe for both). */
int fy_app_adopt(fy_app *app, int pid, int out_fd, int err_fd, int restarts, uint64_t age_ms) FY_WUR;
/* A process that is gone, or a zombie (a killed orphan stays one until its new parent reaps it,
 * which some container inits never do: dead is dead). */
int fy_proc_dead(long pid);
/* The pid of the running workload, 0 when none. */
int fy_app_pid(const fy_app *app);

/* Cross-file internal (applog.c): one of the app's handles finished closing. */
void fy__app_handle_done(fy_app *app);

#endif
