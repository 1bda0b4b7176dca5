/* The image `ferry upgrade-agent` pushes: an OCI layout with one variant per platform, each a
 * single zstd layer holding /ferryd (the static agent for that platform), tagged "ferryd". The
 * rollout engine then treats it like any multi-platform app image: each node gets its variant. */
#ifndef FERRY_PUSHER_AGENT_IMAGE_H
#define FERRY_PUSHER_AGENT_IMAGE_H

#include <stddef.h>

#include "ferry/error.h"

/* Where this machine keeps a ferryd for platform ("linux/arm64"): 1 with the path, 0 if none. */
int fy_agent_binary_for(const char *platform, char *out, size_t len);
/* The platforms ferry builds agents for. */
size_t fy_agent_platforms(const char **out, size_t max);

/* Writes the layout into dir (which exists and is empty) from n binaries; each spec is
 * "PLATFORM=FILE". The ELF header of each must match its platform. */
int fy_agent_image_build(const char *dir, char *const *specs, size_t n, char *err, size_t errlen) FY_WUR;

#endif
