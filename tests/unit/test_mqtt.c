/* The MQTT 3.1.1 codec (mqtt.h): packets as the standard spells them byte by byte, decoded in
 * every chunk size; the refusals (lengths, flags, QoS 2, topics, a server-only packet); topic
 * filters. */
#include <stdlib.h>

#include "check.h"
#include "ferry/mqtt.h"

typedef struct seen {
  int n;
  fy_mqtt_packet last;
  char topic[64];
  char payload[64];
} seen;

static int take(void *ud, const fy_mqtt_packet *p) {
  seen *s = ud;
  s->n++;
  s->last = *p;
  if (p->topic) snprintf(s->topic, sizeof s->topic, "%s", p->topic);
  if (p->payload) snprintf(s->payload, sizeof s->payload, "%.*s", (int)p->payload_len, (const char *)p->payload);
  return FY_OK;
}

/* Feeds bytes in chunks of k; returns the decoder's result. */
static int feed(const void *bytes, size_t n, size_t k, seen *s) {
  fy_mqtt_decoder d;
  fy_mqtt_decoder_init(&d, 1024);
  memset(s, 0, sizeof *s);
  int rc = FY_OK;
  for (size_t i = 0; i < n && rc == FY_OK; i += k) rc = fy_mqtt_decoder_feed(&d, (const uint8_t *)bytes + i, n - i < k ? n - i : k, take, s);
  fy_mqtt_decoder_free(&d);
  return rc;
}

static void test_encoders(void) {
  fy_buf b;
  fy_buf_init(&b, 4096);
  fy_mqtt_connect c = {.client_id = "pi-1", .clean_session = 0, .keepalive_s = 30, .will_topic = "ferry/f/nodes/pi-1/status",
                       .will_payload = "{}", .will_len = 2, .will_qos = 1, .will_retain = 1};
  CHECK_INT(fy_mqtt_connect_encode(&b, &c), FY_OK);
  /* 0x10, remaining, "MQTT", level 4, flags: will retain 0x20 | will qos 1 0x08 | will 0x04 */
  static const uint8_t head[] = {0x10, 10 + 2 + 4 + 2 + 25 + 2 + 2, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x2C, 0, 30, 0, 4, 'p', 'i', '-', '1'};
  CHECK_INT(b.len, 2 + head[1]);
  CHECK(memcmp(b.data, head, sizeof head) == 0);
  fy_buf_reset(&b);
  CHECK_INT(fy_mqtt_publish_encode(&b, "a/b", "hi", 2, 1, 1, 0, 7), FY_OK);
  static const uint8_t pub[] = {0x33, 9, 0, 3, 'a', '/', 'b', 0, 7, 'h', 'i'};
  CHECK_INT(b.len, sizeof pub);
  CHECK(memcmp(b.data, pub, sizeof pub) == 0);
  fy_buf_reset(&b);
  const char *filters[] = {"ferry/f/nodes/pi-1/desired", "ferry/f/nodes/pi-1/requests"};
  int qos[] = {1, 1};
  CHECK_INT(fy_mqtt_subscribe_encode(&b, 1, filters, qos, 2), FY_OK);
  CHECK_INT(b.data[0], 0x82); /* SUBSCRIBE has flags 0010 (3.8.1) */
  fy_buf_reset(&b);
  CHECK_INT(fy_mqtt_simple_encode(&b, FY_MQTT_PINGREQ), FY_OK);
  CHECK(b.len == 2 && b.data[0] == 0xC0 && b.data[1] == 0);
  /* what the standard does not allow is refused, and nothing is appended */
  fy_buf_reset(&b);
  CHECK_INT(fy_mqtt_publish_encode(&b, "a/+", "x", 1, 0, 0, 0, 0), FY_EINVAL);
  CHECK_INT(fy_mqtt_publish_encode(&b, "a", "x", 1, 2, 0, 0, 1), FY_EINVAL);
  CHECK_INT(fy_mqtt_publish_encode(&b, "a", "x", 1, 1, 0, 0, 0), FY_EINVAL);
  CHECK_INT(fy_mqtt_publish_encode(&b, "", "x", 1, 0, 0, 0, 0), FY_EINVAL);
  CHECK_INT(fy_mqtt_publish_encode(&b, "a\xff", "x", 1, 0, 0, 0, 0), FY_EINVAL);
  c.client_id = "bad id";
  CHECK_INT(fy_mqtt_connect_encode(&b, &c), FY_EINVAL);
  const char *bad_filter[] = {"a/#/b"};
  CHECK_INT(fy_mqtt_subscribe_encode(&b, 1, bad_filter, qos, 1), FY_EINVAL);
  CHECK_INT(b.len, 0);
  fy_buf small;
  fy_buf_init(&small, 8);
  CHECK_INT(fy_mqtt_publish_encode(&small, "a/b", "hello", 5, 0, 0, 0, 0), FY_ETOOBIG);
  CHECK_INT(small.len, 0);
  fy_buf_free(&small, 0);
  fy_buf_free(&b, 0);
}

