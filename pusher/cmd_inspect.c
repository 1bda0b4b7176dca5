/* ferry inspect: what `docker buildx imagetools inspect` shows, for an image by any name layout.h opens. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry/fsutil.h"
#include "layout.h"
#include "signing.h"

static json_t *strv(char **v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(v[i]));
  return a;
}

/* Long on purpose: the report is printed in the order a person reads it, field after field. */
int fy_cmd_inspect(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, FY_CLI_REGISTRY_OPTIONS, {0, 0, 0, 0}};
  int json = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int r = fy_cli_registry_opt(c, optarg);
    if (r < 0) return 2;
    if (r > 0) continue;
    if (c == 'j') json = 1;
    else if (c == 'h') { printf("usage: ferry inspect IMAGE [--json]\nShows the index, each platform's manifest, layers and config.\n" FY_CLI_IMAGE_HELP); return 0; }
    else return 2;
  }
  if (argc - optind != 1) { fy_cli_err("usage: ferry inspect IMAGE [--json]"); return 2; }
  fy_layout l;
  char err[1200], ds[FY_DIGEST_STR], top[FY_DIGEST_STR] = "";
  if (fy_layout_open(&l, argv[optind], err, sizeof err) != FY_OK) { fy_cli_err("%s", err); return 1; }
  fy_variant *vs = NULL;
  size_t nv = 0;
  if (fy_layout_variants(&l, &vs, &nv, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    fy_layout_close(&l);
    return 1;
  }
  const char *mt = l.has_top_desc ? l.top_desc.media_type : FY_MT_OCI_INDEX;
  if (l.has_top_desc) fy_digest_format(&l.top_desc.digest, top);
  else if (l.index_json) {
    fy_digest d;
    fy_sha256_once(l.index_json, l.index_len, &d);
    fy_digest_format(&d, top);
  }
  json_t *mans = json_array();
  for (size_t i = 0; i < nv; i++) {
    fy_variant *v = &vs[i];
    char plat[FY_PLATFORM_STR];
    json_t *layers = json_array();
    for (size_t k = 0; k < v->m.nlayers; k++)
      json_array_append_new(layers, json_pack("{s:s, s:I, s:s}", "digest", fy_digest_format(&v->m.layers[k].digest, ds), "size",
                                              (json_int_t)v->m.layers[k].size, "mediaType", v->m.layers[k].media_type));
    json_t *cfg = json_pack("{s:s, s:o, s:o, s:o, s:s, s:s}", "digest", fy_digest_format(&v->m.config.digest, ds), "entrypoint",
                            strv(v->cfg.entrypoint, v->cfg.nentrypoint), "cmd", strv(v->cfg.cmd, v->cfg.ncmd), "env",
                            strv(v->cfg.env, v->cfg.nenv), "workdir", v->cfg.workdir ? v->cfg.workdir : "", "user", v->cfg.user ? v->cfg.user : "");
    json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "digest", fy_digest_format(&v->desc.digest, ds), "mediaType",
                          v->desc.media_type, "size", (json_int_t)v->desc.size, "platform",
                          fy_platform_format(&v->desc.platform, plat, sizeof plat), "layers", layers, "config", cfg);
    if (v->cfg.board) json_object_set_new(m, "board", json_string(v->cfg.board));
    /* How it runs over its life: the restart policy, its volumes and devices, what it lets set */
    json_object_set_new(cfg, "restart", json_string(v->cfg.restart ? v->cfg.restart : "always"));
    static const char *const extra[] = {"volumes", "devices", "config"};
    const char *texts[] = {v->cfg.volumes, v->cfg.devices, v->cfg.config_decl};
    for (int k = 0; k < 3; k++) {
      json_t *x = texts[k] ? json_loads(texts[k], 0, NULL) : NULL;
      if (x) json_object_set_new(cfg, extra[k], x);
    }
    json_array_append_new(mans, m);
  }
  json_t *out = json_pack("{s:s, s:s, s:s, s:o}", "name", argv[optind], "mediaType", mt, "digest", top, "manifests", mans);
  fy_layout_sig sig;
  char sigerr[1200] = "";
  int src = fy_layout_signature(&l, &sig, sigerr, sizeof sigerr);
  if (src != FY_OK && src != FY_ENOENT) json_object_set_new(out, "signature_error", json_string(sigerr));
  if (src == FY_OK && sig.present) {
    char exp[32];
    fy_time_format_utc(sig.claim.expires, exp, sizeof exp);
    json_object_set_new(out, "signature", json_pack("{s:s, s:s, s:I, s:s, s:s}", "app", sig.claim.app, "digest",
                                                    fy_digest_format(&sig.claim.digest, ds), "version",
                                                    (json_int_t)sig.claim.version, "expires", exp, "key", sig.key));
  }
  if (json) {
    json_dumpf(out, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
  } else {
    printf("Name:      %s\nMediaType: %s\nDigest:    %s\n", argv[optind], mt, top);
    const json_t *sj = json_object_get(out, "signature");
    if (sj)
      printf("Signed:    app %s, version %lld, expires %s, key %s\n           (over %s)\n",
             json_string_value(json_object_get(sj, "app")), (long long)json_integer_value(json_object_get(sj, "version")),
             json_string_value(json_object_get(sj, "expires")), json_string_value(json_object_get(sj, "key")),
             json_string_value(json_object_get(sj, "digest")));
    else if (json_object_get(out, "signature_error"))
      printf("Signed:    unreadable: %s\n", json_string_value(json_object_get(out, "signature_error")));
    else printf("Signed:    no\n");
    printf("\nManifests:\n");
    size_t i;
    json_t *m;
    json_array_foreach(mans, i, m) {
      printf("  Name:      %s@%s\n  MediaType: %s\n  Platform:  %s\n", argv[optind], json_string_value(json_object_get(m, "digest")),
             json_string_value(json_object_get(m, "mediaType")), json_string_value(json_object_get(m, "platform")));
      if (json_object_get(m, "board")) printf("  Board:     %s\n", json_string_value(json_object_get(m, "board")));
      printf("  Layers:\n");
      size_t k;
      json_t *ly;
      json_array_foreach(json_object_get(m, "layers"), k, ly) {
        char h[32];
        printf("    %s  %10s  %s\n", json_string_value(json_object_get(ly, "digest")),
               fy_human_bytes((uint64_t)json_integer_value(json_object_get(ly, "size")), h, sizeof h),
               json_string_value(json_object_get(ly, "mediaType")));
      }
      json_t *cf = json_object_get(m, "config");
      char *ep = json_dumps(json_object_get(cf, "entrypoint"), JSON_COMPACT), *cm = json_dumps(json_object_get(cf, "cmd"), JSON_COMPACT);
      printf("  Entrypoint: %s\n  Cmd:        %s\n  Env:\n", ep, cm);
      free(ep);
      free(cm);
      json_t *e;
      json_array_foreach(json_object_get(cf, "env"), k, e) printf("    %s\n", json_string_value(e));
      printf("  Restart:    %s\n", json_string_value(json_object_get(cf, "restart")));
      const char *vk;
      json_object_foreach(json_object_get(cf, "volumes"), vk, e) printf("  Volume:     %s at %s\n", vk, json_string_value(e));
      json_array_foreach(json_object_get(cf, "devices"), k, e) printf("  Device:     %s\n", json_string_value(e));
      json_t *cd = json_object_get(cf, "config");
      if (cd) {
        char *t = json_dumps(cd, JSON_COMPACT);
        printf("  Settable:   %s (what nodes requiring signatures let a fleet file set)\n", t ? t : "?");
        free(t);
      }
      printf("\n");
    }
  }
  json_decref(out);
  fy_variants_free(vs, nv);
  fy_layout_close(&l);
  return 0;
}
