/* MQTT 3.1.1, the client's side (see mqtt.h). Section numbers are the standard's. */
#include <stdio.h>
#include <string.h>

#include "ferry/mqtt.h"

/* --- strings and topics -------------------------------------------------------------------- */

/* Well-formed UTF-8 without NUL, surrogates or overlong forms (1.5.3). */
static int utf8_ok(const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = s[i];
    if (c == 0) return 0;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t k;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) k = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) k = 3, cp = c & 0x07;
    else return 0;
    if (n - i <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += k + 1;
  }
  return 1;
}

int fy_mqtt_topic_valid(const char *t, size_t len, int filter) {
  if (len == 0 || len > FY_MQTT_TOPIC_MAX || !utf8_ok((const uint8_t *)t, len)) return 0;
  for (size_t i = 0; i < len; i++) {
    /* The standard allows control characters; ferry's topics never have them, and a topic is
     * written to logs (a newline there would forge a line). */
    if ((unsigned char)t[i] < 0x20 || t[i] == 0x7f) return 0;
    if (t[i] != '+' && t[i] != '#') continue;
    if (!filter) return 0;
    /* a wildcard is a whole level; '#' only the last one (4.7.1) */
    if ((i > 0 && t[i - 1] != '/') || (i + 1 < len && t[i + 1] != '/')) return 0;
    if (t[i] == '#' && i + 1 != len) return 0;
  }
  return 1;
}

int fy_mqtt_topic_match(const char *f, const char *t) {
  /* Topics starting with '$' are the broker's, never matched by a leading wildcard (4.7.2). */
  if ((f[0] == '+' || f[0] == '#') && t[0] == '$') return 0;
  for (;;) {
    if (f[0] == '#') return 1;
    const char *fe = strchr(f, '/'), *te = strchr(t, '/');
    size_t fl = fe ? (size_t)(fe - f) : strlen(f), tl = te ? (size_t)(te - t) : strlen(t);
    if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0)) return 0;
    if (!fe && !te) return 1;
    if (!te) return fe[1] == '#' && fe[2] == '\0'; /* "a/#" matches "a" */
    if (!fe) return 0;
    f = fe + 1;
    t = te + 1;
  }
}

int fy_mqtt_url_parse(const char *s, char *host, size_t hostlen, int *port) {
  if (strncmp(s, "mqtts://", 8) != 0) return FY_EINVAL;
  s += 8;
  const char *colon = strrchr(s, ':'), *end_host = colon ? colon : s + strlen(s);
  size_t hl = (size_t)(end_host - s);
  if (hl == 0 || hl >= hostlen || strchr(s, '/') || strchr(s, '@')) return FY_EINVAL;
  *port = 8883;
  if (colon) {
    long v = 0;
    const char *p = colon + 1;
    if (!*p) return FY_EINVAL;
    for (; *p; p++) {
      if (*p < '0' || *p > '9' || v > 65535) return FY_EINVAL;
      v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535) return FY_EINVAL;
    *port = (int)v;
  }
  memcpy(host, s, hl);
  host[hl] = '\0';
  return FY_OK;
}

const char *fy_mqtt_connack_reason(uint8_t code) {
  switch (code) {
  case 0: return "accepted";
  case 1: return "unacceptable protocol version";
  case 2: return "client identifier rejected";
  case 3: return "server unavailable";
  case 4: return "bad user name or password";
  case 5: return "not authorized";
  default: return "unknown return code";
  }
}

/* --- encoders ---------------------------------------------------------------------------- */

static size_t varint_len(size_t n) { return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4; }

/* The fixed header, after checking that the whole packet fits (nothing is appended otherwise). */
static int header(fy_buf *out, uint8_t first, size_t remaining) {
  if (remaining > FY_MQTT_REMAINING_MAX) return FY_ETOOBIG;
  size_t total = 1 + varint_len(remaining) + remaining;
  if (out->len + total > out->max) return FY_ETOOBIG;
  if (fy_buf_reserve(out, total) != FY_OK) return FY_ENOMEM;
  out->data[out->len++] = first;
  do {
    uint8_t b = remaining % 128;
    remaining /= 128;
    out->data[out->len++] = (uint8_t)(b | (remaining ? 0x80 : 0));
  } while (remaining);
  return FY_OK;
}

