/* One deploy, agent side: plan -> need list -> blobs -> commit -> unpack (worker thread) ->
 * switch -> start -> settle and health -> result; or rollback to what ran before.
 *
 * Ownership: the deploy hangs off its connection until commit. After commit it owns itself
 * (a dropped pusher does not stop a switch half-way); the connection, named by its id, only
 * receives the result if it is still there.
 *
 * Lifetime: a deploy holds a timer, and during its health check one fy_hcheck (health.h). It
 * counts the handles and works it has open and is freed in the last close callback
 * (deploy_close starts that, and cancels the health check). Every deploy is on the agent's list
 * until then, so that shutdown can end it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "applog.h"
#include "health.h"
#include "launch.h"
#include "pull.h"
#include "release.h"
#include "ferry/digest.h"
#include "ferry/text.h"
#include "ferry/fsutil.h"
#include "ferry/msg.h"
#include "ferry/oci.h"
#include "ferry/unpack.h"
#include "ferry/wire.h"
#include "ferry/work.h"

#define HEALTH_TIMEOUT_MS 10000
#define SETTLE_DEFAULT_MS 3000
#define SETTLE_MAX_MS 600000

enum { PH_BLOBS, PH_UNPACK, PH_STOPPING, PH_SETTLE, PH_HEALTH, PH_DONE };

typedef struct fy_deploy {
  fy_agent *agent;
  uint64_t conn;              /* the connection's id; 0 once it went away */
  fy_app *app;
  char manifest_digest[FY_DIGEST_STR];
  fy_manifest manifest;
  fy_image_config config;
  char *config_raw;
  size_t config_len;
  uint64_t settle_ms;
  char health_cmd[FY_HEALTH_CMD_MAX]; /* as shown in messages */
  json_t *health_argv;        /* what runs (the image's, or the plan's where the node allows it) */
  int health_port;
  fy_runspec spec;            /* the image's capabilities and resources */
  fy_mounts mounts;           /* its volumes and devices */
  json_t *settings;           /* the plan's env, files and secrets (owned; NULL: none) */
  int stop_signal;            /* the image's StopSignal, 0 for the default */
  unsigned char *need;        /* per layer: 1 while still expected */
  int cur;                    /* layer being written, -1 none */
  fy_blob_writer w;
  uint64_t bytes_received;
  int blobs_received, blobs_skipped;
  uint64_t version;           /* the signed version, 0 when unsigned */
  char options[FY_DIGEST_STR]; /* the plan's options digest (fy_plan_options_digest) */
  fy_restart restart;         /* the image's restart policy */
  int force;                  /* deploy even when the app runs this already */
  int agent_upgrade;          /* the release is a new ferryd (upgrade.h) */
  int upgrade_timeout_s;
  char agent_digest[FY_DIGEST_STR];
  char release[FY_RELEASE_ID_MAX], old_release[FY_RELEASE_ID_MAX], old_previous[FY_RELEASE_ID_MAX];
  int phase;
  int work_rc;
  char work_err[600];
  uv_timer_t timer;
  fy_hcheck *hcheck;          /* the health check at the end of the settle window, while it runs */
  /* The one disk operation in flight for the transfer (blob_io_*): the writer belongs to the
   * worker until it is done. */
  int io_busy, io_op, io_rc, io_finish_rc, io_layer;
  fy_digest io_digest;
  /* The blob this transfer writes: one writer per digest across all connections, or a second
   * one could write into a file the first has just verified and renamed into the store. */
  int owns_blob;
  fy_digest owned;
  uint64_t io_size, io_offset;
  uint8_t *fill, *flight;      /* the batch being gathered, the one on the worker */
  size_t fill_len, fill_cap, flight_len, flight_cap;
  fy_frame deferred;          /* a frame kept until the writes before it are done */
  uint8_t *deferred_payload;
  int has_deferred;
  json_t *result;             /* the result, sent once the GC is done */
  fy_pull *pull;              /* a pull from the plan's registry, while it runs on a worker */
  int pulling;
  uint64_t pull_reported;     /* the progress last sent */
  uint64_t progress_ms;       /* when the transfer's last frame came */
  int open_handles;           /* handles and works; freed when the last one ends */
  int closing;
  struct fy_deploy *prev, *next; /* agent->deploys */
} fy_deploy;

static void deploy_close(fy_deploy *d);
static void blob_wind_down(fy_deploy *d);

#define refuse fy_conn_refuse

static void release_app(fy_deploy *d) {
  fy_app *app = d->app;
  if (!app) return;
  d->app = NULL;
  if (app->on_exit_ud == d) app->on_exit = NULL; /* no settle watch for a deploy that is over */
  app->deploying = 0;
  app->transfer = 0;
  uint64_t waiting = app->plan_waiting;
  app->plan_waiting = 0;
  fy_app_released(app);
  /* A plan that waited for this transfer to end goes ahead now. */
  fy_agent_conn *w = fy_conn_find(d->agent, waiting);
  if (w) fy_conn_redispatch(w);
}

/* The transfer a newer plan waits for: while its connection still delivers frames (what the
 * link carried before it was cut), it drains; a second without a frame and it is a dead link
 * (no FIN ever came), closed so that the newer plan resumes from what is on disk. */
#define STALE_GRACE_MS 1000
static void stale_watch(uv_timer_t *t) {
  fy_deploy *d = t->data;
  fy_agent_conn *c = fy_conn_find(d->agent, d->conn);
  if (d->closing || d->phase != PH_BLOBS || !c) {
    uv_timer_stop(t);
    return;
  }
  /* Busy on this side (a batch on a worker, a frame waiting for it): the link is not what is slow. */
  if (d->io_busy || d->has_deferred || d->pulling) d->progress_ms = uv_now(d->agent->loop);
  if (uv_now(d->agent->loop) - d->progress_ms < STALE_GRACE_MS) return;
  uv_timer_stop(t);
  fy_log("info", "app %s: a new plan from %s supersedes its unfinished transfer from %s", d->app ? d->app->name : "?",
         fy_conn_pusher(c), fy_conn_peer(c));
  fy_conn_abort(c); /* keeps the partial blobs; the app is released once the writes are done */
}

void fy_deploy_conn_closed(fy_agent_conn *c) {
  fy_deploy **slot = fy_conn_deploy(c), *d = *slot;
  if (!d) return;
  *slot = NULL;
  d->conn = 0;
  if (d->phase == PH_BLOBS) { /* nothing switched yet: keep the partials, drop the rest */
    if (d->pulling)
      fy_log("info", "app %s: its client went away during the pull (a pusher, or the broker's apply given up for a newer state); the pull stops and its partial blobs stay for a resume",
             d->app ? d->app->name : "?");
    else
      fy_log("info", "app %s: pusher went away during the transfer; %llu bytes kept for a resume",
             d->app ? d->app->name : "?", (unsigned long long)d->bytes_received);
    /* A batch on a worker owns the writer and the partial: the app is released once the
     * writes are done, so that no second transfer writes the same partial meanwhile. */
    blob_wind_down(d);
    deploy_close(d);
  }
}

static void deploy_one_closed(fy_deploy *d) {
  if (--d->open_handles > 0 || !d->closing) return;
  fy_agent *a = d->agent;
  if (d->prev) d->prev->next = d->next;
  else a->deploys = d->next;
  if (d->next) d->next->prev = d->prev;
  fy_oci_manifest_free(&d->manifest);
  fy_oci_config_free(&d->config);
  json_decref(d->health_argv);
  json_decref(d->settings);
  free(d->config_raw);
  free(d->need);
  free(d->fill);
  free(d->flight);
  free(d->deferred_payload);
  fy_pull_wipe(d->pull);
  free(d->pull);
  free(d);
}
static void deploy_handle_closed(uv_handle_t *h) { deploy_one_closed(h->data); }

/* Ends the health check: its command's process group is killed, its probe closed. */
static void health_stop(fy_deploy *d) {
  fy_hcheck_cancel(d->hcheck);
  d->hcheck = NULL;
}

static void deploy_close(fy_deploy *d) {
  if (d->closing) return;
  d->closing = 1;
  if (d->pull) d->pull->cancel = 1; /* the worker stops within a second; pull_done frees it */
  fy_conn_forget_deploy(d->agent, d); /* a connection still closing must not reach it later */
  if (!d->io_busy) {
    fy_blob_writer_close(&d->w);
    d->owns_blob = 0;
  }
  health_stop(d);
  uv_close((uv_handle_t *)&d->timer, deploy_handle_closed);
}

/* Tells a pusher that speaks protocol 2 where the deploy stands (older pushers hear nothing). */
static void progress(fy_deploy *d, fy_step step, uint64_t done, uint64_t total) {
  fy_agent_conn *c = fy_conn_find(d->agent, d->conn);
  if (!c || fy_conn_version(c) < 2 || !d->app) return;
  fy_progress_msg pm = {.app = d->app->name, .step = step, .done = done, .total = total};
  json_t *j = fy_progress_encode(&pm);
  if (j && fy_conn_send_json(c, FY_FT_PROGRESS, j) != FY_OK) fy_log("warn", "app %s: cannot send progress", d->app->name);
  json_decref(j);
}

