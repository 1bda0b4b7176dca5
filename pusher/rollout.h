/* A rollout: ask every target for its facts, decide who gets the release (selector, affinity,
 * platform, replicas) and in which wave (canary first), then push wave by wave on one loop,
 * halting at the failure budget and optionally reverting the nodes that took the release.
 * `ferry push` and `ferry plan` (the same decision without pushing) are both this. */
#ifndef FERRY_PUSHER_ROLLOUT_H
#define FERRY_PUSHER_ROLLOUT_H

#include "cli.h"
#include "push_node.h"

/* "N" or "P%" (of the nodes chosen for the rollout). */
typedef struct fy_count {
  long n;
  int percent;
  int set;
} fy_count;

/* FY_EINVAL unless s is a count in [min, FY_MAX_TARGETS] or a percentage 1-100%. */
int fy_count_parse(const char *s, long min, fy_count *c) FY_WUR;

typedef struct fy_rollout_opts {
  fy_cli_common *cc;
  fy_push_cfg push;            /* layout, app, settle, health; tls/timeout/chunks set by the rollout */
  fy_count canary;             /* nodes of the first wave, alone */
  fy_count max_parallel;       /* width of each later wave; unset: all the rest at once */
  fy_count max_failures;       /* failures that halt; unset: never (a failed canary always halts) */
  int revert_on_halt;
  long replicas;               /* 0: every matching node */
  const char *spread_by;       /* label spreading equal-scoring replicas */
  int dry_run;                 /* ferry plan */
  json_t **settings;           /* per target: its env, files and secrets (settings.h), or NULL */
  /* through the broker (broker: in the fleet file) */
  int broker;                  /* publish desired state instead of connecting to each node */
  int detach;                  /* publish and return (--detach) */
  uint64_t wait_offline_ms;    /* how long a wave waits for nodes that are offline (--wait-offline) */
  int64_t desired_ttl_s;       /* the desired state's expiry (--desired-ttl; 30 days) */
} fy_rollout_opts;

/* Runs it and prints the report. Returns the exit status: 0 only when every chosen node
 * deployed (plan: when every target answered and at least one node is chosen). */
int fy_rollout_run(fy_rollout_opts *o);

#endif
