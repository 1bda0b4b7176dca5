/* Release signatures in an OCI layout; see signing.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/fsutil.h"
#include "ferry/text.h"
#include "signing.h"

/* index.json (as the image was opened) and the position of the entry l names in its manifests. */
static int find_entry(const fy_layout *l, json_t **index, size_t *pos, char *err, size_t errlen) {
  json_error_t je;
  *index = NULL;
  json_t *ix = json_loadb(l->index_json ? l->index_json : "", l->index_len, 0, &je);
  json_t *m = json_object_get(ix, "manifests");
  if (!json_is_array(m)) {
    json_decref(ix);
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: index.json is not an image index", l->name);
  }
  size_t n = json_array_size(m), found = n;
  if (l->ref[0]) {
    for (size_t i = 0; i < n; i++) {
      const char *r = json_string_value(json_object_get(json_object_get(json_array_get(m, i), "annotations"), FY_ANNOT_REF_NAME));
      if (r && strcmp(r, l->ref) == 0) found = i;
    }
  } else if (l->has_top_desc) {
    /* the layout's one image (layout.c chose it, signature entries aside) */
    for (size_t i = 0; i < n && found == n; i++) {
      fy_digest d;
      const char *ds = json_string_value(json_object_get(json_array_get(m, i), "digest"));
      if (ds && fy_digest_parse(ds, &d) == FY_OK && fy_digest_equal(&d, &l->top_desc.digest)) found = i;
    }
  } else if (n == 1) {
    found = 0;
  } else {
    json_decref(ix);
    return fy_text_fail(err, errlen, FY_ENOENT, "%s lists %zu images: name the one to sign as LAYOUT:REF", l->name, n);
  }
  if (found == n) {
    json_decref(ix);
    return fy_text_fail(err, errlen, FY_ENOENT, "%s: no image tagged '%s'", l->name, l->ref);
  }
  *index = ix;
  *pos = found;
  return FY_OK;
}

static void copy_str(char *dst, size_t cap, const json_t *v) {
  const char *s = json_string_value(v);
  snprintf(dst, cap, "%s", s && strlen(s) < cap ? s : "");
}

static int read_sig(json_t *entry, fy_layout_sig *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (fy_digest_parse(json_string_value(json_object_get(entry, "digest")) ? json_string_value(json_object_get(entry, "digest")) : "",
                      &out->digest) != FY_OK) {
    snprintf(err, errlen, "index.json: the entry has no valid digest");
    return FY_EPROTO;
  }
  const json_t *an = json_object_get(entry, "annotations");
  copy_str(out->ref, sizeof out->ref, json_object_get(an, FY_ANNOT_REF_NAME));
  copy_str(out->payload, sizeof out->payload, json_object_get(an, FY_ANNOT_SIG_PAYLOAD));
  copy_str(out->signature, sizeof out->signature, json_object_get(an, FY_ANNOT_SIG));
  copy_str(out->key, sizeof out->key, json_object_get(an, FY_ANNOT_SIG_KEY));
  if (!out->payload[0] && !out->signature[0]) return FY_OK;
  char why[300];
  if (!out->signature[0] || !out->key[0] || fy_claim_parse(out->payload, strlen(out->payload), &out->claim, why, sizeof why) != FY_OK) {
    snprintf(err, errlen, "index.json: the signature annotations are incomplete or malformed; sign again with ferry sign");
    return FY_EPROTO;
  }
  out->present = 1;
  return FY_OK;
}

int fy_layout_signature(const fy_layout *l, fy_layout_sig *out, char *err, size_t errlen) {
  json_t *ix;
  size_t pos;
  memset(out, 0, sizeof *out);
  int rc = find_entry(l, &ix, &pos, err, errlen);
  if (rc != FY_OK) return rc;
  rc = read_sig(json_array_get(json_object_get(ix, "manifests"), pos), out, err, errlen);
  json_decref(ix);
  return rc;
}

