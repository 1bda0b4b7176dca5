/* A deploy through ferryd's local socket; see localc.h. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "localc.h"
#include "ferry/clock.h"
#include "ferry/fsutil.h"
#include "ferry/msg.h"
#include "ferry/text.h"

#define WAIT_MS_DEFAULT (15 * 60 * 1000) /* the longest silence from ferryd (a deploy sends progress) */

int fy_localc_fail(fy_localc *c, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  return rc;
}

static int on_frame(void *ud, const fy_frame *f) {
  fy_localc *c = ud;
  char why[300];
  c->got_type = f->type;
  json_decref(c->got);
  c->got = NULL;
  if (f->type == FY_FT_OUTPUT && c->on_output && f->len >= 1) c->on_output(c->output_ud, f->payload[0], f->payload + 1, f->len - 1);
  if (f->type != FY_FT_OUTPUT && fy_msg_parse(f, &c->got, why, sizeof why) != FY_OK)
    return fy_localc_fail(c, FY_EPROTO, "ferryd sent a malformed %s message: %s", fy_frame_type_name(f->type), why);
  return FY_FRAME_PAUSE; /* one at a time */
}

/* The next frame from ferryd into got_type / got, waiting at most wait_ms for bytes. */
static int next_frame(fy_localc *c) {
  uint8_t buf[16384];
  int rc;
  if (c->dec_paused) {
    c->dec_paused = 0;
    c->got_type = 0;
    rc = fy_frame_decoder_resume(&c->dec, on_frame, c);
    if (rc == FY_FRAME_PAUSE) {
      c->dec_paused = 1;
      return FY_OK;
    }
    if (rc != FY_OK) return c->err[0] ? rc : fy_localc_fail(c, rc, "ferryd's frames: %s", fy_strerror(rc));
  }
  uint64_t heard = fy_mono_ms(); /* the last bytes from ferryd */
  for (;;) {
    if (c->cancel && *c->cancel) return fy_localc_fail(c, FY_ECANCELED, "given up for a newer one");
    struct pollfd p = {.fd = c->sock, .events = POLLIN};
    uint64_t now = fy_mono_ms();
    if (now - heard >= (uint64_t)c->wait_ms) return fy_localc_fail(c, FY_ETIMEDOUT, "ferryd said nothing for %d minutes", c->wait_ms / 60000);
    int wait = (int)((uint64_t)c->wait_ms - (now - heard));
    if (c->deadline_ms) {
      if (now >= c->deadline_ms) return fy_localc_fail(c, FY_ETIMEDOUT, "it ran past its time limit");
      if (c->deadline_ms - now < (uint64_t)wait) wait = (int)(c->deadline_ms - now);
    }
    if (c->cancel && wait > 1000) wait = 1000; /* a second at a time, so that a cancel is seen */
    int pr = poll(&p, 1, wait);
    if (pr < 0 && errno != EINTR) return fy_localc_fail(c, FY_EIO, "poll: %s", strerror(errno));
    if (pr <= 0) continue; /* EINTR, or the time: the top of the loop says which limit, if any, was reached */
    ssize_t r = read(c->sock, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return fy_localc_fail(c, FY_ECONN, "ferryd closed the connection%s%s", r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
    heard = fy_mono_ms();
    rc = fy_frame_decoder_feed(&c->dec, buf, (size_t)r, on_frame, c);
    if (rc == FY_FRAME_PAUSE) {
      c->dec_paused = 1;
      return FY_OK;
    }
    if (rc != FY_OK) return c->err[0] ? rc : fy_localc_fail(c, rc, "ferryd's frames: %s", fy_strerror(rc));
  }
}

/* After a write failed, or when an error frame came: ferryd's reason, when it gave one. */
static int peer_error(fy_localc *c, int rc, const char *what) {
  for (int i = 0; i < 8 && c->got_type != FY_FT_ERROR; i++)
    if (next_frame(c) != FY_OK) break;
  if (c->got_type == FY_FT_ERROR) {
    int code;
    const char *msg;
    fy_msg_error_fields(c->got, &code, &msg);
    return fy_localc_fail(c, code, "%s", msg);
  }
  return c->err[0] ? rc : fy_localc_fail(c, rc, "%s", what);
}

int fy_localc_send_frame(fy_localc *c, uint8_t type, const void *p, size_t n) {
  uint8_t h[FY_FRAME_HEADER];
  int rc = fy_frame_header(h, type, 0, n, FY_FRAME_MAX);
  if (rc == FY_OK) rc = fy_fd_write_all(c->sock, h, sizeof h);
  if (rc == FY_OK && n) rc = fy_fd_write_all(c->sock, p, n);
  return rc == FY_OK ? FY_OK : peer_error(c, FY_ECONN, "ferryd closed the connection");
}

int fy_localc_send_json(fy_localc *c, uint8_t type, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s) return fy_localc_fail(c, FY_EINVAL, "cannot encode the %s message (text that is not UTF-8?)", fy_frame_type_name(type));
  size_t n = strlen(s);
  int rc = n > FY_FRAME_MAX ? fy_localc_fail(c, FY_ETOOBIG,
                                             "the %s message is %zu bytes, over the %u a frame carries (the manifest, config and indexes together)",
                                             fy_frame_type_name(type), n, FY_FRAME_MAX)
                            : fy_localc_send_frame(c, type, s, n);
  free(s);
  return rc;
}

static int connect_agent(fy_localc *c, const char *state_dir) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (fy_path_fmt(sa.sun_path, sizeof sa.sun_path, "%s/ferryd.sock", state_dir) != FY_OK)
    return fy_localc_fail(c, FY_ECONFIG, "state_dir %s is too long for ferryd's local socket", state_dir);
  c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->sock < 0) return fy_localc_fail(c, FY_EIO, "socket: %s", strerror(errno));
  /* a ferryd that stops reading (stopped, wedged) ends the deploy instead of blocking it forever */
  struct timeval tv = {.tv_sec = c->wait_ms / 1000};
  (void)setsockopt(c->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(c->sock, (struct sockaddr *)&sa, sizeof sa) == 0) return FY_OK;
  int e = errno;
  if (e == ENOENT || e == ECONNREFUSED)
    return fy_localc_fail(c, FY_ECONN, "ferryd is not running with state_dir %s (nothing listens on %s); start it, then try again",
                          state_dir, sa.sun_path);
  if (e == EACCES || e == EPERM) return fy_localc_fail(c, FY_EPOLICY, "%s: %s (run ferryd --import as root)", sa.sun_path, strerror(e));
  return fy_localc_fail(c, FY_ECONN, "%s: %s", sa.sun_path, strerror(e));
}

