/* libFuzzer target: ferryd's config file (agent/config.c) as ferryd reads it. */
#include "config.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  fy_agent_config c;
  char err[600];
  int rc = fy_config_load(fuzz_file("agent.yaml", p, n), &c, err, sizeof err);
  (void)rc;
  return 0;
}
