/* libFuzzer target: the MQTT 3.1.1 decoder (a broker's bytes, or anyone's who stands in for it),
 * fed in two chunks split where the first byte says; every packet it delivers is checked against
 * the standard's shapes, and a PUBLISH it accepts must encode again to the same packet. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/mqtt.h"

static int check(void *ud, const fy_mqtt_packet *p) {
  (void)ud;
  if (p->type == FY_MQTT_PUBLISH) {
    if (!p->topic || strlen(p->topic) != p->topic_len || !fy_mqtt_topic_valid(p->topic, p->topic_len, 0)) __builtin_trap();
    if (p->qos > 1 || (p->qos == 1 && p->packet_id == 0)) __builtin_trap();
    fy_buf b;
    fy_buf_init(&b, 1u << 20);
    if (fy_mqtt_publish_encode(&b, p->topic, p->payload, p->payload_len, p->qos, p->retain, p->dup, p->packet_id) != FY_OK)
      __builtin_trap();
    fy_buf_free(&b, 0);
  } else if (p->type == FY_MQTT_SUBACK) {
    if (p->ncodes == 0 || p->ncodes > FY_MQTT_SUBS_MAX) __builtin_trap();
  } else if (p->type != FY_MQTT_CONNACK && p->type != FY_MQTT_PUBACK && p->type != FY_MQTT_UNSUBACK &&
             p->type != FY_MQTT_PINGRESP) {
    __builtin_trap();
  }
  return FY_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  size_t cut = p[0] % n;
  fy_mqtt_decoder d;
  fy_mqtt_decoder_init(&d, 65536);
  if (cut == 0) cut = 1;
  int rc = fy_mqtt_decoder_feed(&d, p + 1, cut - 1, check, NULL);
  if (rc == FY_OK) rc = fy_mqtt_decoder_feed(&d, p + cut, n - cut, check, NULL);
  if (rc != FY_OK && fy_mqtt_decoder_feed(&d, p, 1, check, NULL) != rc) __builtin_trap(); /* failed stays failed */
  fy_mqtt_decoder_free(&d);
  /* topic matching never reads past either string */
  char *s = malloc(n + 1);
  if (!s) return 0;
  memcpy(s, p, n);
  s[n] = '\0';
  char *slash = memchr(s, '|', n);
  if (slash) {
    *slash = '\0';
    (void)fy_mqtt_topic_match(s, slash + 1);
  }
  free(s);
  return 0;
}
