/* Release signatures in an OCI layout; see signing.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/fsutil.h"
#include "ferry/imageref.h"
#include "ferry/text.h"
#include "registry.h"
#include "signing.h"

/* The descriptor a signature covers: the image l names (its entry in index.json). */
static int signed_entry(const fy_layout *l, fy_descriptor *out, char *err, size_t errlen) {
  if (!l->has_top_desc)
    return fy_text_fail(err, errlen, FY_ENOENT, "%s lists %zu images: name the one to sign as LAYOUT:REF", l->name, l->top.n);
  *out = l->top_desc;
  return FY_OK;
}

void fy_layout_sig_tag(const fy_digest *d, char *out, size_t len) {
  char hex[FY_DIGEST_HEX];
  fy_text_fmt(out, len, "sha256-%s.sig", fy_digest_hex(d, hex));
}

static void copy_str(char *dst, size_t cap, const json_t *v) {
  const char *s = json_string_value(v);
  snprintf(dst, cap, "%s", s && strlen(s) < cap ? s : "");
}

/* Fills out's claim from payload/signature/key, or says what is wrong. */
static int finish_sig(fy_layout_sig *out, const char *where, char *err, size_t errlen) {
  char why[300];
  if (!out->payload[0] && !out->signature[0]) return FY_OK;
  if (!out->signature[0] || !out->key[0] || fy_claim_parse(out->payload, strlen(out->payload), &out->claim, why, sizeof why) != FY_OK)
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: the signature is incomplete or malformed; sign again with ferry sign", where);
  out->present = 1;
  return FY_OK;
}

/* The signature artifact's manifest: where it is (a layout's or archive's index.json entry
 * tagged sha256-<hex>.sig, or that tag in the registry). FY_ENOENT when there is none. */
int fy_layout_sig_manifest(const fy_layout *l, const fy_digest *signed_digest, fy_descriptor *out, char *err, size_t errlen) {
  char tag[96];
  fy_layout_sig_tag(signed_digest, tag, sizeof tag);
  memset(out, 0, sizeof *out);
  if (l->remote) {
    char *data = NULL, mt[128];
    size_t len;
    const fy_store *cache;
    int rc = fy_registry_manifest_get(l->remote, tag, &data, &len, mt, sizeof mt, &out->digest, err, errlen);
    if (rc == FY_OK && (rc = fy_layout_cache(l, &cache, err, errlen)) == FY_OK) rc = fy_store_put(cache, &out->digest, data, len);
    free(data);
    if (rc != FY_OK) {
      if (rc == FY_ENOENT) err[0] = '\0';
      return rc;
    }
    out->size = len;
    out->kind = FY_KIND_MANIFEST;
    snprintf(out->media_type, sizeof out->media_type, "%s", FY_MT_OCI_MANIFEST);
    snprintf(out->ref_name, sizeof out->ref_name, "%s", tag);
    return FY_OK;
  }
  fy_index ix;
  char why[300];
  if (fy_oci_index_parse(l->index_json ? l->index_json : "", l->index_len, &ix, why, sizeof why) != FY_OK) return FY_ENOENT;
  int rc = FY_ENOENT;
  for (size_t i = 0; i < ix.n && rc == FY_ENOENT; i++)
    if (strcmp(ix.entries[i].ref_name, tag) == 0 && ix.entries[i].kind == FY_KIND_MANIFEST) {
      *out = ix.entries[i];
      rc = FY_OK;
    }
  fy_oci_index_free(&ix);
  return rc;
}

/* The claim and signature from the artifact: its one layer is the claim, the layer's
 * annotations carry the signature and the key id. */
static int read_artifact(const fy_layout *l, const fy_descriptor *md, fy_layout_sig *out, char *err, size_t errlen) {
  char *data = NULL, *payload = NULL;
  size_t len, plen;
  int rc = fy_layout_read_blob(l, md, &data, &len, err, errlen);
  if (rc != FY_OK) return rc;
  json_t *m = json_loadb(data, len, 0, NULL), *layer = json_array_get(json_object_get(m, "layers"), 0);
  free(data);
  fy_descriptor pd;
  memset(&pd, 0, sizeof pd);
  const char *mt = json_string_value(json_object_get(layer, "mediaType")), *ds = json_string_value(json_object_get(layer, "digest"));
  json_int_t size = json_integer_value(json_object_get(layer, "size"));
  if (!mt || strcmp(mt, FY_MT_SIGNATURE) != 0 || !ds || fy_digest_parse(ds, &pd.digest) != FY_OK || size <= 0 || size > FY_CLAIM_MAX) {
    json_decref(m);
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: the signature artifact %s is not one ferry sign writes", l->name, md->ref_name);
  }
  pd.size = (uint64_t)size;
  pd.kind = FY_KIND_CONFIG; /* a plain blob */
  json_t *an = json_object_get(layer, "annotations");
  copy_str(out->signature, sizeof out->signature, json_object_get(an, FY_ANNOT_SIG));
  copy_str(out->key, sizeof out->key, json_object_get(an, FY_ANNOT_SIG_KEY));
  json_decref(m);
  if ((rc = fy_layout_read_blob(l, &pd, &payload, &plen, err, errlen)) != FY_OK) return rc;
  if (plen < sizeof out->payload && !memchr(payload, 0, plen)) {
    memcpy(out->payload, payload, plen);
    out->payload[plen] = '\0';
  }
  free(payload);
  return finish_sig(out, l->name, err, errlen);
}

