/* OCI image-spec descriptor.md, image-index.md, manifest.md, config.md. Field sizes are
 * bounded here; digests are validated; unknown fields are ignored as the spec requires. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ferry/oci.h"
#include "ferry/text.h"
#include "ferry/yaml.h"

fy_media_kind fy_media_kind_of(const char *mt) {
  static const struct { const char *mt; fy_media_kind k; } table[] = {
      {FY_MT_OCI_INDEX, FY_KIND_INDEX},         {FY_MT_DOCKER_LIST, FY_KIND_INDEX},
      {FY_MT_OCI_MANIFEST, FY_KIND_MANIFEST},   {FY_MT_DOCKER_MANIFEST, FY_KIND_MANIFEST},
      {FY_MT_OCI_CONFIG, FY_KIND_CONFIG},       {FY_MT_DOCKER_CONFIG, FY_KIND_CONFIG},
      {FY_MT_OCI_LAYER, FY_KIND_LAYER_TAR},     {FY_MT_OCI_LAYER_GZIP, FY_KIND_LAYER_GZIP},
      {FY_MT_OCI_LAYER_ZSTD, FY_KIND_LAYER_ZSTD}, {FY_MT_DOCKER_LAYER_GZIP, FY_KIND_LAYER_GZIP},
      {FY_MT_DOCKER_LAYER_ZSTD, FY_KIND_LAYER_ZSTD},
      {"application/vnd.docker.image.rootfs.diff.tar", FY_KIND_LAYER_TAR},
  };
  if (!mt) return FY_KIND_UNKNOWN;
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(mt, table[i].mt) == 0) return table[i].k;
  return FY_KIND_UNKNOWN;
}

static const char *str_field(const json_t *o, const char *k, size_t max) {
  const json_t *v = json_object_get(o, k);
  if (!json_is_string(v) || json_string_length(v) > max) return NULL;
  return json_string_value(v);
}

static int parse_descriptor(const json_t *o, fy_descriptor *d, const char *where, char *err, size_t errlen) {
  memset(d, 0, sizeof *d);
  if (!json_is_object(o)) return fy_text_fail(err, errlen, FY_EPROTO, "%s: not an object", where);
  const char *mt = str_field(o, "mediaType", sizeof d->media_type - 1);
  const char *dg = str_field(o, "digest", 80);
  const json_t *sz = json_object_get(o, "size");
  if (!dg || fy_digest_parse(dg, &d->digest) != FY_OK)
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: missing or malformed digest (want sha256:<64 hex>)", where);
  if (!json_is_integer(sz) || json_integer_value(sz) < 0)
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: missing or negative size", where);
  d->size = (uint64_t)json_integer_value(sz);
  if (mt) snprintf(d->media_type, sizeof d->media_type, "%s", mt);
  d->kind = fy_media_kind_of(mt);
  const json_t *p = json_object_get(o, "platform");
  if (json_is_object(p)) {
    const char *os = str_field(p, "os", 32), *arch = str_field(p, "architecture", 32),
               *var = str_field(p, "variant", 32);
    if (os && arch && fy_platform_from_fields(os, arch, var, &d->platform) == FY_OK) d->has_platform = 1;
  }
  const json_t *an = json_object_get(o, "annotations");
  if (json_is_object(an)) {
    const char *ref = str_field(an, FY_ANNOT_REF_NAME, sizeof d->ref_name - 1);
    if (ref) snprintf(d->ref_name, sizeof d->ref_name, "%s", ref);
    const char *title = str_field(an, "org.opencontainers.image.title", sizeof d->title - 1);
    if (title) snprintf(d->title, sizeof d->title, "%s", title);
    const char *rt = str_field(an, "vnd.docker.reference.type", 64);
    if (rt && strcmp(rt, "attestation-manifest") == 0) d->attestation = 1;
    const char *bd = str_field(an, "dev.ferry.board", sizeof d->board - 1);
    if (bd) snprintf(d->board, sizeof d->board, "%s", bd);
  }
  if (d->has_platform && strcmp(d->platform.os, "unknown") == 0) d->attestation = 1;
  return FY_OK;
}

static json_t *load(const char *json, size_t len, const char *what, char *err, size_t errlen, int *rc) {
  json_error_t je;
  if (len > FY_OCI_JSON_MAX) {
    *rc = fy_text_fail(err, errlen, FY_ETOOBIG, "%s of %zu bytes is over the %u-byte ceiling", what, len, FY_OCI_JSON_MAX);
    return NULL;
  }
  json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
  if (!j || !json_is_object(j)) {
    *rc = fy_text_fail(err, errlen, FY_EPROTO, "%s: %s", what, j ? "not a JSON object" : je.text);
    json_decref(j);
    return NULL;
  }
  *rc = FY_OK;
  return j;
}

int fy_oci_index_parse(const char *json, size_t len, fy_index *out, char *err, size_t errlen) {
  int rc;
  memset(out, 0, sizeof *out);
  json_t *j = load(json, len, "index", err, errlen, &rc);
  if (!j) return rc;
  const json_t *m = json_object_get(j, "manifests");
  const char *mt = str_field(j, "mediaType", 128);
  if (mt && fy_media_kind_of(mt) != FY_KIND_INDEX) {
    rc = fy_text_fail(err, errlen, FY_EPROTO, "index: mediaType is %s", mt);
    goto out;
  }
  if (!json_is_array(m)) {
    rc = fy_text_fail(err, errlen, FY_EPROTO, "index: no manifests array");
    goto out;
  }
  size_t n = json_array_size(m);
  if (n > FY_OCI_MAX_ENTRIES) {
    rc = fy_text_fail(err, errlen, FY_ETOOBIG, "index: %zu entries, at most %d", n, FY_OCI_MAX_ENTRIES);
    goto out;
  }
  out->entries = calloc(n ? n : 1, sizeof *out->entries);
  if (!out->entries) { rc = FY_ENOMEM; goto out; }
  for (size_t i = 0; i < n; i++) {
    char where[48];
    snprintf(where, sizeof where, "index: manifests[%zu]", i);
    if ((rc = parse_descriptor(json_array_get(m, i), &out->entries[i], where, err, errlen)) != FY_OK) goto out;
    out->n++;
  }
out:
  json_decref(j);
  if (rc != FY_OK) fy_oci_index_free(out);
  return rc;
}

void fy_oci_index_free(fy_index *ix) {
  if (!ix) return;
  free(ix->entries);
  ix->entries = NULL;
  ix->n = 0;
}

int fy_oci_manifest_parse(const char *json, size_t len, fy_manifest *out, char *err, size_t errlen) {
  int rc;
  memset(out, 0, sizeof *out);
  json_t *j = load(json, len, "manifest", err, errlen, &rc);
  if (!j) return rc;
  const char *mt = str_field(j, "mediaType", 128);
  if (mt && fy_media_kind_of(mt) != FY_KIND_MANIFEST) {
    rc = fy_text_fail(err, errlen, FY_EPROTO, "manifest: mediaType is %s", mt);
    goto out;
  }
  if ((rc = parse_descriptor(json_object_get(j, "config"), &out->config, "manifest: config", err, errlen)) != FY_OK)
    goto out;
  const json_t *ls = json_object_get(j, "layers");
  if (!json_is_array(ls)) {
    rc = fy_text_fail(err, errlen, FY_EPROTO, "manifest: no layers array");
    goto out;
  }
  size_t n = json_array_size(ls);
  if (n > FY_OCI_MAX_LAYERS) {
    rc = fy_text_fail(err, errlen, FY_ETOOBIG, "manifest: %zu layers, at most %d", n, FY_OCI_MAX_LAYERS);
    goto out;
  }
  out->layers = calloc(n ? n : 1, sizeof *out->layers);
  if (!out->layers) { rc = FY_ENOMEM; goto out; }
  for (size_t i = 0; i < n; i++) {
    char where[48];
    snprintf(where, sizeof where, "manifest: layers[%zu]", i);
    fy_descriptor *d = &out->layers[i];
    if ((rc = parse_descriptor(json_array_get(ls, i), d, where, err, errlen)) != FY_OK) goto out;
    out->nlayers++;
    if (d->kind != FY_KIND_LAYER_TAR && d->kind != FY_KIND_LAYER_GZIP && d->kind != FY_KIND_LAYER_ZSTD) {
      rc = fy_text_fail(err, errlen, FY_EUNSUPPORTED, "%s: unsupported layer media type '%s'", where, d->media_type);
      goto out;
    }
    if (d->size > UINT64_MAX - out->layers_size) {
      rc = fy_text_fail(err, errlen, FY_ETOOBIG, "manifest: layer sizes overflow");
      goto out;
    }
    out->layers_size += d->size;
  }
out:
  json_decref(j);
  if (rc != FY_OK) fy_oci_manifest_free(out);
  return rc;
}

void fy_oci_manifest_free(fy_manifest *m) {
  if (!m) return;
  free(m->layers);
  m->layers = NULL;
  m->nlayers = 0;
}

static void free_strv(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static int strv(const json_t *a, char ***out, size_t *n, const char *what, char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  if (a == NULL || json_is_null(a)) return FY_OK;
  if (!json_is_array(a)) return fy_text_fail(err, errlen, FY_EPROTO, "config: %s is not a list", what);
  size_t k = json_array_size(a);
  if (k > FY_OCI_MAX_ARGS) return fy_text_fail(err, errlen, FY_ETOOBIG, "config: %s has %zu items", what, k);
  char **v = calloc(k + 1, sizeof *v);
  if (!v) return FY_ENOMEM;
  for (size_t i = 0; i < k; i++) {
    const json_t *s = json_array_get(a, i);
    if (!json_is_string(s) || json_string_length(s) > 65536 || strlen(json_string_value(s)) != json_string_length(s)) {
      free_strv(v, i);
      return fy_text_fail(err, errlen, FY_EPROTO, "config: %s[%zu] is not a string", what, i);
    }
    if (!(v[i] = strdup(json_string_value(s)))) {
      free_strv(v, i);
      return FY_ENOMEM;
    }
  }
  *out = v;
  *n = k;
  return FY_OK;
}

/* The health command: Docker's Healthcheck.Test (["CMD", PROG, ARGS...], ["CMD-SHELL", TEXT] or
 * ["NONE"]) when the config has one, else the dev.ferry.health_cmd label (shell form). */
