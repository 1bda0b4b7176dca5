/* The deploy conversation's messages, one C type each with one encoder and one decoder. Every
 * bound a peer could stretch is checked once, in the decoder; the code on either side works with
 * the typed values. The JSON shapes (carried in frames, see frame.h and msg.h):
 *
 *   plan        pusher -> agent  {"app","manifest","manifest_digest","config","settle_ms",
 *                                 "health_cmd"?,"health_port"?,"agent_upgrade"?,"upgrade_timeout_s"?,
 *                                 "signature"?,"chain"?,"force"?,"settings"?,"source"?}
 *   need        agent -> pusher  {"need":[{"digest","size","offset"}],"skipped"}   (a reply frame)
 *   blob-begin  pusher -> agent  {"digest","offset"}
 *   result      agent -> pusher  {"result","app","code","name","message","release","previous"?,
 *                                 "bytes_received"?,"blobs_received"?,"blobs_skipped"?,
 *                                 "exit_code"?,"agent_digest"?,"log_tail"?}
 *   request     pusher -> agent  {"op":"logs"|"rollback"|"stop"|"start"|"restart"|"remove"|"exec","app",
 *                                 "tail"?,"follow"?,"timestamps"?,"since_s"?,"stream"?,"purge"?,
 *                                 "argv"?,"tty"?,"stdin"?,"rows"?,"cols"?}
 *                                 (stop, start, restart, remove: protocol 3; follow, exec: 4)
 *   output      agent -> pusher  stream byte + bytes (logs --follow, exec)      (protocol 4)
 *   input       pusher -> agent  bytes; empty: end of stdin (exec -i)            (protocol 4)
 *   progress    agent -> pusher  {"app","step","done"?,"total"?}      (protocol version 2)
 *   facts       agent -> pusher  {"proto","name","agent_version","platform","accepts":[..],"labels":{..},
 *                                 "board","free_bytes","uptime_s","apps":[..],"agent_digest"?}
 *
 * and run.json, the record of what a release runs, which the agent writes beside each release:
 *   {"argv":[..],"env":[..],"workdir","user","blobs":[digest..],"manifest","version",
 *    "health"?:[..],"health_text"?,"health_port"?,"stop_signal"?,"stop_timeout_ms"?,
 *    "caps"?:{"add","drop"},"resources"?:{"memory","cpu_milli","pids"},"options"?,
 *    "health_interval_ms"?,"restart"?}
 *
 * Decoders: FY_OK, or FY_EPROTO / FY_ETOOBIG with the reason in err. A decoded message may borrow
 * strings from the JSON object it came from (said per field); the object must outlive it. */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include <jansson.h>
#include <stdint.h>

#include "ferry/digest.h"
#include "ferry/error.h"
#include "ferry/msg.h"
#include "ferry/oci.h"
#include "ferry/platform.h"
#include "ferry/runspec.h"

#define FY_APP_NAME_MAX 64       /* 1-63 characters and the NUL */
#define FY_RELEASE_ID_MAX 64
#define FY_HEALTH_CMD_MAX 1025 /* 1024 bytes and the NUL, as the image label allows */
#define FY_SETTLE_MAX_MS 600000u
#define FY_LOG_TAIL_MAX 65536u   /* the last log lines a result carries */
#define FY_RUN_ARGS_MAX 4096     /* argv and env entries of a release */
#define FY_LOG_TAIL_LINES_MAX 99999 /* lines a logs request may ask for */

/* App names: like node names, 1-63 of a-z 0-9 - . _ (not starting with . or -). */
int fy_app_valid_name(const char *name);

/* A plan's source (protocol 5): the agent pulls the blobs it lacks from an OCI registry
 * (distribution API v2, https) instead of receiving them:
 *   "source": {"registry":"HOST[:PORT]","repository":"team/app","authorization":"Bearer …"|"Basic …"?,
 *              "fallback":true?}
 * The authorization is a short-lived pull credential: kept in memory for the pull, never written.
 * With fallback, a node that cannot reach the registry answers with its need list and the pusher
 * streams; without it, the pull's error is the deploy's. */
