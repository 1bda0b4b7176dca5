/* A deploy on this device's own ferryd, through its local socket STATE_DIR/ferryd.sock: the
 * conversation a pusher has (hello, plan, the blobs ferryd lacks, commit, result), over plain
 * frames instead of TLS. ferryd --import uses it with the layers of a bundle; the broker's
 * desired state uses it with a plan whose layers come from a registry. Either way the deploy code
 * (signature policy, limits, health check, rollback) is the one a pusher meets.
 *
 * Blocking: a process of its own (--import) or a thread (the broker's apply), never the loop. */
#ifndef FERRY_AGENT_LOCALC_H
#define FERRY_AGENT_LOCALC_H

#include <jansson.h>
#include <stddef.h>

#include "ferry/frame.h"
#include "ferry/wire.h"

typedef struct fy_localc {
  int sock;
  fy_frame_decoder dec;
  int dec_paused;
  uint8_t got_type;       /* the last frame: its type and message */
  json_t *got;
  char *err;              /* the caller's buffer for the reason */
  size_t errlen;
  int wait_ms;            /* the longest silence accepted from ferryd */
  uint64_t deadline_ms;   /* CLOCK_MONOTONIC ms after which it gives up (0: none) */
  void (*on_output)(void *ud, int stream, const uint8_t *p, size_t n); /* output frames, when set */
  void *output_ud;
  const volatile int *cancel; /* another thread sets it: the wait for ferryd ends within a second (FY_ECANCELED) */
} fy_localc;

/* Sets the reason; returns rc. */
int fy_localc_fail(fy_localc *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fy_localc_send_frame(fy_localc *c, uint8_t type, const void *p, size_t n) FY_WUR;
/* Takes j. */
int fy_localc_send_json(fy_localc *c, uint8_t type, json_t *j) FY_WUR;

/* The layers ferryd asks for: the caller sends BLOB_BEGIN and BLOBs for it (FY_OK or a failure
 * with the reason set). */
typedef int (*fy_localc_blob_fn)(void *ud, fy_localc *c, const fy_need_item *it);
typedef void (*fy_localc_progress_fn)(void *ud, const json_t *progress);

typedef struct fy_localc_deploy {
  const char *client;            /* hello's client, e.g. "ferryd --import 0.9" */
  const char *app;
  json_t *plan;                  /* borrowed: the plan message as the wire has it */
  fy_localc_blob_fn send_blob;   /* NULL: ferryd must lack nothing (the layers come from a registry) */
  fy_localc_progress_fn on_progress;
  void *ud;
  /* Set by another thread: the deploy is given up while ferryd still gets its layers (a pull it
   * then cancels, its partial blobs kept); from COMMIT on it runs to its result. */
  const volatile int *cancel;
  /* out, when FY_OK: ferryd's result */
  fy_result result;
  int code;
  char release[128], message[600];
  char *log_tail;                /* malloc'd, NULL when none */
} fy_localc_deploy;

/* Connects to STATE_DIR/ferryd.sock and holds the whole conversation. FY_OK when ferryd sent a
 * result (d->result says which); otherwise the failure, with the reason in err (ferryd not
 * running, refused access, the connection lost, a protocol error, ferryd's own error). */
int fy_localc_run(const char *state_dir, fy_localc_deploy *d, char *err, size_t errlen) FY_WUR;

/* A request (logs, rollback, stop, start, restart, remove, exec without input) the same way:
 * hello with op as its intent, the request message, and ferryd's answer: *answer (owned) and
 * *type, the frame's type (FY_FT_RESULT, FY_FT_REPLY, or FY_FT_ERROR with ferryd's refusal).
 * Output frames go to on_output (stream, bytes) when it is set; progress frames are passed over.
 * max_ms > 0 bounds the whole conversation: past it the connection is closed (ferryd then ends
 * what it runs for it, an exec's command included) and FY_ETIMEDOUT returned.
 * FY_OK when an answer came; otherwise the failure, with the reason in err. */
typedef void (*fy_localc_output_fn)(void *ud, int stream, const uint8_t *p, size_t n);
int fy_localc_ask(const char *state_dir, const char *client, const char *op, const char *app, json_t *request, json_t **answer,
                  uint8_t *type, fy_localc_output_fn on_output, void *ud, int max_ms, char *err, size_t errlen) FY_WUR;

#endif