static int health(const json_t *c, const char *label, fy_image_config *out, char *err, size_t errlen) {
  const json_t *hcj = json_object_get(c, "Healthcheck");
  const json_t *test = json_is_object(hcj) ? json_object_get(hcj, "Test") : NULL;
  char **v = NULL;
  size_t n = 0;
  int rc;
  if (test && (rc = strv(test, &v, &n, "Healthcheck.Test", err, errlen)) != FY_OK) return rc;
  const char *kind = n ? v[0] : NULL;
  char *text = NULL, **argv = NULL;
  size_t nargv = 0;
  if (kind && strcmp(kind, "NONE") == 0) {
    free_strv(v, n);
    return FY_OK;
  }
  if (kind && strcmp(kind, "CMD") == 0 && n >= 2) {
    size_t tl = 0;
    for (size_t i = 1; i < n; i++) tl += strlen(v[i]) + 1;
    argv = calloc(n, sizeof *argv);
    text = calloc(1, tl);
    if (!argv || !text) goto nomem;
    size_t off = 0;
    for (size_t i = 1; i < n; i++) { /* tl holds each word and a separator (or the NUL) */
      if (!(argv[i - 1] = strdup(v[i]))) goto nomem;
      nargv = i;
      size_t wl = strlen(v[i]);
      if (i > 1) text[off++] = ' ';
      memcpy(text + off, v[i], wl);
      off += wl;
    }
    text[off] = '\0';
  } else if ((kind && strcmp(kind, "CMD-SHELL") == 0 && n == 2) || (!kind && label && *label)) {
    const char *t = kind ? v[1] : label;
    argv = calloc(4, sizeof *argv);
    if (!argv || !(text = strdup(t))) goto nomem;
    if (!(argv[0] = strdup("/bin/sh")) || !(argv[1] = strdup("-c")) || !(argv[2] = strdup(t))) goto nomem;
    nargv = 3;
  } else if (kind) {
    free_strv(v, n);
    return fy_text_fail(err, errlen, FY_EPROTO, "config: Healthcheck.Test must start with CMD, CMD-SHELL or NONE");
  }
  free_strv(v, n);
  if (text && strlen(text) > 1024) {
    free(text);
    free_strv(argv, nargv);
    return fy_text_fail(err, errlen, FY_ETOOBIG, "config: the health command is longer than 1024 bytes");
  }
  out->health_cmd = text;
  out->health_argv = argv;
  out->nhealth_argv = nargv;
  return FY_OK;
nomem:
  free_strv(v, n);
  free_strv(argv, nargv);
  free(text);
  return FY_ENOMEM;
}

