/* libFuzzer target: the YAML tree loader and the board profile parser on top of it. */
#include "ferry/board.h"
#include "ferry/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  fy_ynode *root = NULL;
  char err[256];
  if (fy_yaml_load((const char *)p, n, &root, err, sizeof err) == FY_OK) fy_yaml_free(root);
  fy_board b;
  int rc = fy_board_parse((const char *)p, n, &b, err, sizeof err);
  (void)rc;
  return 0;
}
