/* A question to many nodes on one loop: hello (op, app) -> facts -> optionally one request ->
 * one answer. Status, logs, rollback, a rollout's discovery and its revert are all this.
 *
 * At most `max_inflight` connections are open at once; the rest wait their turn. */
#ifndef FERRY_PUSHER_ASK_H
#define FERRY_PUSHER_ASK_H

#include "conn.h"

typedef struct fy_ask fy_ask;
typedef struct fy_ask_batch fy_ask_batch;

struct fy_ask {
  fy_conn conn;
  fy_ask_batch *batch;
  size_t index;            /* in the batch */
  json_t *facts;           /* owned; NULL until the agent answered the hello */
  json_t *answer;          /* owned; the reply to the request */
  char peer[FY_TLS_NAME_MAX];
  char tls[16];           /* the TLS version the handshake agreed on ("TLSv1.3") */
  int skipped;             /* the filter said no after the facts */
  int following;           /* output frames have come (logs --follow) */
  int err;                 /* FY_OK when the node answered what was asked */
  char msg[600];
};

struct fy_ask_batch {
  uv_loop_t *loop;
  fy_tls_conf *tls;
  uint64_t timeout_ms;
  const char *op, *app;    /* the hello's */
  json_t *request;         /* sent after the facts when not NULL (borrowed) */
  /* After the facts: 0 skips the node (it is closed, skipped = 1). NULL: every node. */
  int (*filter)(fy_ask_batch *b, fy_ask *a);
  void (*on_node)(fy_ask_batch *b, fy_ask *a);   /* each node's end; may be NULL */
  void (*on_all)(fy_ask_batch *b);               /* after the last node; may be NULL */
  /* Output frames (logs --follow): each one's bytes after the stream byte. After the first, the
   * connection has no idle timeout. NULL: an output frame is the agent's error. */
  void (*on_output)(fy_ask_batch *b, fy_ask *a, int stream, const char *p, size_t n);
  void *ud;
  fy_ask *asks;
  const fy_target *targets;
  size_t n, next, running, done;
  size_t max_inflight;
};

/* Starts asking n targets (the batch keeps pointers to targets and fills asks[n]). Returns at
 * once; the loop does the work. */
void fy_ask_batch_start(fy_ask_batch *b, fy_ask *asks, const fy_target *targets, size_t n);
/* Frees facts and answers. */
void fy_ask_batch_free(fy_ask_batch *b);
/* The node's name: its certificate's, else the target's, else the address. */
const char *fy_ask_name(const fy_ask *a);

/* The same batch through the fleet's broker (broker: in the fleet file; cc's targets its nodes):
 * fills asks as fy_ask_batch_start would (facts from each node's signed status, the answer from
 * its signed reply), blocking, within cc->timeout_ms. b->request must be set. FY_OK once the
 * asks are filled (each with its own error); otherwise the reason was printed. */
struct fy_cli_common;
int fy_broker_ask_run(struct fy_cli_common *cc, fy_ask_batch *b, fy_ask *asks) FY_WUR;

#endif
