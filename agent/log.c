/* ferryd's log lines (see log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void fy_log(const char *level, const char *fmt, ...) {
  char line[FY_LOG_LINE_MAX];
  char ts[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  int n = snprintf(line, sizeof line, "ferryd: %s %s ", ts, level);
  if (n < 0 || (size_t)n >= sizeof line) return;
  size_t len = (size_t)n;
  va_list ap;
  va_start(ap, fmt);
  n = vsnprintf(line + len, sizeof line - len - 1, fmt, ap); /* room kept for the newline */
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line - len - 1) {
    len = sizeof line - 1;
    memcpy(line + len - 3, "...", 3);
  } else {
    len += (size_t)n;
  }
  line[len++] = '\n';
  /* stderr is a pipe or the journal: one write of at most PIPE_BUF-ish bytes lands whole. Retry
   * only what a signal interrupted; a short write is not split into a second write. */
  ssize_t w;
  do w = write(STDERR_FILENO, line, len);
  while (w < 0 && errno == EINTR);
}