/* Room was reserved by header(): these cannot fail. */
static void put_u16(fy_buf *out, uint16_t v) {
  out->data[out->len++] = (uint8_t)(v >> 8);
  out->data[out->len++] = (uint8_t)v;
}
static void put_bytes(fy_buf *out, const void *p, size_t n) {
  if (n) memcpy(out->data + out->len, p, n);
  out->len += n;
}
static void put_str(fy_buf *out, const char *s, size_t n) {
  put_u16(out, (uint16_t)n);
  put_bytes(out, s, n);
}

static int client_id_ok(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n > FY_MQTT_CLIENT_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || id[i] == '.' ||
          id[i] == '_' || id[i] == '-'))
      return 0;
  return 1;
}

int fy_mqtt_connect_encode(fy_buf *out, const fy_mqtt_connect *c) {
  size_t idl = c->client_id ? strlen(c->client_id) : 0, wtl = c->will_topic ? strlen(c->will_topic) : 0;
  size_t ul = c->username ? strlen(c->username) : 0;
  if (!client_id_ok(c->client_id)) return FY_EINVAL;
  if (c->will_topic && (!fy_mqtt_topic_valid(c->will_topic, wtl, 0) || c->will_len > 65535 || c->will_qos < 0 || c->will_qos > 1))
    return FY_EINVAL;
  if (c->username && (ul > 65535 || !utf8_ok((const uint8_t *)c->username, ul))) return FY_EINVAL;
  size_t rem = 10 + 2 + idl + (c->will_topic ? 2 + wtl + 2 + c->will_len : 0) + (c->username ? 2 + ul : 0);
  uint8_t flags = (uint8_t)((c->clean_session ? 0x02 : 0) | (c->username ? 0x80 : 0));
  if (c->will_topic) flags |= (uint8_t)(0x04 | (c->will_qos << 3) | (c->will_retain ? 0x20 : 0));
  int rc = header(out, FY_MQTT_CONNECT << 4, rem);
  if (rc != FY_OK) return rc;
  put_str(out, "MQTT", 4);
  out->data[out->len++] = 4; /* protocol level: 3.1.1 */
  out->data[out->len++] = flags;
  put_u16(out, c->keepalive_s);
  put_str(out, c->client_id, idl);
  if (c->will_topic) {
    put_str(out, c->will_topic, wtl);
    put_u16(out, (uint16_t)c->will_len);
    put_bytes(out, c->will_payload, c->will_len);
  }
  if (c->username) put_str(out, c->username, ul);
  return FY_OK;
}

int fy_mqtt_publish_encode(fy_buf *out, const char *topic, const void *payload, size_t len, int qos, int retain, int dup,
                           uint16_t packet_id) {
  size_t tl = topic ? strlen(topic) : 0;
  if (!topic || !fy_mqtt_topic_valid(topic, tl, 0) || qos < 0 || qos > 1 || (qos == 1 && packet_id == 0) || (qos == 0 && dup))
    return FY_EINVAL;
  size_t rem = 2 + tl + (qos ? 2 : 0) + len;
  if (len > FY_MQTT_REMAINING_MAX) return FY_ETOOBIG;
  int rc = header(out, (uint8_t)(FY_MQTT_PUBLISH << 4 | (dup ? 0x08 : 0) | qos << 1 | (retain ? 1 : 0)), rem);
  if (rc != FY_OK) return rc;
  put_str(out, topic, tl);
  if (qos) put_u16(out, packet_id);
  put_bytes(out, payload, len);
  return FY_OK;
}

int fy_mqtt_subscribe_encode(fy_buf *out, uint16_t packet_id, const char *const *filters, const int *qos, size_t n) {
  size_t rem = 2;
  if (packet_id == 0 || n == 0 || n > FY_MQTT_SUBS_MAX) return FY_EINVAL;
  for (size_t i = 0; i < n; i++) {
    size_t fl = filters[i] ? strlen(filters[i]) : 0;
    if (!filters[i] || !fy_mqtt_topic_valid(filters[i], fl, 1) || qos[i] < 0 || qos[i] > 1) return FY_EINVAL;
    rem += 2 + fl + 1;
  }
  int rc = header(out, FY_MQTT_SUBSCRIBE << 4 | 0x02, rem);
  if (rc != FY_OK) return rc;
  put_u16(out, packet_id);
  for (size_t i = 0; i < n; i++) {
    put_str(out, filters[i], strlen(filters[i]));
    out->data[out->len++] = (uint8_t)qos[i];
  }
  return FY_OK;
}

