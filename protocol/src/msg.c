#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/msg.h"

static const char *const result_names[] = {
#define FY_RESULT_NAME(name, text) text,
    FY_RESULT_MAP(FY_RESULT_NAME)
#undef FY_RESULT_NAME
};

const char *fy_result_name(fy_result r) {
  return (size_t)r < sizeof result_names / sizeof result_names[0] ? result_names[r] : "";
}

fy_result fy_result_parse(const char *name) {
  if (!name) return FY_RESULT_NONE;
  for (size_t i = 1; i < sizeof result_names / sizeof result_names[0]; i++)
    if (strcmp(name, result_names[i]) == 0) return (fy_result)i;
  return FY_RESULT_NONE;
}

int fy_msg_send(fy_session *s, uint8_t type, const json_t *obj) {
  char *text = json_dumps(obj, JSON_COMPACT);
  if (!text) return FY_ENOMEM;
  int rc = fy_session_send(s, type, 0, text, strlen(text));
  free(text);
  return rc;
}

int fy_msg_parse(const fy_frame *f, json_t **out, char *err, size_t errlen) {
  json_error_t je;
  *out = NULL;
  if (f->len == 0) {
    snprintf(err, errlen, "empty %s message", fy_frame_type_name(f->type));
    return FY_EPROTO;
  }
  json_t *j = json_loadb((const char *)f->payload, f->len, JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    snprintf(err, errlen, "bad JSON in %s message at byte %d: %s", fy_frame_type_name(f->type),
             je.position, je.text);
    return FY_EPROTO;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    snprintf(err, errlen, "%s message is not a JSON object", fy_frame_type_name(f->type));
    return FY_EPROTO;
  }
  *out = j;
  return FY_OK;
}

const char *fy_msg_str(const json_t *obj, const char *key, size_t max) {
  const json_t *v = json_object_get(obj, key);
  if (!json_is_string(v)) return NULL;
  size_t n = json_string_length(v);
  if (n == 0 || n > max) return NULL;
  const char *s = json_string_value(v);
  if (strlen(s) != n) return NULL; /* embedded NUL */
  return s;
}

json_t *fy_msg_hello(const char *client, const char *intent, const char *app) {
  json_t *j = json_pack("{s:I, s:I, s:s, s:s}", "proto_min", (json_int_t)FY_PROTO_VERSION_MIN,
                        "proto_max", (json_int_t)FY_PROTO_VERSION, "client", client, "intent", intent);
  if (j && app) json_object_set_new(j, "app", json_string(app));
  return j;
}

int fy_msg_negotiate(const json_t *hello, unsigned *version) {
  const json_t *lo = json_object_get(hello, "proto_min"), *hi = json_object_get(hello, "proto_max");
  if (!json_is_integer(lo) || !json_is_integer(hi)) return FY_EPROTO;
  json_int_t a = json_integer_value(lo), b = json_integer_value(hi);
  if (a < 1 || b < a) return FY_EPROTO;
  if (b < (json_int_t)FY_PROTO_VERSION_MIN || a > (json_int_t)FY_PROTO_VERSION) return FY_EVERSION;
  *version = b < (json_int_t)FY_PROTO_VERSION ? (unsigned)b : FY_PROTO_VERSION;
  return FY_OK;
}

int fy_msg_send_error(fy_session *s, int code, const char *message) {
  json_t *j = json_pack("{s:I, s:s, s:s}", "code", (json_int_t)code, "name", fy_err_name(code),
                        "message", message ? message : fy_strerror(code));
  if (!j) return FY_ENOMEM;
  int rc = fy_msg_send(s, FY_FT_ERROR, j);
  json_decref(j);
  return rc;
}

void fy_msg_error_fields(const json_t *obj, int *code, const char **message) {
  const json_t *c = json_object_get(obj, "code");
  json_int_t v = json_is_integer(c) ? json_integer_value(c) : FY_EPEER;
  *code = (v < FY__ERR_MIN || v >= 0) ? FY_EPEER : (int)v;
  *message = fy_msg_str(obj, "message", FY_MSG_STR_MAX);
  if (!*message) *message = fy_strerror(*code);
}
