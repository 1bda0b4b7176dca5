/* ferry exec TARGET --app A [-i] [-t] -- CMD...: a command inside the app on one node, as
 * kubectl exec runs one in a pod. The conversation is hello -> facts -> an exec request, then
 * output frames (the command's stdout and stderr) and, with -i, input frames (our stdin; an
 * empty one at its end), until the result carries the exit code.
 *
 * Exit status: the command's own; 125 when ferry or the node could not run it (the error says
 * why), as docker exec does. With -t and a terminal on stdin, the terminal is raw while the
 * command runs and put back however ferry ends. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "ask.h"
#include "cli.h"
#include "conn.h"
#include "ferry/version.h"
#include "ferry/wire.h"
#include "ferry/yaml.h"

#define EXEC_FAILED 125

typedef struct exec_run {
  fy_conn conn;
  uv_loop_t *loop;
  json_t *request;
  const char *app;
  int input;               /* -i: our stdin goes to the command */
  uv_pipe_t in;            /* our stdin: a pipe, */
  uv_tty_t tin;            /* or a terminal (libuv reopens it, so the shell's stays blocking) */
  uv_stream_t *ins;
  uv_idle_t file_in;       /* or a file (epoll takes no regular file): read a chunk per loop turn */
  int file_open, file_reading;
  int in_open, in_reading;
  int eof_pending;         /* the end of stdin waits for TLS's buffer to drain */
  char held[32768];        /* stdin read while the buffer was full, sent once it drains */
  size_t nheld;
  int started;             /* the first output frame came: the command runs */
  int done, exit_code;
  char err[600];
} exec_run;

static struct termios saved_tio;
static int tio_saved;

static void restore_tty(void) {
  if (tio_saved) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
  tio_saved = 0;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* our reader went away: nothing better to do with it */
    p += w;
    n -= (size_t)w;
  }
}

static void in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  static char buf[32768];
  (void)h;
  (void)suggested;
  *b = uv_buf_init(buf, sizeof buf);
}

static void in_closed(uv_handle_t *h) { (void)h; }

/* The end of our stdin, as an empty input frame (later, when TLS's buffer is full). */
static void send_eof(exec_run *x) {
  int rc = fy_conn_send(&x->conn, FY_FT_INPUT, "", 0);
  x->eof_pending = rc == FY_EBUSY;
  if (rc != FY_OK && rc != FY_EBUSY) fy_conn_close(&x->conn, rc, "cannot send the end of stdin");
}

/* Sends n bytes of our stdin. 0: stop reading: TLS's buffer is full (the bytes are kept for
 * on_writable) or the connection failed (it is closing). */
static int send_input(exec_run *x, const char *p, size_t n) {
  int rc = fy_conn_send(&x->conn, FY_FT_INPUT, p, n);
  if (rc == FY_EBUSY) {
    memcpy(x->held, p, n);
    x->nheld = n;
  } else if (rc != FY_OK) {
    fy_conn_close(&x->conn, rc, "cannot send stdin");
  }
  return rc == FY_OK;
}

static void stop_input(exec_run *x) {
  if (x->in_open && !uv_is_closing((uv_handle_t *)x->ins)) uv_close((uv_handle_t *)x->ins, in_closed);
  if (x->file_open && !uv_is_closing((uv_handle_t *)&x->file_in)) uv_close((uv_handle_t *)&x->file_in, in_closed);
}

static void in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  exec_run *x = s->data;
  if (n == 0) return;
  if (n < 0) { /* end of our stdin: the command's ends too */
    send_eof(x);
    stop_input(x);
    return;
  }
  if (!send_input(x, b->base, (size_t)n)) {
    uv_read_stop(s);
    x->in_reading = 0;
  }
}

static void file_chunk(uv_idle_t *h) {
  exec_run *x = h->data;
  char buf[32768];
  ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
  if (n < 0 && errno == EINTR) return;
  if (n <= 0) { /* the end of the file (or an error reading it): the command's stdin ends */
    send_eof(x);
    stop_input(x);
    return;
  }
  if (!send_input(x, buf, (size_t)n)) {
    uv_idle_stop(h);
    x->file_reading = 0;
  }
}