#define FY_SOURCE_AUTH_MAX 8192
typedef struct fy_plan_source {
  char registry[256];                    /* host[:port], as a URL authority */
  char repository[256];
  char authorization[FY_SOURCE_AUTH_MAX]; /* the header value, "" for anonymous */
  int fallback;
} fy_plan_source;

typedef struct fy_plan_msg {
  const char *app;                       /* borrowed; a valid app name */
  const char *manifest;                  /* borrowed; the manifest's bytes */
  size_t manifest_len;
  fy_digest manifest_digest;             /* as the plan names it (the agent recomputes it) */
  const char *config;                    /* borrowed; the image config's bytes */
  size_t config_len;
  uint64_t settle_ms;                    /* default 3000, at most FY_SETTLE_MAX_MS */
  const char *health_cmd;                /* borrowed or NULL; at most FY_HEALTH_CMD_MAX - 1 bytes */
  int health_port;                       /* 0: none */
  int agent_upgrade;
  int upgrade_timeout_s;                 /* 5-600, default 30 */
  json_t *signature, *chain;             /* encode: added when set (not owned); decode: left in the object */
  int force;                             /* deploy even when the node runs this already */
  const json_t *settings;                /* borrowed, NULL when none: the node's configuration (below) */
  const fy_plan_source *source;          /* borrowed, NULL: the pusher streams the blobs (protocol 5) */
} fy_plan_msg;
json_t *fy_plan_encode(const fy_plan_msg *m);
/* Decodes the plan; its source, when there is one, into *src (the caller's storage, which
 * m->source then points at; src may be NULL only for plans that carry none). */
int fy_plan_decode(const json_t *j, fy_plan_msg *m, char *err, size_t errlen) FY_WUR;
int fy_plan_source_decode(const json_t *j, fy_plan_source *src, char *err, size_t errlen) FY_WUR;
/* The digest of what a plan sets besides the image (its health command and port): with the
 * manifest digest, what makes two pushes "the same". Both sides compute it: the agent keeps it
 * in run.json ("options") and in its facts, the pusher compares before it plans. Settle and
 * force are how to deploy, not what runs, and are left out. */
void fy_plan_options_digest(const fy_plan_msg *m, char out[FY_DIGEST_STR]);

/* A plan's settings: what the fleet file and the command line set for one node, over the image.
 *   {"env":{"KEY":"value"}, "files":{"/path/in/app":"BASE64"}, "secrets":{"name":"BASE64"}}
 * Env keys are [A-Za-z_][A-Za-z0-9_]*, never LD_* (the dynamic loader's) nor FERRY_* (the
 * agent's); file paths are clean and absolute, outside /proc, /sys, /dev and /run/secrets; secret
 * names as volume names. They are part of the options digest: a change is a new release. */
#define FY_SETTINGS_ENV_MAX 256
#define FY_SETTINGS_FILES_MAX 64
#define FY_SETTINGS_SECRETS_MAX 64
#define FY_SETTINGS_VALUE_MAX 32768u        /* bytes of one env value */
#define FY_SETTINGS_FILE_MAX (256u * 1024u) /* bytes of one file or secret (before base64) */
int fy_settings_check(const json_t *s, char *err, size_t errlen) FY_WUR;
/* 0 when KEY may not be set from outside the image: malformed, LD_*, FERRY_*. */
int fy_settings_env_key_ok(const char *key);
/* A file's or secret's bytes (base64 in the plan): malloc'd into *out. FY_OK or FY_EPROTO. */
int fy_settings_bytes(const json_t *v, unsigned char **out, size_t *n) FY_WUR;
/* base64 of n bytes, for the pusher (malloc'd string, NULL when out of memory). */
char *fy_settings_b64(const void *p, size_t n);