static void result_after_gc(void *ud) {
  fy_deploy *d = ud;
  fy_agent_conn *c = fy_conn_find(d->agent, d->conn);
  if (c) {
    *fy_conn_deploy(c) = NULL;
    d->conn = 0;
    fy_conn_hold(c, 0);
    if (d->result && fy_conn_send_json(c, FY_FT_RESULT, d->result) != FY_OK) fy_log("warn", "cannot send the result");
  }
  json_decref(d->result);
  d->result = NULL;
  deploy_close(d);
  deploy_one_closed(d); /* the GC's hold */
}

static void send_result(fy_deploy *d, fy_result result, int code, const char *message, int64_t exit_code) {
  fy_agent *a = d->agent;
  int good = result == FY_RESULT_DEPLOYED || result == FY_RESULT_UPGRADING;
  char *tail = good ? NULL : fy_app_log_tail(a, d->app->name, 20, 4096);
  fy_result_msg rm = {.result = result, .app = d->app->name, .code = code, .message = message, .release = d->app->release,
                      .bytes_received = d->bytes_received, .blobs_received = (uint32_t)d->blobs_received,
                      .blobs_skipped = (uint32_t)d->blobs_skipped, .has_exit_code = exit_code != INT64_MIN,
                      .exit_code = exit_code, .agent_digest = d->agent_digest, .log_tail = good ? NULL : tail ? tail : ""};
  json_t *j = fy_result_encode(&rm);
  free(tail);
  fy_log(good ? "info" : "warn", "app %s: %s%s%s", d->app->name, fy_result_name(result),
         message && *message ? ": " : "", message ? message : "");
  if (!good && d->manifest.nlayers) { /* kept for a push that fixes what failed */
    fy_digest keep[FY_OCI_MAX_LAYERS + 2];
    size_t nk = 0;
    fy_digest md;
    if (fy_digest_parse(d->manifest_digest, &md) == FY_OK) keep[nk++] = md;
    keep[nk++] = d->manifest.config.digest;
    for (size_t i = 0; i < d->manifest.nlayers && nk < sizeof keep / sizeof keep[0]; i++) keep[nk++] = d->manifest.layers[i].digest;
    fy_release_failed_cache(a, keep, nk);
  }
  /* The garbage collection first: when the pusher hears the result, the node's state is final.
   * An agent about to re-execute answers at once (what its GC leaves, the next start removes). */
  d->phase = PH_DONE;
  release_app(d);
  d->result = j;
  d->open_handles++; /* the GC holds the deploy until it calls back */
  if (result == FY_RESULT_UPGRADING) {
    fy_app_gc(a, NULL, NULL);
    result_after_gc(d);
  } else {
    fy_app_gc(a, result_after_gc, d);
  }
}

/* --- plan ------------------------------------------------------------------------------ */

/* A deploy record on the agent's list, with its timer (see "Lifetime" above). */
static fy_deploy *deploy_new(fy_agent *a, fy_agent_conn *c) {
  fy_deploy *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->agent = a;
  d->conn = fy_conn_id(c);
  d->cur = -1;
  d->w.fd = -1;
  d->settle_ms = SETTLE_DEFAULT_MS;
  uv_timer_init(a->loop, &d->timer);
  d->timer.data = d;
  d->open_handles = 1;
  d->progress_ms = uv_now(a->loop);
  d->next = a->deploys;
  if (a->deploys) a->deploys->prev = d;
  a->deploys = d;
  return d;
}

/* The plan's run options (bounded by the decoder). */
static void plan_options(fy_deploy *d, const fy_plan_msg *pm) {
  d->settle_ms = pm->settle_ms;
  if (pm->health_cmd) snprintf(d->health_cmd, sizeof d->health_cmd, "%s", pm->health_cmd);
  d->health_port = pm->health_port;
  d->agent_upgrade = pm->agent_upgrade;
  d->upgrade_timeout_s = pm->upgrade_timeout_s;
  d->force = pm->force;
  d->settings = pm->settings && json_object_size(pm->settings) ? json_deep_copy(pm->settings) : NULL;
  fy_plan_options_digest(pm, d->options);
}

/* A plan for what the app runs already (the same manifest, the same options) is answered
 * "unchanged": nothing is stored, stopped or restarted, and previous stays the real rollback
 * target. Only pushers that speak protocol 3 can hear that answer; --force deploys anyway. */
static int plan_unchanged(fy_agent_conn *c, fy_deploy *d, fy_app *ap) {
  if (d->force || d->agent_upgrade || fy_conn_version(c) < 3 || !ap->release[0]) return 0;
  fy_app_meta(ap);
  if (strcmp(ap->manifest, d->manifest_digest) != 0 || strcmp(ap->options, d->options) != 0) return 0;
  char msg[300];
  snprintf(msg, sizeof msg, "already runs release %s (the same image and options; --force deploys it again)%s", ap->release,
           ap->state == FY_APP_RUNNING || ap->state == FY_APP_STARTING ? ""
           : ap->user_stopped ? "; it is stopped: ferry start starts it" : "; it is not running");
  fy_result_msg rm = {.result = FY_RESULT_UNCHANGED, .app = ap->name, .message = msg, .release = ap->release,
                      .previous = ap->previous, .blobs_skipped = (uint32_t)d->manifest.nlayers};
  json_t *j = fy_result_encode(&rm);
  if (!j || fy_conn_send_json(c, FY_FT_RESULT, j) != FY_OK) fy_log("warn", "app %s: cannot send the result", ap->name);
  json_decref(j);
  fy_log("info", "app %s: unchanged: plan from %s for release %s, which it runs", ap->name, fy_conn_peer(c), ap->release);
  return 1;
}

/* Settings are outside the release signature: where signatures are required, only what the
 * signed image declares (ferry.yaml's config: {env, files, secrets}, label dev.ferry.config) may
 * be set. FY_OK, or FY_EPOLICY naming the first key it does not declare. */
static int settings_declared(const fy_deploy *d, char *err, size_t errlen) {
  static const char *const kinds[] = {"env", "files", "secrets"};
  json_t *decl = d->config.config_decl ? json_loads(d->config.config_decl, 0, NULL) : NULL;
  int rc = FY_OK;
  for (size_t i = 0; i < 3 && rc == FY_OK; i++) {
    const char *k;
    const json_t *v;
    const json_t *allowed = json_object_get(decl, kinds[i]);
    json_object_foreach(json_object_get(d->settings, kinds[i]), k, v) {
      int ok = 0;
      for (size_t n = 0; n < json_array_size(allowed) && !ok; n++) {
        const char *s = json_string_value(json_array_get(allowed, n));
        ok = s && strcmp(s, k) == 0;
      }
      if (!ok) {
        snprintf(err, errlen,
                 "%s %.60s is refused: this node requires signed releases and the signed image does not declare it "
                 "(config.%s in ferry.yaml)", i == 0 ? "env" : i == 1 ? "file" : "secret", k, kinds[i]);
        rc = FY_EPOLICY;
        break;
      }
    }
  }
  json_decref(decl);
  return rc;
}

/* How the release will run, checked before anything is stored or stopped: the image's stop
 * signal, capabilities and resources must be valid, and a health command that is not the
 * image's own (ferry push --health-cmd) is code the release signature does not cover: refused
 * where signatures are required, and where apps run without containment unless the node's
 * config allows it. d->health_cmd holds the plan's command on entry. */
