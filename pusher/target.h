/* Targets: "HOST:PORT" or "NAME@HOST:PORT" (docs/usage.md). IPv6 hosts go in brackets. */
#ifndef FERRY_PUSHER_TARGET_H
#define FERRY_PUSHER_TARGET_H

#include "ferry/error.h"

typedef struct fy_target {
  char name[64];     /* "" when the target did not name the node */
  char host[256];
  char port[8];
  char address[300]; /* HOST:PORT as the user wrote it */
} fy_target;

/* FY_EINVAL with a reason in err for anything else. */
int fy_target_parse(const char *spec, fy_target *t, char *err, size_t errlen) FY_WUR;

#endif