typedef struct fy_need_item {
  fy_digest digest;
  uint64_t size, offset;                 /* offset <= size */
} fy_need_item;
typedef struct fy_need_msg {
  fy_need_item items[FY_OCI_MAX_LAYERS]; /* a manifest's layers, each at most once */
  size_t n;
  uint32_t skipped;
} fy_need_msg;
json_t *fy_need_encode(const fy_need_msg *m);
int fy_need_decode(const json_t *j, fy_need_msg *m, char *err, size_t errlen) FY_WUR;

typedef struct fy_blob_begin_msg {
  fy_digest digest;
  uint64_t offset;
} fy_blob_begin_msg;
json_t *fy_blob_begin_encode(const fy_blob_begin_msg *m);
int fy_blob_begin_decode(const json_t *j, fy_blob_begin_msg *m, char *err, size_t errlen) FY_WUR;

typedef struct fy_result_msg {
  fy_result result;
  const char *app;                       /* borrowed */
  int code;                              /* an error code (0 when it went well) */
  const char *message;                   /* borrowed, "" when none */
  const char *release, *previous;        /* borrowed, "" when none */
  uint64_t bytes_received;
  uint32_t blobs_received, blobs_skipped;
  int has_exit_code;
  int64_t exit_code;
  const char *agent_digest;              /* borrowed, "" when none */
  const char *log_tail;                  /* borrowed, NULL when none; at most FY_LOG_TAIL_MAX bytes */
} fy_result_msg;
json_t *fy_result_encode(const fy_result_msg *m);
int fy_result_decode(const json_t *j, fy_result_msg *m, char *err, size_t errlen) FY_WUR;

typedef enum { FY_REQ_LOGS = 1, FY_REQ_ROLLBACK, FY_REQ_STOP, FY_REQ_START, FY_REQ_RESTART, FY_REQ_REMOVE, FY_REQ_EXEC } fy_request_op;
/* Which of an app's output a logs request wants. */
typedef enum { FY_LOG_ALL, FY_LOG_STDOUT, FY_LOG_STDERR } fy_log_stream;
#define FY_LOG_SINCE_MAX_S (400u * 86400u) /* --since: at most 400 days back */
#define FY_EXEC_ARGS_MAX 256               /* an exec request's argv entries */
#define FY_EXEC_ARGV_BYTES 65536u          /* and their bytes, NULs included */
typedef struct fy_request_msg {
  fy_request_op op;
  const char *app;                       /* borrowed; a valid app name */
  int tail;                              /* logs: lines, 1-99999, default 100 */
  int follow;                            /* logs: then every new line, in output frames (protocol 4) */
  int timestamps;                        /* logs: each line with the time the agent recorded it */
  uint32_t since_s;                      /* logs: only lines of the last since_s seconds (0: all) */
  fy_log_stream stream;                  /* logs: all, stdout or stderr */
  int purge;                             /* remove: the app's volumes and version counter go too */
  const char *argv[FY_EXEC_ARGS_MAX];    /* exec: borrowed; the command (protocol 4) */
  size_t argc;
  int tty, input;                        /* exec: a pty; stdin from input frames */
  int rows, cols;                        /* exec with tty: the terminal's size, 0 when unknown */
} fy_request_msg;
const char *fy_request_op_name(fy_request_op op); /* "logs", ..., "remove", "exec" */
/* stop, start, restart, remove: the requests answered with the app's new state. */
static inline int fy_request_is_lifecycle(fy_request_op op) { return op >= FY_REQ_STOP && op <= FY_REQ_REMOVE; }
const char *fy_log_stream_name(fy_log_stream s);  /* "all", "stdout", "stderr" */
int fy_log_stream_parse(const char *s, fy_log_stream *out) FY_WUR;
json_t *fy_request_encode(const fy_request_msg *m);
int fy_request_decode(const json_t *j, fy_request_msg *m, char *err, size_t errlen) FY_WUR;