static int run_policy(fy_agent_conn *c, fy_deploy *d) {
  const fy_agent_config *cfg = &d->agent->cfg;
  char err[300];
  int rc_decl;
  json_t *j;
  if (fy_restart_parse(d->config.restart, &d->restart) != FY_OK)
    return refuse(c, FY_EINVAL, "the image's restart policy '%.20s' is not always, on-failure or never", d->config.restart);
  if (d->config.stop_signal && fy_signal_parse(d->config.stop_signal, &d->stop_signal) != FY_OK)
    return refuse(c, FY_EINVAL, "the image's StopSignal '%.20s' is not a signal this node can send", d->config.stop_signal);
  if (d->config.capabilities) {
    j = json_loads(d->config.capabilities, 0, NULL);
    int rc = fy_caps_from_json(j, &d->spec, err, sizeof err);
    json_decref(j);
    if (rc != FY_OK) return refuse(c, FY_EINVAL, "the image's run.%s", err);
  }
  if (d->config.resources) {
    j = json_loads(d->config.resources, 0, NULL);
    int rc = fy_resources_from_json(j, &d->spec, err, sizeof err);
    json_decref(j);
    if (rc != FY_OK) return refuse(c, FY_EINVAL, "the image's run.%s", err);
  }
  j = d->config.volumes ? json_loads(d->config.volumes, 0, NULL) : NULL;
  int mrc = fy_volumes_from_json(d->config.volumes && !j ? json_false() : j, &d->mounts, err, sizeof err);
  json_decref(j);
  if (mrc != FY_OK) return refuse(c, FY_EINVAL, "the image's run.%s", err);
  j = d->config.devices ? json_loads(d->config.devices, 0, NULL) : NULL;
  mrc = fy_devices_from_json(d->config.devices && !j ? json_false() : j, &d->mounts, err, sizeof err);
  json_decref(j);
  if (mrc != FY_OK) return refuse(c, FY_EINVAL, "the image's run.%s", err);
  for (size_t i = 0; i < d->mounts.ndevices; i++) { /* before anything is stored or switched */
    const char *dev = d->mounts.devices[i];
    int allowed = 0;
    for (size_t k = 0; k < cfg->ndevices && !allowed; k++) allowed = strcmp(cfg->devices[k], dev) == 0;
    if (!allowed)
      return refuse(c, FY_EPOLICY, "the app needs the device %s, which %s does not allow (devices: in its agent config)", dev,
                    d->agent->name);
    struct stat st;
    if (stat(dev, &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
      return refuse(c, FY_EPOLICY, "the app needs the device %s, which is not a device node on %s", dev, d->agent->name);
  }
  if (d->settings && cfg->require_signature && (rc_decl = settings_declared(d, err, sizeof err)) != FY_OK)
    return refuse(c, FY_EPOLICY, "%s", err);
  const char *image_cmd = d->config.health_cmd ? d->config.health_cmd : "";
  if (d->health_cmd[0] && strcmp(d->health_cmd, image_cmd) != 0) {
    int contained = fy_config_contained(cfg, geteuid() == 0);
    if (cfg->require_signature)
      return refuse(c, FY_EPOLICY,
                    "--health-cmd is refused: this node requires signed releases and a command from the command line is not "
                    "covered by the signature; put it in ferry.yaml (run.health.cmd) so the signed image carries it");
    if (!contained && !cfg->allow_pusher_commands)
      return refuse(c, FY_EPOLICY,
                    "--health-cmd is refused: apps on this node run without containment (%s); set "
                    "runtime.allow_pusher_commands: true in ferryd's config to allow commands from pushers",
                    cfg->nwrapper ? "exec_wrapper" : "isolation: none");
    d->health_argv = json_pack("[s, s, s]", "/bin/sh", "-c", d->health_cmd);
  } else if (d->config.nhealth_argv) {
    d->health_argv = json_array();
    for (size_t i = 0; i < d->config.nhealth_argv; i++) json_array_append_new(d->health_argv, json_string(d->config.health_argv[i]));
    snprintf(d->health_cmd, sizeof d->health_cmd, "%s", image_cmd);
  }
  if (d->health_cmd[0] && !d->health_argv) return refuse(c, FY_ENOMEM, "out of memory");
  if (!d->health_port) d->health_port = d->config.health_port;
  return FY_OK;
}

/* Everything the node checks before it stores a byte: the manifest's digest computed from its
 * bytes (never taken on trust), the release policy, the config's digest, the platform, the size,
 * the layer kinds, the agent-upgrade rules. FY_OK, or the code after refusing the connection. */
static int plan_verify(fy_agent_conn *c, fy_deploy *d, const json_t *j, const fy_plan_msg *pm) {
  fy_agent *a = d->agent;
  const char *app = pm->app;
  char err[600], gots[FY_DIGEST_STR], mdig[FY_DIGEST_STR];
  fy_digest got;
  int rc;
  const char *mbytes = pm->manifest;
  size_t mlen = pm->manifest_len;
  fy_digest_format(&pm->manifest_digest, mdig);
  fy_sha256_once(mbytes, mlen, &got);
  if (!fy_digest_equal(&pm->manifest_digest, &got))
    return refuse(c, FY_EDIGEST, "manifest digest mismatch: the plan names %s, the bytes hash to %s", mdig, fy_digest_format(&got, gots));
  snprintf(d->manifest_digest, sizeof d->manifest_digest, "%s", mdig);
  /* The release policy, before anything is stored: a refused plan writes nothing. */
  if ((rc = fy_trust_check_plan(a, app, j, &got, &d->version, err, sizeof err)) != FY_OK) return refuse(c, rc, "app %s: %s", app, err);
  if ((rc = fy_oci_manifest_parse(mbytes, mlen, &d->manifest, err, sizeof err)) != FY_OK) return refuse(c, rc, "%s", err);
  const char *cbytes = pm->config;
  d->config_len = pm->config_len;
  fy_sha256_once(cbytes, d->config_len, &got);
  if (!fy_digest_equal(&got, &d->manifest.config.digest) || d->config_len != d->manifest.config.size)
    return refuse(c, FY_EDIGEST, "config digest mismatch: the manifest names %s", fy_digest_format(&d->manifest.config.digest, gots));
  if (!(d->config_raw = malloc(d->config_len + 1))) return refuse(c, FY_ENOMEM, "out of memory");
  memcpy(d->config_raw, cbytes, d->config_len);
  if ((rc = fy_oci_config_parse(cbytes, d->config_len, &d->config, err, sizeof err)) != FY_OK) return refuse(c, rc, "%s", err);
  if (fy_platform_rank(a->facts.accepts, a->facts.naccepts, &d->config.platform) < 0) {
    char p1[FY_PLATFORM_STR], p2[FY_PLATFORM_STR];
    return refuse(c, FY_ENOPLATFORM, "the image is %s, this node runs %s", fy_platform_format(&d->config.platform, p1, sizeof p1),
                  fy_platform_format(&a->facts.platform, p2, sizeof p2));
  }
  if ((rc = run_policy(c, d)) != FY_OK) return rc;
  if (d->agent_upgrade && a->recovering)
    return refuse(c, FY_EBUSY, "the agent is still recovering its apps; push the agent upgrade again in a moment");
  if (d->manifest.layers_size > a->cfg.max_release_bytes)
    return refuse(c, FY_ETOOBIG, "the layers (%llu bytes) exceed limits.max_release_bytes (%llu)",
                  (unsigned long long)d->manifest.layers_size, (unsigned long long)a->cfg.max_release_bytes);
  for (size_t i = 0; i < d->manifest.nlayers; i++)
    if (d->manifest.layers[i].kind == FY_KIND_LAYER_GZIP)
      return refuse(c, FY_EUNSUPPORTED, "layer %zu is gzip; the wire carries zstd (the pusher recompresses)", i);
  if (d->agent_upgrade) {
    if (strcmp(app, "ferryd") != 0) return refuse(c, FY_EINVAL, "plan: an agent upgrade is app 'ferryd'");
    for (fy_app *o = a->apps; o; o = o->next)
      if (o->deploying) return refuse(c, FY_EBUSY, "a deploy of %s is in progress; upgrade the agent after it", o->name);
  } else if (strcmp(app, "ferryd") == 0) {
    return refuse(c, FY_EINVAL, "the app name 'ferryd' is the agent's own (ferry upgrade-agent)");
  }
  return FY_OK;
}

/* The blobs this node still needs, each with the offset its partial reached; refuses when the
 * disk cannot hold them. *need is the reply's array (caller's). */
static int plan_need(fy_agent_conn *c, fy_deploy *d, fy_need_msg *need) {
  fy_agent *a = d->agent;
  d->need = calloc(d->manifest.nlayers + 1, 1);
  need->n = 0;
  if (!d->need) return refuse(c, FY_ENOMEM, "out of memory");
  uint64_t missing = 0;
  for (size_t i = 0; i < d->manifest.nlayers; i++) {
    const fy_descriptor *l = &d->manifest.layers[i];
    int dup = 0;
    for (size_t k = 0; k < i; k++) dup |= fy_digest_equal(&d->manifest.layers[k].digest, &l->digest);
    if (dup) continue;
    if (fy_store_has(&a->store, &l->digest, l->size)) {
      d->blobs_skipped++;
      continue;
    }
    uint64_t off = fy_store_partial(&a->store, &l->digest, l->size);
    d->need[i] = 1;
    missing += l->size - off;
    need->items[need->n++] = (fy_need_item){l->digest, l->size, off};
  }
  uint64_t free_b = fy_fs_free_bytes(a->cfg.state_dir), want = missing + d->manifest.layers_size / 2;
  if (want > free_b && missing > 0) {
    /* Partial blobs of abandoned transfers and the last failed deploy's cache count as free:
     * they go first, never what a release or a transfer in flight (this one too) uses. */
    fy_digest *also = NULL;
    size_t nalso = 0, cap = 0;
    for (fy_deploy *x = a->deploys; x; x = x->next) cap += x->manifest.nlayers + 2;
    also = cap ? calloc(cap, sizeof *also) : NULL;
    for (fy_deploy *x = a->deploys; also && x; x = x->next) { /* its layers, manifest and config */
      fy_digest md;
      if (fy_digest_parse(x->manifest_digest, &md) == FY_OK) also[nalso++] = md;
      also[nalso++] = x->manifest.config.digest;
      for (size_t i = 0; i < x->manifest.nlayers; i++) also[nalso++] = x->manifest.layers[i].digest;
    }
    uint64_t reclaimable = 0;
    if (also || !cap) fy_release_reclaim(a, also, nalso, want - free_b, &reclaimable);
    free(also);
    free_b = fy_fs_free_bytes(a->cfg.state_dir);
    if (want > free_b)
      return refuse(c, FY_ENOSPC, "not enough space in %s: the deploy needs about %llu bytes, %llu are free (%llu more could be "
                    "reclaimed from partial and cached blobs)",
                    a->cfg.state_dir, (unsigned long long)want, (unsigned long long)free_b, (unsigned long long)reclaimable);
  }
  return FY_OK;
}

/* --- pulling from the plan's registry (protocol 5) ---------------------------------------- */

static void send_need(fy_agent_conn *c, fy_deploy *d, const fy_need_msg *need) {
  json_t *reply = fy_need_encode(need);
  int rc = reply ? fy_conn_send_json(c, FY_FT_REPLY, reply) : FY_ENOMEM;
  json_decref(reply);
  if (rc != FY_OK) refuse(c, rc, "cannot answer the plan");
  (void)d;
}

static void pull_work(void *ud) { fy_pull_run(((fy_deploy *)ud)->pull); }

static void pull_tick(uv_timer_t *t) {
  fy_deploy *d = t->data;
  uint64_t done = d->pull ? d->pull->done_bytes : 0, total = d->pull ? d->pull->total_bytes : 0;
  d->progress_ms = uv_now(d->agent->loop);
  if (!d->pulling || done == d->pull_reported || done > total) return;
  d->pull_reported = done;
  progress(d, FY_STEP_PULLING, done, total);
}

static void pull_done(void *ud) {
  fy_deploy *d = ud;
  fy_pull *p = d->pull;
  d->pulling = 0;
  fy_pull_wipe(p); /* the credential is not kept past the pull */
  if (!d->closing) uv_timer_stop(&d->timer);
  if (d->closing) { /* the pusher went away or the agent stops: the partials stay for a resume */
    release_app(d);
    deploy_one_closed(d);
    return;
  }
  d->open_handles--;
  d->bytes_received += p->fetched;
  d->blobs_received += p->blobs;
  fy_agent_conn *c = fy_conn_find(d->agent, d->conn);
  if (!c) return;
  fy_conn_hold(c, 0);
  fy_need_msg need; /* 12 KiB */
  memset(&need, 0, sizeof need);
  need.skipped = (uint32_t)d->blobs_skipped;
  if (p->rc == FY_OK) {
    for (size_t i = 0; i < d->manifest.nlayers; i++) d->need[i] = 0;
    fy_log("info", "app %s: pulled %d blob(s), %llu bytes, from %s%s", d->app->name, p->blobs, (unsigned long long)p->fetched,
           p->src.registry, p->from_mirror ? " (through its mirrors)" : "");
    send_need(c, d, &need);
    return;
  }
  if (!p->src.fallback) {
    refuse(c, p->rc, "pulling from %s: %s", p->src.registry, p->err);
    return;
  }
  /* --fallback-stream: what the registry did not give, the pusher streams, from the partials on */
  fy_log("warn", "app %s: pulling from %s failed (%s); the pusher streams the rest", d->app->name, p->src.registry, p->err);
  for (size_t i = 0; i < d->manifest.nlayers; i++) {
    const fy_descriptor *l = &d->manifest.layers[i];
    if (!d->need[i]) continue;
    if (fy_store_has(&d->agent->store, &l->digest, l->size)) {
      d->need[i] = 0;
      continue;
    }
    int dup = 0;
    for (size_t k = 0; k < need.n; k++) dup |= fy_digest_equal(&need.items[k].digest, &l->digest);
    if (!dup) need.items[need.n++] = (fy_need_item){l->digest, l->size, fy_store_partial(&d->agent->store, &l->digest, l->size)};
  }
  send_need(c, d, &need);
}

/* The blobs of the need list come from the registry: on a worker, with progress every second. */
static int pull_start(fy_agent_conn *c, fy_deploy *d, const fy_plan_source *src, const fy_need_msg *need) {
  fy_agent *a = d->agent;
  fy_pull *p = calloc(1, sizeof *p);
  if (!p) return refuse(c, FY_ENOMEM, "out of memory");
  p->store = &a->store;
  snprintf(p->registry_ca, sizeof p->registry_ca, "%s", a->cfg.registry_ca);
  p->src = *src;
  for (size_t i = 0; i < a->cfg.nmirrors && i < sizeof p->mirrors / sizeof p->mirrors[0]; i++) {
    snprintf(p->mirrors[i], sizeof p->mirrors[i], "%s", a->cfg.mirrors[i]);
    size_t l = strlen(p->mirrors[i]);
    while (l && p->mirrors[i][l - 1] == '/') p->mirrors[i][--l] = '\0';
    p->nmirrors++;
  }
  for (size_t i = 0; i < need->n; i++) p->items[p->n++] = (fy_pull_item){need->items[i].digest, need->items[i].size};
  d->pull = p;
  d->pulling = 1;
  d->open_handles++;
  if (fy_work_queue(a->loop, pull_work, pull_done, d) != FY_OK) {
    d->pulling = 0;
    d->open_handles--;
    return refuse(c, FY_ENOMEM, "cannot queue the pull");
  }
  fy_conn_hold(c, 1); /* the pull may outlast the idle timeout; progress shows it alive */
  uv_timer_start(&d->timer, pull_tick, 1000, 1000);
  fy_log("info", "app %s: pulling %zu blob(s) from %s/%s%s", d->app->name, p->n, src->registry, src->repository,
         p->nmirrors ? " (mirrors first)" : "");
  return FY_OK;
}

int fy_deploy_on_plan(fy_agent_conn *c, const fy_frame *f) {
  fy_agent *a = fy_conn_agent(c);
  json_t *j = NULL;
  fy_need_msg need; /* 12 KiB */
  fy_plan_msg pm;
  char err[600];
  int rc;
  if (*fy_conn_deploy(c)) return refuse(c, FY_EPROTO, "a second plan on one connection");
  if ((rc = fy_msg_parse(f, &j, err, sizeof err)) != FY_OK) return refuse(c, rc, "%s", err);
  if ((rc = fy_plan_decode(j, &pm, err, sizeof err)) != FY_OK) {
    json_decref(j);
    return refuse(c, rc, "%s", err);
  }
  fy_plan_source src;
  int has_source = (rc = fy_plan_source_decode(j, &src, err, sizeof err)) == FY_OK;
  if (rc != FY_OK && rc != FY_ENOENT) {
    json_decref(j);
    return refuse(c, rc, "%s", err);
  }
  pm.source = has_source ? &src : NULL;
  const char *app = pm.app;
  fy_deploy *d = deploy_new(a, c);
  if (!d) {
    json_decref(j);
    return refuse(c, FY_ENOMEM, "out of memory");
  }
  plan_options(d, &pm);
  fy_digest want = pm.manifest_digest;
  if ((rc = plan_verify(c, d, j, &pm)) != FY_OK) goto fail;
  fy_app *ap = fy_app_get(a, app);
  if (!ap) { rc = refuse(c, FY_ENOMEM, "out of memory"); goto fail; }
  fy_app_recover_now(ap);
  fy_agent_conn *stale = ap->deploying ? fy_conn_find(a, ap->transfer) : NULL;
  if (ap->deploying && ap->transfer && (!stale || (stale != c && strcmp(fy_conn_pusher(stale), fy_conn_pusher(c)) == 0)) &&
      (!ap->plan_waiting || ap->plan_waiting == fy_conn_id(c))) {
    /* The same pusher again while its last transfer still runs (a cut link: the bytes it sent
     * before may still be on their way in), or a transfer whose connection is gone and whose last
     * writes are finishing: this plan waits for it to end, then resumes from what reached the disk. */
    ap->plan_waiting = fy_conn_id(c);
    fy_deploy *sd = stale ? *fy_conn_deploy(stale) : NULL;
    if (sd && !uv_is_active((uv_handle_t *)&sd->timer)) uv_timer_start(&sd->timer, stale_watch, STALE_GRACE_MS / 4, STALE_GRACE_MS / 4);
    json_decref(j);
    deploy_close(d);
    return fy_conn_defer(c, f);
  }
  if (ap->removing) { rc = refuse(c, FY_EBUSY, "%s is being removed (ferry rm); push again once it is gone", app); goto fail; }
  if (ap->deploying) { rc = refuse(c, FY_EBUSY, "another deploy of %s is in progress", app); goto fail; }
  if (plan_unchanged(c, d, ap)) {
    json_decref(j);
    deploy_close(d);
    return FY_OK;
  }
  d->app = ap;
  ap->deploying = 1;
  if (fy_store_put(&a->store, &want, pm.manifest, pm.manifest_len) != FY_OK ||
      fy_store_put(&a->store, &d->manifest.config.digest, d->config_raw, d->config_len) != FY_OK) {
    rc = refuse(c, FY_EIO, "cannot store the manifest and config in %s", a->store.dir);
    goto fail;
  }
  if ((rc = plan_need(c, d, &need)) != FY_OK) goto fail;
  *fy_conn_deploy(c) = d;
  ap->transfer = fy_conn_id(c);
  fy_log("info", "app %s: plan from %s, manifest %.19s..., %d blob(s) to receive, %d already here", ap->name,
         fy_conn_peer(c), d->manifest_digest, (int)need.n, d->blobs_skipped);
  need.skipped = (uint32_t)d->blobs_skipped;
  if (has_source && need.n > 0) { /* the need list goes out once the registry gave what it lists */
    rc = pull_start(c, d, &src, &need);
    memset(src.authorization, 0, sizeof src.authorization);
    json_decref(j);
    return rc;
  }
  json_t *reply = fy_need_encode(&need);
  rc = reply ? fy_conn_send_json(c, FY_FT_REPLY, reply) : FY_ENOMEM;
  json_decref(reply);
  json_decref(j);
  return rc == FY_OK ? FY_OK : refuse(c, rc, "cannot answer the plan");
fail:
  release_app(d);
  json_decref(j);
  deploy_close(d);
  return rc;
}

/* --- blobs ----------------------------------------------------------------------------- */

/* Blob bytes reach the disk on the worker pool, so the loop keeps serving status and supervision
 * during a transfer. Chunks are gathered into a batch of up to BLOB_BATCH bytes while the
 * previous batch is written (and hashed) on a worker: the agent keeps reading at disk speed and
 * holds at most two batches. When the batch is full, or a frame needs the writes behind it to be
 * done first (blob-begin, commit), that frame is kept aside and the connection pauses; the
 * worker's done callback hands it back. A resume's re-hash of the partial, and the final fsync
 * and rename of each blob, run on the worker too.
 *
 * A resumed partial is re-hashed from disk on the worker rather than restored from a saved hash
 * state: what the node verifies is what is on its disk (a torn or tampered partial is caught),
 * and the SHA-256 context is private in mbedTLS 3.6, so a saved state would depend on one build's
 * struct layout. The cost is one sequential read of the partial, off the loop. */

#define BLOB_BATCH (512u << 10)

enum { IO_OPEN, IO_WRITE };

static void blob_io_work(void *ud) {
  fy_deploy *d = ud;
  if (d->io_op == IO_OPEN) {
    fy_blob_writer_close(&d->w);
    d->io_rc = fy_blob_writer_open(&d->w, &d->agent->store, &d->io_digest, d->io_size, d->io_offset);
    /* a partial that holds every byte (a kill came between the last write and the rename): no
     * data will follow, so it is verified and stored now */
    d->io_finish_rc = FY_OK;
    if (d->io_rc == FY_OK && d->w.written == d->w.size) d->io_finish_rc = fy_blob_writer_finish(&d->w);
    return;
  }
  d->io_rc = fy_blob_writer_write(&d->w, d->flight, d->flight_len);
  d->io_finish_rc = FY_OK;
  if (d->io_rc == FY_OK && d->w.written == d->w.size) d->io_finish_rc = fy_blob_writer_finish(&d->w);
}

static void blob_io_done(void *ud);

/* Queues the deploy's one disk operation; a work in flight holds the deploy like a handle. */
static int blob_io_start(fy_deploy *d, int op) {
  d->io_op = op;
  d->io_busy = 1;
  d->open_handles++;
  int rc = fy_work_queue(d->agent->loop, blob_io_work, blob_io_done, d);
  if (rc != FY_OK) {
    d->io_busy = 0;
    d->open_handles--;
  }
  return rc;
}

/* Hands what was gathered to a worker, when none is writing. */
static int blob_flush_start(fy_deploy *d) {
  if (d->io_busy || d->fill_len == 0) return FY_OK;
  uint8_t *t = d->flight;
  size_t tc = d->flight_cap;
  d->flight = d->fill;
  d->flight_cap = d->fill_cap;
  d->flight_len = d->fill_len;
  d->fill = t;
  d->fill_cap = tc;
  d->fill_len = 0;
  return blob_io_start(d, IO_WRITE);
}

static int blob_flush(fy_agent_conn *c, fy_deploy *d) {
  if (blob_flush_start(d) == FY_OK) return FY_OK;
  refuse(c, FY_ENOMEM, "cannot queue the disk write");
  return FY_ECANCELED;
}

/* The transfer ended (its connection went, or the agent stops): what was gathered still reaches
 * the partial, then the writer closes and the app is free for the next push to resume. */
static void blob_wind_down(fy_deploy *d) {
  if (d->io_busy || d->pulling) return; /* blob_io_done and pull_done come back here */
  if (d->fill_len && d->cur >= 0 && blob_flush_start(d) == FY_OK) return;
  d->fill_len = 0;
  fy_blob_writer_close(&d->w);
  d->owns_blob = 0;
  release_app(d);
}

/* Keeps a frame aside until the writes before it are done; the connection pauses. */
static int defer_frame(fy_agent_conn *c, fy_deploy *d, const fy_frame *f) {
  uint8_t *p = f->len ? malloc(f->len) : NULL;
  if (f->len && !p) return refuse(c, FY_ENOMEM, "out of memory");
  if (f->len) memcpy(p, f->payload, f->len);
  free(d->deferred_payload);
  d->deferred_payload = p;
  d->deferred = *f;
  d->deferred.payload = p;
  d->has_deferred = 1;
  return FY_FRAME_PAUSE;
}

/* A blob's last byte was written (and the writer finished it): stored, or refused. */
static int blob_stored(fy_agent_conn *c, fy_deploy *d, const char *ds) {
  d->owns_blob = 0; /* the blob is in the store, or gone: another transfer may take it */
  if (d->io_finish_rc == FY_EDIGEST) return refuse(c, FY_EDIGEST, "blob %s: the bytes do not match the digest (discarded)", ds);
  if (d->io_finish_rc != FY_OK) return refuse(c, d->io_finish_rc, "storing the blob %s: %s", ds, fy_strerror(d->io_finish_rc));
  for (size_t i = 0; i < d->manifest.nlayers; i++)
    if (fy_digest_equal(&d->manifest.layers[i].digest, &d->w.want)) d->need[i] = 0;
  d->blobs_received++;
  d->cur = -1;
  return FY_OK;
}

static void blob_io_done(void *ud) {
  fy_deploy *d = ud;
  fy_agent *a = d->agent;
  char ds[FY_DIGEST_STR];
  d->io_busy = 0;
  if (d->closing) { /* the transfer ended meanwhile: keep the partial for a resume */
    if (d->io_op == IO_WRITE && d->io_rc != FY_OK) d->fill_len = 0;
    blob_wind_down(d);
    deploy_one_closed(d);
    return;
  }
  d->open_handles--; /* the work counted as one: the deploy is not closing, so nothing frees here */
  d->progress_ms = uv_now(a->loop); /* this side's work is progress too (stale_watch) */
  fy_agent_conn *c = fy_conn_find(a, d->conn);
  if (!c) return;
  fy_digest_format(d->io_op == IO_OPEN ? &d->io_digest : &d->w.want, ds);
  if (d->io_op == IO_OPEN) {
    if (d->io_rc != FY_OK) {
      refuse(c, d->io_rc, "cannot open the blob %s: %s", ds, fy_strerror(d->io_rc));
      return;
    }
    d->cur = d->io_layer;
    if (d->w.written == d->w.size && blob_stored(c, d, ds) != FY_OK) return;
  } else if (d->io_rc == FY_ETOOBIG) {
    refuse(c, FY_EDIGEST, "more bytes than the manifest's size for the blob");
    return;
  } else if (d->io_rc != FY_OK) {
    refuse(c, d->io_rc, "writing the blob: %s", fy_strerror(d->io_rc));
    return;
  } else {
    d->bytes_received += d->flight_len;
    if (d->w.written == d->w.size && blob_stored(c, d, ds) != FY_OK) return;
  }
  if (blob_flush(c, d) != FY_OK) return;
  if (d->has_deferred) { /* the frame that waited, handled again now */
    fy_frame f = d->deferred;
    d->has_deferred = 0;
    int rc = f.type == FY_FT_BLOB_BEGIN ? fy_deploy_on_blob_begin(c, &f)
           : f.type == FY_FT_BLOB       ? fy_deploy_on_blob(c, &f)
                                        : fy_deploy_on_commit(c, &f);
    if (f.payload == d->deferred_payload && !d->has_deferred) {
      free(d->deferred_payload);
      d->deferred_payload = NULL;
    }
    if (rc != FY_OK) return; /* paused again, or refused */
  }
  fy_conn_resume(c);
}

static int blob_io_queue(fy_agent_conn *c, fy_deploy *d, int op) {
  if (blob_io_start(d, op) != FY_OK) return refuse(c, FY_ENOMEM, "cannot queue the disk write");
  return FY_FRAME_PAUSE;
}

int fy_deploy_on_blob_begin(fy_agent_conn *c, const fy_frame *f) {
  fy_deploy *d = *fy_conn_deploy(c);
  fy_agent *a = fy_conn_agent(c);
  json_t *j;
  char err[300];
  int rc;
  if (!d || d->phase != PH_BLOBS) return refuse(c, FY_EPROTO, "blob-begin without a plan");
  d->progress_ms = uv_now(a->loop);
  if (d->io_busy || d->fill_len) return defer_frame(c, d, f); /* after the blob before it is written */
  if ((rc = fy_msg_parse(f, &j, err, sizeof err)) != FY_OK) return refuse(c, rc, "%s", err);
  fy_blob_begin_msg bb;
  rc = fy_blob_begin_decode(j, &bb, err, sizeof err);
  json_decref(j);
  if (rc != FY_OK) return refuse(c, rc, "%s", err);
  fy_digest dg = bb.digest;
  uint64_t off = bb.offset;
  char dss[FY_DIGEST_STR];
  fy_digest_format(&dg, dss);
  int idx = -1;
  for (size_t i = 0; i < d->manifest.nlayers; i++)
    if (d->need[i] && fy_digest_equal(&d->manifest.layers[i].digest, &dg)) idx = (int)i;
  if (idx < 0) return refuse(c, FY_EPROTO, "blob-begin: %s is not a blob this deploy still needs", dss);
  for (fy_deploy *o = a->deploys; o; o = o->next)
    if (o != d && o->owns_blob && fy_digest_equal(&o->owned, &dg))
      return refuse(c, FY_EBUSY, "blob %s is being received on another connection; push again when that transfer is done", dss);
  const fy_descriptor *l = &d->manifest.layers[idx];
  uint64_t have = fy_store_partial(&a->store, &l->digest, l->size);
  if (off != have)
    return refuse(c, FY_EPROTO, "blob-begin: offset %llu, but %llu bytes of %s are here", (unsigned long long)off,
                  (unsigned long long)have, dss);
  d->cur = -1;
  d->owns_blob = 1;
  d->owned = dg;
  d->io_layer = idx;
  d->io_digest = l->digest;
  d->io_size = l->size;
  d->io_offset = off;
  return blob_io_queue(c, d, IO_OPEN);
}

int fy_deploy_on_blob(fy_agent_conn *c, const fy_frame *f) {
  fy_deploy *d = *fy_conn_deploy(c);
  if (!d || d->phase != PH_BLOBS) return refuse(c, FY_EPROTO, "blob data without blob-begin");
  d->progress_ms = uv_now(d->agent->loop);
  if (d->io_busy && d->io_op == IO_OPEN) return defer_frame(c, d, f);
  if (d->cur < 0) return refuse(c, FY_EPROTO, "blob data without blob-begin");
  if (d->fill_len + f->len > BLOB_BATCH && d->fill_len > 0) return defer_frame(c, d, f); /* the batch is full */
  if (d->fill_len + f->len > d->fill_cap) {
    size_t want = f->len > BLOB_BATCH ? f->len : BLOB_BATCH;
    uint8_t *p = realloc(d->fill, want);
    if (!p) return refuse(c, FY_ENOMEM, "out of memory");
    d->fill = p;
    d->fill_cap = want;
  }
  if (f->len) memcpy(d->fill + d->fill_len, f->payload, f->len);
  d->fill_len += f->len;
  return blob_flush(c, d) == FY_OK ? FY_OK : FY_ECANCELED;
}

/* --- commit: unpack on a worker, then switch, start, settle ---------------------------- */

static json_t *run_json(fy_deploy *d) {
  json_t *argv = json_array(), *env = json_array(), *blobs = json_array();
  char ds[FY_DIGEST_STR];
  for (size_t i = 0; i < d->config.nentrypoint; i++) json_array_append_new(argv, json_string(d->config.entrypoint[i]));
  for (size_t i = 0; i < d->config.ncmd; i++) json_array_append_new(argv, json_string(d->config.cmd[i]));
  const json_t *senv = json_object_get(d->settings, "env");
  for (size_t i = 0; i < d->config.nenv; i++) { /* the image's, unless the settings set the key */
    const char *eq = strchr(d->config.env[i], '=');
    char key[160];
    snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - d->config.env[i]) : 0, d->config.env[i]);
    if (!eq || !json_object_get(senv, key)) json_array_append_new(env, json_string(d->config.env[i]));
  }
  const char *sk;
  const json_t *sv;
  json_object_foreach((json_t *)senv, sk, sv) {
    char kv[FY_SETTINGS_VALUE_MAX + 200];
    snprintf(kv, sizeof kv, "%s=%s", sk, json_string_value(sv));
    json_array_append_new(env, json_string(kv));
  }
  json_array_append_new(blobs, json_string(d->manifest_digest));
  json_array_append_new(blobs, json_string(fy_digest_format(&d->manifest.config.digest, ds)));
  for (size_t i = 0; i < d->manifest.nlayers; i++)
    json_array_append_new(blobs, json_string(fy_digest_format(&d->manifest.layers[i].digest, ds)));
  /* The health check as it runs (the image's, or the plan's where the node allows that): the
   * supervisor keeps running it after the settle window. */
  fy_run_meta m = {.argv = argv, .env = env, .workdir = d->config.workdir, .user = d->config.user, .blobs = blobs,
                   .manifest = d->manifest_digest, .version = d->version, .health_port = d->health_port,
                   .stop_signal = d->stop_signal, .stop_timeout_ms = d->config.stop_timeout_ms, .spec = d->spec,
                   .options = d->options, .health_interval_ms = d->config.health_interval_ms, .restart = d->restart,
                   .mounts = d->mounts};
  json_t *health = d->health_argv ? json_deep_copy(d->health_argv) : json_array();
  m.health = health;
  m.nhealth = json_array_size(health);
  m.health_text = d->health_cmd;
  json_t *run = argv && env && blobs && health ? fy_run_meta_encode(&m) : NULL;
  json_decref(health);
  json_decref(argv);
  json_decref(env);
  json_decref(blobs);
  return run;
}

