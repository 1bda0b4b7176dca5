/* ferryd's state: one per process, owned by main, reached from every handle through
 * container_of or handle->data (STYLE.md 10; no globals, STYLE.md 12). */
#ifndef FERRY_AGENT_AGENT_H
#define FERRY_AGENT_AGENT_H

#include <uv.h>

#include "config.h"
#include "facts.h"
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
} fy_agent;

/* Prints one log line to stderr: "ferryd: LEVEL message". */
void fy_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Binds and listens; prints the readiness line with the real port. */
int fy_server_start(fy_agent *a, char *err, size_t errlen) FY_WUR;
/* Stops accepting and closes every connection. */
void fy_server_stop(fy_agent *a);

#endif
