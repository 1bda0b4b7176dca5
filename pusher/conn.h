/* One pusher-to-agent connection on a libuv loop: resolve, connect, then the shared stream
 * (net/: TLS, frames, the conversation, writes, counted close).
 *
 * The owner embeds fy_conn, fills ops, and calls fy_conn_start. Exactly one on_done call
 * follows, after every handle is closed and the name lookup is over; the owner may free the
 * memory from there. */
#ifndef FERRY_PUSHER_CONN_H
#define FERRY_PUSHER_CONN_H

#include <uv.h>

#include "ferry/msg.h"
#include "ferry/stream.h"
#include "target.h"

typedef struct fy_conn fy_conn;

typedef struct fy_conn_ops {
  void (*on_ready)(fy_conn *c);                       /* TLS up: send the hello */
  int (*on_frame)(fy_conn *c, const fy_frame *f);     /* negative: close with that error */
  void (*on_writable)(fy_conn *c);                    /* output drained below the low mark */
  void (*on_done)(fy_conn *c, int err, const char *msg);
} fy_conn_ops;

struct fy_conn {
  fy_stream s;          /* the TCP handle, timer, TLS session, conversation and writes */
  uv_loop_t *loop;
  fy_target target;
  const fy_conn_ops *ops;
  void *ud;
  fy_tls_conf *tls;
  uv_getaddrinfo_t gai;
  int resolving;        /* the lookup holds the connection until its callback */
  int stream_closed;
  uv_connect_t connect;
  uint64_t timeout_ms;
  int closing;
  int err;
  char msg[512];
};

/* Starts connecting. timeout_ms bounds connect + handshake and then every idle gap. */
void fy_conn_start(fy_conn *c, uv_loop_t *loop, const fy_target *t, fy_tls_conf *tls,
                   const fy_conn_ops *ops, void *ud, uint64_t timeout_ms);

/* Queues a frame and flushes. FY_EBUSY when the TLS buffer is full (wait for on_writable). */
int fy_conn_send(fy_conn *c, uint8_t type, const void *p, size_t n) FY_WUR;
int fy_conn_send_json(fy_conn *c, uint8_t type, const json_t *obj) FY_WUR;

/* Closes; err FY_OK for a normal end. msg may be NULL. Idempotent. */
void fy_conn_close(fy_conn *c, int err, const char *msg);

#endif
