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

#include "fleet.h"
#include "ferry/tls.h"

typedef struct fy_broker_node {
  char name[64];
  int seen;          /* the broker holds a status for it */
  int verified;      /* signed by that node, under the fleet CA */
  char why[300];     /* seen but not verified: why */
  json_t *status;    /* the verified status (owned; fy_broker_nodes_free) */
} fy_broker_node;

/* Fills nodes[i] (name set by the caller) from the broker f names. tls: the pusher's identity
 * loaded as FY_TLS_BROKER. FY_OK, or FY_ECONN / FY_ETLS / FY_ETIMEDOUT / FY_EPROTO / FY_EPOLICY
 * with the reason in err. */
int fy_broker_read_statuses(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, char *err,
                            size_t errlen) FY_WUR;
void fy_broker_nodes_free(fy_broker_node *nodes, size_t n);

/* After the same read, follows the statuses as they change (ferry status --fleet --watch):
 * on_change for each node whose status came again, until *stop is set (a signal) or the
 * connection fails. Pings the broker every 30 s. */
typedef void (*fy_broker_change_cb)(void *ud, const fy_broker_node *node);
int fy_broker_watch(const fy_fleet *f, fy_tls_conf *tls, fy_broker_node *nodes, size_t n, uint64_t timeout_ms, fy_broker_change_cb on_change,
                    void *ud, volatile int *stop, char *err, size_t errlen) FY_WUR;

#endif