int fy_layout_signature(const fy_layout *l, fy_layout_sig *out, char *err, size_t errlen) {
  fy_descriptor sd, md;
  memset(out, 0, sizeof *out);
  int rc = signed_entry(l, &sd, err, errlen);
  if (rc != FY_OK) return rc;
  out->digest = sd.digest;
  snprintf(out->ref, sizeof out->ref, "%s", l->ref);
  if ((rc = fy_layout_sig_manifest(l, &sd.digest, &md, err, errlen)) == FY_OK) return read_artifact(l, &md, out, err, errlen);
  if (rc != FY_ENOENT) return rc;
  /* Layouts signed by earlier ferry versions: annotations on the entry in index.json. */
  json_t *ix = l->index_json ? json_loadb(l->index_json, l->index_len, 0, NULL) : NULL;
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(ix, "manifests"), i, e) {
    fy_digest d;
    const char *ds = json_string_value(json_object_get(e, "digest"));
    if (!ds || fy_digest_parse(ds, &d) != FY_OK || !fy_digest_equal(&d, &sd.digest)) continue;
    const json_t *an = json_object_get(e, "annotations");
    copy_str(out->payload, sizeof out->payload, json_object_get(an, FY_ANNOT_SIG_PAYLOAD));
    copy_str(out->signature, sizeof out->signature, json_object_get(an, FY_ANNOT_SIG));
    copy_str(out->key, sizeof out->key, json_object_get(an, FY_ANNOT_SIG_KEY));
    break;
  }
  json_decref(ix);
  err[0] = '\0';
  return finish_sig(out, l->name, err, errlen);
}