/* The plan's files into the release root (new files only: the image's own are never replaced
 * from outside), and its secrets into RELEASE/secrets (0700, each 0600), which the runtime puts
 * on a tmpfs at /run/secrets. On the worker pool; the message in d->work_err. */
static int write_settings(fy_deploy *d, int rootfd, const char *release_dir) {
  const char *k;
  const json_t *v;
  unsigned char *b;
  size_t n;
  int rc = FY_OK;
  json_object_foreach(json_object_get(d->settings, "files"), k, v) {
    char parent[FY_APP_PATH_MAX];
    const char *slash = strrchr(k, '/');
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - k), k);
    int pfd = parent[0] ? fy_walk_in_root(rootfd, parent + 1, O_RDONLY | O_DIRECTORY, 1) : dup(rootfd);
    if (pfd < 0) {
      fy_text_fmt(d->work_err, sizeof d->work_err, "files: cannot make %s in the release: %s", parent, strerror(errno));
      return FY_EIO;
    }
    struct stat st;
    if (fstatat(pfd, slash + 1, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      close(pfd);
      fy_text_fmt(d->work_err, sizeof d->work_err, "files: %s is one of the image's own files; settings never replace them", k);
      return FY_EPOLICY;
    }
    if ((rc = fy_settings_bytes(v, &b, &n)) != FY_OK) {
      close(pfd);
      return rc;
    }
    int fd = openat(pfd, slash + 1, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    ssize_t w = fd >= 0 ? write(fd, b, n) : -1;
    int ok = fd >= 0 && w == (ssize_t)n && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    close(pfd);
    free(b);
    if (!ok) {
      fy_text_fmt(d->work_err, sizeof d->work_err, "files: cannot write %s: %s", k, strerror(errno));
      return FY_EIO;
    }
  }
  const json_t *secrets = json_object_get(d->settings, "secrets");
  if (!json_object_size(secrets)) return FY_OK;
  char sdir[4500], path[4600];
  fy_text_fmt(sdir, sizeof sdir, "%s/secrets", release_dir);
  if (mkdir(sdir, 0700) != 0 && errno != EEXIST) {
    fy_text_fmt(d->work_err, sizeof d->work_err, "cannot create %s: %s", sdir, strerror(errno));
    return FY_EIO;
  }
  json_object_foreach((json_t *)secrets, k, v) {
    if ((rc = fy_settings_bytes(v, &b, &n)) != FY_OK) return rc;
    fy_text_fmt(path, sizeof path, "%s/%s", sdir, k);
    rc = fy_file_write_atomic(path, b, n, 0600);
    memset(b, 0, n);
    free(b);
    if (rc != FY_OK) {
      fy_text_fmt(d->work_err, sizeof d->work_err, "cannot store secret %s: %s", k, fy_strerror(rc));
      return rc;
    }
  }
  return FY_OK;
}

