/* ferryd's state: one per process, owned by main, reached from every handle through
 * container_of or handle->data (STYLE.md 10; no globals, STYLE.md 12). */
#ifndef FERRY_AGENT_AGENT_H
#define FERRY_AGENT_AGENT_H

#include <uv.h>

#include "config.h"
#include "apps.h"
#include "facts.h"
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
  uv_signal_t sigterm, sigint;
  uint64_t started_ms;
  int nconns;
  fy_agent_conn *conns;    /* doubly linked, for shutdown */
  int stopping;
  unsigned long accepted, refused;
  fy_store store;          /* STATE/blobs/sha256 */
  fy_app *apps;
  fy_trust trust;          /* release signature policy */
  /* self-upgrade (upgrade.c) */
  const char *config_path;
  int argc;
  char **argv;
  char self_path[4096];    /* this binary, from /proc/self/exe */
  char self_digest[FY_DIGEST_STR];
  json_t *handoff;         /* from the previous image of this process, until the apps are recovered */
  int watchdog_pid;
  int upgrade_pending;     /* confirmed by the first pusher hello */
} fy_agent;

/* Prints one log line to stderr: "ferryd: LEVEL message". */
void fy_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What message handlers outside server.c may do with their connection. */
int fy_conn_send_json(fy_agent_conn *c, uint8_t type, const json_t *obj);
void fy_conn_fail(fy_agent_conn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void fy_conn_hold(fy_agent_conn *c, int hold); /* nonzero: no idle timeout (long agent-side work) */
const char *fy_conn_peer(const fy_agent_conn *c);
const char *fy_conn_pusher(const fy_agent_conn *c); /* the pusher's certificate name */
void fy_conn_abort(fy_agent_conn *c);                /* closes now, without a word */
fy_agent *fy_conn_agent(fy_agent_conn *c);
int fy_agent_has_conn(fy_agent *a, const fy_agent_conn *c); /* still open? */
struct fy_deploy **fy_conn_deploy(fy_agent_conn *c);

/* Message handlers (deploy.c). Return FY_OK, or FY_ECANCELED after fy_conn_fail. */
int fy_deploy_on_plan(fy_agent_conn *c, const fy_frame *f);
int fy_deploy_on_blob_begin(fy_agent_conn *c, const fy_frame *f);
int fy_deploy_on_blob(fy_agent_conn *c, const fy_frame *f);
int fy_deploy_on_commit(fy_agent_conn *c, const fy_frame *f);
int fy_request_on_request(fy_agent_conn *c, const fy_frame *f);
/* The connection is going away: a deploy keeps its blobs' partials for a resume. */
void fy_deploy_conn_closed(fy_agent_conn *c);

/* ferryd --check-state: prints each broken invariant; 0 when none. Read-only. */
int fy_check_state(fy_agent *a, int verify);

/* Binds and listens; prints the readiness line with the real port. */
int fy_server_start(fy_agent *a, char *err, size_t errlen) FY_WUR;
/* Stops accepting and closes every connection. */
void fy_server_stop(fy_agent *a);

#endif