static void test_decoder(void) {
  seen s;
  /* a CONNACK, a retained QoS 1 PUBLISH, a SUBACK, a PINGRESP: in every chunk size */
  static const uint8_t stream[] = {0x20, 2, 0, 0, 0x33, 9, 0, 3, 'a', '/', 'b', 0, 7, 'h', 'i', 0x90, 4, 0, 1, 1, 0x80, 0xD0, 0};
  for (size_t k = 1; k <= sizeof stream; k++) {
    CHECK_INT(feed(stream, sizeof stream, k, &s), FY_OK);
    CHECK_INT(s.n, 4);
    CHECK_INT(s.last.type, FY_MQTT_PINGRESP);
  }
  CHECK_INT(feed(stream + 4, 11, 1, &s), FY_OK);
  CHECK(s.n == 1 && s.last.type == FY_MQTT_PUBLISH && s.last.qos == 1 && s.last.retain && s.last.packet_id == 7);
  CHECK(strcmp(s.topic, "a/b") == 0 && strcmp(s.payload, "hi") == 0);
  static const uint8_t refused_connack[] = {0x20, 2, 0, 5};
  CHECK_INT(feed(refused_connack, sizeof refused_connack, 1, &s), FY_OK);
  CHECK_INT(s.last.return_code, 5);
  CHECK(strcmp(fy_mqtt_connack_reason(5), "not authorized") == 0);
  /* a length of 300 in two bytes */
  uint8_t big[2 + 300 + 1] = {0x30, 0xAC, 0x02, 0, 1, 'x'};
  CHECK_INT(feed(big, 303, 7, &s), FY_OK);
  CHECK_INT(s.last.payload_len, 297);
}

static void test_refusals(void) {
  seen s;
  static const uint8_t five_bytes[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
  CHECK_INT(feed(five_bytes, sizeof five_bytes, 1, &s), FY_EPROTO);
  static const uint8_t over[] = {0x30, 0x81, 0x08}; /* 1025 > the decoder's 1024 */
  CHECK_INT(feed(over, sizeof over, 1, &s), FY_ETOOBIG);
  static const uint8_t overlong_zero[] = {0xD0, 0x80, 0x00};
  CHECK_INT(feed(overlong_zero, sizeof overlong_zero, 1, &s), FY_EPROTO);
  static const uint8_t qos2[] = {0x34, 5, 0, 1, 'a', 0, 1};
  CHECK_INT(feed(qos2, sizeof qos2, 1, &s), FY_EPROTO);
  static const uint8_t wildcard_topic[] = {0x30, 4, 0, 2, 'a', '#'};
  CHECK_INT(feed(wildcard_topic, sizeof wildcard_topic, 1, &s), FY_EPROTO);
  static const uint8_t newline_topic[] = {0x30, 4, 0, 2, 'a', '\n'}; /* would forge a log line */
  CHECK_INT(feed(newline_topic, sizeof newline_topic, 1, &s), FY_EPROTO);
  static const uint8_t reserved_type[] = {0xF0}; /* refused at its first byte, nothing buffered */
  CHECK_INT(feed(reserved_type, sizeof reserved_type, 1, &s), FY_EPROTO);
  static const uint8_t long_ack[] = {0x40, 0x03}; /* a PUBACK announcing 3 bytes */
  CHECK_INT(feed(long_ack, sizeof long_ack, 1, &s), FY_EPROTO);
  static const uint8_t nul_topic[] = {0x30, 4, 0, 2, 'a', 0};
  CHECK_INT(feed(nul_topic, sizeof nul_topic, 1, &s), FY_EPROTO);
  static const uint8_t topic_past_end[] = {0x30, 3, 0, 9, 'a'};
  CHECK_INT(feed(topic_past_end, sizeof topic_past_end, 1, &s), FY_EPROTO);
  static const uint8_t id_zero[] = {0x32, 5, 0, 1, 'a', 0, 0};
  CHECK_INT(feed(id_zero, sizeof id_zero, 1, &s), FY_EPROTO);
  static const uint8_t connect_from_server[] = {0x10, 0};
  CHECK_INT(feed(connect_from_server, sizeof connect_from_server, 1, &s), FY_EPROTO);
  static const uint8_t flags_on_puback[] = {0x42, 2, 0, 1};
  CHECK_INT(feed(flags_on_puback, sizeof flags_on_puback, 1, &s), FY_EPROTO);
  static const uint8_t suback_code[] = {0x90, 3, 0, 1, 0x03};
  CHECK_INT(feed(suback_code, sizeof suback_code, 1, &s), FY_EPROTO);
  static const uint8_t connack_session_refused[] = {0x20, 2, 1, 5};
  CHECK_INT(feed(connack_session_refused, sizeof connack_session_refused, 1, &s), FY_EPROTO);
  /* a failed decoder stays failed: the good packet after the bad one is not delivered */
  static const uint8_t bad_then_good[] = {0x10, 0, 0xD0, 0};
  CHECK_INT(feed(bad_then_good, sizeof bad_then_good, 4, &s), FY_EPROTO);
  CHECK_INT(s.n, 0);
}

static void test_topics(void) {
  CHECK(fy_mqtt_topic_match("ferry/f/nodes/+/status", "ferry/f/nodes/pi-1/status"));
  CHECK(!fy_mqtt_topic_match("ferry/f/nodes/+/status", "ferry/f/nodes/pi-1/x/status"));
  CHECK(fy_mqtt_topic_match("ferry/f/#", "ferry/f/nodes/pi-1/status"));
  CHECK(fy_mqtt_topic_match("ferry/f/#", "ferry/f"));
  CHECK(!fy_mqtt_topic_match("#", "$SYS/broker/uptime"));
  CHECK(fy_mqtt_topic_match("a/b", "a/b") && !fy_mqtt_topic_match("a/b", "a/bc") && !fy_mqtt_topic_match("a/b/c", "a/b"));
  CHECK(fy_mqtt_topic_valid("a/+/#", 5, 1) && !fy_mqtt_topic_valid("a+/b", 4, 1) && !fy_mqtt_topic_valid("#/a", 3, 1));
}

int main(void) {
  test_encoders();
  test_decoder();
  test_refusals();
  test_topics();
  return check_done("test_mqtt");
}