/* On the worker pool: unpack into a fresh release, and for an agent upgrade check the new
 * binary (it runs it twice and waits for it). */
static void unpack_work(void *ud) {
  fy_deploy *d = ud;
  fy_agent *a = d->agent;
  char dir[4200], partial[4400], final[4400], rootfs[4500], layer[4300];
  int rootfd = -1, rc;
  fy_app_dir(a, d->app->name, dir, sizeof dir);
  snprintf(partial, sizeof partial, "%s/releases/%s.partial", dir, d->release);
  snprintf(final, sizeof final, "%s/releases/%s", dir, d->release);
  snprintf(rootfs, sizeof rootfs, "%s/rootfs", partial);
  if ((rc = fy_mkdirs(rootfs, 0755)) != FY_OK) {
    fy_text_fmt(d->work_err, sizeof d->work_err, "%s: %s", rootfs, fy_strerror(rc));
    goto out;
  }
  rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) { rc = fy_err_from_errno(errno); goto out; }
  fy_unpack_opts o = {.max_bytes = a->cfg.max_release_bytes, .window_log_max = a->cfg.zstd_window_log_max,
                      .chown = geteuid() == 0};
  fy_unpack_stats st = {0};
  for (size_t i = 0; i < d->manifest.nlayers; i++) {
    const fy_descriptor *l = &d->manifest.layers[i];
    fy_store_path(&a->store, &l->digest, layer, sizeof layer);
    char why[512];
    rc = fy_unpack_layer(rootfd, layer, l->kind, &o, &st, why, sizeof why);
    if (rc != FY_OK) {
      snprintf(d->work_err, sizeof d->work_err, "layer %zu: %s", i, why);
      goto out;
    }
  }
  if (st.skipped_devices)
    fy_log("info", "app %s: %llu device node(s) in the layers skipped (the runtime gives every app its own /dev)", d->app->name,
           (unsigned long long)st.skipped_devices);
  if (st.xattrs_dropped)
    fy_log("info", "app %s: %llu extended attribute(s) not applied, the first %s (kept: user.* and security.capability)",
           d->app->name, (unsigned long long)st.xattrs_dropped, st.dropped_xattr);
  if ((rc = write_settings(d, rootfd, partial)) != FY_OK) goto out;
  json_t *run = run_json(d);
  char *text = run ? json_dumps(run, JSON_INDENT(1)) : NULL;
  char rp[4500];
  snprintf(rp, sizeof rp, "%s/run.json", partial);
  rc = text ? fy_file_write_atomic(rp, text, strlen(text), 0644) : FY_ENOMEM;
  free(text);
  if (rc == FY_OK) rc = fy_file_write_atomic((snprintf(rp, sizeof rp, "%s/config.json", partial), rp), d->config_raw, d->config_len, 0644);
  if (rc != FY_OK) {
    json_decref(run);
    snprintf(d->work_err, sizeof d->work_err, "writing run.json: %s", fy_strerror(rc));
    goto out;
  }
  if (!d->agent_upgrade) {
    /* The new release must be able to start (its program a regular file of this node's
     * architecture, its User in its own /etc files) before the old one is stopped. */
    fy_launch_in in = {.run = run, .rootfs = rootfs, .app = d->app->name, .release = d->release, .node = a->cfg.name,
                       .cfg = &a->cfg, .facts = &a->facts, .is_root = geteuid() == 0, .self_exe = a->self_path};
    fy_launch_plan plan;
    char why[300];
    rc = fy_launch_plan_make(&in, &plan, why, sizeof why);
    fy_launch_plan_free(&plan);
    if (rc != FY_OK) {
      fy_text_fmt(d->work_err, sizeof d->work_err, "%s (the running release was not stopped)", why);
      rc = FY_EEXEC;
    }
  }
  json_decref(run);
  if (rc != FY_OK) goto out;
  sync(); /* the tree, before the rename makes it a release (cheap next to the unpack) */
  if (rename(partial, final) != 0) {
    rc = fy_err_from_errno(errno);
    snprintf(d->work_err, sizeof d->work_err, "rename: %s", strerror(errno));
  }
