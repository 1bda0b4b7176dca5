/* ferry exec: one command inside a running app, for the connection that asked.
 *
 * The command is the health command's plan (fy_app_health_plan): the runtime helper in join
 * mode enters the app's namespaces, root and cgroups and runs it as the app's user with its
 * capabilities and syscall filter. Only for contained apps, and only where the agent config
 * says allow_exec: true: it runs code that no release signature covers.
 *
 * Without a tty the command's stdin (with -i), stdout and stderr are pipes; with one, all three
 * are the slave of a pty whose master ferryd reads and writes. Output goes to the pusher in
 * output frames as it comes; reading pauses while the connection has more than EXEC_UNSENT_MAX
 * bytes unsent. The result (exited, with the exit code: the status, or 128 + the signal) goes
 * once the process has ended and its output is drained. When the pusher leaves, the command's
 * process group is killed.
 *
 * Lifetime: the session owns its handles and frees itself in the last close callback; the
 * connection points at it (fy_conn_exec) until then, and it refers to the connection by id. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "launch.h"
#include "ferry/text.h"
#include "ferry/wire.h"

#define EXEC_UNSENT_MAX (256u * 1024u)  /* output waiting for the pusher: reading pauses above */
#define EXEC_INPUT_HIGH (256u * 1024u)  /* input waiting for the command: the connection pauses above */
#define EXEC_INPUT_MAX (4u * 1024u * 1024u) /* and past this (a peer that ignores the pause) it is dropped */

typedef struct fy_exec {
  fy_agent *a;
  uint64_t conn;
  fy_agent_conn *owner;    /* the connection pointing at this session; NULL once it is gone (its
                            * memory lives until conn_closed, which calls fy_exec_conn_closed) */
  char app[FY_APP_NAME_MAX];
  uv_process_t proc;
  uv_pipe_t out[2];        /* stdout, stderr (with a tty: out[0] is the master, both ways) */
  uv_pipe_t in;            /* stdin without a tty, with -i */
  int nout, has_in, tty;
  int outs_open;           /* output streams not at EOF yet */
  int eof[2];              /* that stream reached EOF: never read again */
  int exited;
  int64_t code;
  int paused;
  int in_paused;           /* the connection is paused until the command's stdin drains */
  int in_shutdown;         /* the pusher's stdin ended: the pipe closes after its last write */
  uv_shutdown_t shut;
  uv_timer_t poll;         /* resumes reading once the connection drained */
  int open_handles;
  int closing;
} fy_exec;

static void handle_closed(uv_handle_t *h) {
  fy_exec *x = h->data;
  if (--x->open_handles == 0) free(x);
}

static void exec_close(fy_exec *x) {
  if (x->closing) return;
  x->closing = 1;
  if (x->owner && *fy_conn_exec(x->owner) == x) *fy_conn_exec(x->owner) = NULL;
  x->owner = NULL;
  /* The helper leads its group: all of it goes. Its handle closes in the exit callback, once it
   * is reaped (closing it now would leave a zombie). */
  if (!x->exited && x->proc.pid > 0) kill(-x->proc.pid, SIGKILL);
  uv_handle_t *hs[] = {x->exited ? (uv_handle_t *)&x->proc : NULL, (uv_handle_t *)&x->out[0], (uv_handle_t *)&x->out[1],
                       (uv_handle_t *)&x->in, (uv_handle_t *)&x->poll};
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
    if (hs[i] && hs[i]->data == x && !uv_is_closing(hs[i])) uv_close(hs[i], handle_closed);
}

/* The process is gone and its output drained: the result. */
static void maybe_done(fy_exec *x) {
  if (!x->exited || x->outs_open > 0 || x->closing) return;
  fy_agent_conn *c = x->owner ? fy_conn_find(x->a, x->conn) : NULL;
  if (c) {
    fy_result_msg r = {.result = FY_RESULT_EXITED, .app = x->app, .message = "", .release = "", .previous = "",
                       .agent_digest = "", .has_exit_code = 1, .exit_code = x->code};
    json_t *j = fy_result_encode(&r);
    if (!j || fy_conn_send_json(c, FY_FT_RESULT, j) != FY_OK) fy_conn_abort(c);
    json_decref(j);
    fy_conn_hold(c, 0);
  }
  exec_close(x);
}

static void out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  static char buf[1 + 32768];
  (void)h;
  (void)suggested;
  *b = uv_buf_init(buf + 1, sizeof buf - 1); /* buf[0]: the stream byte */
}

static void read_all(fy_exec *x, int on);

