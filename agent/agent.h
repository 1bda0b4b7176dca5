/* ferryd's state: one per process, owned by main, reached from every handle through
 * container_of or handle->data (no globals: docs/conventions.md). */
#ifndef FERRY_AGENT_AGENT_H
#define FERRY_AGENT_AGENT_H

#include <uv.h>

#include "config.h"
#include "apps.h"
#include "facts.h"
#include "log.h"
#include "trust.h"
#include "upgrade.h"
#include "ferry/store.h"
#include "ferry/session.h"

#include <stddef.h>
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct fy_agent_conn fy_agent_conn;

typedef struct fy_agent {
  uv_loop_t *loop;
  fy_agent_config cfg;
  fy_facts facts;
  fy_tls_conf *tls;
  char name[64];           /* from the certificate */
  uv_tcp_t listener;
  uv_pipe_t local_listener; /* STATE_DIR/ferryd.sock (ferryd --import), when local_open */
  int local_open;
  int listener_open;        /* the TCP listener (not with listen: none) */
  struct fy_broker *broker; /* broker: the connection to the fleet's MQTT broker, NULL without */
  uv_signal_t sigterm, sigint;
  uint64_t started_ms;
  int nconns;
  fy_frame_budget frames;  /* limits.frame_memory, shared by every connection's decoder */
  fy_agent_conn *conns;    /* doubly linked, for shutdown */
  uint64_t last_conn_id;   /* ids start at 1; 0 is "none" */
  struct fy_deploy *deploys; /* every deploy not yet freed, for shutdown */
  int stopping;
  int recovering;          /* apps are still being recovered (fy_apps_recover) */
  uv_timer_t *recover_timer;
  char (*recover_names)[64];
  size_t nrecover, recover_next;
  unsigned long accepted, refused;
  fy_store store;          /* STATE/blobs/sha256 */
  fy_app *apps;
  fy_trust trust;          /* release signature policy */
  fy_cgroup_sys cgroups;
  fy_digest *failed_keep;  /* the last failed deploy's blobs, a cache the GC keeps (release.h) */
  size_t nfailed_keep;   /* the hierarchies resource limits go to (cgroup.h) */
  /* self-upgrade (upgrade.c) */
  const char *config_path;
  int argc;
  char **argv;
  char self_path[4096];    /* this binary, from /proc/self/exe */
  char self_digest[FY_DIGEST_STR];
  json_t *handoff;         /* from the previous image of this process, until the apps are recovered */
  int watchdog_pid;
  uv_timer_t *watchdog_reaper; /* reaps the watchdog the previous image forked, until it ends */
  uv_timer_t *exec_timer;      /* the re-exec into a new agent, once its result is sent */
  int upgrade_pending;     /* confirmed by the first pusher hello */
} fy_agent;


/* A revocation list a pusher brought (or STATE/crl.pem at start-up): kept when it is the fleet
 * CA's and newer than the one in use. FY_ECERT with the reason otherwise. */
int fy_agent_take_crl(fy_agent *a, const char *pem, char *err, size_t errlen) FY_WUR;

/* What message handlers outside server.c may do with their connection. */
int fy_conn_send_json(fy_agent_conn *c, uint8_t type, const json_t *obj);
int fy_conn_send(fy_agent_conn *c, uint8_t type, const void *p, size_t n); /* bytes: output frames */
void fy_conn_fail(fy_agent_conn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* fy_conn_fail, then FY_ECANCELED: what a handler that refuses its frame returns. */
int fy_conn_refuse(fy_agent_conn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void fy_conn_hold(fy_agent_conn *c, int hold); /* nonzero: no idle timeout (long agent-side work) */
/* A handler that returned FY_FRAME_PAUSE (its frame's work is on a worker) ends the pause: the
 * frames that waited are delivered, then the socket is read again. */
void fy_conn_resume(fy_agent_conn *c);
/* A handler that cannot act on its frame yet keeps it (a copy) and pauses the connection:
 * return fy_conn_defer(c, f). fy_conn_redispatch later handles the kept frame as if it had just
 * arrived, then reads on. */
int fy_conn_defer(fy_agent_conn *c, const fy_frame *f);
void fy_conn_redispatch(fy_agent_conn *c);
const char *fy_conn_peer(const fy_agent_conn *c);
const char *fy_conn_pusher(const fy_agent_conn *c); /* the pusher's certificate name */
void fy_conn_abort(fy_agent_conn *c);                /* closes now, without a word */
fy_agent *fy_conn_agent(fy_agent_conn *c);
/* Connections are referred to by id past the callback that saw them (memory is reused; ids are
 * not): fy_conn_find answers NULL once the connection is closing or gone. */
uint64_t fy_conn_id(const fy_agent_conn *c);
unsigned fy_conn_version(const fy_agent_conn *c); /* negotiated in hello; 0 before */
fy_agent_conn *fy_conn_find(fy_agent *a, uint64_t id);
struct fy_deploy **fy_conn_deploy(fy_agent_conn *c);
struct fy_exec **fy_conn_exec(fy_agent_conn *c);
size_t fy_conn_unsent(const fy_agent_conn *c); /* bytes queued to the peer, not yet written */
/* A deploy that ends: no connection, open or closing, points at it any more. */
void fy_conn_forget_deploy(fy_agent *a, const struct fy_deploy *d);

/* Message handlers (deploy.c). Return FY_OK, or FY_ECANCELED after fy_conn_fail. */
int fy_deploy_on_plan(fy_agent_conn *c, const fy_frame *f);
int fy_deploy_on_blob_begin(fy_agent_conn *c, const fy_frame *f);
int fy_deploy_on_blob(fy_agent_conn *c, const fy_frame *f);
int fy_deploy_on_commit(fy_agent_conn *c, const fy_frame *f);
int fy_request_on_request(fy_agent_conn *c, const fy_frame *f);
/* stop, start, restart and remove (lifecycle.c): answers with a result; ap may be NULL. */
struct fy_request_msg;
int fy_lifecycle_request(fy_agent_conn *c, const struct fy_request_msg *rq, fy_app *ap);
/* ferry exec (exec.c): a command inside the running app, its output in output frames, its stdin
 * from input frames, its exit status in the result. */
int fy_exec_request(fy_agent_conn *c, const struct fy_request_msg *rq, fy_app *ap);
int fy_exec_on_input(fy_agent_conn *c, const fy_frame *f);
void fy_exec_conn_closed(fy_agent_conn *c); /* the pusher left: the command is killed */
/* The connection is going away: a deploy keeps its blobs' partials for a resume. */
void fy_deploy_conn_closed(fy_agent_conn *c);
/* Shutdown: deploys waiting on a timer end now ("failed", FY_ECANCELED); the others end in the
 * callback they wait for. */
void fy_deploys_shutdown(fy_agent *a);

/* ferryd --check-state: prints each broken invariant; 0 when none. Read-only. */
int fy_check_state(fy_agent *a, int verify);

/* Binds and listens; prints the readiness line with the real port. */
int fy_server_start(fy_agent *a, char *err, size_t errlen) FY_WUR;
/* Stops accepting and closes every connection. */
void fy_server_stop(fy_agent *a);

#endif
