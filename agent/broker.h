/* The node's one outbound connection to the fleet's MQTT broker (`broker:` in its config), for
 * nodes that nothing can connect to (behind NAT, on cellular; `listen: none`).
 *
 * MQTT 3.1.1 (protocol/mqtt.h) over the fleet's mutual TLS: the node's own identity is its
 * client certificate, and the broker's certificate must chain to the fleet CA, carry serverAuth
 * and the URL's host name. CONNECT keeps the session (clean session off), with a retained Last
 * Will on PREFIX/nodes/NAME/status that says the node is offline; once connected the node
 * subscribes (QoS 1) to PREFIX/nodes/NAME/desired and …/requests and publishes its retained
 * status (facts, apps, online, time), again whenever it changes, and pings every
 * broker.keepalive. A lost connection is retried with a jittered backoff from 1 s to 60 s; the
 * apps run on meanwhile. A clean stop publishes the status as offline and disconnects. */
#ifndef FERRY_AGENT_BROKER_H
#define FERRY_AGENT_BROKER_H

#include <stddef.h>

struct fy_agent;
typedef struct fy_broker fy_broker;

/* Nothing without broker: in the config. FY_ECONFIG (with the reason) when the identity cannot
 * be a broker's client. Connects in the background. */
int fy_broker_start(struct fy_agent *a, char *err, size_t errlen);
/* A newer revocation list of the fleet (the one the listener took): applied to the broker too. */
void fy_broker_set_crl(struct fy_agent *a, const char *pem);
/* Says goodbye when connected, and closes everything (the loop can end). */
void fy_broker_stop(struct fy_agent *a);

#endif
