/* ferryd's own log: one line per event on stderr, "ferryd: TIME LEVEL message". */
#ifndef FERRY_AGENT_LOG_H
#define FERRY_AGENT_LOG_H

/* Writes one whole line with a single write(2), so a reader (systemd's journal, a test waiting
 * for "listening on HOST:PORT") never sees half of it. A message past FY_LOG_LINE_MAX bytes is cut
 * and ends in "...". Never fails: a line that cannot be written is dropped. */
#define FY_LOG_LINE_MAX 2048
void fy_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
