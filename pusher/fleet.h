/* fleet.yaml: the inventory a rollout reads.
 *
 *   nodes:
 *     - name: pi-kitchen              # must be the name in the node's certificate
 *       address: 192.168.1.20:7433    # HOST[:PORT], port 7433 when left out
 *       labels: {site: kitchen}
 *   groups:                           # optional: --group NAME picks these nodes
 *     kitchen: [pi-kitchen, pi-garage]
 *   affinity: {required: [...], preferred: [...]}   # optional, nodeAffinity semantics
 *   rollout: {canary: 1, max_parallel: 25%, max_failures: 1, revert_on_halt: true,
 *             spread_by: topology.kubernetes.io/zone}  # optional defaults for the flags
 *   env: {LOG_LEVEL: info}            # optional, for every node; also in a group written as
 *   files: {/etc/app.conf: app.conf}  # {nodes: [...], env: ...} and in a node; the node's
 *   secrets: {api-token: token.txt}   # win over its groups', which win over the file's
 */
#ifndef FERRY_PUSHER_FLEET_H
#define FERRY_PUSHER_FLEET_H

#include <jansson.h>

#include "ferry/selector.h"
#include "target.h"

#define FY_FLEET_MAX_NODES 4096
#define FY_FLEET_MAX_BYTES (4u << 20)

typedef struct fy_fleet_group {
  char name[64];
  char **members;
  size_t n;
  const struct fy_ynode *map; /* the {nodes, env, files, secrets} form, while loading; else NULL */
} fy_fleet_group;

typedef struct fy_fleet {
  char path[4096];
  fy_target *targets;  /* NAME@HOST:PORT for each node */
  json_t **labels;     /* each node's inventory labels (owned) */
  json_t **settings;   /* each node's env, files and secrets, merged file < group < node (owned; the
                          local files' paths, read at push time) */
  const struct fy_ynode **node_maps; /* while loading */
  size_t n;
  fy_fleet_group *groups;
  size_t ngroups;
  fy_affinity affinity;
  /* rollout defaults as written ("" when absent); revert_on_halt -1 when absent */
  char canary[16], max_parallel[16], max_failures[16], spread_by[FY_LABEL_KEY_MAX + 1];
  int revert_on_halt;
  char registry[600];      /* registry: docker://HOST/REPO, where devices pull the bytes ("" none) */
  char registry_auth[4096]; /* registry_auth: an auth.json with a read-only credential for it */
  /* broker: the fleet's MQTT broker (ferry status --fleet reads the nodes' signed statuses there) */
  int have_broker;
  char broker_host[256];
  int broker_port;
  char topic_prefix[256];  /* as the agents' broker.topic_prefix; "ferry" by default */
  char broker_ca[4096];    /* broker.ca: the broker's certificate is another CA's ("" the fleet CA's) */
} fy_fleet;

/* Reads and checks the file. FY_ECONFIG with "FILE:LINE: what" in err. */
int fy_fleet_load(const char *path, fy_fleet *f, char *err, size_t errlen) FY_WUR;
void fy_fleet_free(fy_fleet *f); /* NULL-safe */
/* Takes node `name` out of the file at path, with its entry in every group, keeping the rest
 * of the text (comments, order) as it was; the result must load, or the file is left as it
 * was. FY_ENOENT when the file does not list it; else the reason in err. */
int fy_fleet_remove_node(const char *path, const char *name, char *err, size_t errlen) FY_WUR;
/* The group named `name`, or NULL. */
const fy_fleet_group *fy_fleet_group_find(const fy_fleet *f, const char *name);

#endif
