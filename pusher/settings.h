/* A node's settings for a push: what the fleet file gives it (fleet.h) with --env and --env-file
 * over them, the local files and secrets read, in the shape a plan carries (ferry/wire.h). */
#ifndef FERRY_PUSHER_SETTINGS_H
#define FERRY_PUSHER_SETTINGS_H

#include <jansson.h>

#include "ferry/error.h"

/* src: the fleet's merged settings (NULL: none); cli_env: {K: V} from the command line (NULL:
 * none). A new object (empty when nothing is set), or NULL with the reason in err (a file that
 * cannot be read, or is too big). */
json_t *fy_settings_resolve(const json_t *src, const json_t *cli_env, char *err, size_t errlen);
/* What ferry plan shows of them: env as set, file paths, secret names with "(set)": never a
 * secret's value. */
json_t *fy_settings_shown(const json_t *resolved);
/* --env K=V and --env-file FILE (K=V lines, # comments) into env. FY_EINVAL after printing why. */
int fy_settings_env_arg(json_t *env, const char *kv, const char *origin);
int fy_settings_env_file(json_t *env, const char *path);

#endif
