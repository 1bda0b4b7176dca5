/* Formatting into fixed buffers, with what happens when it does not fit said at the call:
 *
 *   fy_path_fmt   for names of files and directories: a cut path names another file, so it is
 *                 FY_ETOOBIG (the buffer then holds ""), never a shorter path;
 *   fy_text_fmt   for messages: a long message is cut and ends in "...".
 *
 * Plain snprintf is for the cases the compiler can prove fit (-Wformat-truncation is on). */
#ifndef FERRY_TEXT_H
#define FERRY_TEXT_H

#include <stddef.h>

#include "ferry/error.h"

int fy_path_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4))) FY_WUR;
void fy_text_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* fy_text_fmt into err, then returns rc: `return fy_text_fail(err, errlen, FY_EINVAL, "...", ...)`. */
int fy_text_fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
