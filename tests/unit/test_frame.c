/* Frame codec: golden bytes, round trips, every chunk size, the ceiling, garbage. */
#include <stdlib.h>

#include "check.h"
#include "ferry/buf.h"
#include "ferry/frame.h"

struct seen {
  int count;
  uint8_t types[16];
  uint32_t lens[16];
  uint8_t payload0[64];
};

static int collect(void *ud, const fy_frame *f) {
  struct seen *s = ud;
  if (s->count < 16) {
    s->types[s->count] = f->type;
    s->lens[s->count] = f->len;
    if (s->count == 0 && f->len <= sizeof s->payload0) memcpy(s->payload0, f->payload, f->len);
  }
  s->count++;
  return FY_OK;
}

/* hello {"a":1} then an empty commit then blob "xyz". */
static const uint8_t golden[] = {
    'F', 'Y', 0x01, 0x00, 0x00, 0x00, 0x00, 0x07, '{', '"', 'a', '"', ':', '1', '}',
    'F', 'Y', 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
    'F', 'Y', 0x05, 0x00, 0x00, 0x00, 0x00, 0x03, 'x', 'y', 'z',
};

static void test_encode_golden(void) {
  fy_buf b;
  fy_buf_init(&b, 1024);
  CHECK_INT(fy_frame_append(&b, FY_FT_HELLO, 0, "{\"a\":1}", 7, FY_FRAME_MAX), FY_OK);
  CHECK_INT(fy_frame_append(&b, FY_FT_COMMIT, 0, NULL, 0, FY_FRAME_MAX), FY_OK);
  CHECK_INT(fy_frame_append(&b, FY_FT_BLOB, 0, "xyz", 3, FY_FRAME_MAX), FY_OK);
  CHECK_INT(b.len, sizeof golden);
  CHECK(memcmp(b.data, golden, sizeof golden) == 0);
  fy_buf_free(&b, 0);
}

static void test_every_chunk_size(void) {
  for (size_t chunk = 1; chunk <= sizeof golden; chunk++) {
    fy_frame_decoder d;
    struct seen s = {0};
    int rc = FY_OK;
    fy_frame_decoder_init(&d, 1024);
    for (size_t off = 0; off < sizeof golden && rc == FY_OK; off += chunk) {
      size_t n = sizeof golden - off < chunk ? sizeof golden - off : chunk;
      rc = fy_frame_decoder_feed(&d, golden + off, n, collect, &s);
    }
    CHECK_INT(rc, FY_OK);
    CHECK_INT(s.count, 3);
    CHECK_INT(s.types[0], FY_FT_HELLO);
    CHECK_INT(s.lens[0], 7);
    CHECK(memcmp(s.payload0, "{\"a\":1}", 7) == 0);
    CHECK_INT(s.types[1], FY_FT_COMMIT);
    CHECK_INT(s.lens[1], 0);
    CHECK_INT(s.types[2], FY_FT_BLOB);
    CHECK_INT(s.lens[2], 3);
    fy_frame_decoder_free(&d);
  }
}

/* A consumer that pauses after every frame (as ferryd does while a blob chunk is on a worker):
 * input fed meanwhile is held, resume delivers it, and in every chunk size the frames arrive once,
 * in order, never while paused. */
struct pausing {
  struct seen s;
  int paused;
  int delivered_while_paused;
};
static int pause_each(void *ud, const fy_frame *f) {
  struct pausing *p = ud;
  if (p->paused) p->delivered_while_paused++;
  collect(&p->s, f);
  p->paused = 1;
  return FY_FRAME_PAUSE;
}

static void test_pause_every_chunk_size(void) {
  for (size_t chunk = 1; chunk <= sizeof golden; chunk++) {
    fy_frame_decoder d;
    struct pausing p = {0};
    int rc = FY_OK;
    fy_frame_decoder_init(&d, 1024);
    for (size_t off = 0; off < sizeof golden; off += chunk) {
      size_t n = sizeof golden - off < chunk ? sizeof golden - off : chunk;
      rc = fy_frame_decoder_feed(&d, golden + off, n, pause_each, &p);
      if (rc != FY_OK && rc != FY_FRAME_PAUSE) break;
      /* the consumer finishes its work some time later: resume until it pauses again or all is in */
      while (p.paused && rc == FY_FRAME_PAUSE && off + n >= sizeof golden) {
        p.paused = 0;
        rc = fy_frame_decoder_resume(&d, pause_each, &p);
      }
      if (p.paused && (chunk % 2)) { /* in odd sizes also resume between feeds */
        p.paused = 0;
        rc = fy_frame_decoder_resume(&d, pause_each, &p);
      }
    }
    while (p.paused) {
      p.paused = 0;
      rc = fy_frame_decoder_resume(&d, pause_each, &p);
    }
    CHECK(rc == FY_OK || rc == FY_FRAME_PAUSE);
    CHECK_INT(p.delivered_while_paused, 0);
    CHECK_INT(p.s.count, 3);
    CHECK_INT(p.s.types[0], FY_FT_HELLO);
    CHECK(memcmp(p.s.payload0, "{\"a\":1}", 7) == 0);
    CHECK_INT(p.s.types[1], FY_FT_COMMIT);
    CHECK_INT(p.s.types[2], FY_FT_BLOB);
    CHECK_INT(p.s.lens[2], 3);
    fy_frame_decoder_free(&d);
  }
  /* What waits while paused has a ceiling. */
  fy_frame_decoder d;
  struct pausing p = {0};
  fy_frame_decoder_init(&d, 1024);
  CHECK_INT(fy_frame_decoder_feed(&d, golden, sizeof golden, pause_each, &p), FY_FRAME_PAUSE);
  static uint8_t big[FY_FRAME_MAX + 1];
  CHECK_INT(fy_frame_decoder_feed(&d, big, sizeof big, pause_each, &p), FY_ETOOBIG);
  fy_frame_decoder_free(&d);
}

