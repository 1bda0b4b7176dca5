/* Platform names and matching, after containerd's `platforms` package (docs/platforms.md).
 *
 * A platform is os/architecture[/variant] with Go's GOOS/GOARCH values. Every function here is
 * pure: no files, no clocks. */
#ifndef FERRY_PLATFORM_H
#define FERRY_PLATFORM_H

#include <stddef.h>

#include "ferry/error.h"

#define FY_PLATFORM_FIELD 24
#define FY_PLATFORM_STR 80 /* enough for "os/arch/variant" with every field full */
#define FY_PLATFORM_ACCEPT_MAX 16

typedef struct fy_platform {
  char os[FY_PLATFORM_FIELD];
  char arch[FY_PLATFORM_FIELD];
  char variant[FY_PLATFORM_FIELD]; /* "" when none */
} fy_platform;

/* Parses and normalizes a specifier: "linux/arm64/v8", "linux/arm", "arm64/v8", "aarch64",
 * "armhf", "x86_64" (a bare architecture means linux). Also takes `uname -m` names (armv7l,
 * i686). FY_EINVAL for empty fields, too many fields, characters outside [a-z0-9._-] or
 * fields over FY_PLATFORM_FIELD-1 bytes. */
int fy_platform_parse(const char *spec, fy_platform *out) FY_WUR;

/* Builds from separate fields, as an OCI index entry carries them (variant may be NULL). */
int fy_platform_from_fields(const char *os, const char *arch, const char *variant,
                            fy_platform *out) FY_WUR;

/* "linux/arm64", "linux/arm/v7". Always NUL-terminates; returns buf. */
char *fy_platform_format(const fy_platform *p, char *buf, size_t n);

int fy_platform_equal(const fy_platform *a, const fy_platform *b);

/* The platform this code was compiled for (the agent's userland). */
void fy_platform_native(fy_platform *out);

/* Kubernetes' kubernetes.io/arch value: the architecture without variant. */
static inline const char *fy_platform_k8s_arch(const fy_platform *p) { return p->arch; }

#define FY_PLATFORM_NO_AARCH32 0x1u /* arm64 CPU/kernel that cannot run 32-bit arm code */

/* Fills out[] with what a device of platform `dev` runs, best first (the table in docs/platforms.md).
 * Returns how many were written (at most max; at least 1, the device itself). */
size_t fy_platform_accepts(const fy_platform *dev, unsigned flags, fy_platform *out, size_t max);

/* Position of `cand` in the list `accepts` (0 = best) or -1 if the device does not take it. */
int fy_platform_rank(const fy_platform *accepts, size_t n, const fy_platform *cand);

#endif