out:
  if (rootfd >= 0) close(rootfd);
  if (rc != FY_OK) {
    char rel[4300];
    snprintf(rel, sizeof rel, "%s/releases", dir);
    int dfd = open(rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char name[FY_RELEASE_ID_MAX + 16];
    snprintf(name, sizeof name, "%s.partial", d->release);
    if (dfd >= 0) {
      if (fy_remove_tree(dfd, name) != FY_OK) d->work_err[sizeof d->work_err - 1] = 0;
      close(dfd);
    }
  }
  d->work_rc = rc;
  if (rc == FY_OK && d->agent_upgrade) {
    char bin[4500];
    snprintf(bin, sizeof bin, "%s/releases/%s/rootfs/ferryd", dir, d->release);
    d->work_rc = fy_upgrade_prepare(a, bin, d->upgrade_timeout_s, d->agent_digest, d->work_err, sizeof d->work_err);
    if (d->work_rc != FY_OK) d->agent_digest[0] = '\0';
  }
}

static void rollback_now(fy_deploy *d, int code, const char *why, int64_t exit_code);

static void health_done(fy_deploy *d, int ok, const char *why) {
  d->app->on_exit = NULL;
  if (ok) {
    d->app->backoff_ms = 0;
    send_result(d, FY_RESULT_DEPLOYED, FY_OK, "", INT64_MIN);
  } else {
    rollback_now(d, FY_EUNHEALTHY, why, INT64_MIN);
  }
}