static void out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  fy_exec *x = s->data;
  if (n > 0) {
    fy_agent_conn *c = fy_conn_find(x->a, x->conn);
    char *frame = b->base - 1;
    frame[0] = s == (uv_stream_t *)&x->out[1] ? FY_OUT_STDERR : FY_OUT_STDOUT;
    if (!c || fy_conn_send(c, FY_FT_OUTPUT, frame, (size_t)n + 1) != FY_OK) {
      if (c) fy_conn_abort(c);
      exec_close(x);
      return;
    }
    if (fy_conn_unsent(c) > EXEC_UNSENT_MAX) read_all(x, 0);
    return;
  }
  if (n < 0) { /* EOF; with a tty, EIO once the last slave descriptor is closed */
    int which = s == (uv_stream_t *)&x->out[1];
    uv_read_stop(s);
    if (!x->eof[which]) x->outs_open--;
    x->eof[which] = 1;
    maybe_done(x);
  }
}

static void poll_drained(uv_timer_t *t) {
  fy_exec *x = t->data;
  fy_agent_conn *c = fy_conn_find(x->a, x->conn);
  if (!c) {
    exec_close(x);
    return;
  }
  if (fy_conn_unsent(c) <= EXEC_UNSENT_MAX / 2) read_all(x, 1);
}

static void read_all(fy_exec *x, int on) {
  if (x->paused == !on) return;
  x->paused = !on;
  for (int i = 0; i < x->nout; i++) {
    if (x->eof[i]) continue; /* a stream at its end is not read again (it would say EOF twice) */
    if (on) uv_read_start((uv_stream_t *)&x->out[i], out_alloc, out_read);
    else uv_read_stop((uv_stream_t *)&x->out[i]);
  }
  if (on) uv_timer_stop(&x->poll);
  else uv_timer_start(&x->poll, poll_drained, 20, 20);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  fy_exec *x = p->data;
  x->exited = 1;
  x->code = sig ? 128 + sig : status;
  if (x->closing) { /* killed after the pusher left: reaped now */
    if (!uv_is_closing((uv_handle_t *)p)) uv_close((uv_handle_t *)p, handle_closed);
    return;
  }
  maybe_done(x);
}

/* A pty: the master into *master, the slave into *slave, the size set when known. */
static int open_pty(int rows, int cols, int *master, int *slave) {
  char name[128];
  *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*master < 0) return -1;
  if (grantpt(*master) != 0 || unlockpt(*master) != 0 || ptsname_r(*master, name, sizeof name) != 0 ||
      (*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
    close(*master);
    return -1;
  }
  if (rows && cols) {
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    (void)ioctl(*master, TIOCSWINSZ, &ws);
  }
  return 0;
}

int fy_exec_request(fy_agent_conn *c, const fy_request_msg *rq, fy_app *ap) {
  fy_agent *a = fy_conn_agent(c);
  char err[600];
  if (!a->cfg.allow_exec)
    return fy_conn_refuse(c, FY_EPOLICY, "exec is off on %s: its agent config does not say allow_exec: true", a->name);
  if (!ap || !ap->release[0]) return fy_conn_refuse(c, FY_ENOAPP, "no app '%s' on %s", rq->app, a->name);
  if (!fy_app_pid(ap)) return fy_conn_refuse(c, FY_ENOAPP, "%s is not running on %s", ap->name, a->name);
  if (*fy_conn_exec(c)) return fy_conn_refuse(c, FY_EBUSY, "one exec per connection");
  if (fy_conn_version(c) < 4) return fy_conn_refuse(c, FY_EUNSUPPORTED, "exec needs protocol 4");
  json_t *argv = json_array();
  for (size_t i = 0; argv && i < rq->argc; i++) json_array_append_new(argv, json_string(rq->argv[i]));
  fy_launch_plan plan;
  int rc = argv ? fy_app_health_plan(ap, argv, &plan, err, sizeof err) : FY_ENOMEM;
  json_decref(argv);
  if (rc == FY_OK && plan.mode != FY_LAUNCH_CONTAIN) {
    fy_launch_plan_free(&plan);
    return fy_conn_refuse(c, FY_EPOLICY, "exec needs a contained app: %s runs %s here", ap->name, fy_launch_mode_name(plan.mode));
  }
  if (rc != FY_OK) {
    fy_launch_plan_free(&plan);
    return fy_conn_refuse(c, rc, "%s", err);
  }
  fy_exec *x = calloc(1, sizeof *x);
  int master = -1, slave = -1;
  if (!x || (rq->tty && open_pty(rq->rows, rq->cols, &master, &slave) != 0)) {
    free(x);
    fy_launch_plan_free(&plan);
    return fy_conn_refuse(c, FY_ENOMEM, rq->tty ? "cannot open a pty" : "out of memory");
  }
  x->a = a;
  x->conn = fy_conn_id(c);
  x->tty = rq->tty;
  snprintf(x->app, sizeof x->app, "%s", ap->name);
  uv_stdio_container_t stdio[3];
  for (int i = 0; i < 3; i++) stdio[i].flags = UV_IGNORE;
  x->nout = rq->tty ? 1 : 2;
  for (int i = 0; i < x->nout; i++) {
    uv_pipe_init(a->loop, &x->out[i], 0);
    x->out[i].data = x;
    x->open_handles++;
  }
  if (rq->tty) {
    for (int i = 0; i < 3; i++) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = slave;
    }
    uv_pipe_open(&x->out[0], master);
  } else {
    for (int i = 0; i < 2; i++) {
      stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
      stdio[i + 1].data.stream = (uv_stream_t *)&x->out[i];
    }
    if (rq->input) {
      uv_pipe_init(a->loop, &x->in, 0);
      x->in.data = x;
      x->open_handles++;
      x->has_in = 1;
      stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
      stdio[0].data.stream = (uv_stream_t *)&x->in;
    }
  }
  uv_timer_init(a->loop, &x->poll);
  x->poll.data = x;
  x->open_handles++;
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = plan.argv[0];
  o.args = plan.argv;
  o.env = plan.env;
  o.cwd = plan.cwd[0] ? plan.cwd : NULL;
  o.exit_cb = on_exit_cb;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.flags = UV_PROCESS_DETACHED; /* its own session and group: killed as one, and a tty can be its terminal */
  x->proc.data = x;
  rc = uv_spawn(a->loop, &x->proc, &o);
  x->open_handles++;
  fy_launch_plan_free(&plan);
  if (slave >= 0) close(slave); /* the command holds it now; EIO on the master once it is gone */
  if (rc != 0) {
    x->exited = 1;
    exec_close(x);
    return fy_conn_refuse(c, FY_EEXEC, "cannot start the runtime helper: %s", uv_strerror(rc));
  }
  x->outs_open = x->nout;
  *fy_conn_exec(c) = x;
  x->owner = c;
  fy_conn_hold(c, 1); /* an interactive command may be quiet for long */
  fy_log("info", "app %s: exec %s%s, asked by %s (%s)", ap->name, rq->argv[0], rq->argc > 1 ? " ..." : "", fy_conn_pusher(c),
         fy_conn_peer(c));
  x->paused = 1; /* not reading yet */
  read_all(x, 1);
  /* Output frames say the command started; an empty one first, so a quiet command is known to run. */
  char start = FY_OUT_STDOUT;
  if (fy_conn_send(c, FY_FT_OUTPUT, &start, 1) != FY_OK) exec_close(x);
  return FY_OK;
}

