/* A node's settings for a push (settings.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"
#include "ferry/wire.h"
#include "settings.h"

json_t *fy_settings_resolve(const json_t *src, const json_t *cli_env, char *err, size_t errlen) {
  json_t *out = json_object(), *env = json_object(), *files = json_object(), *secrets = json_object();
  if (!out || !env || !files || !secrets) goto fail;
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(src, "env"), k, v) json_object_set(env, k, v);
  json_object_foreach((json_t *)cli_env, k, v) json_object_set(env, k, v); /* the command line wins */
  static const char *const kinds[] = {"files", "secrets"};
  json_t *dst[] = {files, secrets};
  for (int i = 0; i < 2; i++) {
    json_object_foreach(json_object_get(src, kinds[i]), k, v) {
      char *data = NULL;
      size_t len = 0;
      int rc = fy_file_read(json_string_value(v), FY_SETTINGS_FILE_MAX, &data, &len);
      if (rc != FY_OK) {
        fy_text_fmt(err, errlen, "%s %s: %s: %s", i ? "secret" : "file", k, json_string_value(v),
                    rc == FY_ETOOBIG ? "over 256 KiB" : fy_strerror(rc));
        goto fail;
      }
      char *b64 = fy_settings_b64(data, len);
      memset(data, 0, len);
      free(data);
      if (!b64) goto fail;
      json_object_set_new(dst[i], k, json_string(b64));
      free(b64);
    }
  }
  if (json_object_size(env)) json_object_set(out, "env", env);
  if (json_object_size(files)) json_object_set(out, "files", files);
  if (json_object_size(secrets)) json_object_set(out, "secrets", secrets);
  json_decref(env);
  json_decref(files);
  json_decref(secrets);
  if (fy_settings_check(out, err, errlen) != FY_OK) {
    json_decref(out);
    return NULL;
  }
  return out;
fail:
  if (!err[0]) fy_text_fmt(err, errlen, "out of memory");
  json_decref(out);
  json_decref(env);
  json_decref(files);
  json_decref(secrets);
  return NULL;
}

json_t *fy_settings_shown(const json_t *resolved) {
  json_t *o = json_object(), *files = json_array(), *secrets = json_object();
  const char *k;
  json_t *v;
  if (json_object_get(resolved, "env")) json_object_set(o, "env", json_object_get(resolved, "env"));
  json_object_foreach(json_object_get(resolved, "files"), k, v) json_array_append_new(files, json_string(k));
  json_object_foreach(json_object_get(resolved, "secrets"), k, v) json_object_set_new(secrets, k, json_string("(set)"));
  if (json_array_size(files)) json_object_set(o, "files", files);
  if (json_object_size(secrets)) json_object_set(o, "secrets", secrets);
  json_decref(files);
  json_decref(secrets);
  return o;
}

int fy_settings_env_arg(json_t *env, const char *kv, const char *origin) {
  const char *eq = strchr(kv, '=');
  char key[160];
  if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key) {
    fy_cli_err("%s: '%.80s' is not KEY=VALUE", origin, kv);
    return FY_EINVAL;
  }
  snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
  if (!fy_settings_env_key_ok(key)) {
    fy_cli_err("%s: env %s cannot be set from outside the image (LD_* and FERRY_* never; keys are A-Z a-z 0-9 _)", origin, key);
    return FY_EINVAL;
  }
  if (strlen(eq + 1) > FY_SETTINGS_VALUE_MAX) {
    fy_cli_err("%s: env %s: at most %u bytes", origin, key, FY_SETTINGS_VALUE_MAX);
    return FY_EINVAL;
  }
  json_object_set_new(env, key, json_string(eq + 1));
  return FY_OK;
}

int fy_settings_env_file(json_t *env, const char *path) {
  char *text = NULL;
  size_t len = 0;
  int rc = fy_file_read(path, 1u << 20, &text, &len);
  if (rc != FY_OK) {
    fy_cli_err("--env-file %s: %s", path, fy_strerror(rc));
    return FY_EINVAL;
  }
  int line = 0;
  for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
    nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    line++;
    size_t n = strlen(p);
    if (n && p[n - 1] == '\r') p[--n] = '\0';
    while (*p == ' ' || *p == '\t') p++;
    if (!*p || *p == '#') continue;
    if (strncmp(p, "export ", 7) == 0) p += 7;
    char origin[4200];
    snprintf(origin, sizeof origin, "%s:%d", path, line);
    if ((rc = fy_settings_env_arg(env, p, origin)) != FY_OK) break;
  }
  free(text);
  return rc;
}
