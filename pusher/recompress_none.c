/* Builds without zlib (the cross presets): gzip layers are refused with the command that
 * converts them. */
#include <stdio.h>

#include "layout.h"

int fy_layout_to_zstd(const fy_layout *l, fy_variant *v, int *converted, char *err, size_t errlen) {
  (void)l;
  *converted = 0;
  for (size_t i = 0; i < v->m.nlayers; i++) {
    if (v->m.layers[i].kind == FY_KIND_LAYER_GZIP) {
      snprintf(err, errlen, "this ferry was built without zlib and the image has gzip layers; convert them: "
                            "skopeo copy --all --dest-compress-format zstd oci:IN oci:OUT");
      return FY_EUNSUPPORTED;
    }
  }
  return FY_OK;
}
