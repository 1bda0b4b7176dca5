/* A workload's log: STATE/apps/<app>/log, what `ferry logs` prints.
 *
 * One record per line, as the agent recorded it:
 *   2026-12-04T18:03:46.123Z O the line the app wrote
 * the time (UTC, milliseconds), the stream (O stdout, E stderr, F ferryd's own lines about the
 * app), and the text: valid UTF-8, each byte that is not replaced by '?'. A line longer than
 * FY_APPLOG_LINE_MAX is cut into records of that size. Lines without the prefix (a log an older
 * agent wrote) read as stdout of unknown time. */
#ifndef FERRY_AGENT_APPLOG_H
#define FERRY_AGENT_APPLOG_H

#include <stddef.h>
#include <stdint.h>

#include "apps.h"
#include "ferry/wire.h"

struct fy_agent;

#define FY_LOG_TS_LEN 24      /* 2026-12-04T18:03:46.123Z */
#define FY_APPLOG_LINE_MAX 8192  /* bytes of text in one record */
#define FY_LOG_RECORD_MAX (FY_LOG_TS_LEN + 3 + FY_APPLOG_LINE_MAX + 1)

typedef struct fy_log_query {
  int tail;                   /* the last lines wanted (of those that match) */
  int timestamps;             /* each line starts with its record's time */
  fy_log_stream stream;
  uint32_t since_s;           /* only lines recorded in the last since_s seconds; 0: all */
} fy_log_query;

typedef struct fy_logline {
  const char *ts;             /* FY_LOG_TS_LEN bytes, or NULL (an older agent's line) */
  char stream;                /* 'O', 'E' or 'F' */
  const char *text;
  size_t len;
} fy_logline;

/* Pure: one record into out (FY_LOG_RECORD_MAX bytes), its length. */
size_t fy_applog_format(char *out, uint64_t ms_since_epoch, char stream, const char *text, size_t n);
/* Pure: a line of the log (with or without its newline); 1 when it had the record prefix. */
int fy_applog_parse(const char *line, size_t n, fy_logline *l);
/* Pure: does the query want this line; cutoff is the oldest time wanted, or NULL. */
int fy_applog_wants(const fy_log_query *q, const fy_logline *l, const char *cutoff);
/* Pure: the line as `ferry logs` shows it, with its newline; at most FY_LOG_RECORD_MAX bytes. */
size_t fy_applog_render(const fy_logline *l, int timestamps, char *out);

/* Reads the workload's output from fd (taken, even on failure) into its log until EOF; which
 * is FY_OUT_STDOUT or FY_OUT_STDERR. */
void fy_applog_watch(fy_app *app, int fd, int which);
/* Closes the app's output pipes (shutdown); each one's close ends in fy__app_handle_done. */
void fy_applog_close_pipes(fy_app *app);
/* One line of ferryd's own about the app ("ferryd: starting ..."). */
void fy_applog_line(fy_app *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* What a logs request shows: the last q->tail matching lines of log.1 and log, at most max
 * bytes. Caller frees; NULL when out of memory. Blocking (two reads, at most 2 MiB). */
char *fy_app_log_read(const struct fy_agent *a, const char *app, const fy_log_query *q, size_t max);
/* The last lines of every stream, as they were written, at most max bytes. */
char *fy_app_log_tail(const struct fy_agent *a, const char *app, int lines, size_t max);
/* ferry logs -f: each new record the query wants goes to the connection in an output frame,
 * until it closes (or does not read: then it is dropped). */
int fy_applog_follow(fy_app *app, uint64_t conn, const fy_log_query *q) FY_WUR;
/* The app goes away: its followers are told why (NULL: closed without a word) and dropped. */
void fy_applog_unfollow_all(fy_app *app, const char *why);

#endif
