/* A workload's log: what it writes to stdout and stderr, through a pipe ferryd reads, into
 * STATE/apps/<app>/log (rotated to log.1 past FY_LOG_CAP), plus ferryd's own lines about it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "applog.h"
#include "release.h"
#include "ferry/text.h"

static void log_write(fy_app *app, const char *p, size_t n) {
  char path[4200], old[4210];
  if (app->log_fd < 0) {
    fy_app_dir(app->agent, app->name, path, sizeof path);
    strncat(path, "/log", sizeof path - strlen(path) - 1);
    app->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st;
    app->log_size = app->log_fd >= 0 && fstat(app->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (app->log_fd < 0) return;
  }
  if (write(app->log_fd, p, n) < 0) return;
  app->log_size += n;
  if (app->log_size > FY_LOG_CAP) { /* rotate: log -> log.1, one generation kept */
    fy_app_dir(app->agent, app->name, path, sizeof path);
    strncat(path, "/log", sizeof path - strlen(path) - 1);
    snprintf(old, sizeof old, "%s.1", path);
    rename(path, old);
    close(app->log_fd);
    app->log_fd = -1;
  }
}

void fy_applog_line(fy_app *app, const char *fmt, ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  log_write(app, buf, (size_t)n);
}

/* One pipe per process: the old one may still be draining when the next process starts. */
struct fy_outpipe {
  uv_pipe_t pipe;
  fy_app *app;
  struct fy_outpipe *next;  /* app->pipes */
};

static void out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  static char buf[16384];
  (void)h;
  (void)suggested;
  *b = uv_buf_init(buf, sizeof buf);
}

static int uv_fileno_or(const uv_handle_t *h) {
  uv_os_fd_t fd;
  return uv_fileno(h, &fd) == 0 ? fd : -2;
}

static void out_closed(uv_handle_t *h) {
  struct fy_outpipe *o = h->data;
  fy_app *app = o->app;
  for (struct fy_outpipe **pp = &app->pipes; *pp; pp = &(*pp)->next)
    if (*pp == o) {
      *pp = o->next;
      break;
    }
  free(o); /* h was inside it */
  fy__app_handle_done(app);
}

static void out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct fy_outpipe *o = s->data;
  if (n > 0 && o->app) log_write(o->app, b->base, (size_t)n);
  if (n < 0 && !uv_is_closing((uv_handle_t *)s)) {
    if (o->app && o->app->out_fd == uv_fileno_or((uv_handle_t *)s)) o->app->out_fd = -1;
    uv_close((uv_handle_t *)s, out_closed);
  }
}

/* Reads the workload's output from fd into its log (fd is taken, even on failure). */
void fy_applog_watch(fy_app *app, int fd) {
  struct fy_outpipe *op = calloc(1, sizeof *op);
  if (!op) {
    close(fd);
    return;
  }
  op->app = app;
  uv_pipe_init(app->agent->loop, &op->pipe, 0);
  op->pipe.data = op;
  op->next = app->pipes;
  app->pipes = op;
  app->open_handles++;
  if (uv_pipe_open(&op->pipe, fd) == 0) {
    app->out_fd = fd;
    uv_read_start((uv_stream_t *)&op->pipe, out_alloc, out_read);
  } else {
    close(fd);
    uv_close((uv_handle_t *)&op->pipe, out_closed);
  }
}

void fy_applog_close_pipes(fy_app *app) {
  for (struct fy_outpipe *o = app->pipes; o; o = o->next)
    if (!uv_is_closing((uv_handle_t *)&o->pipe)) uv_close((uv_handle_t *)&o->pipe, out_closed);
}

char *fy_app_log_tail(const fy_agent *a, const char *app, int lines, size_t max) {
  char path[4200];
  fy_app_dir(a, app, path, sizeof path);
  strncat(path, "/log", sizeof path - strlen(path) - 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return strdup("");
  struct stat st;
  if (fstat(fd, &st) != 0) { close(fd); return strdup(""); }
  size_t want = (uint64_t)st.st_size < max ? (size_t)st.st_size : max;
  char *buf = malloc(want + 1);
  if (!buf) { close(fd); return NULL; }
  ssize_t n = pread(fd, buf, want, st.st_size - (off_t)want);
  close(fd);
  if (n < 0) n = 0;
  buf[n] = '\0';
  /* Keep the last `lines` lines. */
  char *p = buf + n;
  int seen = 0;
  if (p > buf && p[-1] == '\n') p--;
  while (p > buf) {
    if (p[-1] == '\n' && ++seen == lines) break;
    p--;
  }
  memmove(buf, p, strlen(p) + 1);
  return buf;
}
