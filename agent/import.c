/* ferryd --import FILE: a bundle (an oci-archive, as ferry bundle writes it) installed on the
 * device itself, without a pusher. See import.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "import.h"
#include "localc.h"
#include "ferry/digest.h"
#include "ferry/fsutil.h"
#include "ferry/imageref.h"
#include "ferry/msg.h"
#include "ferry/oci.h"
#include "ferry/sign.h"
#include "ferry/tar.h"
#include "ferry/text.h"
#include "ferry/version.h"
#include "ferry/wire.h"

#define KEPT_MAX FY_OCI_JSON_MAX       /* JSON blobs read into memory: indexes, manifests, configs, claims */
#define KEPT_TOTAL (32u * 1024u * 1024u) /* all of those together */
#define BLOBS_MAX 4096                 /* blobs one bundle may hold */
#define BLOB_FRAME (16u * 1024u - 64u) /* a BLOB frame's payload, as the pusher sends it */
#define SIG_CHAIN_MAX 4

typedef struct blob_rec {
  fy_digest d;
  uint64_t size;
  uint64_t offset;  /* where its bytes start in the archive */
  char *data; /* NULL: not kept (a layer: the agent reads and checks those) */
} blob_rec;

typedef struct imp {
  const char *file;
  int fd;            /* the bundle */
  char *index_json;
  size_t index_len;
  blob_rec *blobs;
  size_t nblobs, kept_total;
  /* the tar entry being read: -1 none, -2 index.json, else a blob */
  int cur;
  uint64_t pos;      /* bytes of the archive fed to the tar reader */
  int cur_first;     /* no byte of it seen yet */
  fy_buf cur_data;
  fy_sha256 h;
  int resumed;       /* a layer was sent from an offset above 0 (a partial left on the node) */
  const struct image *cur_img; /* the one being installed, for the progress lines */
  char err[700];
} imp;