int fy_layout_sign(const fy_layout *l, const char *app, uint64_t version, int64_t expires, fy_sign_key *key,
                   fy_layout_sig *out, char *err, size_t errlen) {
  fy_variant *vs = NULL;
  size_t nv = 0;
  fy_descriptor sd;
  int rc;
  if (!l->dir[0])
    return fy_text_fail(err, errlen, FY_EUNSUPPORTED, "%s: only an OCI layout can be signed in place; sign the layout, then "
                        "make the archive from it (ferry bundle, or skopeo copy --all oci:DIR:TAG oci-archive:FILE)", l->name);
  if ((rc = signed_entry(l, &sd, err, errlen)) != FY_OK) return rc;
  if ((rc = fy_layout_variants(l, &vs, &nv, err, errlen)) != FY_OK) return rc;
  for (size_t i = 0; i < nv && rc == FY_OK; i++)
    for (size_t k = 0; k < vs[i].m.nlayers; k++)
      if (vs[i].m.layers[k].kind == FY_KIND_LAYER_GZIP) {
        char p[FY_PLATFORM_STR];
        rc = fy_text_fail(err, errlen, FY_EUNSUPPORTED, "the %s variant has gzip layers; the wire carries zstd, so a signature over "
                          "this image would not match what is sent. Convert first: skopeo copy --all --dest-compress-format zstd oci:%s%s%s oci:NEW",
                          fy_platform_format(&vs[i].cfg.platform, p, sizeof p), l->dir, l->ref[0] ? ":" : "", l->ref);
        break;
      }
  fy_variants_free(vs, nv);
  if (rc != FY_OK) return rc;

  fy_claim c;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);
  snprintf(c.app, sizeof c.app, "%s", app);
  c.version = version;
  c.expires = expires;
  c.digest = sd.digest;
  char *payload = fy_claim_format(&c), sig[FY_SIG_B64_MAX + 1], ds[FY_DIGEST_STR], tag[96];
  rc = payload ? fy_sign_data(key, payload, strlen(payload), sig, sizeof sig) : FY_ENOMEM;
  if (rc != FY_OK) {
    free(payload);
    return fy_text_fail(err, errlen, rc, "cannot sign: %s", fy_strerror(rc));
  }
  /* The artifact, cosign's way: one layer (the claim), the signature in its annotations, an
   * empty config, and OCI 1.1's subject naming what is signed; tagged sha256-<hex>.sig. */
  fy_digest pd, cd, md;
  size_t plen = strlen(payload);
  fy_sha256_once(payload, plen, &pd);
  fy_sha256_once("{}", 2, &cd);
  char cds[FY_DIGEST_STR], pds[FY_DIGEST_STR];
  json_t *man = json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:i}, s:[{s:s, s:s, s:I, s:{s:s, s:s}}], s:{s:s, s:s, s:I}}", "schemaVersion", 2,
                          "mediaType", FY_MT_OCI_MANIFEST, "artifactType", FY_MT_SIGNATURE, "config", "mediaType", FY_MT_EMPTY,
                          "digest", fy_digest_format(&cd, cds), "size", 2, "layers", "mediaType", FY_MT_SIGNATURE, "digest",
                          fy_digest_format(&pd, pds), "size", (json_int_t)plen, "annotations", FY_ANNOT_SIG, sig, FY_ANNOT_SIG_KEY,
                          fy_sign_key_id(key), "subject", "mediaType", sd.media_type, "digest", fy_digest_format(&sd.digest, ds),
                          "size", (json_int_t)sd.size);
  char *mtext = man ? json_dumps(man, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(man);
  rc = mtext ? FY_OK : FY_ENOMEM;
  size_t mlen = mtext ? strlen(mtext) : 0;
  if (rc == FY_OK) fy_sha256_once(mtext, mlen, &md);
  if (rc == FY_OK) rc = fy_store_put(&l->store, &pd, payload, plen);
  if (rc == FY_OK) rc = fy_store_put(&l->store, &cd, "{}", 2);
  if (rc == FY_OK) rc = fy_store_put(&l->store, &md, mtext, mlen);
  free(mtext);
  if (rc != FY_OK) {
    free(payload);
    return fy_text_fail(err, errlen, rc, "%s: writing the signature: %s", l->name, fy_strerror(rc));
  }
  /* index.json: this image's previous signature (tag or annotations) gives way to the new one. */
  fy_layout_sig_tag(&sd.digest, tag, sizeof tag);
  json_t *ix = json_loadb(l->index_json, l->index_len, 0, NULL), *list = json_object_get(ix, "manifests");
  if (!json_is_array(list)) {
    json_decref(ix);
    free(payload);
    return fy_text_fail(err, errlen, FY_EPROTO, "%s: index.json is not an image index", l->name);
  }
  json_t *kept = json_array(), *e;
  size_t i;
  json_array_foreach(list, i, e) {
    const char *r = json_string_value(json_object_get(json_object_get(e, "annotations"), FY_ANNOT_REF_NAME));
    if (r && strcmp(r, tag) == 0) continue;
    json_t *an = json_object_get(e, "annotations");
    json_object_del(an, FY_ANNOT_SIG_PAYLOAD);
    json_object_del(an, FY_ANNOT_SIG);
    json_object_del(an, FY_ANNOT_SIG_KEY);
    json_array_append(kept, e);
  }
  json_array_append_new(kept, json_pack("{s:s, s:s, s:s, s:I, s:{s:s}}", "mediaType", FY_MT_OCI_MANIFEST, "artifactType", FY_MT_SIGNATURE,
                                        "digest", fy_digest_format(&md, ds), "size", (json_int_t)mlen, "annotations", FY_ANNOT_REF_NAME, tag));
  json_object_set_new(ix, "manifests", kept);
  char *text = json_dumps(ix, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(ix);
  char path[4200];
  snprintf(path, sizeof path, "%s/index.json", l->dir);
  rc = text ? fy_file_write_atomic(path, text, strlen(text), 0644) : FY_ENOMEM;
  free(text);
  if (rc != FY_OK) {
    free(payload);
    return fy_text_fail(err, errlen, rc, "%s: %s", path, fy_strerror(rc));
  }
  out->digest = sd.digest;
  snprintf(out->ref, sizeof out->ref, "%s", l->ref);
  snprintf(out->payload, sizeof out->payload, "%s", payload);
  snprintf(out->signature, sizeof out->signature, "%s", sig);
  snprintf(out->key, sizeof out->key, "%s", fy_sign_key_id(key));
  free(payload);
  return finish_sig(out, l->name, err, errlen);
}

static int chain_walk(const fy_layout *l, const fy_descriptor *d, const fy_digest *target, int depth, size_t *left, json_t *chain,
                      char *err, size_t errlen) {
  if (fy_digest_equal(&d->digest, target)) return 1;
  if (d->kind != FY_KIND_INDEX || depth >= FY_SIGN_CHAIN_MAX) return 0;
  if (*left == 0) {
    fy_text_fmt(err, errlen, "the signed image's indexes list too many entries");
    return -1;
  }
  (*left)--;
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
  for (size_t i = 0; i < ix.n && !found; i++) found = chain_walk(l, &ix.entries[i], target, depth + 1, left, chain, err, errlen);
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
  size_t left = 1024;
  int found = chain_walk(l, &top, manifest, 0, &left, *chain, err, errlen);
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

void fy_layout_app_name(const fy_layout *l, char *app, size_t len) {
  fy_layout_sig s;
  char err[300];
  if (fy_layout_signature(l, &s, err, sizeof err) == FY_OK && s.present) {
    fy_app_name_sanitize(s.claim.app, app, len);
    return;
  }
  /* Never the tag: x:1.0.0 then x:1.0.1 must be the same app, not two running side by side. */
  const char *t = l->has_top_desc && l->top_desc.title[0] ? l->top_desc.title : NULL;
  fy_app_name_sanitize(t ? t : l->app_hint, app, len);
}

json_t *fy_layout_sig_json(const fy_layout_sig *s) {
  return json_pack("{s:s, s:s, s:s}", "payload", s->payload, "signature", s->signature, "key", s->key);
}