static void test_round_trip_large(void) {
  size_t n = 300000;
  uint8_t *payload = malloc(n);
  for (size_t i = 0; i < n; i++) payload[i] = (uint8_t)(i * 7 + 3);
  fy_buf b;
  fy_buf_init(&b, FY_FRAME_MAX * 2);
  CHECK_INT(fy_frame_append(&b, FY_FT_BLOB, 0, payload, n, FY_FRAME_MAX), FY_OK);
  static const size_t chunks[] = {1, 7, 4096, 65536, 1 << 20};
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    fy_frame_decoder d;
    struct seen s = {0};
    fy_frame_decoder_init(&d, FY_FRAME_MAX);
    int rc = FY_OK;
    for (size_t off = 0; off < b.len && rc == FY_OK; off += chunks[c]) {
      size_t k = b.len - off < chunks[c] ? b.len - off : chunks[c];
      rc = fy_frame_decoder_feed(&d, b.data + off, k, collect, &s);
    }
    CHECK_INT(rc, FY_OK);
    CHECK_INT(s.count, 1);
    CHECK_INT(s.lens[0], n);
    fy_frame_decoder_free(&d);
  }
  fy_buf_free(&b, 0);
  free(payload);
}

static void test_ceiling(void) {
  /* A header announcing 4 GiB - 1 must be refused on the header alone. */
  static const uint8_t huge[] = {'F', 'Y', 0x05, 0x00, 0xff, 0xff, 0xff, 0xff};
  fy_frame_decoder d;
  struct seen s = {0};
  fy_frame_decoder_init(&d, FY_FRAME_MAX);
  CHECK_INT(fy_frame_decoder_feed(&d, huge, sizeof huge, collect, &s), FY_ETOOBIG);
  CHECK_INT(s.count, 0);
  CHECK(d.payload.cap == 0); /* nothing allocated for it */
  /* Sticky: the stream stays refused. */
  CHECK_INT(fy_frame_decoder_feed(&d, golden, sizeof golden, collect, &s), FY_ETOOBIG);
  fy_frame_decoder_free(&d);

  /* One past a small ceiling. */
  uint8_t h[FY_FRAME_HEADER];
  CHECK_INT(fy_frame_header(h, FY_FT_BLOB, 0, 101, 100), FY_ETOOBIG);
  CHECK_INT(fy_frame_header(h, FY_FT_BLOB, 0, 100, 100), FY_OK);
  fy_frame_decoder_init(&d, 100);
  CHECK_INT(fy_frame_decoder_feed(&d, (const uint8_t *)"FY\x05\x00\x00\x00\x00\x65", 8, collect, &s), FY_ETOOBIG);
  fy_frame_decoder_free(&d);
}

static void test_garbage(void) {
  fy_frame_decoder d;
  struct seen s = {0};
  fy_frame_decoder_init(&d, FY_FRAME_MAX);
  CHECK_INT(fy_frame_decoder_feed(&d, (const uint8_t *)"GET / HTTP/1.0\r\n", 16, collect, &s), FY_EPROTO);
  fy_frame_decoder_free(&d);
  fy_frame_decoder_init(&d, FY_FRAME_MAX);
  CHECK_INT(fy_frame_decoder_feed(&d, (const uint8_t *)"FX", 2, collect, &s), FY_EPROTO);
  fy_frame_decoder_free(&d);
  CHECK_INT(s.count, 0);
}

static int stop_at_second(void *ud, const fy_frame *f) {
  struct seen *s = ud;
  (void)f;
  return ++s->count == 2 ? FY_ECANCELED : FY_OK;
}

static void test_callback_error_stops(void) {
  fy_frame_decoder d;
  struct seen s = {0};
  fy_frame_decoder_init(&d, 1024);
  CHECK_INT(fy_frame_decoder_feed(&d, golden, sizeof golden, stop_at_second, &s), FY_ECANCELED);
  CHECK_INT(s.count, 2);
  fy_frame_decoder_free(&d);
}