int fy_oci_config_parse(const char *json, size_t len, fy_image_config *out, char *err, size_t errlen) {
  int rc;
  memset(out, 0, sizeof *out);
  out->settle_ms = -1;
  out->stop_timeout_ms = -1;
  out->health_interval_ms = -1;
  json_t *j = load(json, len, "config", err, errlen, &rc);
  if (!j) return rc;
  const char *os = str_field(j, "os", 32), *arch = str_field(j, "architecture", 32),
             *var = str_field(j, "variant", 32);
  if (!os || !arch || fy_platform_from_fields(os, arch, var, &out->platform) != FY_OK) {
    rc = fy_text_fail(err, errlen, FY_EPROTO, "config: missing or malformed os/architecture");
    goto out;
  }
  const json_t *c = json_object_get(j, "config");
  if (json_is_object(c)) {
    if ((rc = strv(json_object_get(c, "Entrypoint"), &out->entrypoint, &out->nentrypoint, "Entrypoint", err, errlen)) ||
        (rc = strv(json_object_get(c, "Cmd"), &out->cmd, &out->ncmd, "Cmd", err, errlen)) ||
        (rc = strv(json_object_get(c, "Env"), &out->env, &out->nenv, "Env", err, errlen)))
      goto out;
    const char *wd = str_field(c, "WorkingDir", 4096), *user = str_field(c, "User", 256);
    if (wd && *wd && !(out->workdir = strdup(wd))) { rc = FY_ENOMEM; goto out; }
    if (user && *user && !(out->user = strdup(user))) { rc = FY_ENOMEM; goto out; }
    const json_t *labels = json_object_get(c, "Labels");
    const char *t = json_is_object(labels) ? str_field(labels, "dev.ferry.test", 8192) : NULL;
    const char *b = json_is_object(labels) ? str_field(labels, "dev.ferry.board", 32) : NULL;
    if ((t && !(out->test = strdup(t))) || (b && !(out->board = strdup(b)))) { rc = FY_ENOMEM; goto out; }
    const char *sm = json_is_object(labels) ? str_field(labels, "dev.ferry.settle_ms", 16) : NULL;
    const char *hp = json_is_object(labels) ? str_field(labels, "dev.ferry.health_port", 8) : NULL;
    const char *hc = json_is_object(labels) ? str_field(labels, "dev.ferry.health_cmd", 1024) : NULL;
    long lv;
    if (sm && fy_parse_long(sm, 0, 600000, &lv) == FY_OK) out->settle_ms = lv;
    if (hp && fy_parse_long(hp, 1, 65535, &lv) == FY_OK) out->health_port = (int)lv;
    if ((rc = health(c, hc, out, err, errlen)) != FY_OK) goto out;
    const char *ss = str_field(c, "StopSignal", 16), *st = json_is_object(labels) ? str_field(labels, "dev.ferry.stop_timeout_ms", 16) : NULL;
    const char *cp = json_is_object(labels) ? str_field(labels, "dev.ferry.capabilities", 4096) : NULL;
    const char *rs = json_is_object(labels) ? str_field(labels, "dev.ferry.resources", 1024) : NULL;
    out->stop_timeout_ms = st && fy_parse_long(st, 0, 600000, &lv) == FY_OK ? lv : -1;
    if ((ss && *ss && !(out->stop_signal = strdup(ss))) || (cp && !(out->capabilities = strdup(cp))) ||
        (rs && !(out->resources = strdup(rs)))) { rc = FY_ENOMEM; goto out; }
    const char *af = json_is_object(labels) ? str_field(labels, "dev.ferry.affinity", 16384) : NULL;
    if (af && !(out->affinity = strdup(af))) { rc = FY_ENOMEM; goto out; }
    const char *vo = json_is_object(labels) ? str_field(labels, "dev.ferry.volumes", 16384) : NULL;
    const char *dv = json_is_object(labels) ? str_field(labels, "dev.ferry.devices", 16384) : NULL;
    if ((vo && !(out->volumes = strdup(vo))) || (dv && !(out->devices = strdup(dv)))) { rc = FY_ENOMEM; goto out; }
    const char *cd = json_is_object(labels) ? str_field(labels, "dev.ferry.config", 65536) : NULL;
    if (cd && !(out->config_decl = strdup(cd))) { rc = FY_ENOMEM; goto out; }
    const char *rp = json_is_object(labels) ? str_field(labels, "dev.ferry.restart", 32) : NULL;
    if (rp && !(out->restart = strdup(rp))) { rc = FY_ENOMEM; goto out; }
    const json_t *hcj = json_object_get(c, "Healthcheck"), *iv = json_is_object(hcj) ? json_object_get(hcj, "Interval") : NULL;
    const char *hi = json_is_object(labels) ? str_field(labels, "dev.ferry.health_interval_ms", 16) : NULL;
    long hims = 0;
    if (json_is_integer(iv) && json_integer_value(iv) > 0) {
      json_int_t ms = json_integer_value(iv) / 1000000;
      out->health_interval_ms = ms < FY_HEALTH_INTERVAL_MIN_MS ? FY_HEALTH_INTERVAL_MIN_MS : ms > FY_HEALTH_INTERVAL_MAX_MS ? FY_HEALTH_INTERVAL_MAX_MS : ms;
    } else if (hi && fy_parse_long(hi, FY_HEALTH_INTERVAL_MIN_MS, FY_HEALTH_INTERVAL_MAX_MS, &hims) == FY_OK) {
      out->health_interval_ms = hims;
    }
  }
  const json_t *rootfs = json_object_get(j, "rootfs");
  if (json_is_object(rootfs) && json_is_array(json_object_get(rootfs, "diff_ids")))
    out->ndiff_ids = json_array_size(json_object_get(rootfs, "diff_ids"));
out:
  json_decref(j);
  if (rc != FY_OK) fy_oci_config_free(out);
  return rc;
}