/* Output and input frames (protocol 4) carry bytes, not JSON: output is one stream byte
 * (FY_OUT_STDOUT, FY_OUT_STDERR) then the data; input is the data, and an empty input frame is
 * the end of stdin. */
enum { FY_OUT_STDOUT = 1, FY_OUT_STDERR = 2 };

/* Where a deploy stands after commit (protocol version 2 and later), or while it pulls its
 * blobs from a registry before the need list (pulling: protocol 5). */
typedef enum { FY_STEP_UNPACKING = 1, FY_STEP_SWITCHING, FY_STEP_STARTING, FY_STEP_SETTLING, FY_STEP_HEALTH, FY_STEP_PULLING } fy_step;
const char *fy_step_name(fy_step s);     /* "unpacking", ..., "health-check" */
typedef struct fy_progress_msg {
  const char *app;                       /* borrowed */
  fy_step step;
  uint64_t done, total;                  /* 0 when not counted */
} fy_progress_msg;
json_t *fy_progress_encode(const fy_progress_msg *m);
int fy_progress_decode(const json_t *j, fy_progress_msg *m, char *err, size_t errlen) FY_WUR;

/* What an agent says about itself in answer to hello. */
#define FY_FACTS_LABELS_MAX 256
#define FY_FACTS_APPS_MAX 1024
typedef struct fy_facts_msg {
  unsigned proto;                        /* the version both chose */
  const char *name, *agent_version;      /* borrowed */
  const char *agent_digest;              /* borrowed, "" when none */
  fy_platform platform;                  /* its userland */
  fy_platform accepts[FY_PLATFORM_ACCEPT_MAX]; /* what it runs, best first; at least the platform */
  size_t naccepts;
  const char *board;                     /* borrowed, "" when unknown */
  const json_t *labels;                  /* borrowed object, every value a bounded string */
  uint64_t free_bytes, uptime_s;
  const json_t *apps;                    /* borrowed array of objects (name, release, state, ...) */
} fy_facts_msg;
json_t *fy_facts_encode(const fy_facts_msg *m);
int fy_facts_decode(const json_t *j, fy_facts_msg *m, char *err, size_t errlen) FY_WUR;

typedef struct fy_run_meta {
  const json_t *argv, *env;              /* borrowed arrays of strings (Entrypoint + Cmd; Env, NULL if none) */
  size_t nargv, nenv;
  const char *workdir;                   /* borrowed, absolute ("/" when the image has none) */
  const char *user;                      /* borrowed, "" when none */
  const json_t *blobs;                   /* borrowed array of digests: manifest, config, layers */
  size_t nblobs;
  const char *manifest;                  /* borrowed digest string */
  uint64_t version;                      /* the signed version, 0 when unsigned */
  /* From the image config (signed with it); absent in releases older than the runtime. */
  const json_t *health;                  /* borrowed array: the image's health command argv, NULL if none */
  size_t nhealth;
  const char *health_text;               /* borrowed, "" when none */
  int health_port;                       /* 0: none */
  int stop_signal;                       /* 0: SIGTERM */
  int64_t stop_timeout_ms;               /* -1: the default (FY_STOP_TIMEOUT_DEFAULT_MS) */
  fy_runspec spec;                       /* capabilities and resources */
  const char *options;                   /* borrowed: the plan's options digest, "" in older releases */
  int64_t health_interval_ms;            /* the supervisor's checks after the settle window; -1: default */
  fy_restart restart;                    /* the restart policy (always when absent) */
  fy_mounts mounts;                      /* its volumes and devices (none when absent) */
} fy_run_meta;
json_t *fy_run_meta_encode(const fy_run_meta *m);
int fy_run_meta_decode(const json_t *j, fy_run_meta *m, char *err, size_t errlen) FY_WUR;

#endif
