/* libFuzzer target: the agent's HTTP/1.1 response parser, fed in two pieces at a point the input
 * chooses, then EOF; and URL splitting. */
#include <stdint.h>
#include <string.h>

#include "ferry/http.h"

static int count(void *ud, const uint8_t *p, size_t n) {
  (void)p;
  *(uint64_t *)ud += n;
  return FY_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  static fy_http_resp r;
  uint64_t got = 0;
  size_t cut = n ? p[0] % (n + 1) : 0, used = 0;
  fy_http_resp_init(&r, n > 1 && (p[1] & 1));
  if (fy_http_resp_feed(&r, p, cut, &used, count, &got) == FY_OK && used == cut &&
      fy_http_resp_feed(&r, p + cut, n - cut, &used, count, &got) == FY_OK)
    if (fy_http_resp_eof(&r) == FY_OK && !fy_http_resp_done(&r)) __builtin_trap();
  if (got != r.body_bytes) __builtin_trap();
  if (r.chunked && r.has_length) __builtin_trap();
  char url[512];
  size_t k = n < sizeof url - 1 ? n : sizeof url - 1;
  memcpy(url, p, k);
  url[k] = '\0';
  fy_url u;
  if (fy_url_parse(url, &u) == FY_OK && (u.port < 1 || u.port > 65535 || u.path[0] != '/')) __builtin_trap();
  return 0;
}
