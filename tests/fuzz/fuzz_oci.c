/* libFuzzer target: OCI index, manifest and config parsers. */
#include "ferry/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  char err[256];
  fy_index ix;
  fy_manifest m;
  fy_image_config c;
  if (fy_oci_index_parse((const char *)p, n, &ix, err, sizeof err) == FY_OK) fy_oci_index_free(&ix);
  if (fy_oci_manifest_parse((const char *)p, n, &m, err, sizeof err) == FY_OK) fy_oci_manifest_free(&m);
  if (fy_oci_config_parse((const char *)p, n, &c, err, sizeof err) == FY_OK) fy_oci_config_free(&c);
  return 0;
}