static int converse(fy_localc *c, fy_localc_deploy *d) {
  char why[300];
  fy_need_msg need;
  int rc;
  c->cancel = d->cancel;
  if ((rc = fy_localc_send_json(c, FY_FT_HELLO, fy_msg_hello(d->client, "deploy", d->app))) != FY_OK) return rc;
  if ((rc = next_frame(c)) != FY_OK) return rc;
  if (c->got_type != FY_FT_FACTS) return peer_error(c, FY_EPROTO, "ferryd did not answer hello");
  if ((rc = fy_localc_send_json(c, FY_FT_PLAN, json_incref(d->plan))) != FY_OK) return rc;
  do {
    if ((rc = next_frame(c)) != FY_OK) return rc;
    if (c->got_type == FY_FT_PROGRESS && d->on_progress) d->on_progress(d->ud, c->got);
  } while (c->got_type == FY_FT_PROGRESS);
  if (c->got_type == FY_FT_REPLY) {
    if (fy_need_decode(c->got, &need, why, sizeof why) != FY_OK) return fy_localc_fail(c, FY_EPROTO, "ferryd's need list: %s", why);
    if (need.n && !d->send_blob)
      return fy_localc_fail(c, FY_ENOENT, "the node lacks %zu layer(s) the registry did not give, and nothing here can send them", need.n);
    if (need.n) fprintf(stderr, "  %s: sending %zu layer(s) to ferryd (%u already on the node)\n", d->app, need.n, need.skipped);
    for (size_t i = 0; i < need.n; i++)
      if ((rc = d->send_blob(d->ud, c, &need.items[i])) != FY_OK) return rc;
    c->cancel = NULL; /* committed: the deploy runs to its result */
    if ((rc = fy_localc_send_frame(c, FY_FT_COMMIT, NULL, 0)) != FY_OK) return rc;
    do {
      if ((rc = next_frame(c)) != FY_OK) return rc;
      if (c->got_type == FY_FT_PROGRESS && d->on_progress) d->on_progress(d->ud, c->got);
    } while (c->got_type == FY_FT_PROGRESS);
  }
  if (c->got_type != FY_FT_RESULT) return peer_error(c, FY_EPROTO, "ferryd answered the plan with something else than a result");
  fy_result_msg res;
  if (fy_result_decode(c->got, &res, why, sizeof why) != FY_OK) return fy_localc_fail(c, FY_EPROTO, "ferryd's result: %s", why);
  d->result = res.result;
  d->code = res.code;
  snprintf(d->release, sizeof d->release, "%s", res.release);
  snprintf(d->message, sizeof d->message, "%s", res.message);
  d->log_tail = res.log_tail && res.log_tail[0] ? strdup(res.log_tail) : NULL;
  return FY_OK;
}

