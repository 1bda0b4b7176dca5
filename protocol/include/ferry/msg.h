/* Control messages: JSON objects (jansson) carried in frames.
 *
 *   hello   pusher -> agent   {"proto_min":1,"proto_max":2,"client":"ferry 0.2.0","intent":"status"}
 *   facts   agent -> pusher   {"proto":1,"name":..,"agent_version":..,"platform":"linux/arm64",
 *                              "accepts":[..],"labels":{..},"board":..,"free_bytes":N,
 *                              "uptime_s":N,"apps":[..]}
 *   error   either way        {"code":-4,"name":"ETOOBIG","message":"..."}
 *
 * Every string the peer sends is bounded when it is read (fy_msg_str). */
#ifndef FERRY_MSG_H
#define FERRY_MSG_H

#include <jansson.h>

#include "ferry/frame.h"
#include "ferry/session.h"

#define FY_MSG_STR_MAX 4096 /* longest string field accepted from a peer */

/* Serializes obj (compact) and queues it as a frame of `type`. Does not take ownership. */
int fy_msg_send(fy_session *s, uint8_t type, const json_t *obj) FY_WUR;

/* Parses a frame's payload as a JSON object. *out is owned by the caller (json_decref).
 * FY_EPROTO with a reason in err for anything but an object. */
int fy_msg_parse(const fy_frame *f, json_t **out, char *err, size_t errlen) FY_WUR;

/* A string field, or NULL when absent, not a string, empty or longer than max. */
const char *fy_msg_str(const json_t *obj, const char *key, size_t max);

/* Builds the pusher's hello. intent: "status", "deploy", "logs", "rollback". app may be NULL. */
json_t *fy_msg_hello(const char *client, const char *intent, const char *app);

/* Picks the protocol version from a peer's hello: the highest both speak.
 * FY_EVERSION when the ranges do not meet, FY_EPROTO when the hello is malformed. */
int fy_msg_negotiate(const json_t *hello, unsigned *version) FY_WUR;

/* Sends an error frame {code, name, message}. */
int fy_msg_send_error(fy_session *s, int code, const char *message) FY_WUR;

/* Reads an error frame's code and message (bounded); code is FY_EPEER if missing. */
void fy_msg_error_fields(const json_t *obj, int *code, const char **message);

/* What a node ended in, for one push or request: one enum, one name table. The names are what
 * the result frame's "result" field and the --json reports carry. */
#define FY_RESULT_MAP(X)               \
  X(NONE, "")                          \
  X(DEPLOYED, "deployed")              \
  X(UNCHANGED, "unchanged")            \
  X(ROLLED_BACK, "rolled-back")        \
  X(FAILED, "failed")                  \
  X(SKIPPED, "skipped")                \
  X(UPGRADING, "upgrading")            \
  X(NOT_REACHED, "not-reached")        \
  X(REMOVED, "removed")                \
  X(STOPPED, "stopped")                \
  X(STARTED, "started")                \
  X(RESTARTED, "restarted")            \
  X(EXITED, "exited")                  \
  X(DETACHED, "detached")
typedef enum {
#define FY_RESULT_ENUM(name, text) FY_RESULT_##name,
  FY_RESULT_MAP(FY_RESULT_ENUM)
#undef FY_RESULT_ENUM
} fy_result;
const char *fy_result_name(fy_result r);
/* FY_RESULT_NONE for NULL or a name not in the table (a peer's text is never trusted). */
fy_result fy_result_parse(const char *name);

#endif