static int fail(imp *im, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(imp *im, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(im->err, sizeof im->err, fmt, ap);
  va_end(ap);
  return rc;
}

static blob_rec *find_blob(const imp *im, const fy_digest *d) {
  for (size_t i = 0; i < im->nblobs; i++)
    if (fy_digest_equal(&im->blobs[i].d, d)) return &im->blobs[i];
  return NULL;
}

/* "blobs/sha256/<hex>" (or "./blobs/…") names a blob; -1 otherwise. */
static int blob_path(const char *path, fy_digest *d) {
  char ds[FY_DIGEST_STR];
  if (strncmp(path, "./", 2) == 0) path += 2;
  if (strncmp(path, "blobs/sha256/", 13) != 0 || strlen(path + 13) != 64) return -1;
  snprintf(ds, sizeof ds, "sha256:%s", path + 13);
  return fy_digest_parse(ds, d) == FY_OK ? 0 : -1;
}

/* --- the first pass: index.json and the small blobs into memory ------------------------------ */

static int scan_entry(void *ud, const fy_tar_entry *e) {
  imp *im = ud;
  const char *path = strncmp(e->path, "./", 2) == 0 ? e->path + 2 : e->path;
  fy_digest d;
  im->cur = -1;
  if (e->type != FY_TAR_FILE) return FY_OK;
  if (strcmp(path, "index.json") == 0) {
    if (e->size > FY_OCI_JSON_MAX) return fail(im, FY_ETOOBIG, "%s: index.json is %llu bytes, over %u", im->file, (unsigned long long)e->size, FY_OCI_JSON_MAX);
    if (im->index_json) return fail(im, FY_EPROTO, "%s: index.json twice in the archive", im->file);
    im->cur = -2;
  } else if (blob_path(path, &d) == 0) {
    if (find_blob(im, &d)) return FY_OK; /* the same blob again: the first copy serves */
    if (im->nblobs >= BLOBS_MAX) return fail(im, FY_ETOOBIG, "%s: more than %d blobs", im->file, BLOBS_MAX);
    blob_rec *nb = realloc(im->blobs, (im->nblobs + 1) * sizeof *nb);
    if (!nb) return fail(im, FY_ENOMEM, "out of memory");
    im->blobs = nb;
    /* The reader is fed one block at a time: the header just completed, the data starts here. */
    nb[im->nblobs] = (blob_rec){.d = d, .size = e->size, .offset = im->pos + 512};
    if (e->size > KEPT_MAX || im->kept_total + e->size > KEPT_TOTAL) {
      im->nblobs++;
      return FY_OK;
    }
    im->cur = (int)im->nblobs++;
    fy_sha256_init(&im->h);
  } else {
    return FY_OK;
  }
  fy_buf_reset(&im->cur_data);
  im->cur_first = 1;
  return FY_OK;
}

static int scan_data(void *ud, const uint8_t *p, size_t n) {
  imp *im = ud;
  if (im->cur == -1 || n == 0) return FY_OK;
  /* Only JSON is kept (a layer is zstd, gzip or tar, none of which starts with '{'). */
  if (im->cur_first && im->cur >= 0) {
    im->cur_first = 0;
    if (p[0] != '{') {
      im->cur = -1;
      return FY_OK;
    }
    im->kept_total += im->blobs[im->cur].size;
  }
  if (im->cur >= 0) fy_sha256_update(&im->h, p, n);
  return fy_buf_append(&im->cur_data, p, n) == FY_OK ? FY_OK : fail(im, FY_ENOMEM, "out of memory");
}

static int scan_end(void *ud) {
  imp *im = ud;
  if (im->cur == -1 || (im->cur >= 0 && im->cur_first)) return FY_OK; /* nothing, or an empty blob */
  char *copy = malloc(im->cur_data.len + 1);
  if (!copy) return fail(im, FY_ENOMEM, "out of memory");
  if (im->cur_data.len) memcpy(copy, im->cur_data.data, im->cur_data.len);
  copy[im->cur_data.len] = '\0';
  if (im->cur == -2) {
    im->index_json = copy;
    im->index_len = im->cur_data.len;
  } else {
    blob_rec *b = &im->blobs[im->cur];
    fy_digest got;
    char ds[FY_DIGEST_STR];
    fy_sha256_final(&im->h, &got);
    if (!fy_digest_equal(&got, &b->d)) {
      free(copy);
      return fail(im, FY_EDIGEST, "%s: blob %s does not match its digest: the bundle is damaged", im->file, fy_digest_format(&b->d, ds));
    }
    b->data = copy;
  }
  im->cur = -1;
  return FY_OK;
}

/* Reads the whole bundle through the tar reader, a block at a time (so that each blob's offset
 * is known: the second pass seeks to what ferryd asks for). */
static int read_tar(imp *im, const fy_tar_ops *ops) {
  static uint8_t buf[65536];
  fy_tar_reader tr;
  int rc = FY_OK;
  if (lseek(im->fd, 0, SEEK_SET) != 0) return fail(im, FY_EIO, "%s: %s", im->file, strerror(errno));
  im->pos = 0;
  fy_tar_init(&tr, ops, im);
  for (;;) {
    /* whole buffers (a short read from a slow or network file system would move the blocks) */
    ssize_t r = 0;
    while ((size_t)r < sizeof buf) {
      ssize_t k = read(im->fd, buf + r, sizeof buf - (size_t)r);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) {
        if (k < 0) r = -1;
        break;
      }
      r += k;
    }
    if (r < 0) {
      rc = fail(im, FY_EIO, "%s: %s", im->file, strerror(errno));
      break;
    }
    if (r == 0) {
      if ((rc = fy_tar_finish(&tr)) != FY_OK && !im->err[0]) fail(im, rc, "%s: not a complete tar archive (cut short?)", im->file);
      break;
    }
    for (size_t off = 0; off < (size_t)r && rc == FY_OK && !fy_tar_done(&tr); off += 512) {
      size_t k = (size_t)r - off < 512 ? (size_t)r - off : 512;
      rc = fy_tar_feed(&tr, buf + off, k);
      im->pos += k;
    }
    if (rc != FY_OK) {
      if (!im->err[0]) fail(im, rc, "%s: not an oci-archive (a tar of an OCI image layout): %s", im->file, fy_strerror(rc));
      break;
    }
    if (fy_tar_done(&tr)) break;
  }
  fy_tar_free(&tr);
  return rc;
}

/* --- one image of the bundle ------------------------------------------------------------------ */

