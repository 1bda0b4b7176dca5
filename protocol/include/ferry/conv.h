/* The conversation, sans I/O: which frame is legal in which phase, decided here once for both
 * sides (nghttp2 keeps its stream states the same way). ferryd and ferry each hold one per
 * connection and ask it about every frame they receive and every frame they are about to send.
 *
 *   phase        frame (direction)                       next
 *   HELLO        hello (pusher -> agent)                 HELLO_SENT
 *   HELLO_SENT   facts (agent -> pusher)                 READY
 *   READY        plan (pusher -> agent)                  PLANNED
 *   READY        request (pusher -> agent)               ASKED
 *   PLANNED      reply: the need list (agent -> pusher)  TRANSFER
 *   PLANNED      result: unchanged (agent -> pusher)     DONE   (protocol 3: it runs that already)
 *   PLANNED      progress (agent -> pusher)              PLANNED (protocol 5: pulling from a registry)
 *   TRANSFER     blob-begin, blob (pusher -> agent)      TRANSFER
 *   TRANSFER     commit (pusher -> agent)                COMMITTED
 *   COMMITTED    progress (agent -> pusher)              COMMITTED
 *   COMMITTED    result (agent -> pusher)                DONE
 *   ASKED        reply (agent -> pusher)                 READY
 *   ASKED        progress (agent -> pusher)              ASKED
 *   ASKED        output (agent -> pusher)                ASKED  (protocol 4: logs -f, exec)
 *   ASKED        input (pusher -> agent)                 ASKED  (protocol 4: exec's stdin)
 *   ASKED        result (agent -> pusher)                DONE
 *   any          error (either way)                      DONE
 *
 * Everything else is a protocol error (FY_EPROTO) with the reason in why. */
#ifndef FERRY_CONV_H
#define FERRY_CONV_H

#include <stdint.h>

#include "ferry/error.h"

typedef enum { FY_SIDE_AGENT, FY_SIDE_PUSHER } fy_side;
typedef enum {
  FY_CONV_HELLO,
  FY_CONV_HELLO_SENT,
  FY_CONV_READY,
  FY_CONV_PLANNED,
  FY_CONV_TRANSFER,
  FY_CONV_COMMITTED,
  FY_CONV_ASKED,
  FY_CONV_DONE
} fy_conv_phase;

typedef struct fy_conv {
  fy_side side;
  fy_conv_phase phase;
  char why[160];
} fy_conv;

void fy_conv_init(fy_conv *c, fy_side side);
/* A frame of `type` arrived from the peer / is about to go to the peer. FY_OK moves the phase
 * on; FY_EPROTO leaves it and says why ("a plan before hello", "blob data after commit", ...). */
int fy_conv_recv(fy_conv *c, uint8_t type) FY_WUR;
int fy_conv_send(fy_conv *c, uint8_t type) FY_WUR;
const char *fy_conv_phase_name(fy_conv_phase p);

#endif
