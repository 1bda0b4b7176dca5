/* The deploy conversation's messages (see wire.h). Decoders read every field through one of
 * the bounded getters below and name the field that is wrong. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "ferry/wire.h"

static int bad(char *err, size_t errlen, const char *what, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int bad(char *err, size_t errlen, const char *what, const char *fmt, ...) {
  char m[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  snprintf(err, errlen, "%s: %s", what, m);
  return FY_EPROTO;
}

int fy_app_valid_name(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n >= FY_APP_NAME_MAX || name[0] == '.' || name[0] == '-') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) return 0;
  }
  return 1;
}

/* A string field: required or not, at most max bytes, no NUL inside. */
static int get_str(const json_t *j, const char *key, size_t max, int required, const char **out, const char *what, char *err,
                   size_t errlen) {
  const json_t *v = json_object_get(j, key);
  *out = NULL;
  if (!v || json_is_null(v)) return required ? bad(err, errlen, what, "'%s' is required", key) : FY_OK;
  if (!json_is_string(v)) return bad(err, errlen, what, "'%s' is not a string", key);
  size_t n = json_string_length(v);
  if (n > max) {
    snprintf(err, errlen, "%s: '%s' is %zu bytes, at most %zu", what, key, n, max);
    return FY_ETOOBIG;
  }
  if (strlen(json_string_value(v)) != n) return bad(err, errlen, what, "'%s' holds a NUL byte", key);
  *out = json_string_value(v);
  return FY_OK;
}

/* An integer field in [min, max]; absent keeps *out (the default) unless required. */
static int get_int(const json_t *j, const char *key, int64_t min, int64_t max, int required, int64_t *out, const char *what,
                   char *err, size_t errlen) {
  const json_t *v = json_object_get(j, key);
  if (!v || json_is_null(v)) return required ? bad(err, errlen, what, "'%s' is required", key) : FY_OK;
  if (!json_is_integer(v)) return bad(err, errlen, what, "'%s' is not an integer", key);
  json_int_t x = json_integer_value(v);
  if (x < min || x > max) return bad(err, errlen, what, "'%s' is %lld, not within %lld to %lld", key, (long long)x, (long long)min, (long long)max);
  *out = x;
  return FY_OK;
}

static int get_digest(const json_t *j, const char *key, fy_digest *d, const char *what, char *err, size_t errlen) {
  const char *s;
  int rc = get_str(j, key, FY_DIGEST_STR, 1, &s, what, err, errlen);
  if (rc != FY_OK) return rc;
  if (fy_digest_parse(s, d) != FY_OK) return bad(err, errlen, what, "'%s' is not a sha256 digest", key);
  return FY_OK;
}

static const char *str_or_empty(const char *s) { return s ? s : ""; }

/* --- settings ------------------------------------------------------------------------------ */

