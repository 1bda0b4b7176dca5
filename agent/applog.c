/* A workload's log: what it writes to stdout and stderr, through a pipe each that ferryd reads,
 * into STATE/apps/<app>/log (rotated to log.1 past FY_LOG_CAP), plus ferryd's own lines about
 * it, one record per line (see applog.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
    app->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
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

/* --- records ------------------------------------------------------------------------------- */

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF), 0 when it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || len > n || c == 0 || c == 0xC0 || c == 0xC1 || c > 0xF4) return 0;
  for (size_t i = 1; i < len; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  if (len == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))) return 0;
  if (len == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))) return 0;
  return len;
}

size_t fy_applog_format(char *out, uint64_t ms, char stream, const char *text, size_t n) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t o = strftime(out, FY_LOG_TS_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
  o += (size_t)snprintf(out + o, 10, ".%03uZ", (unsigned)(ms % 1000));
  out[o++] = ' ';
  out[o++] = stream;
  out[o++] = ' ';
  const unsigned char *p = (const unsigned char *)text;
  for (size_t i = 0; i < n;) {
    size_t l = p[i] == '\n' ? 0 : utf8_len(p + i, n - i);
    if (l == 0) { /* a byte that is not text: the log stays valid UTF-8, one line per record */
      out[o++] = '?';
      i++;
      continue;
    }
    memcpy(out + o, p + i, l);
    o += l;
    i += l;
  }
  out[o++] = '\n';
  return o;
}

int fy_applog_parse(const char *line, size_t n, fy_logline *l) {
  memset(l, 0, sizeof *l);
  if (n && line[n - 1] == '\n') n--;
  /* 2026-12-04T18:03:46.123Z O text */
  if (n >= FY_LOG_TS_LEN + 2 && line[4] == '-' && line[10] == 'T' && line[FY_LOG_TS_LEN - 1] == 'Z' &&
      line[FY_LOG_TS_LEN] == ' ' && (n == FY_LOG_TS_LEN + 2 || line[FY_LOG_TS_LEN + 2] == ' ') &&
      strchr("OEF", line[FY_LOG_TS_LEN + 1])) {
    l->ts = line;
    l->stream = line[FY_LOG_TS_LEN + 1];
    l->text = line + (n == FY_LOG_TS_LEN + 2 ? n : FY_LOG_TS_LEN + 3);
    l->len = n - (size_t)(l->text - line);
    return 1;
  }
  l->stream = 'O'; /* a line of a log an older agent wrote: output, time unknown */
  l->text = line;
  l->len = n;
  return 0;
}

int fy_applog_wants(const fy_log_query *q, const fy_logline *l, const char *cutoff) {
  if (q->stream == FY_LOG_STDOUT && l->stream != 'O') return 0;
  if (q->stream == FY_LOG_STDERR && l->stream != 'E') return 0;
  if (cutoff && (!l->ts || memcmp(l->ts, cutoff, FY_LOG_TS_LEN) < 0)) return 0;
  return 1;
}

size_t fy_applog_render(const fy_logline *l, int timestamps, char *out) {
  size_t o = 0;
  if (timestamps && l->ts) {
    memcpy(out, l->ts, FY_LOG_TS_LEN);
    out[FY_LOG_TS_LEN] = ' ';
    o = FY_LOG_TS_LEN + 1;
  }
  memcpy(out + o, l->text, l->len);
  o += l->len;
  out[o++] = '\n';
  return o;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Follows: the connections of `ferry logs -f`, told every record they want as it is written. */
struct fy_follower {
  uint64_t conn;
  fy_log_query q;
  struct fy_follower *next;
};

static void tell_followers(fy_app *app, const char *rec, size_t n) {
  fy_logline l;
  fy_applog_parse(rec, n, &l);
  for (struct fy_follower **pp = &app->followers; *pp;) {
    struct fy_follower *f = *pp;
    fy_agent_conn *c = fy_conn_find(app->agent, f->conn);
    char out[FY_LOG_RECORD_MAX + 1];
    int rc = FY_OK;
    if (c && fy_applog_wants(&f->q, &l, NULL)) {
      out[0] = FY_OUT_STDOUT;
      rc = fy_conn_send(c, FY_FT_OUTPUT, out, 1 + fy_applog_render(&l, f->q.timestamps, out + 1));
      if (rc != FY_OK) fy_conn_abort(c); /* a follower that does not read loses its connection */
    }
    if (!c || rc != FY_OK) {
      *pp = f->next;
      free(f);
    } else {
      pp = &f->next;
    }
  }
}

static void record(fy_app *app, char stream, const char *text, size_t n) {
  char rec[FY_LOG_RECORD_MAX];
  if (n > FY_APPLOG_LINE_MAX) n = FY_APPLOG_LINE_MAX;
  size_t len = fy_applog_format(rec, now_ms(), stream, text, n);
  log_write(app, rec, len);
  if (app->followers) tell_followers(app, rec, len);
}

void fy_applog_line(fy_app *app, const char *fmt, ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  record(app, 'F', buf, strlen(buf));
}

int fy_applog_follow(fy_app *app, uint64_t conn, const fy_log_query *q) {
  struct fy_follower *f = calloc(1, sizeof *f);
  if (!f) return FY_ENOMEM;
  f->conn = conn;
  f->q = *q;
  f->next = app->followers;
  app->followers = f;
  return FY_OK;
}

void fy_applog_unfollow_all(fy_app *app, const char *why) {
  while (app->followers) {
    struct fy_follower *f = app->followers;
    fy_agent_conn *c = fy_conn_find(app->agent, f->conn);
    if (c && why) fy_conn_fail(c, FY_ENOAPP, "%s", why);
    app->followers = f->next;
    free(f);
  }
}

/* One pipe per stream and process: the old ones may still be draining when the next process
 * starts. A line is recorded when its newline arrives (or FY_APPLOG_LINE_MAX bytes of it, or EOF). */
struct fy_outpipe {
  uv_pipe_t pipe;
  fy_app *app;
  char stream;              /* 'O' stdout, 'E' stderr */
  size_t npart;
  char part[FY_APPLOG_LINE_MAX];
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

static void out_bytes(struct fy_outpipe *o, const char *p, size_t n) {
  while (n) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n, room = sizeof o->part - o->npart;
    if (take > room) take = room;
    memcpy(o->part + o->npart, p, take);
    o->npart += take;
    p += take;
    n -= take;
    if (nl && p == nl) { /* the line is complete */
      p++;
      n--;
    } else if (o->npart < sizeof o->part) {
      break; /* wait for the rest */
    }
    record(o->app, o->stream, o->part, o->npart);
    o->npart = 0;
  }
}

static void out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct fy_outpipe *o = s->data;
  if (n > 0 && o->app) out_bytes(o, b->base, (size_t)n);
  if (n < 0 && !uv_is_closing((uv_handle_t *)s)) {
    if (o->npart) record(o->app, o->stream, o->part, o->npart); /* a last line without its newline */
    o->npart = 0;
    for (int i = 0; i < 2; i++)
      if (o->app->out_fd[i] == uv_fileno_or((uv_handle_t *)s)) o->app->out_fd[i] = -1;
    uv_close((uv_handle_t *)s, out_closed);
  }
}

