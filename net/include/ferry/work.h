/* Blocking work off the event loop: the one wrapper around uv_queue_work that both programs use
 * for disk writes, hashing, fsync, removing trees, unpacking, recompression and upgrade checks,
 * so that the loop keeps serving status, logs and supervision meanwhile.
 *
 *   fy_work_queue(loop, write_chunk, chunk_written, state);
 *
 * fn runs on libuv's thread pool (UV_THREADPOOL_SIZE, 4 by default) and may block; it must not
 * touch the loop or anything the loop thread changes meanwhile. done runs on the loop thread
 * afterwards, always exactly once, with the ud given here. The caller keeps ud alive until done. */
#ifndef FERRY_WORK_H
#define FERRY_WORK_H

#include <uv.h>

#include "ferry/error.h"

typedef void (*fy_work_fn)(void *ud);
typedef void (*fy_work_done_fn)(void *ud);

/* FY_OK, or FY_ENOMEM / FY_EIO when the work cannot be queued (done is then not called). */
int fy_work_queue(uv_loop_t *loop, fy_work_fn fn, fy_work_done_fn done, void *ud) FY_WUR;


#endif
