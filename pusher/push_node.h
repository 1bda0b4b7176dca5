/* One node of a push, on the caller's loop: hello -> facts -> choose the variant -> plan ->
 * the agent's need list -> blob data from the agent's offsets, in bounded chunks with
 * backpressure -> commit -> result. Memory per node is its TLS session and what the socket has
 * not taken yet; layer bytes come from the shared chunk cache. */
#ifndef FERRY_PUSHER_PUSH_NODE_H
#define FERRY_PUSHER_PUSH_NODE_H

#include "chunks.h"
#include "conn.h"
#include "layout.h"
#include "ferry/wire.h"

enum { FY_PN_IDLE, FY_PN_CONNECT, FY_PN_FACTS, FY_PN_PLAN, FY_PN_SEND, FY_PN_COMMIT, FY_PN_CONFIRM, FY_PN_DONE };

typedef struct fy_push_cfg {
  fy_layout *layout;
  const char *app;
  uint64_t settle_ms;
  int settle_set;          /* --settle given: it wins over the image's label */
  const char *health_cmd;
  int health_port;
  fy_tls_conf *tls;
  uint64_t timeout_ms;
  fy_chunks *chunks;
  int events;              /* print plain event lines to stderr */
  const struct fy_layout_sig *signature; /* the layout's release signature, NULL if unsigned */
  int agent_upgrade;       /* the layout holds ferryd itself (ferry upgrade-agent) */
  int upgrade_timeout_s;   /* the agent's watchdog waits this long for the new agent */
  int force;               /* deploy even where the node runs this already (--force) */
  const char *via;         /* docker://HOST/REPO the devices pull from (--via, registry:), NULL: streamed */
  const char *pull_auth;   /* an auth.json with the read-only credential for it (registry_auth:, --pull-auth) */
  int fallback_stream;     /* --fallback-stream: a node that cannot pull is streamed to */
  fy_plan_source source;   /* filled before the waves when via is set */
} fy_push_cfg;

/* The plan's run options for variant v: the flags win, else what the recipe's run: section put
 * into the image config. Fills settle_ms, health_cmd, health_port and force of pm. */
void fy_push_plan_options(const fy_push_cfg *cfg, const fy_variant *v, fy_plan_msg *pm);

typedef struct fy_pnode fy_pnode;
struct fy_pnode {
  fy_conn conn;
  const fy_push_cfg *cfg;
  const json_t *settings;  /* this node's env, files and secrets (borrowed; NULL: none) */
  int phase;
  char name[FY_TLS_NAME_MAX];
  char platform[FY_PLATFORM_STR];
  fy_variant v;
  int have_variant;
  struct fy_pneed { int layer; uint64_t offset, size; } *need;
  size_t nneed, ni;
  uint64_t blob_off, blob_end;
  int in_blob;
  uint64_t bytes_sent, total_to_send;
  int blobs_sent, blobs_skipped;
  fy_result result;        /* deployed | rolled-back | failed (ferry/msg.h) */
  int err;
  char msg[1024];
  char release[80];
  char *log_tail;
  /* agent upgrade: the new agent's digest, polled for after the old one re-executed */
  char old_digest[80], expect_digest[80], seen_digest[80];
  uv_timer_t confirm_timer;
  int confirm_timer_open, confirm_waiting;
  uint64_t confirm_deadline;
  void (*on_finish)(fy_pnode *n);  /* after the connection closed */
  void *ud;
};

/* Starts pushing to t. Exactly one on_finish follows. */
void fy_pnode_start(fy_pnode *n, uv_loop_t *loop, const fy_target *t, const fy_push_cfg *cfg);
/* Closes the connection: a node that has not committed keeps what it runs. */
void fy_pnode_abort(fy_pnode *n, const char *why);
void fy_pnode_free(fy_pnode *n);
const char *fy_pnode_name(const fy_pnode *n);
const char *fy_pnode_phase_name(int phase);
/* Prints a "name: message" event line when cfg->events is on. */
void fy_pnode_event(const fy_pnode *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The plan message for variant v of P's image with these settings (borrowed, may be NULL): what
 * a direct push sends and what a desired state through the broker seals to the node. */
int fy_push_plan_json(const fy_push_cfg *P, const fy_variant *v, const json_t *settings, json_t **out, char *err, size_t errlen) FY_WUR;

#endif