static void start_input(exec_run *x) {
  if (!x->input || x->in_open || x->file_open) return;
  if (uv_guess_handle(STDIN_FILENO) == UV_FILE) { /* a regular file or /dev/null */
    uv_idle_init(x->loop, &x->file_in);
    x->file_in.data = x;
    x->file_open = x->file_reading = 1;
    uv_idle_start(&x->file_in, file_chunk);
    return;
  }
  if (isatty(STDIN_FILENO)) {
    if (uv_tty_init(x->loop, &x->tin, STDIN_FILENO, 1) != 0) return;
    x->ins = (uv_stream_t *)&x->tin;
  } else {
    if (uv_pipe_init(x->loop, &x->in, 0) != 0) return;
    x->ins = (uv_stream_t *)&x->in;
    if (uv_pipe_open(&x->in, STDIN_FILENO) != 0) {
      uv_close((uv_handle_t *)&x->in, in_closed);
      return;
    }
  }
  x->ins->data = x;
  x->in_open = 1;
  x->in_reading = 1;
  if (uv_read_start(x->ins, in_alloc, in_read) != 0) {
    fy_cli_err("cannot read stdin; the command gets none");
    send_eof(x);
    stop_input(x);
  }
}

static void on_writable(fy_conn *c) {
  exec_run *x = c->ud;
  if (x->nheld) {
    int rc = fy_conn_send(c, FY_FT_INPUT, x->held, x->nheld);
    if (rc == FY_EBUSY) return;
    x->nheld = 0;
    if (rc != FY_OK) {
      fy_conn_close(c, rc, "cannot send stdin");
      return;
    }
  }
  if (x->eof_pending) send_eof(x);
  if (x->in_open && !x->in_reading && !uv_is_closing((uv_handle_t *)x->ins)) {
    x->in_reading = 1;
    uv_read_start(x->ins, in_alloc, in_read);
  }
  if (x->file_open && !x->file_reading && !uv_is_closing((uv_handle_t *)&x->file_in)) {
    x->file_reading = 1;
    uv_idle_start(&x->file_in, file_chunk);
  }
}

static void on_ready(fy_conn *c) {
  exec_run *x = c->ud;
  json_t *h = fy_msg_hello("ferry " FY_VERSION, "exec", x->app);
  int rc = h ? fy_conn_send_json(c, FY_FT_HELLO, h) : FY_ENOMEM;
  json_decref(h);
  if (rc != FY_OK) fy_conn_close(c, rc, "cannot send hello");
}

static int on_frame(fy_conn *c, const fy_frame *f) {
  exec_run *x = c->ud;
  if (f->type == FY_FT_OUTPUT && f->len >= 1) {
    if (!x->started) {
      x->started = 1;
      fy_stream_timer(&c->s, 0, 0); /* the command may be quiet as long as it likes */
      start_input(x);
    }
    write_all(f->payload[0] == FY_OUT_STDERR ? STDERR_FILENO : STDOUT_FILENO, (const char *)f->payload + 1, f->len - 1);
    return FY_OK;
  }
  json_t *j;
  char err[300];
  int rc = fy_msg_parse(f, &j, err, sizeof err);
  if (rc != FY_OK) {
    fy_conn_close(c, rc, err);
    return FY_ECANCELED;
  }
  if (f->type == FY_FT_FACTS) {
    json_int_t proto = json_integer_value(json_object_get(j, "proto"));
    json_decref(j);
    if (proto < 4) {
      snprintf(x->err, sizeof x->err, "the agent speaks protocol %lld; exec needs 4 (ferry upgrade-agent brings it up to date)",
               (long long)proto);
      fy_conn_close(c, FY_EUNSUPPORTED, x->err);
      return FY_ECANCELED;
    }
    rc = fy_conn_send_json(c, FY_FT_REQUEST, x->request);
    if (rc != FY_OK) {
      fy_conn_close(c, rc, "cannot send the request");
      return FY_ECANCELED;
    }
    return FY_OK;
  }
  if (f->type == FY_FT_RESULT) {
    fy_result_msg r;
    if (fy_result_decode(j, &r, err, sizeof err) == FY_OK && r.result == FY_RESULT_EXITED && r.has_exit_code) {
      x->done = 1;
      x->exit_code = r.exit_code >= 0 && r.exit_code <= 255 ? (int)r.exit_code : EXEC_FAILED;
    } else if (fy_result_decode(j, &r, err, sizeof err) == FY_OK) { /* refused: why */
      snprintf(x->err, sizeof x->err, "%s", r.message[0] ? r.message : fy_result_name(r.result));
    } else {
      snprintf(x->err, sizeof x->err, "%s", err);
    }
    json_decref(j);
    fy_conn_close(c, FY_OK, NULL);
    return FY_ECANCELED;
  }
  json_decref(j);
  fy_conn_close(c, FY_EPROTO, "unexpected message");
  return FY_ECANCELED;
}