typedef struct image {
  fy_descriptor entry;     /* its entry in index.json */
  const blob_rec *manifest;
  const blob_rec *config;
  json_t *chain;           /* raw indexes from the entry down to the manifest */
  json_t *signature;       /* the plan's {"payload","signature","key"}, NULL when unsigned */
  char claim_app[64];
  char app[FY_APP_NAME_MAX];
} image;

static const blob_rec *kept(imp *im, const fy_digest *d, const char *what) {
  char ds[FY_DIGEST_STR];
  const blob_rec *b = find_blob(im, d);
  if (!b) fail(im, FY_ENOENT, "%s: the %s %s is not in the bundle", im->file, what, fy_digest_format(d, ds));
  else if (!b->data)
    fail(im, FY_EPROTO, "%s: the %s %s is not a JSON document of at most %u bytes", im->file, what, fy_digest_format(d, ds), KEPT_MAX);
  return b && b->data ? b : NULL;
}

/* The variant for this node: down the indexes (each kept raw, for the signature's chain). */
static int pick_variant(imp *im, const fy_facts *facts, image *img) {
  fy_descriptor d = img->entry;
  char why[300], offered[600];
  img->chain = json_array();
  if (!img->chain) return fail(im, FY_ENOMEM, "out of memory");
  for (int depth = 0; d.kind == FY_KIND_INDEX; depth++) {
    if (depth >= SIG_CHAIN_MAX) return fail(im, FY_EPROTO, "%s: indexes nested deeper than %d", im->file, SIG_CHAIN_MAX);
    const blob_rec *b = kept(im, &d.digest, "index");
    if (!b) return FY_ENOENT;
    fy_index ix;
    if (fy_oci_index_parse(b->data, (size_t)b->size, &ix, why, sizeof why) != FY_OK) return fail(im, FY_EPROTO, "%s: %s", im->file, why);
    /* A bundle made for some platforms (ferry bundle --platform) keeps the signed index whole and
     * carries only their variants: the others are not offered here. */
    size_t k = 0;
    for (size_t i = 0; i < ix.n; i++) {
      const blob_rec *vb = find_blob(im, &ix.entries[i].digest);
      if (vb && vb->data) ix.entries[k++] = ix.entries[i];
    }
    ix.n = k;
    int at = fy_oci_choose(&ix, facts->accepts, facts->naccepts, facts->have_board ? facts->board.name : NULL);
    if (at < 0) {
      char plat[FY_PLATFORM_STR];
      fy_oci_offered(&ix, offered, sizeof offered);
      fy_oci_index_free(&ix);
      return fail(im, FY_ENOPLATFORM, "%s: no variant for this node (%s); the bundle offers %s", im->file,
                  fy_platform_format(&facts->platform, plat, sizeof plat), offered);
    }
    d = ix.entries[at];
    fy_oci_index_free(&ix);
    json_array_append_new(img->chain, json_stringn(b->data, (size_t)b->size));
  }
  if (d.kind != FY_KIND_MANIFEST) return fail(im, FY_EUNSUPPORTED, "%s: %s is not an image manifest", im->file, d.media_type);
  if (!(img->manifest = kept(im, &d.digest, "manifest"))) return FY_ENOENT;
  fy_manifest m;
  if (fy_oci_manifest_parse(img->manifest->data, (size_t)img->manifest->size, &m, why, sizeof why) != FY_OK)
    return fail(im, FY_EPROTO, "%s: %s", im->file, why);
  int rc = FY_OK;
  for (size_t i = 0; i < m.nlayers && rc == FY_OK; i++)
    if (fy_media_kind_of(m.layers[i].media_type) != FY_KIND_LAYER_ZSTD)
      rc = fail(im, FY_EUNSUPPORTED, "%s: layer %zu is %s; ferryd takes zstd layers (make the bundle with ferry bundle, which writes them)",
                im->file, i, m.layers[i].media_type);
  if (rc == FY_OK && !(img->config = kept(im, &m.config.digest, "config"))) rc = FY_ENOENT;
  fy_oci_manifest_free(&m);
  fy_image_config cfg;
  if (rc == FY_OK && fy_oci_config_parse(img->config->data, (size_t)img->config->size, &cfg, why, sizeof why) != FY_OK)
    rc = fail(im, FY_EPROTO, "%s: the image config: %s", im->file, why);
  else if (rc == FY_OK)
    fy_oci_config_free(&cfg);
  return rc;
}