void fy_oci_config_free(fy_image_config *c) {
  if (!c) return;
  free_strv(c->entrypoint, c->nentrypoint);
  free_strv(c->cmd, c->ncmd);
  free_strv(c->env, c->nenv);
  free(c->workdir);
  free(c->user);
  free(c->test);
  free(c->board);
  free(c->health_cmd);
  free(c->restart);
  free(c->volumes);
  free(c->devices);
  free(c->config_decl);
  free_strv(c->health_argv, c->nhealth_argv);
  free(c->stop_signal);
  free(c->capabilities);
  free(c->resources);
  free(c->affinity);
  memset(c, 0, sizeof *c);
}

int fy_oci_choose(const fy_index *ix, const fy_platform *accepts, size_t naccepts, const char *board) {
  int best = -1, best_rank = 1 << 30;
  for (size_t i = 0; i < ix->n; i++) {
    const fy_descriptor *d = &ix->entries[i];
    if (!d->has_platform || d->attestation) continue;
    if (d->kind != FY_KIND_MANIFEST && d->kind != FY_KIND_INDEX) continue;
    int r = fy_platform_rank(accepts, naccepts, &d->platform);
    if (r < 0) continue;
    int pref = !d->board[0] ? 1 : (board && strcmp(d->board, board) == 0) ? 0 : 2;
    r = r * 3 + pref;
    if (r < best_rank) {
      best = (int)i;
      best_rank = r;
    }
  }
  return best;
}