int fy_layout_sign(const fy_layout *l, const char *app, uint64_t version, int64_t expires, fy_sign_key *key,
                   fy_layout_sig *out, char *err, size_t errlen) {
  fy_variant *vs = NULL;
  size_t nv = 0;
  int rc = fy_layout_variants(l, &vs, &nv, err, errlen);
  if (rc != FY_OK) return rc;
  for (size_t i = 0; i < nv && rc == FY_OK; i++)
    for (size_t k = 0; k < vs[i].m.nlayers; k++)
      if (vs[i].m.layers[k].kind == FY_KIND_LAYER_GZIP) {
        char p[FY_PLATFORM_STR];
        snprintf(err, errlen, "the %s variant has gzip layers; the wire carries zstd, so a signature over this image "
                 "would not match what is sent. Convert first: skopeo copy --dest-compress-format zstd %s oci:NEW",
                 fy_platform_format(&vs[i].cfg.platform, p, sizeof p), l->name);
        rc = FY_EUNSUPPORTED;
        break;
      }
  fy_variants_free(vs, nv);
  if (rc != FY_OK) return rc;
  if (!l->dir[0])
    return fy_text_fail(err, errlen, FY_EUNSUPPORTED, "%s: only an OCI layout can be signed in place; sign the layout, then "
                        "make the archive from it (ferry bundle, or skopeo copy --all oci:DIR:TAG oci-archive:FILE)", l->name);
  json_t *ix;
  size_t pos;
  if ((rc = find_entry(l, &ix, &pos, err, errlen)) != FY_OK) return rc;
  json_t *entry = json_array_get(json_object_get(ix, "manifests"), pos);
  fy_claim c;
  memset(&c, 0, sizeof c);
  snprintf(c.app, sizeof c.app, "%s", app);
  c.version = version;
  c.expires = expires;
  if ((rc = read_sig(entry, out, err, errlen)) != FY_OK && rc != FY_EPROTO) goto out; /* a broken old one is replaced */
  c.digest = out->digest;
  char *payload = fy_claim_format(&c);
  char sig[FY_SIG_B64_MAX + 1];
  rc = payload ? fy_sign_data(key, payload, strlen(payload), sig, sizeof sig) : FY_ENOMEM;
  if (rc != FY_OK) {
    snprintf(err, errlen, "cannot sign: %s", fy_strerror(rc));
    free(payload);
    goto out;
  }
  json_t *an = json_object_get(entry, "annotations");
  if (!json_is_object(an)) {
    an = json_object();
    json_object_set_new(entry, "annotations", an);
  }
  json_object_set_new(an, FY_ANNOT_SIG_PAYLOAD, json_string(payload));
  json_object_set_new(an, FY_ANNOT_SIG, json_string(sig));
  json_object_set_new(an, FY_ANNOT_SIG_KEY, json_string(fy_sign_key_id(key)));
  free(payload);
  char *text = json_dumps(ix, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  char path[4200];
  snprintf(path, sizeof path, "%s/index.json", l->dir);
  rc = text ? fy_file_write_atomic(path, text, strlen(text), 0644) : FY_ENOMEM;
  free(text);
  if (rc != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, fy_strerror(rc));
    goto out;
  }
  rc = read_sig(entry, out, err, errlen);
out:
  json_decref(ix);
  return rc;
}

static int chain_walk(const fy_layout *l, const fy_descriptor *d, const fy_digest *target, int depth, json_t *chain,
                      char *err, size_t errlen) {
  if (fy_digest_equal(&d->digest, target)) return 1;
  if (d->kind != FY_KIND_INDEX || depth >= FY_SIGN_CHAIN_MAX) return 0;
  char *data;
  size_t len;
  fy_index ix;
  if (fy_layout_read_blob(l, d, &data, &len, err, errlen) != FY_OK) return -1;
  if (fy_oci_index_parse(data, len, &ix, err, errlen) != FY_OK) {
    free(data);
    return -1;
  }
  json_array_append_new(chain, json_stringn(data, len));
  free(data);
  int found = 0;
  for (size_t i = 0; i < ix.n && !found; i++) found = chain_walk(l, &ix.entries[i], target, depth + 1, chain, err, errlen);
  fy_oci_index_free(&ix);
  if (found != 1) json_array_remove(chain, json_array_size(chain) - 1);
  return found;
}

int fy_layout_sig_chain(const fy_layout *l, const fy_layout_sig *s, const fy_digest *manifest, json_t **chain, char *err,
                        size_t errlen) {
  fy_descriptor top;
  memset(&top, 0, sizeof top);
  top.digest = s->digest;
  top.kind = FY_KIND_INDEX;
  /* The signed entry's size and kind come from index.json (as the layout opened it). */
  if (l->has_top_desc && fy_digest_equal(&l->top_desc.digest, &s->digest)) top = l->top_desc;
  else {
    for (size_t i = 0; i < l->top.n; i++)
      if (fy_digest_equal(&l->top.entries[i].digest, &s->digest)) top = l->top.entries[i];
  }
  *chain = json_array();
  if (!*chain) return FY_ENOMEM;
  int found = chain_walk(l, &top, manifest, 0, *chain, err, errlen);
  if (found == 1) return FY_OK;
  json_decref(*chain);
  *chain = NULL;
  if (found == 0) {
    char s1[FY_DIGEST_STR], s2[FY_DIGEST_STR];
    snprintf(err, errlen, "manifest %s is not part of the signed image %s", fy_digest_format(manifest, s1),
             fy_digest_format(&s->digest, s2));
    return FY_ESIGNATURE;
  }
  return FY_EPROTO;
}

static void sanitize_app(const char *in, char *out, size_t len) {
  size_t o = 0;
  for (size_t i = 0; in[i] && o + 1 < len && o < 63; i++) {
    char c = in[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) c = '-';
    if (o == 0 && (c == '-' || c == '.' || c == '_')) continue;
    out[o++] = c;
  }
  out[o] = '\0';
}

void fy_layout_app_name(const fy_layout *l, char *app, size_t len) {
  fy_layout_sig s;
  char err[300];
  if (fy_layout_signature(l, &s, err, sizeof err) == FY_OK && s.present) {
    sanitize_app(s.claim.app, app, len);
    return;
  }
  /* Never the tag: x:1.0.0 then x:1.0.1 must be the same app, not two running side by side. */
  const char *t = l->has_top_desc && l->top_desc.title[0] ? l->top_desc.title : NULL;
  sanitize_app(t ? t : l->app_hint, app, len);
}

json_t *fy_layout_sig_json(const fy_layout_sig *s) {
  return json_pack("{s:s, s:s, s:s}", "payload", s->payload, "signature", s->signature, "key", s->key);
}
