/* One ferry connection on a libuv loop, the same for ferryd (accepted) and ferry (connected):
 * the TCP handle, one timer, the TLS session with its frame decoder, the conversation's phase
 * (ferry/conv.h), a write queue with a memory cap, and a counted close.
 *
 *   fy_stream_init      the handles exist (they must be closed: fy_stream_close)
 *   fy_stream_start     the TCP connection is there: TLS begins, reading starts
 *   fy_stream_send*     a frame, checked against the conversation, queued, written
 *   fy_stream_end       an error frame with the reason when TLS is up, then close once the
 *                       peer had its chance to read it
 *   fy_stream_close     close now; ops->on_closed once both handles are closed
 *
 * Lifetime: the owner embeds fy_stream and frees it from ops->on_closed, never before (the
 * memory holds the handles). Frames reach ops->on_frame; one that returns FY_FRAME_PAUSE stops
 * delivery and reading until fy_stream_resume. Every failure of the stream itself reaches
 * ops->on_error once, with a code and a message a person can read; the owner then ends or closes. */
#ifndef FERRY_STREAM_H
#define FERRY_STREAM_H

#include <uv.h>

#include "ferry/conv.h"
#include "ferry/msg.h"
#include "ferry/session.h"

#define FY_STREAM_READ_BUF 65536

typedef struct fy_stream fy_stream;

typedef struct fy_stream_ops {
  int (*on_frame)(fy_stream *s, const fy_frame *f); /* FY_OK, FY_FRAME_PAUSE, or negative: stop */
  /* set instead of on_frame: a raw stream (TLS carrying another protocol, MQTT): the plaintext
   * as it comes, sent with fy_stream_send_bytes; no frames, no conversation */
  int (*on_bytes)(fy_stream *s, const uint8_t *p, size_t n);
  void (*on_ready)(fy_stream *s);                   /* the TLS handshake completed (optional) */
  void (*on_writable)(fy_stream *s);                /* queued output fell below low_water (optional) */
  void (*on_timeout)(fy_stream *s);                 /* the timer (fy_stream_timer) fired */
  /* the peer closed, a read or write failed, or TLS or the frames went wrong; code FY_EEOF for a
   * clean close after the handshake, FY_ECONN before it */
  void (*on_error)(fy_stream *s, int code, const char *msg);
  void (*on_closed)(fy_stream *s);                  /* both handles closed: the owner may free */
} fy_stream_ops;

struct fy_stream {
  union {             /* a TCP connection, or a local socket's (a plain session: tls NULL) */
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  uv_timer_t timer;
  uv_loop_t *loop;
  const fy_stream_ops *ops;
  void *ud;
  fy_session session;
  int session_ok;
  fy_conv conv;
  size_t writing;     /* handed to uv_write, not yet completed */
  size_t write_cap;   /* a send that would queue past this fails with FY_ETOOBIG (0: no cap) */
  size_t low_water;   /* on_writable when writing falls below this */
  int open_handles;
  int ending;         /* an error was sent: no more reading, close when the writes drain */
  int closing;
  int read_paused;
  int timer_again_on_read; /* every read restarts a repeating timer (an idle bound) */
  char rbuf[FY_STREAM_READ_BUF];
};

/* Cannot fail: initializes the TCP handle (a pipe's with _pipe) and the timer on loop. */
void fy_stream_init(fy_stream *s, uv_loop_t *loop, const fy_stream_ops *ops, void *ud);
void fy_stream_init_pipe(fy_stream *s, uv_loop_t *loop, const fy_stream_ops *ops, void *ud);
/* The TCP connection is established (accepted or connected): TLS and reading begin (a client
 * sends its hello at once). expected_peer: the name the peer's certificate must carry, or NULL.
 * tls NULL: a plain session (a local socket only). */
int fy_stream_start(fy_stream *s, fy_tls_conf *tls, const char *expected_peer, fy_side side) FY_WUR;

/* Queue a frame and write it. FY_EPROTO when the conversation does not allow it now (the reason
 * in s->conv.why); FY_EBUSY when TLS's output buffer is full (wait for on_writable);
 * FY_ETOOBIG past write_cap; FY_ECONN once ending or closing. */
int fy_stream_send(fy_stream *s, uint8_t type, const void *p, size_t n) FY_WUR;
int fy_stream_send_json(fy_stream *s, uint8_t type, const json_t *obj) FY_WUR;
/* A raw stream's bytes (see on_bytes): FY_EBUSY when TLS's output buffer lacks room. */
int fy_stream_send_bytes(fy_stream *s, const void *p, size_t n) FY_WUR;

/* After a frame callback returned FY_FRAME_PAUSE: deliver what waited, then read on. */
void fy_stream_resume(fy_stream *s);
/* (Re)arms the timer: ops->on_timeout after ms (repeating when repeat is set); 0 stops it. */
void fy_stream_timer(fy_stream *s, uint64_t ms, int repeat);

/* Tells the peer why (an error frame, when TLS is up), stops reading, and closes once the
 * writes drain or grace_ms pass. */
void fy_stream_end(fy_stream *s, int code, const char *msg, uint64_t grace_ms);
/* Closes now (idempotent); ops->on_closed follows when both handles are closed. */
void fy_stream_close(fy_stream *s);

#endif