static void settle_exit(fy_app *app, int64_t status, int sig, void *ud) {
  fy_deploy *d = ud;
  char why[400];
  uv_timer_stop(&d->timer);
  if (sig && app->exit_reason[0])
    snprintf(why, sizeof why, "the release was killed within the %llu ms settle time: %s", (unsigned long long)d->settle_ms, app->exit_reason);
  else if (sig) snprintf(why, sizeof why, "the release exited on signal %d within the %llu ms settle time", sig, (unsigned long long)d->settle_ms);
  else snprintf(why, sizeof why, "the release exited with status %lld within the %llu ms settle time", (long long)status, (unsigned long long)d->settle_ms);
  rollback_now(d, FY_EUNHEALTHY, why, sig ? 128 + sig : status);
}

static void health_answer(fy_app *app, int ok, const char *why, void *ud) {
  fy_deploy *d = ud;
  (void)app;
  d->hcheck = NULL;
  if (d->phase != PH_HEALTH || d->closing) return;
  health_done(d, ok, ok ? "" : why);
}

static void settle_over(uv_timer_t *t) {
  fy_deploy *d = t->data;
  d->phase = PH_HEALTH;
  if (!d->health_port && !d->health_argv) {
    health_done(d, 1, "");
    return;
  }
  progress(d, FY_STEP_HEALTH, 0, 0);
  d->hcheck = fy_hcheck_start(d->app, d->health_port ? NULL : d->health_argv, d->health_cmd, d->health_port, HEALTH_TIMEOUT_MS,
                              health_answer, d);
  if (!d->hcheck) health_done(d, 0, "out of memory for the health check");
}

static void start_new(fy_app *app, void *ud) {
  fy_deploy *d = ud;
  if (d->agent->stopping) { /* current still names the old release, which starts with the next agent */
    send_result(d, FY_RESULT_FAILED, FY_ECANCELED, "the agent is shutting down", INT64_MIN);
    return;
  }
  progress(d, FY_STEP_SWITCHING, 0, 0);
  int rc = fy_app_switch(app, d->release, d->old_release[0] ? d->old_release : d->old_previous);
  if (rc != FY_OK) {
    send_result(d, FY_RESULT_FAILED, rc, "cannot switch the current release", INT64_MIN);
    return;
  }
  fy_log("info", "app %s: current -> %s", app->name, d->release);
  app->health_last_failure[0] = '\0'; /* a new release starts with a clean record */
  /* The counter moves with the switch; a health rollback below goes back without lowering it. */
  if (fy_trust_record(d->agent, app->name, d->version) != FY_OK)
    fy_log("warn", "app %s: cannot record version %llu", app->name, (unsigned long long)d->version);
  if (fy_app_start(app) != FY_OK) {
    char why[300];
    snprintf(why, sizeof why, "%s", app->exec_error);
    rollback_now(d, FY_EEXEC, why, INT64_MIN);
    return;
  }
  d->phase = PH_SETTLE;
  progress(d, FY_STEP_SETTLING, 0, d->settle_ms);
  app->on_exit = settle_exit;
  app->on_exit_ud = d;
  uv_timer_start(&d->timer, settle_over, d->settle_ms, 0);
}

struct rb {
  fy_deploy *d;
  int code;
  char why[400];
  int64_t exit_code;
};

static void rollback_stopped(fy_app *app, void *ud) {
  struct rb *r = ud;
  fy_deploy *d = r->d;
  char msg[600];
  if (d->old_release[0]) {
    if (fy_app_switch(app, d->old_release, d->old_previous) != FY_OK) fy_log("warn", "app %s: rollback switch failed", app->name);
    if (!d->agent->stopping && fy_app_start(app) != FY_OK) fy_log("warn", "app %s: the previous release does not start either: %s", app->name, app->exec_error);
    snprintf(msg, sizeof msg, "%s; rolled back to %s", r->why, d->old_release);
    send_result(d, FY_RESULT_ROLLED_BACK, r->code, msg, r->exit_code);
  } else {
    if (fy_app_switch(app, "", "") != FY_OK) fy_log("warn", "app %s: cannot clear current", app->name);
    app->state = FY_APP_FAILED;
    snprintf(msg, sizeof msg, "%s; there is no previous release to go back to", r->why);
    send_result(d, FY_RESULT_FAILED, r->code, msg, r->exit_code);
  }
  free(r);
}

static void rollback_now(fy_deploy *d, int code, const char *why, int64_t exit_code) {
  struct rb *r = calloc(1, sizeof *r);
  d->phase = PH_STOPPING;
  d->app->on_exit = NULL;
  if (!r) {
    send_result(d, FY_RESULT_FAILED, FY_ENOMEM, why, exit_code);
    return;
  }
  r->d = d;
  r->code = code;
  r->exit_code = exit_code;
  snprintf(r->why, sizeof r->why, "%s", why);
  fy_app_stop(d->app, rollback_stopped, r);
}

static void unpack_done(void *ud) {
  fy_deploy *d = ud;
  d->open_handles--; /* the work held the deploy; its timer still does */
  if (d->agent->stopping) {
    send_result(d, FY_RESULT_FAILED, FY_ECANCELED, "the agent is shutting down", INT64_MIN);
    return;
  }
  if (d->work_rc != FY_OK) {
    send_result(d, FY_RESULT_FAILED, d->work_rc, d->work_err, INT64_MIN);
    return;
  }
  fy_log("info", "app %s: release %s unpacked", d->app->name, d->release);
  if (d->agent_upgrade) { /* checked and installed on the worker */
    fy_agent *a = d->agent;
    if (fy_trust_record(a, "ferryd", d->version) != FY_OK) fy_log("warn", "cannot record the agent's version");
    send_result(d, FY_RESULT_UPGRADING, FY_OK, "re-executing the new agent", INT64_MIN);
    fy_upgrade_exec_later(a, 300);
    return;
  }
  snprintf(d->old_release, sizeof d->old_release, "%s", d->app->release);
  snprintf(d->old_previous, sizeof d->old_previous, "%s", d->app->previous);
  d->phase = PH_STOPPING;
  fy_app_stop(d->app, start_new, d);
}

