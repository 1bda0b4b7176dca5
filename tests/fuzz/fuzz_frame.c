/* libFuzzer target: the frame decoder fed arbitrary bytes, in two chunks. */
#include "ferry/frame.h"

static int sink(void *ud, const fy_frame *f) { (void)ud; (void)f; return FY_OK; }

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  fy_frame_decoder d;
  fy_frame_decoder_init(&d, 4096);
  size_t half = n / 2;
  int rc = fy_frame_decoder_feed(&d, p, half, sink, NULL);
  if (rc == FY_OK) rc = fy_frame_decoder_feed(&d, p + half, n - half, sink, NULL);
  (void)rc;
  fy_frame_decoder_free(&d);
  return 0;
}