int fy_localc_run(const char *state_dir, fy_localc_deploy *d, char *err, size_t errlen) {
  fy_localc c = {.sock = -1, .err = err, .errlen = errlen, .wait_ms = WAIT_MS_DEFAULT};
  err[0] = '\0';
  d->log_tail = NULL;
  int rc = connect_agent(&c, state_dir);
  if (rc == FY_OK) {
    fy_frame_decoder_init(&c.dec, FY_FRAME_MAX);
    rc = converse(&c, d);
    fy_frame_decoder_free(&c.dec);
  }
  json_decref(c.got);
  if (c.sock >= 0) close(c.sock);
  return rc;
}

int fy_localc_ask(const char *state_dir, const char *client, const char *op, const char *app, json_t *request, json_t **answer,
                  uint8_t *type, fy_localc_output_fn on_output, void *ud, int max_ms, char *err, size_t errlen) {
  fy_localc c = {.sock = -1, .err = err, .errlen = errlen, .wait_ms = WAIT_MS_DEFAULT, .on_output = on_output, .output_ud = ud,
                 .deadline_ms = max_ms > 0 ? fy_mono_ms() + (uint64_t)max_ms : 0};
  err[0] = '\0';
  *answer = NULL;
  *type = 0;
  int rc = connect_agent(&c, state_dir);
  if (rc == FY_OK) {
    fy_frame_decoder_init(&c.dec, FY_FRAME_MAX);
    if ((rc = fy_localc_send_json(&c, FY_FT_HELLO, fy_msg_hello(client, op, app))) == FY_OK && (rc = next_frame(&c)) == FY_OK) {
      if (c.got_type == FY_FT_ERROR) {
        *type = c.got_type;
        *answer = json_incref(c.got);
      } else if (c.got_type != FY_FT_FACTS) {
        rc = peer_error(&c, FY_EPROTO, "ferryd did not answer hello");
      } else if ((rc = fy_localc_send_json(&c, FY_FT_REQUEST, json_incref(request))) == FY_OK) {
        do rc = next_frame(&c);
        while (rc == FY_OK && (c.got_type == FY_FT_OUTPUT || c.got_type == FY_FT_PROGRESS));
        if (rc == FY_OK) {
          *type = c.got_type;
          *answer = json_incref(c.got);
        }
      }
    }
    fy_frame_decoder_free(&c.dec);
  }
  json_decref(c.got);
  if (c.sock >= 0) close(c.sock);
  return rc;
}