int fy_deploy_on_commit(fy_agent_conn *c, const fy_frame *f) {
  fy_deploy *d = *fy_conn_deploy(c);
  (void)f;
  if (!d || d->phase != PH_BLOBS) return refuse(c, FY_EPROTO, "commit without a plan");
  if (d->io_busy || d->fill_len) return defer_frame(c, d, f); /* after the last bytes are written */
  for (size_t i = 0; i < d->manifest.nlayers; i++) {
    if (d->need[i]) {
      char ds[FY_DIGEST_STR];
      return refuse(c, FY_EPROTO, "commit before blob %s arrived", fy_digest_format(&d->manifest.layers[i].digest, ds));
    }
  }
  if (fy_app_new_release_id(d->agent, d->app->name, d->manifest_digest, d->release, sizeof d->release) != FY_OK)
    return refuse(c, FY_EEXIST, "cannot name the new release");
  d->phase = PH_UNPACK;
  d->app->transfer = 0; /* committed: no longer superseded by a new plan */
  fy_conn_hold(c, 1);
  d->open_handles++;
  if (fy_work_queue(d->agent->loop, unpack_work, unpack_done, d) != FY_OK) {
    d->open_handles--;
    return refuse(c, FY_ENOMEM, "cannot queue the unpack");
  }
  progress(d, FY_STEP_UNPACKING, 0, d->manifest.layers_size);
  return FY_OK;
}

/* --- requests: logs, rollback ---------------------------------------------------------- */

struct manual_rb {
  char app[FY_APP_NAME_MAX]; /* found again by name: at shutdown the record may go meanwhile */
  uint64_t conn;      /* may be gone by the time the app stopped */
  fy_agent *a;
  char to[FY_RELEASE_ID_MAX], from[FY_RELEASE_ID_MAX];
  int rc;
  char why[256];
};

static void manual_rb_answer(void *ud);

static void manual_rb_stopped(fy_app *app, void *ud) {
  struct manual_rb *m = ud;
  int rc = fy_app_switch(app, m->to, m->from);
  const char *why = "";
  if (rc == FY_OK && fy_app_start(app) != FY_OK) why = app->exec_error;
  fy_log("info", "app %s: rolled back by hand to %s", app->name, m->to);
  m->rc = rc;
  snprintf(m->why, sizeof m->why, "%s", why);
  app->deploying = 0;
  fy_app_gc(m->a, manual_rb_answer, m);
  fy_app_released(app);
}

/* After the GC: the node's state is final when the pusher hears the answer. */
static void manual_rb_answer(void *ud) {
  struct manual_rb *m = ud;
  fy_app *app = fy_app_find(m->a, m->app);
  int rc = m->rc;
  fy_agent_conn *c = fy_conn_find(m->a, m->conn);
  if (c && app) {
    fy_result_msg rm = {.result = rc == FY_OK ? FY_RESULT_ROLLED_BACK : FY_RESULT_FAILED, .app = app->name, .code = rc,
                        .message = m->why, .release = app->release, .previous = app->previous};
    json_t *j = fy_result_encode(&rm);
    fy_conn_hold(c, 0);
    if (fy_conn_send_json(c, FY_FT_RESULT, j) != FY_OK) fy_log("warn", "cannot send the rollback result");
    json_decref(j);
  }
  free(m);
}

#define LOGS_REPLY_MAX (512u * 1024u)

/* ferry logs: the last lines in a reply; with follow (protocol 4), the same in an output frame
 * and then every new line the query wants, until the pusher closes. */
static int logs_request(fy_agent_conn *c, fy_app *ap, const fy_request_msg *rq) {
  fy_agent *a = fy_conn_agent(c);
  fy_log_query q = {.tail = rq->tail, .timestamps = rq->timestamps, .stream = rq->stream, .since_s = rq->since_s};
  if (rq->follow && fy_conn_version(c) < 4) return refuse(c, FY_EUNSUPPORTED, "following a log needs protocol 4");
  char *log = fy_app_log_read(a, ap->name, &q, LOGS_REPLY_MAX);
  if (!log) return refuse(c, FY_ENOMEM, "out of memory");
  int rc;
  if (rq->follow) {
    size_t n = strlen(log);
    char *out = malloc(n + 1);
    rc = out ? FY_OK : FY_ENOMEM;
    if (out) {
      out[0] = FY_OUT_STDOUT;
      memcpy(out + 1, log, n);
      rc = fy_conn_send(c, FY_FT_OUTPUT, out, n + 1);
      free(out);
    }
    if (rc == FY_OK) rc = fy_applog_follow(ap, fy_conn_id(c), &q);
    if (rc == FY_OK) fy_conn_hold(c, 1); /* quiet while the app is: no idle timeout */
  } else {
    /* JSON escapes a control byte as six: a log of them can be far larger than its bytes. Less
     * of the tail, until the reply fits a frame. */
    json_t *r = NULL;
    for (size_t max = LOGS_REPLY_MAX; max >= 4096; max /= 4) {
      size_t n = strlen(log);
      const char *from = log + (n > max ? n - max : 0);
      while (from > log && from[-1] != '\n' && *from) from++; /* whole lines */
      json_decref(r);
      r = json_pack("{s:s, s:s, s:s}", "app", ap->name, "release", ap->release, "log", from);
      char *text = r ? json_dumps(r, JSON_COMPACT) : NULL;
      size_t len = text ? strlen(text) : 0;
      free(text);
      if (!r || len < FY_FRAME_MAX - 1024) break;
    }
    rc = r ? fy_conn_send_json(c, FY_FT_REPLY, r) : FY_ENOMEM;
    json_decref(r);
  }
  free(log);
  return rc == FY_OK ? FY_OK : refuse(c, rc, "cannot send the log");
}

int fy_request_on_request(fy_agent_conn *c, const fy_frame *f) {
  fy_agent *a = fy_conn_agent(c);
  json_t *j;
  char err[600];
  int rc;
  if ((rc = fy_msg_parse(f, &j, err, sizeof err)) != FY_OK) return refuse(c, rc, "%s", err);
  fy_request_msg rq;
  if ((rc = fy_request_decode(j, &rq, err, sizeof err)) != FY_OK) {
    json_decref(j);
    return refuse(c, rc, "%s", err);
  }
  fy_app *ap = fy_app_find(a, rq.app);
  if (ap) fy_app_recover_now(ap);
  if (ap && ap->removing) {
    json_decref(j);
    return refuse(c, FY_EBUSY, "%s is being removed", ap->name);
  }
  if (fy_request_is_lifecycle(rq.op)) { /* stop, start, restart, remove: lifecycle.c */
    rc = fy_lifecycle_request(c, &rq, ap);
    json_decref(j);
    return rc;
  }
  if (!ap || !ap->release[0]) {
    rc = refuse(c, FY_ENOAPP, "no app '%s' on %s", rq.app, a->name);
    json_decref(j);
    return rc;
  }
  if (rq.op == FY_REQ_LOGS) {
    json_decref(j);
    return logs_request(c, ap, &rq);
  }
  if (rq.op == FY_REQ_EXEC) {
    rc = fy_exec_request(c, &rq, ap); /* rq borrows its argv from j */
    json_decref(j);
    return rc;
  }
  json_decref(j);
  {
    if (ap->deploying) return refuse(c, FY_EBUSY, "a deploy of %s is in progress", ap->name);
    if (!ap->previous[0] || strcmp(ap->previous, ap->release) == 0)
      return refuse(c, FY_ENOAPP, "app %s has no previous release to roll back to", ap->name);
    if ((rc = fy_trust_check_rollback(a, ap->name, ap->previous, err, sizeof err)) != FY_OK) return refuse(c, rc, "%s", err);
    struct manual_rb *m = calloc(1, sizeof *m);
    if (!m) return refuse(c, FY_ENOMEM, "out of memory");
    m->conn = fy_conn_id(c);
    m->a = a;
    snprintf(m->app, sizeof m->app, "%s", ap->name);
    snprintf(m->to, sizeof m->to, "%s", ap->previous);
    snprintf(m->from, sizeof m->from, "%s", ap->release);
    ap->deploying = 1;
    fy_conn_hold(c, 1);
    fy_app_stop(ap, manual_rb_stopped, m);
    return FY_OK;
  }
}

/* --- shutdown ------------------------------------------------------------------------------ */

void fy_deploys_shutdown(fy_agent *a) {
  /* deploy_close frees nothing before its close callbacks: the list stays walkable. */
  for (fy_deploy *d = a->deploys; d; d = d->next) {
    if (d->closing) continue;
    switch (d->phase) {
    case PH_SETTLE:
    case PH_HEALTH:
      /* current names the new release already; the next agent starts it, as after a power cut */
      uv_timer_stop(&d->timer);
      send_result(d, FY_RESULT_FAILED, FY_ECANCELED, "the agent is shutting down", INT64_MIN);
      break;
    default:
      /* transfers end with their connection; an unpack or a stop in progress ends in its own
       * callback, which sees a->stopping */
      break;
    }
  }
}
