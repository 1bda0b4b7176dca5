/* Frames: ferry's unit on the wire, inside TLS.
 *
 *    0        1        2        3        4        5        6        7
 *  +--------+--------+--------+--------+--------+--------+--------+--------+
 *  |  'F'   |  'Y'   |  type  | flags  |       payload length (u32, BE)    |
 *  +--------+--------+--------+--------+--------+--------+--------+--------+
 *  |  payload: length bytes, length <= the decoder's ceiling (FY_FRAME_MAX)  ...
 *
 * The decoder is sans-I/O and incremental (nghttp2's mem_recv): feed it any number of bytes in
 * any chunking; it calls back once per complete frame. The length is checked against the
 * ceiling as soon as the header is complete, before anything is allocated for the payload. */
#ifndef FERRY_FRAME_H
#define FERRY_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/buf.h"
#include "ferry/error.h"

#define FY_FRAME_HEADER 8u
#define FY_FRAME_MAX (1024u * 1024u) /* hard ceiling for any payload */
#define FY_PROTO_VERSION 5u          /* the highest version this build speaks (2: progress; 3: a plan
                                      * may be answered "unchanged", lifecycle requests; 4: output
                                      * and input frames: logs --follow, exec; 5: a plan's source, the
                                      * registry the agent pulls from, and progress before the need
                                      * list while it pulls) */
#define FY_PROTO_VERSION_MIN 1u      /* the lowest it still accepts */

/* Message types. The value is the wire byte. */
#define FY_FRAME_TYPES(X)                                                  \
  X(HELLO, 1, "hello")       /* pusher -> agent: versions, intent (JSON) */ \
  X(FACTS, 2, "facts")       /* agent -> pusher: chosen version + facts */  \
  X(ERROR, 3, "error")       /* either way: {code, name, message} */        \
  X(PLAN, 4, "plan")         /* pusher -> agent: deploy plan */             \
  X(BLOB, 5, "blob")         /* pusher -> agent: raw blob bytes */          \
  X(COMMIT, 6, "commit")     /* pusher -> agent: all data sent */           \
  X(RESULT, 7, "result")     /* agent -> pusher: outcome */                 \
  X(REQUEST, 8, "request")   /* pusher -> agent: logs, rollback, ... */     \
  X(REPLY, 9, "reply")       /* agent -> pusher: answer to a request */     \
  X(PROGRESS, 10, "progress")/* agent -> pusher: where a step stands */     \
  X(BLOB_BEGIN, 11, "blob-begin") /* pusher -> agent: digest, offset */ \
  X(OUTPUT, 12, "output")    /* agent -> pusher: log lines, exec output */  \
  X(INPUT, 13, "input")      /* pusher -> agent: exec stdin */

enum fy_frame_type {
#define FY__FT_ENUM(name, val, str) FY_FT_##name = (val),
  FY_FRAME_TYPES(FY__FT_ENUM)
#undef FY__FT_ENUM
  FY_FT__MAX = 13
};

/* "hello", "blob", ...; "unknown" for values outside the table. */
const char *fy_frame_type_name(unsigned type);

typedef struct fy_frame {
  uint8_t type;
  uint8_t flags;
  uint32_t len;
  const uint8_t *payload; /* valid only during the callback */
} fy_frame;

/* Writes the 8-byte header. FY_ETOOBIG if len exceeds max_payload. */
int fy_frame_header(uint8_t out[FY_FRAME_HEADER], uint8_t type, uint8_t flags, size_t len,
                    size_t max_payload) FY_WUR;

/* Appends a whole frame (header + payload) to b. */
int fy_frame_append(fy_buf *b, uint8_t type, uint8_t flags, const void *payload, size_t len,
                    size_t max_payload) FY_WUR;

/* Returns FY_OK to continue, FY_FRAME_PAUSE when the frame is taken but no more may come until
 * fy_frame_decoder_resume (its consumer works on it elsewhere: a blob chunk being written), or a
 * negative code that stops the decoder and is returned by feed. The payload is only valid during
 * the callback: a consumer that pauses copies what it needs. */
typedef int (*fy_frame_cb)(void *ud, const fy_frame *f);
#define FY_FRAME_PAUSE 1

/* Memory for frames still arriving, shared by the decoders of many connections (the agent's
 * limits.frame_memory): a decoder that must buffer a frame charges its length here first, and
 * fails with FY_EBUSY when that would pass cap. */
typedef struct fy_frame_budget {
  size_t used, cap;
} fy_frame_budget;

typedef struct fy_frame_decoder {
  uint8_t hdr[FY_FRAME_HEADER];
  size_t hdr_got;
  fy_buf payload;    /* ceiling: max_payload */
  uint32_t want;     /* payload length announced by the current header */
  int failed;        /* sticky: once a stream is bad, it stays bad */
  int paused;
  fy_buf held;       /* input that arrived after a pause, ceiling FY_FRAME_MAX */
  size_t max_payload;
  fy_frame_budget *budget; /* NULL: none */
  size_t charged;          /* what this decoder holds of it */
} fy_frame_decoder;

/* Cannot fail. max_payload is clamped to FY_FRAME_MAX. */
void fy_frame_decoder_init(fy_frame_decoder *d, size_t max_payload);
void fy_frame_decoder_free(fy_frame_decoder *d);
/* Consumes all n bytes, calling cb for each complete frame.
 * Returns FY_OK, or FY_FRAME_PAUSE when cb paused (the rest of the input is held; so is anything
 * fed while paused, up to FY_FRAME_MAX bytes, past which FY_ETOOBIG).
 * Errors: FY_EPROTO (bad magic), FY_ETOOBIG (length over the ceiling), FY_ENOMEM, or what cb
 * returned. After an error the decoder refuses further input with the same code. */
int fy_frame_decoder_feed(fy_frame_decoder *d, const uint8_t *p, size_t n, fy_frame_cb cb,
                          void *ud) FY_WUR;
/* Ends a pause: delivers what was held (which may pause again). Same returns as feed. */
int fy_frame_decoder_resume(fy_frame_decoder *d, fy_frame_cb cb, void *ud) FY_WUR;

#endif
