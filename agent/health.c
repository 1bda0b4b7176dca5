/* Health checks (health.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "health.h"
#include "launch.h"
#include "ferry/text.h"

struct fy_hcheck {
  fy_app *app;
  uv_timer_t timer;          /* the timeout; at 0 ms, an answer decided at the start */
  uv_tcp_t probe;
  uv_connect_t req;
  uv_process_t proc;
  int open;                  /* handles not closed yet */
  int proc_running, probe_open, closing, answered;
  int port;
  char text[FY_HEALTH_CMD_MAX];
  char early[400];           /* a failure found at the start, answered from the loop */
  fy_hcheck_cb cb;
  void *ud;
};

static void handle_closed(uv_handle_t *hd) {
  fy_hcheck *h = hd->data;
  if (--h->open == 0) free(h);
}

/* Everything closes; the last close callback frees the check. */
static void wind_down(fy_hcheck *h) {
  if (h->closing) return;
  h->closing = 1;
  if (h->proc_running) { /* its exit callback closes the handle */
    kill(-h->proc.pid, SIGKILL);
    uv_process_kill(&h->proc, SIGKILL);
  }
  if (h->probe_open && !uv_is_closing((uv_handle_t *)&h->probe)) uv_close((uv_handle_t *)&h->probe, handle_closed);
  uv_close((uv_handle_t *)&h->timer, handle_closed);
}

static void answer(fy_hcheck *h, int ok, const char *why) {
  if (h->answered || h->closing) return;
  h->answered = 1;
  uv_timer_stop(&h->timer);
  fy_hcheck_cb cb = h->cb;
  h->cb = NULL;
  wind_down(h);
  if (cb) cb(h->app, ok, why, h->ud);
}

static void on_timer(uv_timer_t *t) {
  fy_hcheck *h = t->data;
  answer(h, 0, h->early[0] ? h->early : "the health check did not answer in time");
}

static void probe_connected(uv_connect_t *req, int status) {
  fy_hcheck *h = req->data;
  if (!uv_is_closing((uv_handle_t *)&h->probe)) uv_close((uv_handle_t *)&h->probe, handle_closed);
  if (h->answered || h->closing) return; /* late, or cancelled */
  char why[200];
  /* Someone answers; it must be the app, not a neighbour that holds the port. */
  int ours = status == 0 && fy_app_owns_port(h->app, h->port);
  if (status != 0) snprintf(why, sizeof why, "health port %d: %s", h->port, uv_strerror(status));
  else if (!ours) snprintf(why, sizeof why, "health port %d: the process listening there is not part of %s", h->port, h->app->name);
  else snprintf(why, sizeof why, "health port %d: ok", h->port);
  answer(h, ours, why);
}

static void proc_exit(uv_process_t *p, int64_t status, int sig) {
  fy_hcheck *h = p->data;
  h->proc_running = 0;
  uv_close((uv_handle_t *)p, handle_closed);
  if (h->answered || h->closing) return; /* late, or killed */
  char why[FY_HEALTH_CMD_MAX + 64];
  fy_text_fmt(why, sizeof why, "health command '%s' %s %lld", h->text, sig ? "died on signal" : "exited with status",
              (long long)(sig ? sig : status));
  answer(h, status == 0 && sig == 0, why);
}

static void start_probe(fy_hcheck *h) {
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", h->port, &sa);
  uv_tcp_init(h->app->agent->loop, &h->probe);
  h->probe.data = h;
  h->probe_open = 1;
  h->open++;
  h->req.data = h;
  if (uv_tcp_connect(&h->req, &h->probe, (struct sockaddr *)&sa, probe_connected) != 0) {
    uv_close((uv_handle_t *)&h->probe, handle_closed);
    h->probe_open = 0;
    snprintf(h->early, sizeof h->early, "cannot probe the health port");
  }
}

static void start_command(fy_hcheck *h, const json_t *argv) {
  fy_launch_plan plan;
  char err[300];
  if (fy_app_health_plan(h->app, argv, &plan, err, sizeof err) != FY_OK) {
    fy_launch_plan_free(&plan);
    fy_text_fmt(h->early, sizeof h->early, "health command: %s", err);
    return;
  }
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = plan.argv[0];
  o.args = plan.argv;
  o.env = plan.env;
  o.cwd = plan.cwd[0] ? plan.cwd : NULL;
  o.exit_cb = proc_exit;
  o.flags = UV_PROCESS_DETACHED; /* its own process group: a timeout kills all of it */
  if (plan.set_ids) {
    o.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
    o.uid = plan.uid;
    o.gid = plan.gid;
  }
  h->proc.data = h;
  h->open++;
  int rc = uv_spawn(h->app->agent->loop, &h->proc, &o);
  fy_launch_plan_free(&plan);
  if (rc == 0) {
    h->proc_running = 1;
  } else {
    uv_close((uv_handle_t *)&h->proc, handle_closed);
    snprintf(h->early, sizeof h->early, "cannot run the health command");
  }
}

fy_hcheck *fy_hcheck_start(fy_app *app, const json_t *argv, const char *text, int port, uint64_t timeout_ms,
                           fy_hcheck_cb cb, void *ud) {
  fy_hcheck *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->app = app;
  h->cb = cb;
  h->ud = ud;
  h->port = port;
  snprintf(h->text, sizeof h->text, "%s", text ? text : "");
  uv_timer_init(app->agent->loop, &h->timer);
  h->timer.data = h;
  h->open = 1;
  if (port) start_probe(h);
  else if (argv) start_command(h, argv);
  else snprintf(h->early, sizeof h->early, "no health check");
  uv_timer_start(&h->timer, on_timer, h->early[0] ? 0 : timeout_ms, 0);
  return h;
}

void fy_hcheck_cancel(fy_hcheck *h) {
  if (!h) return;
  h->cb = NULL;
  wind_down(h);
}
