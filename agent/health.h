/* One health check of a running app: its health command run inside it the way the app runs
 * (fy_app_health_plan), or a TCP connect to its health port that only passes when the listening
 * socket is the app's own (fy_app_owns_port). A deploy uses one at the end of its settle window;
 * the supervisor runs one every run.health.interval after that.
 *
 * Lifetime: a check owns its handles (a timer, and a process or a probe) and frees itself in
 * the last close callback. The answer always comes from the loop, never from inside
 * fy_hcheck_start, exactly once, unless the check is cancelled first; whoever holds the pointer
 * drops it in the callback or when cancelling. */
#ifndef FERRY_AGENT_HEALTH_H
#define FERRY_AGENT_HEALTH_H

#include <jansson.h>
#include <stdint.h>

#include "apps.h"

typedef struct fy_hcheck fy_hcheck;
/* ok: the check passed; why: what it found ("health command 'X' exited with status 1"). */
typedef void (*fy_hcheck_cb)(fy_app *app, int ok, const char *why, void *ud);

/* argv: the command (NULL: none), text: it as shown in messages; else port (> 0). NULL only when
 * out of memory. */
fy_hcheck *fy_hcheck_start(fy_app *app, const json_t *argv, const char *text, int port, uint64_t timeout_ms,
                           fy_hcheck_cb cb, void *ud);
/* No answer wanted any more: the command's process group is killed, the probe closed. */
void fy_hcheck_cancel(fy_hcheck *h);

#endif