static void test_reader(void) {
  static const uint8_t in[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
  fy_rd r;
  uint8_t a;
  uint16_t b;
  uint32_t c;
  uint64_t d;
  fy_rd_init(&r, in, sizeof in);
  CHECK_INT(fy_rd_u8(&r, &a), FY_OK);
  CHECK_INT(a, 1);
  CHECK_INT(fy_rd_u16(&r, &b), FY_OK);
  CHECK_INT(b, 0x0203);
  CHECK_INT(fy_rd_u32(&r, &c), FY_OK);
  CHECK_INT(c, 0x04050607);
  CHECK_INT(fy_rd_u64(&r, &d), FY_EPROTO); /* short input: refused, cursor unchanged */
  CHECK_INT(fy_rd_left(&r), 0);
  fy_buf bb;
  fy_buf_init(&bb, 4);
  CHECK_INT(fy_buf_put_u32(&bb, 0xdeadbeef), FY_OK);
  CHECK_INT(fy_buf_put_u8(&bb, 1), FY_ETOOBIG);
  CHECK_INT(fy_buf_reserve(&bb, SIZE_MAX), FY_ETOOBIG); /* overflow-checked */
  fy_buf_free(&bb, 1);
}

static void test_type_names(void) {
  CHECK_STR(fy_frame_type_name(FY_FT_HELLO), "hello");
  CHECK_STR(fy_frame_type_name(200), "unknown");
  CHECK_STR(fy_err_name(FY_ETOOBIG), "ETOOBIG");
  CHECK_STR(fy_strerror(FY_ETOOBIG), "length over the hard ceiling");
  CHECK_STR(fy_err_name(-999), "EUNKNOWN");
}

static int count_frames(void *ud, const fy_frame *f) {
  (void)f;
  (*(int *)ud)++;
  return FY_OK;
}

/* A budget shared by decoders: a frame that must be buffered is charged whole; past the cap the
 * decoder fails with FY_EBUSY; what a frame held is given back when it is delivered or dropped. */
static void test_budget(void) {
  fy_frame_budget b = {0, 3000};
  fy_frame_decoder d1, d2, d3;
  fy_frame_decoder_init(&d1, FY_FRAME_MAX);
  fy_frame_decoder_init(&d2, FY_FRAME_MAX);
  fy_frame_decoder_init(&d3, FY_FRAME_MAX);
  d1.budget = d2.budget = d3.budget = &b;
  uint8_t hdr[FY_FRAME_HEADER], body[1500] = {0};
  CHECK_INT(fy_frame_header(hdr, 1, 0, sizeof body, FY_FRAME_MAX), FY_OK);
  int n = 0;
  CHECK_INT(fy_frame_decoder_feed(&d1, hdr, sizeof hdr, count_frames, &n), FY_OK);
  CHECK_INT(fy_frame_decoder_feed(&d1, body, 10, count_frames, &n), FY_OK);
  CHECK_INT(b.used, 1500);
  CHECK_INT(fy_frame_decoder_feed(&d2, hdr, sizeof hdr, count_frames, &n), FY_OK);
  CHECK_INT(fy_frame_decoder_feed(&d2, body, 10, count_frames, &n), FY_OK);
  CHECK_INT(b.used, 3000);
  CHECK_INT(fy_frame_decoder_feed(&d3, hdr, sizeof hdr, count_frames, &n), FY_OK);
  CHECK_INT(fy_frame_decoder_feed(&d3, body, 10, count_frames, &n), FY_EBUSY); /* over the cap */
  CHECK_INT(fy_frame_decoder_feed(&d1, body, sizeof body - 10, count_frames, &n), FY_OK);
  CHECK_INT(n, 1);
  CHECK_INT(b.used, 1500); /* delivered: given back */
  fy_frame_decoder_free(&d2); /* dropped mid-frame: given back */
  CHECK_INT(b.used, 0);
  uint8_t whole[FY_FRAME_HEADER + 100] = {0};
  CHECK_INT(fy_frame_header(whole, 1, 0, 100, FY_FRAME_MAX), FY_OK);
  CHECK_INT(fy_frame_decoder_feed(&d1, whole, sizeof whole, count_frames, &n), FY_OK); /* whole in one read: no copy, no charge */
  CHECK_INT(b.used, 0);
  fy_frame_decoder_free(&d1);
  fy_frame_decoder_free(&d3);
}

int main(void) {
  test_budget();
  test_encode_golden();
  test_every_chunk_size();
  test_pause_every_chunk_size();
  test_round_trip_large();
  test_ceiling();
  test_garbage();
  test_callback_error_stops();
  test_reader();
  test_type_names();
  return check_done("test_frame");
}
