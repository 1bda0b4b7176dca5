/* OCI image index, manifest and config (image-spec v1.1), plus the Docker manifest-list and
 * manifest v2 media types, parsed from JSON bytes into bounded structs. Pure. */
#ifndef FERRY_OCI_H
#define FERRY_OCI_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/digest.h"
#include "ferry/error.h"
#include "ferry/platform.h"

#define FY_OCI_MAX_ENTRIES 512
#define FY_OCI_MAX_LAYERS 256
#define FY_OCI_MAX_ARGS 256
#define FY_OCI_JSON_MAX (4u * 1024u * 1024u) /* index, manifest and config size ceiling */

#define FY_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define FY_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define FY_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define FY_MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define FY_MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define FY_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define FY_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define FY_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define FY_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define FY_MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define FY_MT_DOCKER_LAYER_ZSTD "application/vnd.docker.image.rootfs.diff.tar.zstd"
#define FY_ANNOT_REF_NAME "org.opencontainers.image.ref.name"

typedef enum {
  FY_KIND_UNKNOWN = 0,
  FY_KIND_INDEX,
  FY_KIND_MANIFEST,
  FY_KIND_CONFIG,
  FY_KIND_LAYER_TAR,
  FY_KIND_LAYER_GZIP,
  FY_KIND_LAYER_ZSTD,
} fy_media_kind;

fy_media_kind fy_media_kind_of(const char *media_type);

typedef struct fy_descriptor {
  char media_type[128];
  fy_media_kind kind;
  fy_digest digest;
  uint64_t size;
  int has_platform;
  fy_platform platform;
  char ref_name[256];  /* org.opencontainers.image.ref.name, "" if none */
  char title[64];      /* org.opencontainers.image.title, "" if none */
  int attestation;     /* a buildx/BuildKit attestation entry: never deployed */
  char board[32];      /* dev.ferry.board: a board-tuned variant (ferry build), "" if none */
} fy_descriptor;

typedef struct fy_index {
  fy_descriptor *entries;
  size_t n;
} fy_index;

typedef struct fy_manifest {
  fy_descriptor config;
  fy_descriptor *layers;
  size_t nlayers;
  uint64_t layers_size; /* sum of layer sizes (overflow-checked) */
} fy_manifest;

typedef struct fy_image_config {
  fy_platform platform;       /* from os / architecture / variant */
  char **entrypoint; size_t nentrypoint;
  char **cmd; size_t ncmd;
  char **env; size_t nenv;    /* "K=V" */
  char *workdir;              /* NULL if unset */
  char *user;                 /* NULL if unset */
  size_t ndiff_ids;
  char *test;                 /* label dev.ferry.test: a JSON array, NULL if unset */
  char *board;                /* label dev.ferry.board, NULL if unset */
  int64_t settle_ms;          /* label dev.ferry.settle_ms, -1 if unset */
  int health_port;            /* label dev.ferry.health_port, 0 if unset */
  char *health_cmd;           /* the health command as text (shell form as written, exec form joined
                                 by spaces), NULL if unset */
  char **health_argv;         /* what runs: exec form as listed, shell form as /bin/sh -c TEXT;
                                 from Healthcheck.Test (CMD / CMD-SHELL) or the dev.ferry.health_cmd
                                 label (shell form) */
  size_t nhealth_argv;
  char *stop_signal;          /* StopSignal as written ("SIGTERM"), NULL if unset */
  int64_t stop_timeout_ms;    /* label dev.ferry.stop_timeout_ms, -1 if unset */
  char *capabilities;         /* label dev.ferry.capabilities: JSON (runspec.h), NULL if unset */
  char *resources;            /* label dev.ferry.resources: JSON (runspec.h), NULL if unset */
  char *affinity;             /* label dev.ferry.affinity: JSON (selector.h), NULL if unset */
  int64_t health_interval_ms; /* Healthcheck.Interval (nanoseconds there), -1 if unset */
  char *restart;              /* label dev.ferry.restart as written, NULL if unset (fy_restart_parse) */
  char *volumes;              /* label dev.ferry.volumes: JSON {"name":"/path"} (runspec.h), NULL if unset */
  char *devices;              /* label dev.ferry.devices: JSON ["/dev/x"] (runspec.h), NULL if unset */
  char *config_decl;          /* label dev.ferry.config: JSON {"env":[..],"files":[..],"secrets":[..]}, what
                                 a signed image lets nodes set; NULL if unset */
} fy_image_config;

/* What the supervisor does when the app exits or turns unhealthy (run.restart, Docker's and
 * compose's names): always restart (the default), only after a failure (an exit status other
 * than 0, a signal, unhealthy), or never. */
typedef enum { FY_RESTART_ALWAYS, FY_RESTART_ON_FAILURE, FY_RESTART_NEVER } fy_restart;
#define FY_HEALTH_INTERVAL_DEFAULT_MS 30000
#define FY_HEALTH_INTERVAL_MIN_MS 1000
#define FY_HEALTH_INTERVAL_MAX_MS 86400000
/* "always" | "on-failure" | "never" (NULL: always). FY_EINVAL otherwise. */
int fy_restart_parse(const char *s, fy_restart *out) FY_WUR;
const char *fy_restart_name(fy_restart r);

/* Each parser: FY_OK, or FY_EPROTO / FY_ETOOBIG / FY_EDIGEST with a reason in err. Output
 * structs are owned by the caller and freed with the matching _free (NULL-safe). */
int fy_oci_index_parse(const char *json, size_t len, fy_index *out, char *err, size_t errlen) FY_WUR;
void fy_oci_index_free(fy_index *ix);
int fy_oci_manifest_parse(const char *json, size_t len, fy_manifest *out, char *err, size_t errlen) FY_WUR;
void fy_oci_manifest_free(fy_manifest *m);
int fy_oci_config_parse(const char *json, size_t len, fy_image_config *out, char *err, size_t errlen) FY_WUR;
void fy_oci_config_free(fy_image_config *c);

/* The best entry of ix for a device that accepts `accepts` (best first): the lowest rank wins;
 * among equal ranks an entry tuned for the device's board (dev.ferry.board == board) beats a
 * generic one, which beats one tuned for another board; remaining ties keep index order (first
 * match wins). Entries without a platform and attestations are skipped. board may be NULL.
 * Returns the entry's position, or -1. */
int fy_oci_choose(const fy_index *ix, const fy_platform *accepts, size_t naccepts, const char *board);

/* 1 for cosign's tag scheme, sha256-<64 hex>.sig (.att, .sbom): an artifact about an image, not one. */
int fy_oci_is_signature_ref(const char *ref);
/* 1 for an entry of index.json that is an image: not a signature, attestation or other artifact. */
int fy_oci_is_image_entry(const fy_descriptor *d);

/* Writes the platforms ix offers ("linux/amd64, linux/arm64") for error messages. */
void fy_oci_offered(const fy_index *ix, char *buf, size_t len);

#endif
