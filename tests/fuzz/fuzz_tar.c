/* libFuzzer target: the tar reader, byte by byte for the first part, then the rest at once. */
#include "ferry/tar.h"

static int e(void *u, const fy_tar_entry *x) { (void)u; (void)x; return FY_OK; }
static int d(void *u, const uint8_t *p, size_t n) { (void)u; (void)p; (void)n; return FY_OK; }
static int z(void *u) { (void)u; return FY_OK; }
static const fy_tar_ops ops = {e, d, z};

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  fy_tar_reader r;
  fy_tar_init(&r, &ops, NULL);
  size_t k = n < 700 ? n : 700, i;
  int rc = FY_OK;
  for (i = 0; i < k && rc == FY_OK; i++) rc = fy_tar_feed(&r, p + i, 1);
  if (rc == FY_OK) rc = fy_tar_feed(&r, p + k, n - k);
  if (rc == FY_OK) rc = fy_tar_finish(&r);
  (void)rc;
  fy_tar_free(&r);
  return 0;
}
