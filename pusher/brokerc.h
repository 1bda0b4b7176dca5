/* ferry's side of the fleet's MQTT broker, for reads that end (ferry status --fleet with a
 * broker: in the fleet file): a blocking client over the fleet's mutual TLS, with the pusher's
 * identity as its client certificate (FY_TLS_BROKER) and protocol/mqtt.h.
 *
 * It subscribes to PREFIX/nodes/+/status, whose retained messages the broker sends at once, and
 * to a topic of its own, PREFIX/pushers/ID/sync, where it then publishes a marker: the broker
 * sends that after the retained statuses, so the read ends when the marker comes back, without
 * waiting for any node. Each status is checked as envelope.h says (signed by the node the topic
 * names, under the fleet CA and its revocation list). */
#ifndef FERRY_PUSHER_BROKERC_H
#define FERRY_PUSHER_BROKERC_H

#include <jansson.h>
#include <stdint.h>

#include "cli.h"
#include "fleet.h"
#include "ferry/sign.h"
#include "ferry/tls.h"

typedef struct fy_broker_node {
  char name[64];
  int seen;          /* the broker holds a status for it */
  int verified;      /* signed by that node, under the fleet CA */
  char why[300];     /* seen but not verified: why */
  json_t *status;    /* the verified status (owned; fy_broker_nodes_free) */
  char *cert_pem;    /* the certificate that signed it: the node's own (what is sealed to it uses its key) */
  /* with full: its retained desired state, verified as the node would, its expiry aside */
  uint64_t desired_seq;  /* 0: none */
  int64_t desired_expires;
  json_t *desired;       /* its body (owned) */
  char desired_why[300]; /* one is there but does not verify: why */
} fy_broker_node;

/* Fills nodes[i] (name set by the caller) from the broker f names; with full, their desired
 * states too. tls: the pusher's identity loaded as FY_TLS_BROKER. FY_OK, or FY_ECONN / FY_ETLS /
 * FY_ETIMEDOUT / FY_EPROTO / FY_EPOLICY with the reason in err. */
int fy_broker_read_statuses(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, int full, char *err,
                            size_t errlen) FY_WUR;
void fy_broker_nodes_free(fy_broker_node *nodes, size_t n);

/* After the same read, follows the statuses as they change (ferry status --fleet --watch):
 * on_change for each node whose status came again, until *stop is set (a signal) or the
 * connection fails. Pings the broker every 30 s. */
typedef void (*fy_broker_change_cb)(void *ud, const fy_broker_node *node);
int fy_broker_watch(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, fy_broker_change_cb on_change,
                    void *ud, volatile int *stop, char *err, size_t errlen) FY_WUR;

/* A session that stays open (a push through the broker): opened as the read above (statuses,
 * with full also desired states, and the nodes' events from then on), then publishes and waits.
 * err stays the caller's buffer for the session's life. */
typedef struct fy_bsess fy_bsess;
typedef void (*fy_broker_event_cb)(void *ud, fy_broker_node *node, const json_t *event);
int fy_bsess_open(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, int full, fy_bsess **out,
                  char *err, size_t errlen) FY_WUR;
/* on_change after a node's status or desired state changed; on_event for each event a node
 * publishes (as sent: events are not signed, only its status is). */
void fy_bsess_on(fy_bsess *s, fy_broker_change_cb on_change, fy_broker_event_cb on_event, void *ud, volatile int *stop);
/* With full: for each reply a node published (verified: signed by that node), its body with "seq". */
void fy_bsess_on_reply(fy_bsess *s, fy_broker_event_cb on_reply);
/* What a push or a request batch through the broker works with: the pusher's key and
 * certificate from its identity directory (what it signs for the broker), its broker TLS
 * identity, a node per target, and the session opened on them (full: statuses, desired states,
 * events and replies). */
typedef struct fy_bfleet {
  fy_sign_key *sk;
  char *cert_pem;
  fy_tls_conf *tls;
  fy_broker_node *nodes;
  size_t n;
  fy_bsess *s;
} fy_bfleet;
/* Opens it for cc's targets (cc->fleet names the broker); says on stderr why it cannot. err
 * stays the caller's buffer for the session's life. fy_bfleet_close frees it, opened or not. */
int fy_bfleet_open(fy_cli_common *cc, fy_bfleet *f, char *err, size_t errlen) FY_WUR;
void fy_bfleet_close(fy_bfleet *f);
/* QoS 1: returns once the broker acknowledged it (a retained one is then kept). */
int fy_bsess_publish(fy_bsess *s, const char *topic, const char *payload, size_t len, int retain, uint64_t timeout_ms) FY_WUR;
/* Reads (and pings) until done(ud) or ms have passed (FY_ETIMEDOUT), or *stop. */
int fy_bsess_wait(fy_bsess *s, uint64_t ms, int (*done)(void *ud), void *ud) FY_WUR;
/* Where app stands on the node against its desired state: "converged" (the node applied the
 * newest desired state, and, when it is online, runs the manifest that state names, or not the
 * app at all for {remove: true}; when offline, what it said when it applied it), "converging" (not applied yet),
 * "diverged" (it failed, or the desired state expired before the node took it); NULL when no
 * desired state names app. */
const char *fy_broker_convergence(const fy_broker_node *nd, const char *app, int64_t now);
/* NULL-safe; goodbye: a DISCONNECT first. */
void fy_bsess_close(fy_bsess *s, int goodbye);

#endif
