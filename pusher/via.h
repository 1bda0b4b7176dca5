/* A push whose bytes come from a registry (--via docker://HOST/REPO, or registry: in the fleet
 * file): before any node is touched, every layer of every variant the rollout will send must be
 * zstd and be in that repository, and the nodes get a pull credential: a pull-only token where
 * the registry issues tokens, else the read-only credential of registry_auth (or --pull-auth),
 * else the pusher's own (said on stderr). */
#ifndef FERRY_PUSHER_VIA_H
#define FERRY_PUSHER_VIA_H

#include "ferry/wire.h"
#include "layout.h"

/* vs: the distinct variants scheduled. FY_OK with *src filled; else the reason in err (no node
 * has been touched). notes: what the user should know (the credential's kind), may be "". */
int fy_via_prepare(const char *via, const char *auth_file, int fallback, const fy_variant *vs, size_t nv, fy_plan_source *src,
                   char *notes, size_t nlen, char *err, size_t errlen) FY_WUR;

#endif
