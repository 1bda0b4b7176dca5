/* Bounded formatting (see text.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ferry/text.h"

int fy_path_fmt(char *buf, size_t len, const char *fmt, ...) {
  if (len == 0) return FY_ETOOBIG;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= len) {
    buf[0] = '\0';
    return FY_ETOOBIG;
  }
  return FY_OK;
}

static void vfmt(char *buf, size_t len, const char *fmt, va_list ap) {
  if (len == 0) return;
  int n = vsnprintf(buf, len, fmt, ap);
  if (n < 0) buf[0] = '\0';
  else if ((size_t)n >= len && len > 4) memcpy(buf + len - 4, "...", 4);
}

void fy_text_fmt(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfmt(buf, len, fmt, ap);
  va_end(ap);
}

int fy_text_fail(char *err, size_t errlen, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfmt(err, errlen, fmt, ap);
  va_end(ap);
  return rc;
}
