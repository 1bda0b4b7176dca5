/* A ferry connection without the socket: TLS plus the frame codec (sans-I/O).
 *
 * A session set up without a TLS configuration is plain: frames go as they are. Only ferryd's
 * local socket uses that (ferryd --import on the device itself), where the socket file's mode and
 * the peer's credentials decide who may connect.
 *
 * The owner feeds what the socket delivered with fy_session_recv(), sends what
 * fy_session_out() holds, and gets complete frames through the callback. Frames are only
 * accepted after the TLS handshake completed: no application byte is read before. */
#ifndef FERRY_SESSION_H
#define FERRY_SESSION_H

#include "ferry/frame.h"
#include "ferry/tls.h"

/* A raw session's consumer (an MQTT decoder): the plaintext as it comes. FY_OK or negative. */
typedef int (*fy_bytes_cb)(void *ud, const uint8_t *p, size_t n);

typedef struct fy_session {
  fy_tls *tls;       /* NULL: a plain session */
  fy_bytes_cb on_bytes; /* set: a raw session, no frames (TLS carrying another protocol) */
  fy_buf plain_out;  /* a plain session's frames waiting for the socket */
  fy_frame_decoder dec;
  fy_frame_cb on_frame;
  void *ud;
  int ready_reported;
  int paused;        /* a frame callback paused: no frame is delivered until fy_session_resume */
} fy_session;

/* Sets up a session (a plain one when conf is NULL). on_frame may return FY_OK to go on or a negative code to stop. */
int fy_session_init(fy_session *s, fy_tls_conf *conf, const char *expected_peer,
                    size_t max_payload, fy_frame_cb on_frame, void *ud) FY_WUR;
void fy_session_free(fy_session *s); /* NULL-safe */
/* A raw session over TLS: the plaintext goes to on_bytes as it is decrypted, nothing is framed;
 * fy_session_send_raw queues bytes. For MQTT to a broker over the fleet's TLS. */
int fy_session_init_raw(fy_session *s, fy_tls_conf *conf, const char *expected_peer, fy_bytes_cb on_bytes, void *ud) FY_WUR;
int fy_session_send_raw(fy_session *s, const void *p, size_t n) FY_WUR; /* FY_EBUSY: no room now */

/* Feeds ciphertext, advances the handshake, decodes and delivers frames.
 * Returns FY_OK, FY_EEOF when the peer closed cleanly, or an error (TLS, frame, callback). */
int fy_session_recv(fy_session *s, const uint8_t *p, size_t n) FY_WUR;

/* After a frame callback returned FY_FRAME_PAUSE, recv only buffers ciphertext (the owner stops
 * reading the socket) until resume, which delivers what waits and reads on. Same returns as
 * recv. */
static inline int fy_session_paused(const fy_session *s) { return s->paused; }
int fy_session_resume(fy_session *s) FY_WUR;

/* Nonzero exactly once: on the first call after the handshake completed. */
int fy_session_became_ready(fy_session *s);
static inline int fy_session_ready(const fy_session *s) { return !s->tls || fy_tls_established(s->tls); }

/* Queues one frame. FY_EBUSY when the output buffer lacks room (send first); FY_ETOOBIG when
 * len exceeds FY_FRAME_MAX. */
int fy_session_send(fy_session *s, uint8_t type, uint8_t flags, const void *payload,
                    size_t len) FY_WUR;
size_t fy_session_send_room(const fy_session *s);

const uint8_t *fy_session_out(const fy_session *s, size_t *len);
void fy_session_out_consume(fy_session *s, size_t n);

#endif
