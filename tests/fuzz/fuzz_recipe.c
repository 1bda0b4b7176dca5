/* libFuzzer target: the build recipe, ferry.yaml (pusher/recipe.c). */
#include "fuzz_file.h"
#include "recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  fy_recipe r;
  char err[600];
  if (fy_recipe_load(fuzz_file("ferry.yaml", p, n), &r, err, sizeof err) == FY_OK) fy_recipe_free(&r);
  return 0;
}
