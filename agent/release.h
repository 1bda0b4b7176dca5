/* The release model on disk, under STATE/apps/<app>/:
 *   releases/<id>/rootfs/, run.json, config.json   a complete release (<id>.partial while written)
 *   current, previous                              symlinks to releases/<id>, switched by rename(2)
 * Blocking file I/O throughout (small: links, names, one run.json); fy_app_gc sends the heavy part
 * to the worker pool. */
#ifndef FERRY_AGENT_RELEASE_H
#define FERRY_AGENT_RELEASE_H

#include "ferry/digest.h"
#include <jansson.h>
#include <stddef.h>

#include "apps.h"

struct fy_agent;

/* (App names: fy_app_valid_name, ferry/wire.h.) */
/* STATE/apps/<app> */
void fy_app_dir(const struct fy_agent *a, const char *app, char *buf, size_t len);
/* The release id a link (current, previous) names, "" when none. */
void fy_release_read_link(const char *dir, const char *name, char *out, size_t len);
/* A fresh id for a release of manifest_digest: time and digest, unused so far. */
int fy_app_new_release_id(const struct fy_agent *a, const char *app, const char *manifest_digest,
                          char *id, size_t len) FY_WUR;
/* Points current at id and previous at what current was (or at keep_previous when given). */
int fy_app_switch(fy_app *app, const char *id, const char *previous) FY_WUR;
/* The release's run.json (what it runs, its blobs, its signed version), read with the one size
 * ceiling; NULL when missing or not JSON. The caller owns it (json_decref). */
json_t *fy_release_run(const struct fy_agent *a, const char *app, const char *id);
/* Removes releases other than current and previous, then blobs no release still uses (none when
 * the set a release uses cannot be read). done(ud) is called once the node's state is final (at
 * once, or after the old release trees were removed on a worker). */
void fy_app_gc(struct fy_agent *a, void (*done)(void *ud), void *ud);
/* Start-up: removes releases/<id>.partial left by a kill or a power cut. */
void fy_release_clean_partials(struct fy_agent *a, const char *app);

/* The blobs of the last failed deploy, kept by the GC until space is needed (replaces the last). */
void fy_release_failed_cache(struct fy_agent *a, const fy_digest *blobs, size_t n);
/* Space for a plan: what could go (partials and the failed deploy's cache, neither used by a
 * release nor listed in also[]) is measured into *reclaimable; when it is at least want (> 0),
 * it is removed. Returns the bytes freed. */
uint64_t fy_release_reclaim(struct fy_agent *a, const fy_digest *also, size_t nalso, uint64_t want, uint64_t *reclaimable);

#endif