static void on_done(fy_conn *c, int err, const char *msg) {
  exec_run *x = c->ud;
  if (!x->done && !x->err[0]) snprintf(x->err, sizeof x->err, "%s", msg ? msg : fy_strerror(err ? err : FY_EPROTO));
  stop_input(x);
}

static const fy_conn_ops exec_ops = {.on_ready = on_ready, .on_frame = on_frame, .on_writable = on_writable, .on_done = on_done};

/* Through the broker: the request signed, the command run on the node without input, its output
 * (the first 128 KiB of each stream) and exit code back in the node's signed reply. */
static size_t broker_pick;
static int picked(fy_ask_batch *b, fy_ask *a) {
  (void)b;
  return a->index == broker_pick;
}

static int exec_via_broker(fy_cli_common *cc, const fy_target *t, const fy_request_msg *rq) {
  fy_ask *asks = calloc(cc->ntargets, sizeof *asks);
  json_t *req = fy_request_encode(rq);
  int ret = EXEC_FAILED;
  if (!asks || !req) goto out;
  broker_pick = (size_t)(t - cc->targets);
  fy_ask_batch b = {.timeout_ms = cc->timeout_ms, .op = "exec", .app = rq->app, .request = req, .filter = picked};
  if (fy_broker_ask_run(cc, &b, asks) != FY_OK) goto out;
  fy_ask *a = &asks[broker_pick];
  fy_result_msg r;
  char err[300];
  if (a->err != FY_OK) {
    fy_cli_err("%s (through the broker): %s", t->name, a->msg);
  } else if (fy_result_decode(a->answer, &r, err, sizeof err) != FY_OK) {
    fy_cli_err("%s (through the broker): %s", t->name, err);
  } else if (r.result != FY_RESULT_EXITED || !r.has_exit_code) {
    fy_cli_err("%s (through the broker): %s", t->name, r.message[0] ? r.message : fy_result_name(r.result));
  } else {
    static const char *const names[] = {"stdout", "stderr"};
    for (int k = 0; k < 2; k++) {
      unsigned char *p = NULL;
      size_t n = 0;
      const json_t *v = json_object_get(a->answer, names[k]);
      if (v && fy_settings_bytes(v, &p, &n) == FY_OK) write_all(k ? STDERR_FILENO : STDOUT_FILENO, (const char *)p, n);
      free(p);
    }
    if (json_is_true(json_object_get(a->answer, "output_truncated")))
      fy_cli_err("%s: the output was cut at 128 KiB per stream (through the broker)", t->name);
    ret = r.exit_code >= 0 && r.exit_code <= 255 ? (int)r.exit_code : EXEC_FAILED;
  }
  fy_ask_batch_free(&b);
out:
  json_decref(req);
  free(asks);
  return ret;
}

static void usage(FILE *f) {
  fprintf(f, "usage: ferry exec TARGET --app NAME [-i] [-t] [--identity DIR] [--fleet FILE] [--timeout S] -- CMD [ARG...]\n"
             "Runs CMD inside the app on one node: in its namespaces and root, as its user, with its\n"
             "capabilities and syscall filter. TARGET is [NAME@]HOST:PORT, or a node's name with --fleet.\n"
             "  -i, --stdin   send ferry's stdin to the command\n"
             "  -t, --tty     give the command a terminal (with -i, this terminal is raw until it ends)\n"
             "The node must allow it (allow_exec: true in its agent config) and run the app contained.\n"
             "Exit status: the command's; 125 when it could not be run (the message says why).\n");
}

