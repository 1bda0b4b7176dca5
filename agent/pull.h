/* Pulling a deploy's blobs from an OCI registry (a plan's source, protocol 5): the distribution
 * API's GET /v2/<repository>/blobs/<digest> over HTTPS, with the mirrors of the agent config
 * (registry_mirrors) tried first, as containerd's hosts.toml does; redirects to blob storage
 * followed (the credential only ever goes to the registry's own host); a partial resumed with
 * Range; every byte hashed as it lands (the same blob writer and store as a push), and the
 * size and digest checked before the blob counts.
 *
 * It runs on a worker thread and blocks there (sockets with timeouts, mbedTLS through the
 * sans-I/O session in protocol/, HTTP through protocol/http.c): one deploy's pull is one worker,
 * the loop keeps serving. The pull credential lives in this struct only, and is wiped with it. */
#ifndef FERRY_AGENT_PULL_H
#define FERRY_AGENT_PULL_H

#include <stdint.h>

#include "ferry/digest.h"
#include "ferry/oci.h"
#include "ferry/store.h"
#include "ferry/tls.h"
#include "ferry/wire.h"

typedef struct fy_pull_item {
  fy_digest digest;
  uint64_t size;
} fy_pull_item;

typedef struct fy_pull {
  /* in */
  const fy_store *store;
  char registry_ca[1024];          /* the agent config's registry_ca, "" none */
  fy_plan_source src;              /* registry, repository, the credential */
  char mirrors[8][256];
  size_t nmirrors;
  fy_pull_item items[FY_OCI_MAX_LAYERS];
  size_t n;
  volatile int cancel;             /* set by the loop: the worker stops within a second */
  /* progress, read by the loop while the worker writes (a torn read only shows an odd number) */
  volatile uint64_t done_bytes, total_bytes;
  /* out */
  int rc;
  char err[700];
  uint64_t fetched;                /* bytes that came over the network */
  int blobs;                       /* blobs completed */
  int from_mirror;                 /* blobs a mirror served */
} fy_pull;

/* Blocking; on a worker. Sets rc (FY_OK, or the first failure: FY_ECONN, FY_ETIMEDOUT, FY_ECERT
 * (TLS or the credential refused), FY_ENOENT (404), FY_EDIGEST, FY_ENOSPC, FY_ECANCELED...) and
 * err in words that name the registry. */
void fy_pull_run(fy_pull *p);
/* Wipes the credential; NULL-safe. The caller frees p. */
void fy_pull_wipe(fy_pull *p);

#endif