int fy_mqtt_puback_encode(fy_buf *out, uint16_t packet_id) {
  if (packet_id == 0) return FY_EINVAL;
  int rc = header(out, FY_MQTT_PUBACK << 4, 2);
  if (rc == FY_OK) put_u16(out, packet_id);
  return rc;
}

int fy_mqtt_simple_encode(fy_buf *out, uint8_t type) {
  if (type != FY_MQTT_PINGREQ && type != FY_MQTT_DISCONNECT) return FY_EINVAL;
  return header(out, (uint8_t)(type << 4), 0);
}

/* --- decoder ----------------------------------------------------------------------------- */

static int bad(fy_mqtt_decoder *d, int rc, const char *why) {
  snprintf(d->why, sizeof d->why, "%s", why);
  d->failed = rc;
  return rc;
}

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* One whole packet from the server (3.x), checked field by field. */
static int parse(fy_mqtt_decoder *d, fy_mqtt_packet *pk) {
  const uint8_t *b = d->body.data;
  size_t n = d->body.len;
  uint8_t type = d->hdr >> 4, flags = d->hdr & 0x0F;
  memset(pk, 0, sizeof *pk);
  pk->type = type;
  if (type != FY_MQTT_PUBLISH && flags != 0) return bad(d, FY_EPROTO, "reserved flags set in a fixed header");
  switch (type) {
  case FY_MQTT_CONNACK:
    if (n != 2 || (b[0] & 0xFE) != 0) return bad(d, FY_EPROTO, "malformed CONNACK");
    pk->session_present = b[0] & 1;
    pk->return_code = b[1];
    if (pk->return_code != 0 && pk->session_present) return bad(d, FY_EPROTO, "CONNACK refuses with a session");
    return FY_OK;
  case FY_MQTT_PUBLISH: {
    pk->qos = (flags >> 1) & 3;
    pk->retain = flags & 1;
    pk->dup = (flags >> 3) & 1;
    if (pk->qos > 1) return bad(d, FY_EPROTO, pk->qos == 3 ? "PUBLISH with QoS 3" : "PUBLISH with QoS 2 (ferry subscribes with at most 1)");
    if (pk->qos == 0 && pk->dup) return bad(d, FY_EPROTO, "PUBLISH QoS 0 with DUP");
    if (n < 2) return bad(d, FY_EPROTO, "PUBLISH without a topic");
    size_t tl = u16(b);
    if (tl > n - 2) return bad(d, FY_EPROTO, "PUBLISH topic longer than the packet");
    if (tl > FY_MQTT_TOPIC_MAX || !fy_mqtt_topic_valid((const char *)b + 2, tl, 0))
      return bad(d, FY_EPROTO, "PUBLISH with an invalid topic name");
    memcpy(d->topic, b + 2, tl);
    d->topic[tl] = '\0';
    pk->topic = d->topic;
    pk->topic_len = tl;
    size_t off = 2 + tl;
    if (pk->qos) {
      if (n - off < 2) return bad(d, FY_EPROTO, "PUBLISH QoS 1 without a packet id");
      pk->packet_id = u16(b + off);
      if (pk->packet_id == 0) return bad(d, FY_EPROTO, "PUBLISH with packet id 0");
      off += 2;
    }
    pk->payload = b + off;
    pk->payload_len = n - off;
    return FY_OK;
  }
  case FY_MQTT_PUBACK:
  case FY_MQTT_UNSUBACK:
    if (n != 2) return bad(d, FY_EPROTO, type == FY_MQTT_PUBACK ? "malformed PUBACK" : "malformed UNSUBACK");
    pk->packet_id = u16(b);
    if (pk->packet_id == 0) return bad(d, FY_EPROTO, "acknowledgement of packet id 0");
    return FY_OK;
  case FY_MQTT_SUBACK:
    if (n < 3 || n - 2 > FY_MQTT_SUBS_MAX) return bad(d, FY_EPROTO, "malformed SUBACK");
    pk->packet_id = u16(b);
    pk->codes = b + 2;
    pk->ncodes = n - 2;
    for (size_t i = 0; i < pk->ncodes; i++)
      if (pk->codes[i] > 2 && pk->codes[i] != 0x80) return bad(d, FY_EPROTO, "SUBACK with an unknown return code");
    return FY_OK;
  case FY_MQTT_PINGRESP:
    if (n != 0) return bad(d, FY_EPROTO, "PINGRESP with a body");
    return FY_OK;
  default:
    return bad(d, FY_EPROTO, "a packet a server never sends to a client");
  }
}

