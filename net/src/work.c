/* The uv_queue_work wrapper (see work.h). The request is allocated here so that callers need
 * no uv_work_t of their own; it is freed after done. */
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ferry/work.h"

/* The pool's threads run below the loop's priority: on a small board a deploy's hashing and
 * writing yields to the loop that answers status, supervises apps and reads the next bytes. */
#define WORK_NICE 10

typedef struct {
  uv_work_t req;
  fy_work_fn fn;
  fy_work_done_fn done;
  void *ud;
} work;

static void run(uv_work_t *r) {
  static _Thread_local int niced;
  if (!niced) {
    niced = 1;
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORK_NICE); /* per thread on Linux */
  }
  work *w = r->data;
  w->fn(w->ud);
}

static void finished(uv_work_t *r, int status) {
  work *w = r->data;
  (void)status; /* never cancelled: nothing calls uv_cancel */
  fy_work_done_fn done = w->done;
  void *ud = w->ud;
  free(w);
  done(ud);
}

int fy_work_queue(uv_loop_t *loop, fy_work_fn fn, fy_work_done_fn done, void *ud) {
  work *w = calloc(1, sizeof *w);
  if (!w) return FY_ENOMEM;
  w->fn = fn;
  w->done = done;
  w->ud = ud;
  w->req.data = w;
  if (uv_queue_work(loop, &w->req, run, finished) != 0) {
    free(w);
    return FY_EIO;
  }
  return FY_OK;
}
