/* Agent self-upgrade: a new ferryd arrives like a release (a plan with
 * agent_upgrade, one layer holding /ferryd), is checked on this device, installed beside the
 * running binary (which stays as ferryd.prev), and ferryd re-executes itself in place: same PID,
 * so the workloads (its children) keep running; the new image takes them over through
 * STATE/agent/handoff.json (pids and the fds of their output pipes).
 *
 * A watchdog (the old binary, `ferryd __watchdog`, forked before the exec) waits for the new
 * agent to answer a pusher: the first hello it serves confirms the upgrade (it removes
 * STATE/agent/upgrade.json). If that does not happen within the timeout, or the new agent dies,
 * the watchdog kills it, puts ferryd.prev back, and starts the old agent (under systemd it exits
 * and Restart=always starts the restored binary). */
#ifndef FERRY_AGENT_UPGRADE_H
#define FERRY_AGENT_UPGRADE_H

#include <jansson.h>

#include "ferry/digest.h"
#include "ferry/error.h"

struct fy_agent;

/* At start: this binary's path and digest; whether an upgrade waits for its confirmation; the
 * handoff from the previous image of this process, if any. */
void fy_upgrade_startup(struct fy_agent *a, int argc, char **argv);
/* The handoff entry for app (or NULL) and, once the apps are recovered, its end. */
const json_t *fy_upgrade_handoff_app(struct fy_agent *a, const char *app);
void fy_upgrade_handoff_done(struct fy_agent *a);
/* A pusher's hello was answered: confirms a pending upgrade. */
void fy_upgrade_answered(struct fy_agent *a);

/* Checks the new binary at path (platform, --version, --check-config), installs it in place of
 * the running one (the old one kept as ferryd.prev) and starts the watchdog. digest: the new
 * binary's. FY_EEXEC / FY_EIO with the reason. */
/* Blocking (runs on the worker pool): reads and checks the new binary, runs it twice (--version,
 * --check-config; up to 10 s each), installs it beside the old one and forks the watchdog. */
int fy_upgrade_prepare(struct fy_agent *a, const char *path, int timeout_s, char *digest, char *err, size_t errlen) FY_WUR;
/* Re-executes the installed binary after delay_ms (time for the result to reach the pusher). */
void fy_upgrade_exec_later(struct fy_agent *a, unsigned delay_ms);
/* Shutdown: closes the upgrade's timers (no re-exec after it). */
void fy_upgrade_shutdown(struct fy_agent *a);

/* `ferryd __watchdog ...` */
int fy_watchdog_main(int argc, char **argv);

#endif