int fy_cmd_exec(int argc, char **argv) {
  static const struct option opts[] = {FY_CLI_COMMON_OPTIONS, {"app", required_argument, 0, 'a'},
                                       {"stdin", no_argument, 0, 'I'}, {"tty", no_argument, 0, 'Y'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  fy_cli_common cc = {.timeout_ms = 30000};
  exec_run x = {0};
  int c, r, ret = 2, tty = 0;
  const char *app = NULL, *where = NULL;
  fy_tls_conf *tls = NULL;
  /* -i and -t as kubectl spells them (also -it): the shared options use those letters long-only. */
  for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "-i") == 0) argv[i] = "--stdin";
    else if (strcmp(argv[i], "-t") == 0) argv[i] = "--tty";
    else if (strcmp(argv[i], "-it") == 0 || strcmp(argv[i], "-ti") == 0) {
      argv[i] = "--tty";
      x.input = 1;
    }
  }
  optind = 1;
  for (;;) {
    c = getopt_long(argc, argv, "+" FY_CLI_COMMON_SHORT, opts, NULL);
    if (c == -1) { /* at "--" (taken), the command, or TARGET with options after it */
      if (!where && optind < argc && strcmp(argv[optind - 1], "--") != 0) {
        where = argv[optind++];
        continue;
      }
      break;
    }
    if ((r = fy_cli_common_opt(&cc, c, optarg)) != 0) {
      if (r < 0) goto cleanup;
      continue;
    }
    switch (c) {
    case 'a': app = optarg; break;
    case 'I': x.input = 1; break;
    case 'Y': tty = 1; break;
    case 'h': usage(stdout); ret = 0; goto cleanup;
    default: usage(stderr); goto cleanup;
    }
  }
  if (!where || !app || optind >= argc) {
    fy_cli_err("%s", !where ? "exec needs a TARGET ([NAME@]HOST:PORT, or a node's name with --fleet)"
                     : !app ? "exec needs --app NAME"
                            : "exec needs a command after --");
    goto cleanup;
  }
  if (argc - optind > FY_EXEC_ARGS_MAX) {
    fy_cli_err("at most %d arguments", FY_EXEC_ARGS_MAX);
    goto cleanup;
  }
  if (strchr(where, ':')) {
    if (fy_cli_add_target(&cc, where) != FY_OK) goto cleanup;
  } else if (!cc.fleet_path) {
    fy_cli_err("'%s' is a node's name: say which fleet file with --fleet (or give HOST:PORT)", where);
    goto cleanup;
  }
  if (fy_cli_common_targets(&cc, "exec") != FY_OK) goto cleanup;
  const fy_target *t = NULL;
  for (size_t i = 0; i < cc.ntargets && !t; i++)
    if (strchr(where, ':') || strcmp(cc.targets[i].name, where) == 0) t = &cc.targets[i];
  if (!t || (strchr(where, ':') && cc.ntargets != 1)) {
    fy_cli_err(t ? "exec runs on one node" : "%s lists no node '%s'", cc.fleet_path, where);
    goto cleanup;
  }
  ret = EXEC_FAILED;
  if (fy_cli_load_identity(cc.identity, &tls) != FY_OK) goto cleanup;
  fy_request_msg rq = {.op = FY_REQ_EXEC, .app = app, .tty = tty, .input = x.input || tty};
  for (int i = optind; i < argc; i++) rq.argv[rq.argc++] = argv[i];
  if (cc.have_fleet && cc.fleet.have_broker && !t->host[0]) { /* a node reached only through the broker */
    if (x.input || tty) {
      fy_cli_err("%s is reached through the broker: exec -i and -t do not go through it (a command without input does)", t->name);
      ret = 2;
      goto cleanup;
    }
    ret = exec_via_broker(&cc, t, &rq);
    goto cleanup;
  }
  x.input = rq.input && (x.input || isatty(STDIN_FILENO)); /* -t alone: the terminal types into it */
  rq.input = x.input;
  struct winsize ws;
  if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col && ws.ws_row <= 1000 && ws.ws_col <= 1000) {
    rq.rows = ws.ws_row;
    rq.cols = ws.ws_col;
  }
  if (!(x.request = fy_request_encode(&rq))) goto cleanup;
  if (tty && x.input && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
    struct termios raw = saved_tio;
    cfmakeraw(&raw);
    tio_saved = 1;
    atexit(restore_tty);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  x.loop = &loop;
  x.app = app;
  fy_conn_start(&x.conn, &loop, t, tls, &exec_ops, &x, cc.timeout_ms);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  restore_tty();
  if (x.done) {
    ret = x.exit_code;
  } else {
    fy_cli_err("%s (%s): %s", t->name[0] ? t->name : t->address, t->address, x.err);
  }
cleanup:
  json_decref(x.request);
  fy_tls_conf_free(tls);
  fy_cli_common_free(&cc);
  return ret;
}
