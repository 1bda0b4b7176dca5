/* libFuzzer target: the fleet inventory, fleet.yaml (pusher/fleet.c). */
#include "fleet.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  fy_fleet f;
  char err[1200];
  if (fy_fleet_load(fuzz_file("fleet.yaml", p, n), &f, err, sizeof err) == FY_OK) fy_fleet_free(&f);
  return 0;
}
