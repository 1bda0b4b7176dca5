/* ferryd's configuration file (YAML; every key in docs/device-layout.md). */
#ifndef FERRY_AGENT_CONFIG_H
#define FERRY_AGENT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/error.h"

#define FY_CFG_PATH 1024
#define FY_CFG_MAX_LABELS 64
#define FY_CFG_MAX_WRAPPER 16
#define FY_CFG_MAX_KEYS 16
#define FY_CFG_MAX_MIRRORS 8

typedef enum { FY_ISOLATION_AUTO, FY_ISOLATION_CHROOT, FY_ISOLATION_NONE } fy_isolation;

typedef struct fy_agent_config {
  char name[64];
  char listen_host[64];
  int listen_port;                 /* 0: pick a free port (tests) */
  int listen_none;                 /* listen: none (a node reached only through its broker) */
  char state_dir[FY_CFG_PATH];
  char identity[FY_CFG_PATH];
  char board[32];                  /* "auto" or a profile name */
  char probe_root[FY_CFG_PATH];    /* where /proc and /sys are read for board detection */
  size_t nlabels;
  char label_keys[FY_CFG_MAX_LABELS][128];
  char label_vals[FY_CFG_MAX_LABELS][64];
  fy_isolation isolation;
  int allow_pusher_commands;  /* runtime.allow_pusher_commands: --health-cmd on an uncontained node */
  int allow_exec;             /* allow_exec: ferry exec into a contained app (default false) */
  size_t ndevices;            /* devices: the device nodes apps may ask for (run.devices) */
  char devices[16][256];
  size_t nwrapper;
  char exec_wrapper[FY_CFG_MAX_WRAPPER][FY_CFG_PATH];
  uint64_t max_release_bytes;
  uint64_t partial_max_age_ms; /* limits.partial_max_age: partial blobs older than this go at start-up */
  int zstd_window_log_max;
  uint64_t handshake_timeout_ms;
  uint64_t idle_timeout_ms;
  int max_connections;        /* authenticated connections */
  uint64_t frame_memory;      /* limits.frame_memory: frames being received, all connections together */
  int max_handshakes;         /* connections still in the TLS handshake (limits.max_handshakes) */
  int max_handshakes_per_source; /* of those, from one IP address */
  uint64_t connection_memory; /* ceiling per connection: largest frame + unsent output */
  /* trust: release signature policy (agent/trust.c) */
  size_t ntrust_keys;
  char trust_keys[FY_CFG_MAX_KEYS][FY_CFG_PATH]; /* public key files, resolved paths */
  int require_signature;
  int allow_downgrade;
  /* registries the node pulls from (agent/pull.c) */
  char registry_ca[FY_CFG_PATH];   /* registry_ca: PEM CAs trusted besides the system bundle, "" none */
  size_t nmirrors;                 /* registry_mirrors: tried first, in order, as containerd's hosts.toml */
  char mirrors[FY_CFG_MAX_MIRRORS][256]; /* "https://host[:port]" */
  /* broker: the node keeps one outbound connection to the fleet's MQTT broker (agent/broker.c) */
  int have_broker;
  char broker_host[256];
  int broker_port;                 /* 8883 unless the URL names one */
  char topic_prefix[256];          /* broker.topic_prefix, default "ferry" */
  uint64_t broker_keepalive_ms;    /* broker.keepalive, default 30 s */
  char broker_ca[FY_CFG_PATH];     /* broker.ca: the broker's certificate is another CA's ("": the fleet CA's, role broker) */
} fy_agent_config;

/* Defaults for every optional key. Cannot fail. */
void fy_config_defaults(fy_agent_config *c);

/* Loads and validates path. On error returns FY_ECONFIG (or FY_ENOENT) with
 * "PATH:LINE: what was wrong, what was expected" in err. Relative paths in the file are
 * resolved against the file's directory. */
int fy_config_load(const char *path, fy_agent_config *c, char *err, size_t errlen) FY_WUR;

/* Do apps on this node run contained (the runtime helper: namespaces, pivot_root, capabilities,
 * seccomp, cgroups)? No exec_wrapper, and isolation chroot, or auto with ferryd as root. */
int fy_config_contained(const fy_agent_config *c, int is_root);

#endif
