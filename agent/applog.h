/* A workload's log: STATE/apps/<app>/log, what `ferry logs` prints. */
#ifndef FERRY_AGENT_APPLOG_H
#define FERRY_AGENT_APPLOG_H

#include <stddef.h>

#include "apps.h"

struct fy_agent;

/* Reads the workload's output from fd (taken, even on failure) into its log, until EOF. */
void fy_applog_watch(fy_app *app, int fd);
/* Closes the app's output pipes (shutdown); each one's close ends in fy__app_handle_done. */
void fy_applog_close_pipes(fy_app *app);
/* One line of ferryd's own about the app ("ferryd: starting ..."). */
void fy_applog_line(fy_app *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last lines of the app's log, at most max bytes. Caller frees. Blocking (one read). */
char *fy_app_log_tail(const struct fy_agent *a, const char *app, int lines, size_t max);

#endif
