/* The agent-upgrade image; see agent_image.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_image.h"
#include "ferry/elf.h"
#include "ferry/text.h"
#include "ferry/fsutil.h"
#include "ferry/oci.h"
#include "pack.h"

int fy_agent_image_build(const char *dir, char *const *specs, size_t n, char *err, size_t errlen) {
  char path[4300];
  fy_store store;
  int rc;
  snprintf(path, sizeof path, "%s/oci-layout", dir);
  if ((rc = fy_file_write_atomic(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30, 0644)) != FY_OK ||
      (rc = fy_store_open(&store, dir, 1)) != FY_OK) {
    snprintf(err, errlen, "%s: %s", dir, fy_strerror(rc));
    return rc;
  }
  static fy_recipe r; /* large; only the packing fields matter */
  memset(&r, 0, sizeof r);
  snprintf(r.name, sizeof r.name, "ferryd");
  r.zstd_level = 9;
  json_t *manifests = json_array();
  rc = FY_OK;
  for (size_t i = 0; i < n && rc == FY_OK; i++) {
    char spec[4400], ps[FY_PLATFORM_STR], desc[80];
    snprintf(spec, sizeof spec, "%s", specs[i]);
    char *eq = strchr(spec, '=');
    fy_platform p, got;
    if (!eq || (*eq = '\0', fy_platform_parse(spec, &p)) != FY_OK) {
      snprintf(err, errlen, "--agent-binary: expected PLATFORM=FILE such as linux/arm64=build/aarch64/bin/ferryd, got '%s'", specs[i]);
      rc = FY_EINVAL;
      break;
    }
    const char *file = eq + 1;
    char *data = NULL;
    size_t len;
    if ((rc = fy_file_read(file, 256u << 20, &data, &len)) != FY_OK) {
      snprintf(err, errlen, "%s: %s", file, fy_strerror(rc));
      break;
    }
    if (fy_elf_header_platform((const unsigned char *)data, len, &got, desc, sizeof desc) != FY_OK ||
        strcmp(got.arch, p.arch) != 0) {
      snprintf(err, errlen, "%s is %s, not a ferryd for %s", file, desc, fy_platform_format(&p, ps, sizeof ps));
      free(data);
      rc = FY_EEXEC;
      break;
    }
    char stage[4400];
    rc = fy_path_fmt(stage, sizeof stage, "%s/.stage-%zu", dir, i);
    if (rc == FY_OK) rc = fy_path_fmt(path, sizeof path, "%s/ferryd", stage);
    if (rc == FY_OK) rc = fy_mkdirs(stage, 0755);
    if (rc == FY_OK) rc = fy_file_write_atomic(path, data, len, 0755);
    free(data);
    fy_packed packed;
    char why[600];
    if (rc == FY_OK && (rc = fy_pack_stage(&r, stage, &p, &store, &packed, why, sizeof why)) != FY_OK) {
      snprintf(err, errlen, "%s: %s", file, why);
      break;
    }
    char dd[FY_DIGEST_STR], ld[FY_DIGEST_STR], cd[FY_DIGEST_STR], md[FY_DIGEST_STR];
    json_t *cfg = fy_pack_platform_json(&p);
    json_object_set_new(cfg, "config", json_pack("{s:[s], s:{s:s}}", "Entrypoint", "/ferryd", "Labels", "dev.ferry.agent", "1"));
    json_object_set_new(cfg, "rootfs", json_pack("{s:s, s:[s]}", "type", "layers", "diff_ids", fy_digest_format(&packed.diff_id, dd)));
    fy_digest cdig, mdig;
    size_t clen = 0, mlen = 0;
    rc = fy_pack_put_json(&store, cfg, &cdig, &clen);
    json_decref(cfg);
    if (rc != FY_OK) break;
    json_t *man = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "mediaType",
                            FY_MT_OCI_MANIFEST, "config", "mediaType", FY_MT_OCI_CONFIG, "digest",
                            fy_digest_format(&cdig, cd), "size", (json_int_t)clen, "layers", "mediaType",
                            FY_MT_OCI_LAYER_ZSTD, "digest", fy_digest_format(&packed.digest, ld), "size",
                            (json_int_t)packed.size);
    rc = fy_pack_put_json(&store, man, &mdig, &mlen);
    json_decref(man);
    if (rc != FY_OK) break;
    json_array_append_new(manifests, json_pack("{s:s, s:s, s:I, s:o}", "mediaType", FY_MT_OCI_MANIFEST, "digest",
                                               fy_digest_format(&mdig, md), "size", (json_int_t)mlen, "platform",
                                               fy_pack_platform_json(&p)));
  }
  if (rc != FY_OK) {
    json_decref(manifests);
    return rc;
  }
  json_t *inner = json_pack("{s:i, s:s, s:o}", "schemaVersion", 2, "mediaType", FY_MT_OCI_INDEX, "manifests", manifests);
  fy_digest idig;
  size_t ilen = 0;
  char id[FY_DIGEST_STR];
  rc = fy_pack_put_json(&store, inner, &idig, &ilen);
  json_decref(inner);
  if (rc != FY_OK) return rc;
  json_t *top = json_pack("{s:i, s:s, s:[{s:s, s:s, s:I, s:{s:s}}]}", "schemaVersion", 2, "mediaType", FY_MT_OCI_INDEX,
                          "manifests", "mediaType", FY_MT_OCI_INDEX, "digest", fy_digest_format(&idig, id), "size",
                          (json_int_t)ilen, "annotations", FY_ANNOT_REF_NAME, "ferryd");
  char *text = json_dumps(top, JSON_INDENT(2));
  json_decref(top);
  snprintf(path, sizeof path, "%s/index.json", dir);
  rc = text ? fy_file_write_atomic(path, text, strlen(text), 0644) : FY_ENOMEM;
  free(text);
  return rc;
}