/* The signature artifact ferry sign writes (tag sha256-<hex>.sig), when the bundle has one. */
static int find_signature(imp *im, const fy_index *top, image *img) {
  char tag[96], hex[FY_DIGEST_HEX], why[300];
  snprintf(tag, sizeof tag, "sha256-%s.sig", fy_digest_hex(&img->entry.digest, hex));
  const fy_descriptor *sd = NULL;
  for (size_t i = 0; i < top->n && !sd; i++)
    if (strcmp(top->entries[i].ref_name, tag) == 0 && top->entries[i].kind == FY_KIND_MANIFEST) sd = &top->entries[i];
  if (!sd) return FY_OK;
  const blob_rec *mb = kept(im, &sd->digest, "signature");
  if (!mb) return FY_ENOENT;
  json_t *m = json_loadb(mb->data, (size_t)mb->size, 0, NULL), *layer = json_array_get(json_object_get(m, "layers"), 0);
  const json_t *an = json_object_get(layer, "annotations");
  const char *ds = json_string_value(json_object_get(layer, "digest"));
  const char *sig = json_string_value(json_object_get(an, FY_ANNOT_SIG)), *key = json_string_value(json_object_get(an, FY_ANNOT_SIG_KEY));
  fy_digest pd;
  const blob_rec *pb = ds && fy_digest_parse(ds, &pd) == FY_OK ? kept(im, &pd, "signed claim") : NULL;
  fy_claim claim;
  int rc = FY_OK;
  if (!pb || !sig || !key || pb->size > FY_CLAIM_MAX || fy_claim_parse(pb->data, (size_t)pb->size, &claim, why, sizeof why) != FY_OK)
    rc = fail(im, FY_ESIGNATURE, "%s: the signature %s is incomplete or malformed; sign and bundle again", im->file, tag);
  if (rc == FY_OK) {
    snprintf(img->claim_app, sizeof img->claim_app, "%s", claim.app);
    img->signature = json_pack("{s:s%, s:s, s:s}", "payload", pb->data, (size_t)pb->size, "signature", sig, "key", key);
    if (!img->signature) rc = fail(im, FY_ENOMEM, "out of memory");
  }
  json_decref(m);
  return rc;
}

static void print_progress(void *ud, const json_t *j) {
  const image *img = ((const imp *)ud)->cur_img;
  fy_progress_msg pm;
  char why[200];
  if (fy_progress_decode(j, &pm, why, sizeof why) != FY_OK) return;
  if (pm.total) fprintf(stderr, "  %s: %s %llu/%llu\n", img->app, fy_step_name(pm.step), (unsigned long long)pm.done, (unsigned long long)pm.total);
  else fprintf(stderr, "  %s: %s\n", img->app, fy_step_name(pm.step));
}

/* The second pass: a blob ferryd lacks, from the offset it has, read where the first pass found
 * it (the archive's other blobs are not read again). */