void fy_applog_watch(fy_app *app, int fd, int which) {
  struct fy_outpipe *op = calloc(1, sizeof *op);
  if (!op) {
    close(fd);
    return;
  }
  op->app = app;
  op->stream = which == FY_OUT_STDERR ? 'E' : 'O';
  uv_pipe_init(app->agent->loop, &op->pipe, 0);
  op->pipe.data = op;
  op->next = app->pipes;
  app->pipes = op;
  app->open_handles++;
  if (uv_pipe_open(&op->pipe, fd) == 0) {
    app->out_fd[which == FY_OUT_STDERR] = fd;
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

/* --- reading ------------------------------------------------------------------------------- */

/* Appends up to `max` bytes from the end of path to *buf. */
static void read_end(const char *path, char *buf, size_t *len, size_t max) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  struct stat st;
  if (fd < 0) return;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    size_t want = (uint64_t)st.st_size < max ? (size_t)st.st_size : max;
    ssize_t n = pread(fd, buf + *len, want, st.st_size - (off_t)want);
    if (n > 0) *len += (size_t)n;
  }
  close(fd);
}

char *fy_app_log_read(const fy_agent *a, const char *app, const fy_log_query *q, size_t max) {
  char path[4200], old[4210], cutoff[FY_LOG_TS_LEN + 1];
  fy_app_dir(a, app, path, sizeof path);
  strncat(path, "/log", sizeof path - strlen(path) - 1);
  snprintf(old, sizeof old, "%s.1", path);
  size_t len = 0, cap = 2 * (size_t)FY_LOG_CAP + 2 * FY_LOG_RECORD_MAX;
  char *buf = malloc(cap + 1), *out = malloc(max + 1);
  if (!buf || !out) {
    free(buf);
    free(out);
    return NULL;
  }
  read_end(old, buf, &len, FY_LOG_CAP + FY_LOG_RECORD_MAX);
  if (len && buf[len - 1] != '\n') buf[len++] = '\n';
  read_end(path, buf, &len, FY_LOG_CAP + FY_LOG_RECORD_MAX);
  if (q->since_s) {
    uint64_t now = now_ms(), back = (uint64_t)q->since_s * 1000u;
    char rec[FY_LOG_TS_LEN + 8];
    fy_applog_format(rec, now > back ? now - back : 0, 'F', "", 0);
    memcpy(cutoff, rec, FY_LOG_TS_LEN);
  }
  /* Back from the end: the last `tail` wanted lines, as many as fit in max. */
  size_t o = max, lines = 0;
  char *end = buf + len;
  while (end > buf && lines < (size_t)q->tail) {
    char *e = end;
    if (e > buf && e[-1] == '\n') e--;
    char *b = e;
    while (b > buf && b[-1] != '\n') b--;
    fy_logline l;
    fy_applog_parse(b, (size_t)(e - b), &l);
    end = b;
    if ((size_t)(e - b) == 0 && end == buf) break;
    if (!fy_applog_wants(q, &l, q->since_s ? cutoff : NULL)) continue;
    size_t need = l.len + 1 + (q->timestamps && l.ts ? FY_LOG_TS_LEN + 1 : 0);
    if (need > o) break;
    char tmp[FY_LOG_RECORD_MAX + 1];
    size_t n = need <= sizeof tmp ? fy_applog_render(&l, q->timestamps, tmp) : 0;
    o -= n;
    memcpy(out + o, tmp, n);
    lines++;
  }
  memmove(out, out + o, max - o);
  out[max - o] = '\0';
  free(buf);
  return out;
}

char *fy_app_log_tail(const fy_agent *a, const char *app, int lines, size_t max) {
  fy_log_query q = {.tail = lines};
  return fy_app_log_read(a, app, &q, max);
}