void fy_oci_offered(const fy_index *ix, char *buf, size_t len) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < ix->n; i++) {
    const fy_descriptor *d = &ix->entries[i];
    if (!d->has_platform || d->attestation) continue;
    char p[FY_PLATFORM_STR];
    int w = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", fy_platform_format(&d->platform, p, sizeof p));
    if (w < 0 || (size_t)w >= len - off) break;
    off += (size_t)w;
  }
  if (off == 0) snprintf(buf, len, "no platform at all");
}

static const char *const restart_names[] = {"always", "on-failure", "never"};

int fy_restart_parse(const char *s, fy_restart *out) {
  *out = FY_RESTART_ALWAYS;
  if (!s) return FY_OK;
  for (int i = 0; i < 3; i++)
    if (strcmp(s, restart_names[i]) == 0) {
      *out = (fy_restart)i;
      return FY_OK;
    }
  return FY_EINVAL;
}

const char *fy_restart_name(fy_restart r) { return (unsigned)r < 3 ? restart_names[r] : "always"; }

int fy_oci_is_signature_ref(const char *ref) {
  /* cosign's tag scheme: sha256-<hex>.sig (and .att, .sbom for its other artifacts) */
  if (strncmp(ref, "sha256-", 7) != 0 || strlen(ref) < 7 + 64 + 2 || ref[7 + 64] != '.') return 0;
  for (int i = 7; i < 7 + 64; i++)
    if (!strchr("0123456789abcdef", ref[i])) return 0;
  return 1;
}

int fy_oci_is_image_entry(const fy_descriptor *d) {
  return !d->attestation && (d->kind == FY_KIND_INDEX || d->kind == FY_KIND_MANIFEST) && !fy_oci_is_signature_ref(d->ref_name);
}