static int send_blob(void *ud, fy_localc *c, const fy_need_item *it) {
  static uint8_t buf[BLOB_FRAME];
  imp *im = ud;
  char ds[FY_DIGEST_STR];
  const blob_rec *b = find_blob(im, &it->digest);
  if (!b) return fail(im, FY_ENOENT, "%s: the layer %s is not in the bundle", im->file, fy_digest_format(&it->digest, ds));
  if (it->offset > it->size) return fail(im, FY_EPROTO, "ferryd asked for blob %s from past its end", fy_digest_format(&it->digest, ds));
  if (b->size != it->size)
    return fail(im, FY_EDIGEST, "%s: blob %s is %llu bytes, its manifest says %llu", im->file, fy_digest_format(&it->digest, ds),
                (unsigned long long)b->size, (unsigned long long)it->size);
  fy_blob_begin_msg bm = {.digest = it->digest, .offset = it->offset};
  im->resumed |= it->offset > 0;
  int rc = fy_localc_send_json(c, FY_FT_BLOB_BEGIN, fy_blob_begin_encode(&bm));
  uint64_t at = b->offset + it->offset, left = it->size - it->offset;
  while (rc == FY_OK && left) {
    ssize_t r = pread(im->fd, buf, left < sizeof buf ? (size_t)left : sizeof buf, (off_t)at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return fail(im, FY_EIO, "%s: reading blob %s: %s", im->file, fy_digest_format(&it->digest, ds), r < 0 ? strerror(errno) : "the file is shorter than it was");
    rc = fy_localc_send_frame(c, FY_FT_BLOB, buf, (size_t)r);
    at += (uint64_t)r;
    left -= (uint64_t)r;
  }
  return rc;
}

/* One image: hello, plan, the blobs ferryd lacks, commit, and its result. */
static int install(imp *im, const fy_agent_config *cfg, image *img, int force) {
  fy_plan_msg pm = {.app = img->app,
                    .manifest = img->manifest->data,
                    .manifest_len = (size_t)img->manifest->size,
                    .manifest_digest = img->manifest->d,
                    .config = img->config->data,
                    .config_len = (size_t)img->config->size,
                    .settle_ms = 3000,
                    .signature = img->signature,
                    .chain = json_array_size(img->chain) ? img->chain : NULL,
                    .force = force};
  fy_localc_deploy d = {.client = "ferryd --import " FY_VERSION, .app = img->app, .plan = fy_plan_encode(&pm), .send_blob = send_blob,
                        .on_progress = print_progress, .ud = im};
  if (!d.plan) return fail(im, FY_ENOMEM, "cannot encode the plan");
  im->cur_img = img;
  int rc = fy_localc_run(cfg->state_dir, &d, im->err, sizeof im->err);
  json_decref(d.plan);
  if (rc != FY_OK) return rc;
  if (d.result == FY_RESULT_DEPLOYED || d.result == FY_RESULT_UNCHANGED) {
    printf("%s: %s release %s\n", img->app, fy_result_name(d.result), d.release);
  } else {
    rc = fail(im, d.code ? d.code : FY_EPEER, "%s: %s: %s", img->app, fy_result_name(d.result), d.message);
    if (d.log_tail) fprintf(stderr, "--- the app's last output ---\n%s", d.log_tail);
  }
  free(d.log_tail);
  return rc;
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

/* FILE, FILE:REF, oci-archive:FILE or oci-archive:FILE:REF (REF may hold ':'; FILE is the
 * shortest prefix that names a file). */
static int parse_name(const char *spec, char *path, size_t plen, char *ref, size_t rlen, char *err, size_t errlen) {
  ref[0] = '\0';
  if (strncmp(spec, "oci-archive:", 12) != 0 && !is_file(spec) && strchr(spec, ':') && strlen(spec) < plen) {
    snprintf(path, plen, "%s", spec);
    for (char *c = strchr(path, ':'); c; c = strchr(c + 1, ':')) {
      *c = '\0';
      if (c != path && is_file(path)) {
        snprintf(ref, rlen, "%s", c + 1);
        return FY_OK;
      }
      *c = ':';
    }
  }
  if (strncmp(spec, "oci-archive:", 12) != 0) {
    if (strchr(spec, ':') && strncmp(spec, "/", 1) != 0 && strncmp(spec, "./", 2) != 0) {
      fy_image_name n;
      char why[300];
      if (fy_image_name_parse(spec, &n, why, sizeof why) == FY_OK && n.transport != FY_IMG_LAYOUT)
        return fy_text_fail(err, errlen, FY_EINVAL, "%s: ferryd --import takes a bundle file (oci-archive); make one with ferry bundle", spec);
    }
    snprintf(path, plen, "%s", spec);
    return FY_OK;
  }
  fy_image_name n;
  int rc = fy_image_name_parse(spec, &n, err, errlen);
  if (rc != FY_OK) return rc;
  snprintf(path, plen, "%s", n.path);
  snprintf(ref, rlen, "%s", n.ref);
  return FY_OK;
}

/* Opens the bundle without blocking on a FIFO or a device, and takes only a regular file. */
static int open_bundle(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  struct stat st;
  if (fd < 0) return fy_text_fail(err, errlen, FY_ENOENT, "%s: %s", path, strerror(errno)), -1;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    fy_text_fail(err, errlen, FY_EINVAL, "%s: not a regular file (a bundle is a tar file: ferry bundle IMAGE -o FILE.tar)", path);
    return -1;
  }
  (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

int fy_import_main(const fy_agent_config *cfg, const fy_facts *facts, const char *spec, const char *app_override, int force) {
  imp im = {.fd = -1, .cur = -1};
  char path[4096], ref[256], err[700];
  static const fy_tar_ops scan_ops = {scan_entry, scan_data, scan_end};
  int rc, failures = 0, images = 0;
  signal(SIGPIPE, SIG_IGN); /* a ferryd that ends the connection: its reason is read, not a signal */
  if (parse_name(spec, path, sizeof path, ref, sizeof ref, err, sizeof err) != FY_OK) {
    fprintf(stderr, "ferryd --import: %s\n", err);
    return 2;
  }
  if ((im.fd = open_bundle(path, err, sizeof err)) < 0) {
    fprintf(stderr, "ferryd --import: %s\n", err);
    return 1;
  }
  im.file = path;
  fy_buf_init(&im.cur_data, KEPT_MAX);
  rc = read_tar(&im, &scan_ops);
  fy_buf_free(&im.cur_data, 0);
  fy_index top = {0};
  char why[300];
  if (rc == FY_OK && !im.index_json) rc = fail(&im, FY_EPROTO, "%s: not an oci-archive: it has no index.json (ferry bundle writes one)", path);
  if (rc == FY_OK && fy_oci_index_parse(im.index_json, im.index_len, &top, why, sizeof why) != FY_OK)
    rc = fail(&im, FY_EPROTO, "%s: index.json: %s", path, why);
  for (size_t i = 0; rc == FY_OK && i < top.n; i++) {
    const fy_descriptor *e = &top.entries[i];
    if (ref[0] ? strcmp(e->ref_name, ref) != 0 : !fy_oci_is_image_entry(e)) continue;
    image img = {.entry = *e};
    char hint[128];
    images++;
    int irc = pick_variant(&im, facts, &img);
    if (irc == FY_OK) irc = find_signature(&im, &top, &img);
    if (irc == FY_OK) {
      fy_app_name_hint(e->ref_name, path, 1, hint, sizeof hint);
      fy_app_name_sanitize(app_override ? app_override : img.claim_app[0] ? img.claim_app : e->title[0] ? e->title : hint, img.app,
                           sizeof img.app);
      if (!img.app[0]) irc = fail(&im, FY_EINVAL, "%s: no app name can be made for %s; name it with --app", path, e->ref_name);
    }
    if (irc == FY_OK) {
      fprintf(stderr, "ferryd --import: %s%s%s -> app %s (%s)\n", path, e->ref_name[0] ? ":" : "", e->ref_name, img.app,
              img.signature ? "signed" : "unsigned");
      im.resumed = 0;
      irc = install(&im, cfg, &img, force);
      /* A partial on the node that was not this layer's start (left by an import cut off with
       * other bytes) fails the digest and is discarded there: once more, from the start. */
      if (irc == FY_EDIGEST && im.resumed) {
        fprintf(stderr, "ferryd --import: %s; the node's partial layer is discarded, sending it again from the start\n", im.err);
        im.err[0] = '\0';
        im.resumed = 0;
        irc = install(&im, cfg, &img, force);
      }
    }
    if (irc != FY_OK) {
      fprintf(stderr, "ferryd --import: %s\n", im.err[0] ? im.err : fy_strerror(irc));
      failures++;
      im.err[0] = '\0';
      if (irc == FY_ECONN || irc == FY_EPOLICY) rc = irc; /* no ferryd to talk to: the others fail the same way */
    }
    json_decref(img.chain);
    json_decref(img.signature);
  }
  if (rc == FY_OK && images == 0)
    rc = fail(&im, FY_ENOENT, ref[0] ? "%s: no image tagged '%s' in the bundle" : "%s: the bundle holds no image", path, ref);
  if (rc != FY_OK && im.err[0]) fprintf(stderr, "ferryd --import: %s\n", im.err);
  fy_oci_index_free(&top);
  for (size_t i = 0; i < im.nblobs; i++) free(im.blobs[i].data);
  free(im.blobs);
  free(im.index_json);
  close(im.fd);
  return rc != FY_OK || failures ? 1 : 0;
}