static void stdin_shut(uv_shutdown_t *r, int status) {
  (void)status;
  if (!uv_is_closing((uv_handle_t *)r->handle)) uv_close((uv_handle_t *)r->handle, handle_closed);
}

static void write_done(uv_write_t *w, int status) {
  fy_exec *x = w->data;
  uv_stream_t *in = w->handle;
  (void)status;
  free(w);
  if (x->in_paused && x->owner && uv_stream_get_write_queue_size(in) < EXEC_INPUT_HIGH / 2) {
    x->in_paused = 0;
    fy_conn_resume(x->owner); /* the command caught up: read the pusher again */
  }
}

int fy_exec_on_input(fy_agent_conn *c, const fy_frame *f) {
  fy_exec *x = *fy_conn_exec(c);
  if (!x || x->closing) return FY_OK; /* the command has ended; what was typed after it goes nowhere */
  uv_stream_t *in = x->tty ? (uv_stream_t *)&x->out[0] : x->has_in ? (uv_stream_t *)&x->in : NULL;
  if (!in || uv_is_closing((uv_handle_t *)in)) return FY_OK;
  if (f->len == 0 && !x->tty) { /* end of stdin: the pipe closes once what is queued is written */
    if (!x->in_shutdown) {
      x->in_shutdown = 1;
      if (uv_shutdown(&x->shut, in, stdin_shut) != 0 && !uv_is_closing((uv_handle_t *)in)) uv_close((uv_handle_t *)in, handle_closed);
    }
    return FY_OK;
  }
  if (x->in_shutdown) return FY_OK; /* input after its end goes nowhere */
  if (uv_stream_get_write_queue_size(in) > EXEC_INPUT_MAX)
    return fy_conn_refuse(c, FY_ETOOBIG, "the command does not read its input (over %u bytes waiting)", EXEC_INPUT_MAX);
  size_t n = f->len ? f->len : 1;
  uv_write_t *w = malloc(sizeof *w + n);
  if (!w) return fy_conn_refuse(c, FY_ENOMEM, "out of memory");
  char *copy = (char *)(w + 1);
  if (f->len) memcpy(copy, f->payload, n);
  else copy[0] = 4; /* VEOF */
  uv_buf_t b = uv_buf_init(copy, (unsigned)n);
  w->data = x;
  if (uv_write(w, in, &b, 1, write_done) != 0) {
    free(w);
    return FY_OK;
  }
  if (uv_stream_get_write_queue_size(in) > EXEC_INPUT_HIGH) { /* the command reads slower than we receive */
    x->in_paused = 1;
    return FY_FRAME_PAUSE;
  }
  return FY_OK;
}

void fy_exec_conn_closed(fy_agent_conn *c) {
  fy_exec *x = *fy_conn_exec(c);
  *fy_conn_exec(c) = NULL;
  if (x) {
    x->owner = NULL;
    exec_close(x);
  }
}
