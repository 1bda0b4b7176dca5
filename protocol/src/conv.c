/* The conversation's phase table (see conv.h). */
#include <stdio.h>

#include "ferry/conv.h"
#include "ferry/frame.h"

typedef enum { FROM_PUSHER, FROM_AGENT, EITHER } dir;

static const struct step {
  fy_conv_phase from;
  uint8_t type;
  dir d;
  fy_conv_phase to;
} table[] = {
    {FY_CONV_HELLO, FY_FT_HELLO, FROM_PUSHER, FY_CONV_HELLO_SENT},
    {FY_CONV_HELLO_SENT, FY_FT_FACTS, FROM_AGENT, FY_CONV_READY},
    {FY_CONV_READY, FY_FT_PLAN, FROM_PUSHER, FY_CONV_PLANNED},
    {FY_CONV_READY, FY_FT_REQUEST, FROM_PUSHER, FY_CONV_ASKED},
    {FY_CONV_PLANNED, FY_FT_REPLY, FROM_AGENT, FY_CONV_TRANSFER},
    {FY_CONV_PLANNED, FY_FT_RESULT, FROM_AGENT, FY_CONV_DONE}, /* "unchanged" (protocol 3) */
    {FY_CONV_PLANNED, FY_FT_PROGRESS, FROM_AGENT, FY_CONV_PLANNED}, /* pulling from a registry (protocol 5) */
    {FY_CONV_TRANSFER, FY_FT_BLOB_BEGIN, FROM_PUSHER, FY_CONV_TRANSFER},
    {FY_CONV_TRANSFER, FY_FT_BLOB, FROM_PUSHER, FY_CONV_TRANSFER},
    {FY_CONV_TRANSFER, FY_FT_COMMIT, FROM_PUSHER, FY_CONV_COMMITTED},
    {FY_CONV_COMMITTED, FY_FT_PROGRESS, FROM_AGENT, FY_CONV_COMMITTED},
    {FY_CONV_COMMITTED, FY_FT_RESULT, FROM_AGENT, FY_CONV_DONE},
    {FY_CONV_ASKED, FY_FT_REPLY, FROM_AGENT, FY_CONV_READY},
    {FY_CONV_ASKED, FY_FT_PROGRESS, FROM_AGENT, FY_CONV_ASKED},
    {FY_CONV_ASKED, FY_FT_OUTPUT, FROM_AGENT, FY_CONV_ASKED}, /* protocol 4: logs --follow, exec */
    {FY_CONV_ASKED, FY_FT_INPUT, FROM_PUSHER, FY_CONV_ASKED},
    {FY_CONV_ASKED, FY_FT_RESULT, FROM_AGENT, FY_CONV_DONE},
};

static const char *const phase_names[] = {"before hello", "after hello", "ready", "planned", "transfer",
                                          "committed", "asked", "done"};

const char *fy_conv_phase_name(fy_conv_phase p) {
  return (size_t)p < sizeof phase_names / sizeof phase_names[0] ? phase_names[p] : "?";
}

void fy_conv_init(fy_conv *c, fy_side side) {
  c->side = side;
  c->phase = FY_CONV_HELLO;
  c->why[0] = '\0';
}

static int step(fy_conv *c, uint8_t type, dir d) {
  if (type == FY_FT_ERROR) { /* either side may end the conversation with its reason */
    c->phase = FY_CONV_DONE;
    return FY_OK;
  }
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (table[i].from == c->phase && table[i].type == type && table[i].d == d) {
      c->phase = table[i].to;
      return FY_OK;
    }
  }
  snprintf(c->why, sizeof c->why, "unexpected %s message from the %s (the conversation is %s)", fy_frame_type_name(type),
           d == FROM_PUSHER ? "pusher" : "agent", fy_conv_phase_name(c->phase));
  return FY_EPROTO;
}

int fy_conv_recv(fy_conv *c, uint8_t type) { return step(c, type, c->side == FY_SIDE_AGENT ? FROM_PUSHER : FROM_AGENT); }
int fy_conv_send(fy_conv *c, uint8_t type) { return step(c, type, c->side == FY_SIDE_AGENT ? FROM_AGENT : FROM_PUSHER); }