int fy_settings_env_key_ok(const char *k) {
  size_t n = k ? strlen(k) : 0;
  if (n == 0 || n > 128 || (k[0] >= '0' && k[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_')) return 0;
  return strncmp(k, "LD_", 3) != 0 && strncmp(k, "FERRY_", 6) != 0;
}

char *fy_settings_b64(const void *p, size_t n) {
  size_t olen = 0;
  (void)mbedtls_base64_encode(NULL, 0, &olen, p, n);
  char *out = malloc(olen + 1);
  if (out && mbedtls_base64_encode((unsigned char *)out, olen + 1, &olen, p, n) != 0) {
    free(out);
    return NULL;
  }
  if (out) out[olen] = '\0';
  return out;
}

int fy_settings_bytes(const json_t *v, unsigned char **out, size_t *n) {
  const char *s = json_string_value(v);
  size_t len = s ? json_string_length(v) : 0, olen = 0;
  *out = NULL;
  *n = 0;
  if (!s || len > (FY_SETTINGS_FILE_MAX / 3 + 1) * 4) return FY_EPROTO;
  unsigned char *b = malloc(len / 4 * 3 + 3);
  if (!b) return FY_ENOMEM;
  if (mbedtls_base64_decode(b, len / 4 * 3 + 3, &olen, (const unsigned char *)s, len) != 0 || olen > FY_SETTINGS_FILE_MAX) {
    free(b);
    return FY_EPROTO;
  }
  *out = b;
  *n = olen;
  return FY_OK;
}

int fy_settings_check(const json_t *s, char *err, size_t errlen) {
  static const char *const keys[] = {"env", "files", "secrets"};
  const char *k;
  const json_t *v;
  if (!json_is_object(s)) return bad(err, errlen, "plan", "'settings' is not an object");
  json_object_foreach((json_t *)s, k, v) {
    int known = 0;
    for (size_t i = 0; i < 3; i++) known |= strcmp(k, keys[i]) == 0;
    if (!known) return bad(err, errlen, "plan", "settings: unknown key '%.40s' (env, files, secrets)", k);
    if (!json_is_object(v)) return bad(err, errlen, "plan", "settings.%s is not an object", k);
  }
  const json_t *env = json_object_get(s, "env"), *files = json_object_get(s, "files"), *secrets = json_object_get(s, "secrets");
  if (json_object_size(env) > FY_SETTINGS_ENV_MAX || json_object_size(files) > FY_SETTINGS_FILES_MAX ||
      json_object_size(secrets) > FY_SETTINGS_SECRETS_MAX)
    return bad(err, errlen, "plan", "settings: at most %d env keys, %d files and %d secrets", FY_SETTINGS_ENV_MAX,
               FY_SETTINGS_FILES_MAX, FY_SETTINGS_SECRETS_MAX);
  json_object_foreach((json_t *)env, k, v) {
    if (!fy_settings_env_key_ok(k)) {
      snprintf(err, errlen, "env %.60s cannot be set from outside the image (LD_* and FERRY_* never; keys are A-Z a-z 0-9 _)", k);
      return FY_EPOLICY;
    }
    if (!json_is_string(v) || json_string_length(v) > FY_SETTINGS_VALUE_MAX || strlen(json_string_value(v)) != json_string_length(v))
      return bad(err, errlen, "plan", "env %.60s: a string of at most %u bytes, no NUL", k, FY_SETTINGS_VALUE_MAX);
  }
  unsigned char *b;
  size_t n;
  json_object_foreach((json_t *)files, k, v) {
    if (!fy_app_path_clean(k) || strncmp(k, "/proc/", 6) == 0 || strncmp(k, "/sys/", 5) == 0 || strncmp(k, "/dev/", 5) == 0 ||
        strncmp(k, "/run/secrets/", 13) == 0)
      return bad(err, errlen, "plan", "files: '%.60s' is not a clean absolute path outside /proc, /sys, /dev, /run/secrets", k);
    if (fy_settings_bytes(v, &b, &n) != FY_OK) return bad(err, errlen, "plan", "files %.60s: not base64 of at most %u bytes", k, FY_SETTINGS_FILE_MAX);
    free(b);
  }
  json_object_foreach((json_t *)secrets, k, v) {
    if (!fy_volume_name_valid(k)) return bad(err, errlen, "plan", "secrets: '%.40s' is not a secret name (1-32 of a-z, 0-9, '-', '_')", k);
    if (fy_settings_bytes(v, &b, &n) != FY_OK) return bad(err, errlen, "plan", "secret %.40s: not base64 of at most %u bytes", k, FY_SETTINGS_FILE_MAX);
    free(b);
  }
  return FY_OK;
}

/* --- plan --------------------------------------------------------------------------------- */

json_t *fy_plan_encode(const fy_plan_msg *m) {
  char ds[FY_DIGEST_STR];
  json_t *j = json_pack("{s:s, s:s%, s:s, s:s%, s:I}", "app", m->app, "manifest", m->manifest, m->manifest_len, "manifest_digest",
                        fy_digest_format(&m->manifest_digest, ds), "config", m->config, m->config_len, "settle_ms",
                        (json_int_t)m->settle_ms);
  if (!j) return NULL;
  if (m->health_cmd) json_object_set_new(j, "health_cmd", json_string(m->health_cmd));
  if (m->health_port) json_object_set_new(j, "health_port", json_integer(m->health_port));
  if (m->agent_upgrade) {
    json_object_set_new(j, "agent_upgrade", json_true());
    json_object_set_new(j, "upgrade_timeout_s", json_integer(m->upgrade_timeout_s));
  }
  if (m->signature) json_object_set(j, "signature", m->signature);
  if (m->chain) json_object_set(j, "chain", m->chain);
  if (m->force) json_object_set_new(j, "force", json_true());
  if (m->settings && json_object_size(m->settings)) json_object_set(j, "settings", (json_t *)m->settings);
  if (m->source) {
    json_t *s = json_pack("{s:s, s:s}", "registry", m->source->registry, "repository", m->source->repository);
    if (s && m->source->authorization[0]) json_object_set_new(s, "authorization", json_string(m->source->authorization));
    if (s && m->source->fallback) json_object_set_new(s, "fallback", json_true());
    if (!s) {
      json_decref(j);
      return NULL;
    }
    json_object_set_new(j, "source", s);
  }
  return j;
}

void fy_plan_options_digest(const fy_plan_msg *m, char out[FY_DIGEST_STR]) {
  /* A canonical text: each option as name=value and a NUL, in a fixed order. */
  char buf[FY_HEALTH_CMD_MAX + 64];
  int n = snprintf(buf, sizeof buf, "health_cmd=%s%chealth_port=%d%c", m->health_cmd ? m->health_cmd : "", 0, m->health_port, 0);
  fy_digest d;
  fy_sha256 h;
  fy_sha256_init(&h);
  fy_sha256_update(&h, buf, n > 0 && (size_t)n < sizeof buf ? (size_t)n : sizeof buf);
  /* Settings, when there are any (a plan without them digests as before they existed). */
  char *s = m->settings && json_object_size(m->settings) ? json_dumps(m->settings, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  if (s) {
    fy_sha256_update(&h, "settings=", 9);
    fy_sha256_update(&h, s, strlen(s) + 1);
    free(s);
  }
  fy_sha256_final(&h, &d);
  fy_digest_format(&d, out);
}

int fy_plan_decode(const json_t *j, fy_plan_msg *m, char *err, size_t errlen) {
  int rc;
  int64_t v;
  memset(m, 0, sizeof *m);
  m->settle_ms = 3000;
  m->upgrade_timeout_s = 30;
  if ((rc = get_str(j, "app", FY_APP_NAME_MAX - 1, 1, &m->app, "plan", err, errlen)) != FY_OK) return rc;
  if (!fy_app_valid_name(m->app)) return bad(err, errlen, "plan", "the app name must be 1-63 of a-z, 0-9, '-', '.', '_'");
  if ((rc = get_str(j, "manifest", FY_FRAME_MAX, 1, &m->manifest, "plan", err, errlen)) != FY_OK) return rc;
  m->manifest_len = json_string_length(json_object_get(j, "manifest"));
  if ((rc = get_digest(j, "manifest_digest", &m->manifest_digest, "plan", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "config", FY_FRAME_MAX, 1, &m->config, "plan", err, errlen)) != FY_OK) return rc;
  m->config_len = json_string_length(json_object_get(j, "config"));
  v = (int64_t)m->settle_ms;
  if ((rc = get_int(j, "settle_ms", 0, FY_SETTLE_MAX_MS, 0, &v, "plan", err, errlen)) != FY_OK) return rc;
  m->settle_ms = (uint64_t)v;
  if ((rc = get_str(j, "health_cmd", FY_HEALTH_CMD_MAX - 1, 0, &m->health_cmd, "plan", err, errlen)) != FY_OK) return rc;
  v = 0;
  if ((rc = get_int(j, "health_port", 1, 65535, 0, &v, "plan", err, errlen)) != FY_OK) return rc;
  m->health_port = (int)v;
  const json_t *up = json_object_get(j, "agent_upgrade");
  if (up && !json_is_boolean(up)) return bad(err, errlen, "plan", "'agent_upgrade' is not true or false");
  m->agent_upgrade = json_is_true(up);
  v = m->upgrade_timeout_s;
  if ((rc = get_int(j, "upgrade_timeout_s", 5, 600, 0, &v, "plan", err, errlen)) != FY_OK) return rc;
  m->upgrade_timeout_s = (int)v;
  const json_t *force = json_object_get(j, "force");
  if (force && !json_is_boolean(force)) return bad(err, errlen, "plan", "'force' is not true or false");
  m->force = json_is_true(force);
  const json_t *st = json_object_get(j, "settings");
  if (st && (rc = fy_settings_check(st, err, errlen)) != FY_OK) return rc;
  m->settings = st;
  m->source = NULL; /* fy_plan_source_decode reads it */
  return FY_OK;
}

int fy_plan_source_decode(const json_t *j, fy_plan_source *src, char *err, size_t errlen) {
  const json_t *s = json_object_get(j, "source");
  const char *reg, *repo, *auth = NULL;
  int rc;
  memset(src, 0, sizeof *src);
  if (!s) return FY_ENOENT;
  if (!json_is_object(s)) return bad(err, errlen, "plan", "'source' is not an object");
  if ((rc = get_str(s, "registry", sizeof src->registry - 1, 1, &reg, "plan source", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(s, "repository", sizeof src->repository - 1, 1, &repo, "plan source", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(s, "authorization", sizeof src->authorization - 1, 0, &auth, "plan source", err, errlen)) != FY_OK) return rc;
  /* They go into a request line and headers: nothing that could end one. */
  for (const char *p = reg; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr(".-:[]", *p)))
      return bad(err, errlen, "plan source", "'registry' must be HOST[:PORT]");
  for (const char *p = repo; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-/", *p)))
      return bad(err, errlen, "plan source", "'repository' must be lower-case letters, digits and . _ - /");
  for (const char *p = auth ? auth : ""; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) return bad(err, errlen, "plan source", "'authorization' holds a control byte");
  const json_t *fb = json_object_get(s, "fallback");
  if (fb && !json_is_boolean(fb)) return bad(err, errlen, "plan source", "'fallback' is not true or false");
  snprintf(src->registry, sizeof src->registry, "%s", reg);
  snprintf(src->repository, sizeof src->repository, "%s", repo);
  snprintf(src->authorization, sizeof src->authorization, "%s", auth ? auth : "");
  src->fallback = json_is_true(fb);
  return FY_OK;
}

/* --- need --------------------------------------------------------------------------------- */

json_t *fy_need_encode(const fy_need_msg *m) {
  json_t *arr = json_array();
  char ds[FY_DIGEST_STR];
  for (size_t i = 0; arr && i < m->n; i++)
    json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "digest", fy_digest_format(&m->items[i].digest, ds), "size",
                                         (json_int_t)m->items[i].size, "offset", (json_int_t)m->items[i].offset));
  return arr ? json_pack("{s:o, s:I}", "need", arr, "skipped", (json_int_t)m->skipped) : NULL;
}

int fy_need_decode(const json_t *j, fy_need_msg *m, char *err, size_t errlen) {
  const json_t *arr = json_object_get(j, "need");
  int rc;
  m->n = 0;
  m->skipped = 0;
  if (!json_is_array(arr)) return bad(err, errlen, "need", "'need' is not a list");
  if (json_array_size(arr) > FY_OCI_MAX_LAYERS) {
    snprintf(err, errlen, "need: %zu blobs, a manifest has at most %d", json_array_size(arr), FY_OCI_MAX_LAYERS);
    return FY_ETOOBIG;
  }
  size_t i;
  const json_t *v;
  json_array_foreach(arr, i, v) {
    fy_need_item *it = &m->items[m->n];
    int64_t size = 0, off = 0;
    if (!json_is_object(v)) return bad(err, errlen, "need", "entry %zu is not an object", i);
    if ((rc = get_digest(v, "digest", &it->digest, "need", err, errlen)) != FY_OK) return rc;
    if ((rc = get_int(v, "size", 0, INT64_MAX, 1, &size, "need", err, errlen)) != FY_OK) return rc;
    if ((rc = get_int(v, "offset", 0, size, 1, &off, "need", err, errlen)) != FY_OK) return rc;
    for (size_t k = 0; k < m->n; k++)
      if (fy_digest_equal(&m->items[k].digest, &it->digest)) return bad(err, errlen, "need", "blob %zu is listed twice", i);
    it->size = (uint64_t)size;
    it->offset = (uint64_t)off;
    m->n++;
  }
  int64_t sk = 0;
  if ((rc = get_int(j, "skipped", 0, FY_OCI_MAX_LAYERS, 0, &sk, "need", err, errlen)) != FY_OK) return rc;
  m->skipped = (uint32_t)sk;
  return FY_OK;
}

/* --- blob-begin ---------------------------------------------------------------------------- */

json_t *fy_blob_begin_encode(const fy_blob_begin_msg *m) {
  char ds[FY_DIGEST_STR];
  return json_pack("{s:s, s:I}", "digest", fy_digest_format(&m->digest, ds), "offset", (json_int_t)m->offset);
}

int fy_blob_begin_decode(const json_t *j, fy_blob_begin_msg *m, char *err, size_t errlen) {
  int rc;
  int64_t off = 0;
  if ((rc = get_digest(j, "digest", &m->digest, "blob-begin", err, errlen)) != FY_OK) return rc;
  if ((rc = get_int(j, "offset", 0, INT64_MAX, 1, &off, "blob-begin", err, errlen)) != FY_OK) return rc;
  m->offset = (uint64_t)off;
  return FY_OK;
}

/* --- result ------------------------------------------------------------------------------- */

json_t *fy_result_encode(const fy_result_msg *m) {
  json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:I, s:I}", "result", fy_result_name(m->result), "app",
                        str_or_empty(m->app), "code", (json_int_t)m->code, "name", fy_err_name(m->code), "message",
                        str_or_empty(m->message), "release", str_or_empty(m->release), "bytes_received",
                        (json_int_t)m->bytes_received, "blobs_received", (json_int_t)m->blobs_received, "blobs_skipped",
                        (json_int_t)m->blobs_skipped);
  if (!j) return NULL;
  if (m->previous && m->previous[0]) json_object_set_new(j, "previous", json_string(m->previous));
  if (m->has_exit_code) json_object_set_new(j, "exit_code", json_integer(m->exit_code));
  if (m->agent_digest && m->agent_digest[0]) json_object_set_new(j, "agent_digest", json_string(m->agent_digest));
  if (m->log_tail) json_object_set_new(j, "log_tail", json_string(m->log_tail));
  return j;
}

int fy_result_decode(const json_t *j, fy_result_msg *m, char *err, size_t errlen) {
  const char *r;
  int64_t v;
  int rc;
  memset(m, 0, sizeof *m);
  if ((rc = get_str(j, "result", 20, 1, &r, "result", err, errlen)) != FY_OK) return rc;
  if ((m->result = fy_result_parse(r)) == FY_RESULT_NONE) return bad(err, errlen, "result", "'%s' is not a result", r);
  if ((rc = get_str(j, "app", FY_APP_NAME_MAX - 1, 0, &m->app, "result", err, errlen)) != FY_OK) return rc;
  v = 0;
  if ((rc = get_int(j, "code", -1000, 0, 0, &v, "result", err, errlen)) != FY_OK) return rc;
  m->code = (int)v;
  if ((rc = get_str(j, "message", FY_MSG_STR_MAX, 0, &m->message, "result", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "release", FY_RELEASE_ID_MAX - 1, 0, &m->release, "result", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "previous", FY_RELEASE_ID_MAX - 1, 0, &m->previous, "result", err, errlen)) != FY_OK) return rc;
  v = 0;
  if ((rc = get_int(j, "bytes_received", 0, INT64_MAX, 0, &v, "result", err, errlen)) != FY_OK) return rc;
  m->bytes_received = (uint64_t)v;
  v = 0;
  if ((rc = get_int(j, "blobs_received", 0, FY_OCI_MAX_LAYERS, 0, &v, "result", err, errlen)) != FY_OK) return rc;
  m->blobs_received = (uint32_t)v;
  v = 0;
  if ((rc = get_int(j, "blobs_skipped", 0, FY_OCI_MAX_LAYERS, 0, &v, "result", err, errlen)) != FY_OK) return rc;
  m->blobs_skipped = (uint32_t)v;
  if (json_object_get(j, "exit_code")) {
    if ((rc = get_int(j, "exit_code", INT32_MIN, INT32_MAX, 1, &m->exit_code, "result", err, errlen)) != FY_OK) return rc;
    m->has_exit_code = 1;
  }
  if ((rc = get_str(j, "agent_digest", FY_DIGEST_STR, 0, &m->agent_digest, "result", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "log_tail", FY_LOG_TAIL_MAX, 0, &m->log_tail, "result", err, errlen)) != FY_OK) return rc;
  m->app = str_or_empty(m->app);
  m->message = str_or_empty(m->message);
  m->release = str_or_empty(m->release);
  m->previous = str_or_empty(m->previous);
  m->agent_digest = str_or_empty(m->agent_digest);
  return FY_OK;
}

/* --- request ------------------------------------------------------------------------------ */

static const char *const op_names[] = {"", "logs", "rollback", "stop", "start", "restart", "remove", "exec"};
static const char *const stream_names[] = {"all", "stdout", "stderr"};

const char *fy_request_op_name(fy_request_op op) {
  return (size_t)op < sizeof op_names / sizeof op_names[0] ? op_names[op] : "";
}

const char *fy_log_stream_name(fy_log_stream s) {
  return (size_t)s < sizeof stream_names / sizeof stream_names[0] ? stream_names[s] : "";
}

int fy_log_stream_parse(const char *s, fy_log_stream *out) {
  for (size_t i = 0; s && i < sizeof stream_names / sizeof stream_names[0]; i++)
    if (strcmp(s, stream_names[i]) == 0) {
      *out = (fy_log_stream)i;
      return FY_OK;
    }
  return FY_EINVAL;
}

json_t *fy_request_encode(const fy_request_msg *m) {
  json_t *j = json_pack("{s:s, s:s}", "op", fy_request_op_name(m->op), "app", m->app);
  if (!j) return NULL;
  if (m->op == FY_REQ_LOGS) {
    if (m->tail > 0) json_object_set_new(j, "tail", json_integer(m->tail));
    if (m->follow) json_object_set_new(j, "follow", json_true());
    if (m->timestamps) json_object_set_new(j, "timestamps", json_true());
    if (m->since_s) json_object_set_new(j, "since_s", json_integer((json_int_t)m->since_s));
    if (m->stream) json_object_set_new(j, "stream", json_string(fy_log_stream_name(m->stream)));
  }
  if (m->op == FY_REQ_REMOVE && m->purge) json_object_set_new(j, "purge", json_true());
  if (m->op == FY_REQ_EXEC) {
    json_t *argv = json_array();
    for (size_t i = 0; argv && i < m->argc; i++) json_array_append_new(argv, json_string(m->argv[i]));
    json_object_set_new(j, "argv", argv ? argv : json_null());
    if (m->tty) json_object_set_new(j, "tty", json_true());
    if (m->input) json_object_set_new(j, "stdin", json_true());
    if (m->rows) json_object_set_new(j, "rows", json_integer(m->rows));
    if (m->cols) json_object_set_new(j, "cols", json_integer(m->cols));
  }
  return j;
}

static int get_bool(const json_t *j, const char *key, int *out, char *err, size_t errlen) {
  const json_t *v = json_object_get(j, key);
  if (v && !json_is_boolean(v)) return bad(err, errlen, "request", "'%s' is not true or false", key);
  *out = json_is_true(v);
  return FY_OK;
}

int fy_request_decode(const json_t *j, fy_request_msg *m, char *err, size_t errlen) {
  const char *op, *stream;
  int64_t tail = 100, since = 0, rows = 0, cols = 0;
  int rc;
  memset(m, 0, sizeof *m);
  if ((rc = get_str(j, "op", 31, 1, &op, "request", err, errlen)) != FY_OK) return rc;
  for (size_t i = 1; i < sizeof op_names / sizeof op_names[0] && !m->op; i++)
    if (strcmp(op, op_names[i]) == 0) m->op = (fy_request_op)i;
  if (!m->op) {
    snprintf(err, errlen, "unknown request '%s'", op);
    return FY_EUNSUPPORTED;
  }
  if ((rc = get_str(j, "app", FY_APP_NAME_MAX - 1, 1, &m->app, "request", err, errlen)) != FY_OK) return rc;
  if (!fy_app_valid_name(m->app)) return bad(err, errlen, "request", "'%s' is not an app name", m->app);
  if ((rc = get_int(j, "tail", 1, FY_LOG_TAIL_LINES_MAX, 0, &tail, "request", err, errlen)) != FY_OK) return rc;
  m->tail = (int)tail;
  if ((rc = get_int(j, "since_s", 0, FY_LOG_SINCE_MAX_S, 0, &since, "request", err, errlen)) != FY_OK) return rc;
  m->since_s = (uint32_t)since;
  if ((rc = get_str(j, "stream", 15, 0, &stream, "request", err, errlen)) != FY_OK) return rc;
  if (stream && fy_log_stream_parse(stream, &m->stream) != FY_OK)
    return bad(err, errlen, "request", "'stream' is '%s', not all, stdout or stderr", stream);
  if ((rc = get_bool(j, "purge", &m->purge, err, errlen)) != FY_OK || (rc = get_bool(j, "follow", &m->follow, err, errlen)) != FY_OK ||
      (rc = get_bool(j, "timestamps", &m->timestamps, err, errlen)) != FY_OK ||
      (rc = get_bool(j, "tty", &m->tty, err, errlen)) != FY_OK || (rc = get_bool(j, "stdin", &m->input, err, errlen)) != FY_OK)
    return rc;
  if ((rc = get_int(j, "rows", 1, 1000, 0, &rows, "request", err, errlen)) != FY_OK ||
      (rc = get_int(j, "cols", 1, 1000, 0, &cols, "request", err, errlen)) != FY_OK)
    return rc;
  m->rows = (int)rows;
  m->cols = (int)cols;
  if (m->op != FY_REQ_EXEC) return FY_OK;
  const json_t *argv = json_object_get(j, "argv");
  size_t total = 0;
  if (!json_is_array(argv) || json_array_size(argv) == 0) return bad(err, errlen, "request", "exec needs 'argv', a list of strings");
  if (json_array_size(argv) > FY_EXEC_ARGS_MAX) return bad(err, errlen, "request", "'argv' has more than %d entries", FY_EXEC_ARGS_MAX);
  for (size_t i = 0; i < json_array_size(argv); i++) {
    const json_t *a = json_array_get(argv, i);
    if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
      return bad(err, errlen, "request", "'argv' entry %zu is not a string without NUL bytes", i);
    total += json_string_length(a) + 1;
    if (total > FY_EXEC_ARGV_BYTES) return bad(err, errlen, "request", "'argv' is over %u bytes", FY_EXEC_ARGV_BYTES);
    m->argv[i] = json_string_value(a);
  }
  m->argc = json_array_size(argv);
  return FY_OK;
}

/* --- progress ----------------------------------------------------------------------------- */

static const char *const step_names[] = {"", "unpacking", "switching", "starting", "settling", "health-check", "pulling"};

const char *fy_step_name(fy_step s) { return (size_t)s < sizeof step_names / sizeof step_names[0] ? step_names[s] : ""; }

json_t *fy_progress_encode(const fy_progress_msg *m) {
  json_t *j = json_pack("{s:s, s:s}", "app", m->app, "step", fy_step_name(m->step));
  if (j && m->total) {
    json_object_set_new(j, "done", json_integer((json_int_t)m->done));
    json_object_set_new(j, "total", json_integer((json_int_t)m->total));
  }
  return j;
}

int fy_progress_decode(const json_t *j, fy_progress_msg *m, char *err, size_t errlen) {
  const char *step;
  int64_t done = 0, total = 0;
  int rc;
  memset(m, 0, sizeof *m);
  if ((rc = get_str(j, "app", FY_APP_NAME_MAX - 1, 1, &m->app, "progress", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "step", 31, 1, &step, "progress", err, errlen)) != FY_OK) return rc;
  for (size_t i = 1; i < sizeof step_names / sizeof step_names[0]; i++)
    if (strcmp(step, step_names[i]) == 0) m->step = (fy_step)i;
  if (!m->step) return bad(err, errlen, "progress", "'%s' is not a step", step);
  if ((rc = get_int(j, "total", 0, INT64_MAX, 0, &total, "progress", err, errlen)) != FY_OK) return rc;
  if ((rc = get_int(j, "done", 0, total, 0, &done, "progress", err, errlen)) != FY_OK) return rc;
  m->done = (uint64_t)done;
  m->total = (uint64_t)total;
  return FY_OK;
}

/* --- facts ------------------------------------------------------------------------------- */

json_t *fy_facts_encode(const fy_facts_msg *m) {
  char plat[FY_PLATFORM_STR];
  json_t *acc = json_array();
  for (size_t i = 0; acc && i < m->naccepts; i++) json_array_append_new(acc, json_string(fy_platform_format(&m->accepts[i], plat, sizeof plat)));
  json_t *j = acc ? json_pack("{s:I, s:s, s:s, s:s, s:o, s:O, s:s?, s:I, s:I, s:O}", "proto", (json_int_t)m->proto, "name",
                              str_or_empty(m->name), "agent_version", str_or_empty(m->agent_version), "platform",
                              fy_platform_format(&m->platform, plat, sizeof plat), "accepts", acc, "labels", m->labels,
                              "board", m->board && m->board[0] ? m->board : NULL, "free_bytes", (json_int_t)m->free_bytes,
                              "uptime_s", (json_int_t)m->uptime_s, "apps", m->apps)
                  : NULL;
  if (j && m->agent_digest && m->agent_digest[0]) json_object_set_new(j, "agent_digest", json_string(m->agent_digest));
  return j;
}

int fy_facts_decode(const json_t *j, fy_facts_msg *m, char *err, size_t errlen) {
  const char *plat;
  int64_t v = 1; /* absent: the first version */
  int rc;
  memset(m, 0, sizeof *m);
  if ((rc = get_int(j, "proto", 1, 1000, 0, &v, "facts", err, errlen)) != FY_OK) return rc;
  m->proto = (unsigned)v;
  if ((rc = get_str(j, "name", 255, 0, &m->name, "facts", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "agent_version", 63, 0, &m->agent_version, "facts", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "agent_digest", FY_DIGEST_STR, 0, &m->agent_digest, "facts", err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "platform", FY_PLATFORM_STR - 1, 1, &plat, "facts", err, errlen)) != FY_OK) return rc;
  if (fy_platform_parse(plat, &m->platform) != FY_OK) return bad(err, errlen, "facts", "'%s' is not a platform", plat);
  const json_t *acc = json_object_get(j, "accepts");
  if (acc && !json_is_array(acc)) return bad(err, errlen, "facts", "'accepts' is not a list");
  size_t i;
  const json_t *e;
  json_array_foreach(acc, i, e) { /* past the table's length: what the node runs least well, dropped */
    if (m->naccepts == FY_PLATFORM_ACCEPT_MAX) break;
    if (!json_is_string(e) || fy_platform_parse(json_string_value(e), &m->accepts[m->naccepts]) != FY_OK)
      return bad(err, errlen, "facts", "accepts entry %zu is not a platform", i);
    m->naccepts++;
  }
  if (m->naccepts == 0) m->accepts[m->naccepts++] = m->platform; /* a node runs at least its own */
  const json_t *b = json_object_get(j, "board");
  if (b && !json_is_null(b) && (rc = get_str(j, "board", 63, 0, &m->board, "facts", err, errlen)) != FY_OK) return rc;
  m->labels = json_object_get(j, "labels");
  if (m->labels && !json_is_object(m->labels)) return bad(err, errlen, "facts", "'labels' is not a map");
  if (json_object_size(m->labels) > FY_FACTS_LABELS_MAX) {
    snprintf(err, errlen, "facts: %zu labels, at most %d", json_object_size(m->labels), FY_FACTS_LABELS_MAX);
    return FY_ETOOBIG;
  }
  const char *k;
  json_object_foreach((json_t *)m->labels, k, e) {
    if (strlen(k) > 317 || !json_is_string(e) || json_string_length(e) > 63)
      return bad(err, errlen, "facts", "label '%.40s' is not a key of at most 317 bytes with a string of at most 63", k);
  }
  v = 0;
  if ((rc = get_int(j, "free_bytes", 0, INT64_MAX, 0, &v, "facts", err, errlen)) != FY_OK) return rc;
  m->free_bytes = (uint64_t)v;
  v = 0;
  if ((rc = get_int(j, "uptime_s", 0, INT64_MAX, 0, &v, "facts", err, errlen)) != FY_OK) return rc;
  m->uptime_s = (uint64_t)v;
  m->apps = json_object_get(j, "apps");
  if (m->apps && !json_is_array(m->apps)) return bad(err, errlen, "facts", "'apps' is not a list");
  if (json_array_size(m->apps) > FY_FACTS_APPS_MAX) {
    snprintf(err, errlen, "facts: %zu apps, at most %d", json_array_size(m->apps), FY_FACTS_APPS_MAX);
    return FY_ETOOBIG;
  }
  json_array_foreach(m->apps, i, e) {
    const char *s;
    if (!json_is_object(e)) return bad(err, errlen, "facts", "app %zu is not an object", i);
    if ((rc = get_str(e, "name", FY_APP_NAME_MAX - 1, 1, &s, "facts: app", err, errlen)) != FY_OK) return rc;
    if ((rc = get_str(e, "release", FY_RELEASE_ID_MAX - 1, 0, &s, "facts: app", err, errlen)) != FY_OK) return rc;
    if ((rc = get_str(e, "state", 31, 0, &s, "facts: app", err, errlen)) != FY_OK) return rc;
  }
  m->name = str_or_empty(m->name);
  m->agent_version = str_or_empty(m->agent_version);
  m->agent_digest = str_or_empty(m->agent_digest);
  m->board = str_or_empty(m->board);
  return FY_OK;
}

/* --- run.json ----------------------------------------------------------------------------- */

json_t *fy_run_meta_encode(const fy_run_meta *m) {
  json_t *none = json_array();
  json_t *j = json_pack("{s:O, s:O, s:s, s:s, s:O, s:s, s:I}", "argv", m->argv, "env", m->env ? m->env : none, "workdir",
                        m->workdir && m->workdir[0] ? m->workdir : "/", "user", str_or_empty(m->user), "blobs", m->blobs,
                        "manifest", str_or_empty(m->manifest), "version", (json_int_t)m->version);
  json_decref(none);
  if (!j) return NULL;
  int bad_set = 0;
  if (m->health && json_array_size(m->health)) {
    bad_set |= json_object_set(j, "health", (json_t *)m->health);
    bad_set |= json_object_set_new(j, "health_text", json_string(str_or_empty(m->health_text)));
  }
  if (m->health_port) bad_set |= json_object_set_new(j, "health_port", json_integer(m->health_port));
  if (m->stop_signal) bad_set |= json_object_set_new(j, "stop_signal", json_integer(m->stop_signal));
  if (m->stop_timeout_ms > 0) bad_set |= json_object_set_new(j, "stop_timeout_ms", json_integer(m->stop_timeout_ms));
  if (m->spec.cap_add || m->spec.cap_drop) bad_set |= json_object_set_new(j, "caps", fy_caps_to_json(&m->spec));
  if (m->spec.memory || m->spec.cpu_milli || m->spec.pids) bad_set |= json_object_set_new(j, "resources", fy_resources_to_json(&m->spec));
  if (m->mounts.nvolumes) bad_set |= json_object_set_new(j, "volumes", fy_volumes_to_json(&m->mounts));
  if (m->mounts.ndevices) bad_set |= json_object_set_new(j, "devices", fy_devices_to_json(&m->mounts));
  if (m->options && m->options[0]) bad_set |= json_object_set_new(j, "options", json_string(m->options));
  if (m->health_interval_ms > 0) bad_set |= json_object_set_new(j, "health_interval_ms", json_integer(m->health_interval_ms));
  if (m->restart != FY_RESTART_ALWAYS) bad_set |= json_object_set_new(j, "restart", json_string(fy_restart_name(m->restart)));
  if (bad_set) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* A list of strings; absent is NULL (no entries) when optional. */
static int string_list(const json_t *j, const char *key, size_t max, int required, const json_t **out, size_t *n, char *err,
                       size_t errlen) {
  const json_t *a = json_object_get(j, key);
  if (!a && !required) { /* NULL: jansson reads it as an empty array */
    *out = NULL;
    *n = 0;
    return FY_OK;
  }
  if (!json_is_array(a)) return bad(err, errlen, "run.json", "'%s' is not a list", key);
  if (json_array_size(a) > max) {
    snprintf(err, errlen, "run.json: '%s' has %zu entries, at most %zu", key, json_array_size(a), max);
    return FY_ETOOBIG;
  }
  size_t i;
  const json_t *v;
  json_array_foreach(a, i, v) {
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
      return bad(err, errlen, "run.json", "'%s' entry %zu is not a string", key, i);
  }
  *out = a;
  *n = json_array_size(a);
  return FY_OK;
}

int fy_run_meta_decode(const json_t *j, fy_run_meta *m, char *err, size_t errlen) {
  int rc;
  int64_t v = 0;
  memset(m, 0, sizeof *m);
  if (!json_is_object(j)) return bad(err, errlen, "run.json", "not a JSON object");
  if ((rc = string_list(j, "argv", FY_RUN_ARGS_MAX, 1, &m->argv, &m->nargv, err, errlen)) != FY_OK) return rc;
  if ((rc = string_list(j, "env", FY_RUN_ARGS_MAX, 0, &m->env, &m->nenv, err, errlen)) != FY_OK) return rc;
  /* required: the garbage collection keeps what this list names, and nothing it cannot read */
  if ((rc = string_list(j, "blobs", FY_OCI_MAX_LAYERS + 2, 1, &m->blobs, &m->nblobs, err, errlen)) != FY_OK) return rc;
  size_t i;
  const json_t *b;
  json_array_foreach(m->blobs, i, b) {
    fy_digest d;
    if (fy_digest_parse(json_string_value(b), &d) != FY_OK) return bad(err, errlen, "run.json", "blob %zu is not a sha256 digest", i);
  }
  if ((rc = get_str(j, "workdir", 4095, 0, &m->workdir, "run.json", err, errlen)) != FY_OK) return rc;
  if (!m->workdir || m->workdir[0] != '/') m->workdir = "/";
  if ((rc = get_str(j, "user", 255, 0, &m->user, "run.json", err, errlen)) != FY_OK) return rc;
  m->user = str_or_empty(m->user);
  if ((rc = get_str(j, "manifest", FY_DIGEST_STR, 0, &m->manifest, "run.json", err, errlen)) != FY_OK) return rc;
  m->manifest = str_or_empty(m->manifest);
  if ((rc = get_str(j, "options", FY_DIGEST_STR, 0, &m->options, "run.json", err, errlen)) != FY_OK) return rc;
  m->options = str_or_empty(m->options);
  if ((rc = get_int(j, "version", 0, INT64_MAX, 0, &v, "run.json", err, errlen)) != FY_OK) return rc;
  m->version = (uint64_t)v;
  if ((rc = string_list(j, "health", 256, 0, &m->health, &m->nhealth, err, errlen)) != FY_OK) return rc;
  if ((rc = get_str(j, "health_text", FY_HEALTH_CMD_MAX - 1, 0, &m->health_text, "run.json", err, errlen)) != FY_OK) return rc;
  m->health_text = str_or_empty(m->health_text);
  v = 0;
  if ((rc = get_int(j, "health_port", 0, 65535, 0, &v, "run.json", err, errlen)) != FY_OK) return rc;
  m->health_port = (int)v;
  v = 0;
  if ((rc = get_int(j, "stop_signal", 0, 31, 0, &v, "run.json", err, errlen)) != FY_OK) return rc;
  m->stop_signal = (int)v;
  m->stop_timeout_ms = -1;
  if (json_object_get(j, "stop_timeout_ms") &&
      (rc = get_int(j, "stop_timeout_ms", 0, FY_STOP_TIMEOUT_MAX_MS, 0, &m->stop_timeout_ms, "run.json", err, errlen)) != FY_OK)
    return rc;
  m->health_interval_ms = -1;
  if (json_object_get(j, "health_interval_ms") &&
      (rc = get_int(j, "health_interval_ms", FY_HEALTH_INTERVAL_MIN_MS, FY_HEALTH_INTERVAL_MAX_MS, 0, &m->health_interval_ms, "run.json",
                    err, errlen)) != FY_OK)
    return rc;
  const char *restart;
  if ((rc = get_str(j, "restart", 31, 0, &restart, "run.json", err, errlen)) != FY_OK) return rc;
  if (fy_restart_parse(restart, &m->restart) != FY_OK) return bad(err, errlen, "run.json", "'restart' is not always, on-failure or never");
  const json_t *o;
  char why[200];
  if ((o = json_object_get(j, "caps")) && fy_caps_from_json(o, &m->spec, why, sizeof why) != FY_OK)
    return bad(err, errlen, "run.json", "%s", why);
  if ((o = json_object_get(j, "resources")) && fy_resources_from_json(o, &m->spec, why, sizeof why) != FY_OK)
    return bad(err, errlen, "run.json", "%s", why);
  if (fy_volumes_from_json(json_object_get(j, "volumes"), &m->mounts, why, sizeof why) != FY_OK ||
      fy_devices_from_json(json_object_get(j, "devices"), &m->mounts, why, sizeof why) != FY_OK)
    return bad(err, errlen, "run.json", "%s", why);
  return FY_OK;
}