void fy_mqtt_decoder_init(fy_mqtt_decoder *d, size_t max_packet) {
  memset(d, 0, sizeof *d);
  d->max_packet = max_packet > FY_MQTT_REMAINING_MAX ? FY_MQTT_REMAINING_MAX : max_packet;
  fy_buf_init(&d->body, d->max_packet);
}

void fy_mqtt_decoder_free(fy_mqtt_decoder *d) { fy_buf_free(&d->body, 1); }

int fy_mqtt_decoder_feed(fy_mqtt_decoder *d, const uint8_t *p, size_t n, fy_mqtt_cb cb, void *ud) {
  if (d->failed) return d->failed;
  size_t i = 0;
  while (i < n) {
    if (d->state == 0) {
      d->hdr = p[i++];
      /* what a server never sends is refused at its first byte, before any body is buffered */
      uint8_t t = d->hdr >> 4;
      if (t != FY_MQTT_CONNACK && t != FY_MQTT_PUBLISH && t != FY_MQTT_PUBACK && t != FY_MQTT_SUBACK && t != FY_MQTT_UNSUBACK &&
          t != FY_MQTT_PINGRESP)
        return bad(d, FY_EPROTO, "a packet a server never sends to a client");
      d->remaining = 0;
      d->mult = 1;
      d->len_bytes = 0;
      d->state = 1;
      continue;
    }
    if (d->state == 1) {
      uint8_t c = p[i++];
      d->remaining += (uint32_t)(c & 0x7F) * d->mult;
      d->mult *= 128;
      if (++d->len_bytes == 4 && (c & 0x80)) return bad(d, FY_EPROTO, "remaining length longer than four bytes");
      if (c & 0x80) continue;
      if (d->len_bytes > 1 && c == 0) return bad(d, FY_EPROTO, "remaining length not in its shortest form");
      if (d->remaining > d->max_packet) return bad(d, FY_ETOOBIG, "packet larger than this client accepts");
      uint8_t t = d->hdr >> 4;
      if ((t == FY_MQTT_CONNACK || t == FY_MQTT_PUBACK || t == FY_MQTT_UNSUBACK) && d->remaining != 2)
        return bad(d, FY_EPROTO, "an acknowledgement of the wrong length");
      if (t == FY_MQTT_PINGRESP && d->remaining != 0) return bad(d, FY_EPROTO, "PINGRESP with a body");
      if (t == FY_MQTT_SUBACK && (d->remaining < 3 || d->remaining > 2 + FY_MQTT_SUBS_MAX)) return bad(d, FY_EPROTO, "malformed SUBACK");
      fy_buf_reset(&d->body);
      d->state = 2;
    }
    if (d->state == 2) { /* a packet of length 0 is complete as soon as its length is read */
      size_t want = d->remaining - d->body.len, take = n - i < want ? n - i : want;
      if (take && fy_buf_append(&d->body, p + i, take) != FY_OK) return bad(d, FY_ENOMEM, "out of memory");
      i += take;
      if (d->body.len < d->remaining) continue;
      fy_mqtt_packet pk;
      int rc = parse(d, &pk);
      if (rc != FY_OK) return rc;
      d->state = 0;
      if ((rc = cb(ud, &pk)) != FY_OK) {
        d->failed = rc;
        snprintf(d->why, sizeof d->why, "stopped by its consumer");
        return rc;
      }
    }
  }
  return FY_OK;
}
