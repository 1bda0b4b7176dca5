/* MQTT 3.1.1 (OASIS standard, 2014), the client's side, sans-I/O: what ferryd (and the pusher)
 * need to talk to a broker over the fleet's TLS. Encoders append whole packets to a bounded
 * fy_buf; the decoder takes the broker's bytes in any chunking and delivers each complete packet
 * through a callback. Nothing here reads a socket.
 *
 * Strict on input: the remaining length is at most four bytes and at most the decoder's
 * max_packet; each packet type's fixed-header flags, length and fields are checked as the
 * standard says (a server sends CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK and PINGRESP to a
 * client; anything else, QoS 2 among it, is refused); topic names are valid UTF-8 without NUL
 * or wildcards. A decoder that failed stays failed: the connection is over. */
#ifndef FERRY_MQTT_H
#define FERRY_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/buf.h"
#include "ferry/error.h"

#define FY_MQTT_REMAINING_MAX 268435455u /* four bytes of remaining length */
#define FY_MQTT_TOPIC_MAX 1024           /* ferry's topics are far shorter */
#define FY_MQTT_CLIENT_ID_MAX 128
#define FY_MQTT_SUBS_MAX 16              /* topic filters in one SUBSCRIBE */

enum {
  FY_MQTT_CONNECT = 1,
  FY_MQTT_CONNACK = 2,
  FY_MQTT_PUBLISH = 3,
  FY_MQTT_PUBACK = 4,
  FY_MQTT_PUBREC = 5,
  FY_MQTT_PUBREL = 6,
  FY_MQTT_PUBCOMP = 7,
  FY_MQTT_SUBSCRIBE = 8,
  FY_MQTT_SUBACK = 9,
  FY_MQTT_UNSUBSCRIBE = 10,
  FY_MQTT_UNSUBACK = 11,
  FY_MQTT_PINGREQ = 12,
  FY_MQTT_PINGRESP = 13,
  FY_MQTT_DISCONNECT = 14,
};

typedef struct fy_mqtt_connect {
  const char *client_id;            /* 1-128 bytes of [0-9a-zA-Z._-] */
  int clean_session;
  uint16_t keepalive_s;             /* 0: none */
  const char *will_topic;           /* NULL: no Last Will */
  const void *will_payload;
  size_t will_len;
  int will_qos, will_retain;
  const char *username;             /* NULL: none (a client certificate names the client) */
} fy_mqtt_connect;

/* A decoded packet; pointers are into the decoder's memory, valid during the callback only. */
typedef struct fy_mqtt_packet {
  uint8_t type;
  /* CONNACK */
  int session_present;
  uint8_t return_code;              /* 0 accepted; 1-5 the standard's refusals */
  /* PUBLISH */
  const char *topic;                /* NUL-terminated */
  size_t topic_len;
  const uint8_t *payload;
  size_t payload_len;
  int qos, retain, dup;
  /* PUBLISH (QoS 1), PUBACK, SUBACK, UNSUBACK */
  uint16_t packet_id;
  /* SUBACK: one return code per filter (0-2 granted QoS, 0x80 failure) */
  const uint8_t *codes;
  size_t ncodes;
} fy_mqtt_packet;

/* Encoders: FY_OK, FY_EINVAL for a field the standard does not allow (a topic with a wildcard,
 * QoS above 1, a client id out of bounds), FY_ETOOBIG past FY_MQTT_REMAINING_MAX or the buffer's
 * ceiling. Nothing is appended on failure. */
int fy_mqtt_connect_encode(fy_buf *out, const fy_mqtt_connect *c) FY_WUR;
/* qos 0 or 1; packet_id (non-zero) for qos 1. */
int fy_mqtt_publish_encode(fy_buf *out, const char *topic, const void *payload, size_t len, int qos, int retain, int dup,
                           uint16_t packet_id) FY_WUR;
int fy_mqtt_subscribe_encode(fy_buf *out, uint16_t packet_id, const char *const *filters, const int *qos, size_t n) FY_WUR;
int fy_mqtt_puback_encode(fy_buf *out, uint16_t packet_id) FY_WUR;
/* PINGREQ or DISCONNECT: a fixed header alone. */
int fy_mqtt_simple_encode(fy_buf *out, uint8_t type) FY_WUR;

/* mqtts://HOST[:PORT] (TLS only; port 8883 by default): FY_OK, or FY_EINVAL. */
int fy_mqtt_url_parse(const char *url, char *host, size_t hostlen, int *port) FY_WUR;

/* The reason a CONNACK's return code gives, for messages. */
const char *fy_mqtt_connack_reason(uint8_t code);

/* 1 when t is a valid topic name (filter: with '+' and '#' where the standard allows them). */
int fy_mqtt_topic_valid(const char *t, size_t len, int filter);
/* 1 when topic matches filter ('+' one level, '#' the rest). */
int fy_mqtt_topic_match(const char *filter, const char *topic);

typedef int (*fy_mqtt_cb)(void *ud, const fy_mqtt_packet *p); /* FY_OK, or negative: stop */

typedef struct fy_mqtt_decoder {
  int state;                        /* 0 fixed header byte, 1 remaining length, 2 body */
  uint8_t hdr;
  uint32_t remaining;
  int len_bytes;
  uint32_t mult;
  fy_buf body;                      /* ceiling: max_packet */
  size_t max_packet;
  int failed;
  char topic[FY_MQTT_TOPIC_MAX + 1];
  char why[160];                    /* the reason of the failure, for the log */
} fy_mqtt_decoder;

/* Cannot fail. max_packet: the largest remaining length accepted (at most FY_MQTT_REMAINING_MAX). */
void fy_mqtt_decoder_init(fy_mqtt_decoder *d, size_t max_packet);
void fy_mqtt_decoder_free(fy_mqtt_decoder *d);
/* Consumes all n bytes. FY_OK; FY_EPROTO (malformed, the reason in d->why), FY_ETOOBIG (over
 * max_packet), FY_ENOMEM, or what cb returned; after an error every call returns it again. */
int fy_mqtt_decoder_feed(fy_mqtt_decoder *d, const uint8_t *p, size_t n, fy_mqtt_cb cb, void *ud) FY_WUR;

#endif
