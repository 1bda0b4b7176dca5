#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ferry/fsutil.h"
#include "ferry/http.h"
#include "ferry/mqtt.h"
#include "ferry/runspec.h"
#include "ferry/selector.h"
#include "ferry/yaml.h"

#define CONFIG_MAX_BYTES (256u * 1024u)

#define REQUIRE FY_REQUIRE

void fy_config_defaults(fy_agent_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->listen_host, sizeof c->listen_host, "0.0.0.0");
  c->listen_port = 7433;
  snprintf(c->topic_prefix, sizeof c->topic_prefix, "ferry");
  c->broker_keepalive_ms = 30000;
  snprintf(c->state_dir, sizeof c->state_dir, "/var/lib/ferry");
  snprintf(c->identity, sizeof c->identity, "/etc/ferry/identity");
  snprintf(c->board, sizeof c->board, "auto");
  snprintf(c->probe_root, sizeof c->probe_root, "/");
  c->isolation = FY_ISOLATION_AUTO;
  c->max_release_bytes = 2ull << 30;
  c->partial_max_age_ms = 24ull * 3600 * 1000;
  c->zstd_window_log_max = 27;
  c->handshake_timeout_ms = 10000;
  c->idle_timeout_ms = 60000;
  c->max_connections = 64;
  c->max_handshakes = 8;
  c->frame_memory = 16u << 20;
  c->max_handshakes_per_source = 4;
  c->connection_memory = 4ull << 20;
}

static int is_scalar(const fy_ynode *n) { return n && n->kind == FY_YAML_SCALAR; }

/* Resolves a relative path against the config file's directory. */
static int set_path(char *dst, size_t cap, const char *cfg_dir, const char *v) {
  int n = v[0] == '/' ? snprintf(dst, cap, "%s", v) : snprintf(dst, cap, "%s/%s", cfg_dir, v);
  return n > 0 && (size_t)n < cap;
}

static int parse_listen(const char *s, fy_agent_config *c) {
  if (strcmp(s, "none") == 0) {
    c->listen_none = 1;
    return 1;
  }
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || (size_t)(colon - s) >= sizeof c->listen_host) return 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end || port < 0 || port > 65535) return 0;
  memcpy(c->listen_host, s, (size_t)(colon - s));
  c->listen_host[colon - s] = '\0';
  c->listen_port = (int)port;
  return 1;
}

/* Long on purpose: the agent config's schema reads top to bottom here, one FY_REQUIRE per rule with
 * the line it points at (docs/device-layout.md lists the same keys in the same order). */
int fy_config_load(const char *path, fy_agent_config *c, char *err, size_t errlen) {
  static const char *const top[] = {"name", "listen", "state_dir", "identity", "labels", "runtime",
                                    "limits", "board", "probe_root", "trust", "allow_exec", "devices", "registry_ca",
                                    "registry_mirrors", "broker", NULL};
  static const char *const runtime_keys[] = {"isolation", "exec_wrapper", "allow_pusher_commands", NULL};
  static const char *const trust_keys[] = {"keys", "require_signature", "allow_downgrade", NULL};
  static const char *const limit_keys[] = {"max_release_bytes", "zstd_window_log_max",
                                           "handshake_timeout", "idle_timeout", "max_connections", "connection_memory",
                                           "max_handshakes", "max_handshakes_per_source", "frame_memory",
                                           "partial_max_age", NULL};
  char *text = NULL, *dircopy = NULL, yerr[256];
  size_t len;
  fy_ynode *root = NULL;
  const fy_ynode *n, *v;
  const char *bad;
  int ret, line = 1;

  fy_config_defaults(c);
  ret = fy_file_read(path, CONFIG_MAX_BYTES, &text, &len);
  if (ret != FY_OK) {
    snprintf(err, errlen, "%s: %s", path, ret == FY_ETOOBIG ? "larger than 256 KiB" : fy_strerror(ret));
    return ret == FY_ENOENT ? FY_ENOENT : FY_ECONFIG;
  }
  if (fy_yaml_load(text, len, &root, yerr, sizeof yerr) != FY_OK) {
    snprintf(err, errlen, "%s:%s", path, yerr + 4 /* "line" */ + 1);
    ret = FY_ECONFIG;
    goto cleanup;
  }
  ret = FY_OK;
  dircopy = strdup(path);
  if (!dircopy) { ret = FY_ENOMEM; goto cleanup; }
  /* Absolute, so that paths stay right after a chdir (workloads run in their release). */
  char cfg_abs[FY_CFG_PATH];
  const char *cfg_dir = realpath(dirname(dircopy), cfg_abs) ? cfg_abs : dirname(dircopy);

  REQUIRE(root->kind == FY_YAML_MAP, root->line, "expected a map of settings (name: ..., listen: ...)");
  bad = fy_yaml_unknown_key(root, top, &line);
  REQUIRE(!bad, line, "unknown key '%s' (expected one of: name, listen, state_dir, identity, labels, "
                      "runtime, limits, trust, board, probe_root, allow_exec, devices, registry_ca, registry_mirrors, broker)", bad);

  n = fy_yaml_get(root, "name");
  REQUIRE(is_scalar(n) && strlen(n->str) > 0 && strlen(n->str) < sizeof c->name, n ? n->line : 1,
          "'name' is required: the node's name, as in its certificate");
  memcpy(c->name, n->str, strlen(n->str) + 1);

  if ((n = fy_yaml_get(root, "listen")))
    REQUIRE(is_scalar(n) && parse_listen(n->str, c), n->line,
            "listen: expected HOST:PORT such as 0.0.0.0:7433, or none, got '%s'", is_scalar(n) ? n->str : "(not a string)");
  if ((n = fy_yaml_get(root, "broker"))) {
    static const char *const broker_keys[] = {"url", "topic_prefix", "keepalive", "ca", NULL};
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "broker: expected a map such as {url: mqtts://broker.lan:8883, topic_prefix: ferry/site1}");
    bad = fy_yaml_unknown_key(n, broker_keys, &line);
    REQUIRE(!bad, line, "unknown key 'broker.%s' (expected url, topic_prefix, keepalive, ca)", bad);
    v = fy_yaml_get(n, "url");
    REQUIRE(is_scalar(v) && fy_mqtt_url_parse(v->str, c->broker_host, sizeof c->broker_host, &c->broker_port) == FY_OK, v ? v->line : n->line,
            "broker.url: expected mqtts://HOST[:PORT] (TLS; the node's identity is its client certificate), got '%s'",
            is_scalar(v) ? v->str : "(missing)");
    if ((v = fy_yaml_get(n, "topic_prefix")))
      REQUIRE(is_scalar(v) && strlen(v->str) < 200 && fy_mqtt_topic_valid(v->str, strlen(v->str), 0) && v->str[0] != '/' &&
                  v->str[strlen(v->str) - 1] != '/',
              v->line, "broker.topic_prefix: expected topic levels such as ferry/site1 (no wildcards, no leading or trailing /)");
    if (v) snprintf(c->topic_prefix, sizeof c->topic_prefix, "%s", v->str);
    if ((v = fy_yaml_get(n, "keepalive")))
      REQUIRE(is_scalar(v) && fy_parse_duration_ms(v->str, &c->broker_keepalive_ms) == FY_OK && c->broker_keepalive_ms >= 1000 &&
                  c->broker_keepalive_ms <= 3600000,
              v->line, "broker.keepalive: expected a duration from 1s to 1h, such as 30s");
    if ((v = fy_yaml_get(n, "ca")))
      REQUIRE(is_scalar(v) && v->str[0] && set_path(c->broker_ca, sizeof c->broker_ca, cfg_dir, v->str), v->line,
              "broker.ca: expected the path of a PEM file with the CA certificates of a broker whose certificate another CA issued");
    c->have_broker = 1;
  }
  REQUIRE(!c->listen_none || c->have_broker, fy_yaml_get(root, "listen")->line,
          "listen: none leaves no way to reach this node: set broker: too");
  if ((n = fy_yaml_get(root, "state_dir")))
    REQUIRE(is_scalar(n) && n->str[0] && set_path(c->state_dir, sizeof c->state_dir, cfg_dir, n->str), n->line,
            "state_dir: expected a directory path");
  if ((n = fy_yaml_get(root, "identity")))
    REQUIRE(is_scalar(n) && n->str[0] && set_path(c->identity, sizeof c->identity, cfg_dir, n->str), n->line,
            "identity: expected a directory holding ca.pem, cert.pem and key.pem");
  if ((n = fy_yaml_get(root, "probe_root")))
    REQUIRE(is_scalar(n) && n->str[0] && set_path(c->probe_root, sizeof c->probe_root, cfg_dir, n->str), n->line,
            "probe_root: expected a directory path");
  if ((n = fy_yaml_get(root, "board")))
    REQUIRE(is_scalar(n) && n->str[0] && strlen(n->str) < sizeof c->board, n->line,
            "board: expected 'auto' or a profile name from boards/ (rpi4, graviton2, ...)");
  if (n) memcpy(c->board, n->str, strlen(n->str) + 1);

  if ((n = fy_yaml_get(root, "registry_ca")))
    REQUIRE(is_scalar(n) && n->str[0] && set_path(c->registry_ca, sizeof c->registry_ca, cfg_dir, n->str), n->line,
            "registry_ca: expected the path of a PEM file of CA certificates");
  if ((n = fy_yaml_get(root, "registry_mirrors"))) {
    REQUIRE(n->kind == FY_YAML_SEQ && n->n <= FY_CFG_MAX_MIRRORS, n->line,
            "registry_mirrors: expected a list of at most %d URLs such as [https://mirror.lan:5000]", FY_CFG_MAX_MIRRORS);
    for (size_t i = 0; i < n->n; i++) {
      const fy_ynode *m = n->items[i];
      fy_url u;
      REQUIRE(is_scalar(m) && strlen(m->str) < sizeof c->mirrors[i] && fy_url_parse(m->str, &u) == FY_OK && u.https &&
                  strcmp(u.path, "/") == 0,
              m->line, "registry_mirrors: '%s' is not https://HOST[:PORT]", is_scalar(m) ? m->str : "(not a string)");
      snprintf(c->mirrors[i], sizeof c->mirrors[i], "%s", m->str);
    }
    c->nmirrors = n->n;
  }

  if ((n = fy_yaml_get(root, "allow_exec")))
    REQUIRE(is_scalar(n) && fy_parse_bool(n->str, &c->allow_exec) == FY_OK, n->line,
            "allow_exec: expected true or false (ferry exec runs commands no signature covers; default false)");

  if ((n = fy_yaml_get(root, "devices"))) {
    REQUIRE(n->kind == FY_YAML_SEQ && n->n <= 16, n->line, "devices: expected a list of at most 16 device paths such as [/dev/gpiomem, /dev/i2c-1]");
    for (size_t i = 0; i < n->n; i++) {
      const fy_ynode *d = n->items[i];
      REQUIRE(is_scalar(d) && fy_app_path_clean(d->str) && strncmp(d->str, "/dev/", 5) == 0, d->line,
              "devices: '%s' is not a clean path under /dev", is_scalar(d) ? d->str : "(not a string)");
      snprintf(c->devices[i], sizeof c->devices[i], "%s", d->str);
    }
    c->ndevices = n->n;
  }

  if ((n = fy_yaml_get(root, "labels"))) {
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "labels: expected a map such as {site: kitchen}");
    REQUIRE(n->n <= FY_CFG_MAX_LABELS, n->line, "labels: at most %d labels", FY_CFG_MAX_LABELS);
    for (size_t i = 0; i < n->n; i++) {
      REQUIRE(fy_label_key_valid(n->keys[i]), n->key_lines[i],
              "labels: '%s' is not a valid label key (letters, digits, '.', '-', '_', '/')", n->keys[i]);
      REQUIRE(is_scalar(n->items[i]) && fy_label_value_valid(n->items[i]->str), n->items[i]->line,
              "labels.%s: expected a value of at most 63 letters, digits, '.', '-', '_'", n->keys[i]);
      memcpy(c->label_keys[i], n->keys[i], strlen(n->keys[i]) + 1);
      memcpy(c->label_vals[i], n->items[i]->str, strlen(n->items[i]->str) + 1);
    }
    c->nlabels = n->n;
  }

  if ((n = fy_yaml_get(root, "runtime"))) {
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "runtime: expected a map");
    bad = fy_yaml_unknown_key(n, runtime_keys, &line);
    REQUIRE(!bad, line, "unknown key 'runtime.%s' (expected isolation, exec_wrapper, allow_pusher_commands)", bad);
    if ((v = fy_yaml_get(n, "isolation"))) {
      REQUIRE(is_scalar(v), v->line, "runtime.isolation: expected auto, chroot or none");
      if (strcmp(v->str, "auto") == 0) c->isolation = FY_ISOLATION_AUTO;
      else if (strcmp(v->str, "chroot") == 0) c->isolation = FY_ISOLATION_CHROOT;
      else if (strcmp(v->str, "none") == 0) c->isolation = FY_ISOLATION_NONE;
      else REQUIRE(0, v->line, "runtime.isolation: expected auto, chroot or none, got '%s'", v->str);
    }
    if ((v = fy_yaml_get(n, "allow_pusher_commands")))
      REQUIRE(is_scalar(v) && fy_parse_bool(v->str, &c->allow_pusher_commands) == FY_OK, v->line,
              "runtime.allow_pusher_commands: expected true or false");
    if ((v = fy_yaml_get(n, "exec_wrapper"))) {
      REQUIRE(v->kind == FY_YAML_SEQ && v->n <= FY_CFG_MAX_WRAPPER, v->line,
              "runtime.exec_wrapper: expected a list such as [qemu-aarch64, -L, \"{rootfs}\"]");
      for (size_t i = 0; i < v->n; i++) {
        REQUIRE(is_scalar(v->items[i]) && strlen(v->items[i]->str) < FY_CFG_PATH, v->items[i]->line,
                "runtime.exec_wrapper: each item is a string");
        memcpy(c->exec_wrapper[i], v->items[i]->str, strlen(v->items[i]->str) + 1);
      }
      c->nwrapper = v->n;
    }
  }

  if ((n = fy_yaml_get(root, "limits"))) {
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "limits: expected a map");
    bad = fy_yaml_unknown_key(n, limit_keys, &line);
    REQUIRE(!bad, line, "unknown key 'limits.%s' (expected max_release_bytes, zstd_window_log_max, "
                        "handshake_timeout, idle_timeout, max_connections, max_handshakes, max_handshakes_per_source, "
                        "connection_memory, frame_memory, partial_max_age)", bad);
    if ((v = fy_yaml_get(n, "max_release_bytes")))
      REQUIRE(is_scalar(v) && fy_parse_size(v->str, &c->max_release_bytes) == FY_OK && c->max_release_bytes > 0,
              v->line, "limits.max_release_bytes: expected a size such as 2GiB or 512MiB");
    if ((v = fy_yaml_get(n, "zstd_window_log_max"))) {
      uint64_t w = 0;
      REQUIRE(is_scalar(v) && fy_parse_size(v->str, &w) == FY_OK && w >= 10 && w <= 31, v->line,
              "limits.zstd_window_log_max: expected a number from 10 to 31");
      c->zstd_window_log_max = (int)w;
    }
    if ((v = fy_yaml_get(n, "handshake_timeout")))
      REQUIRE(is_scalar(v) && fy_parse_duration_ms(v->str, &c->handshake_timeout_ms) == FY_OK &&
              c->handshake_timeout_ms > 0, v->line, "limits.handshake_timeout: expected a duration such as 10s");
    if ((v = fy_yaml_get(n, "frame_memory")))
      REQUIRE(is_scalar(v) && fy_parse_size(v->str, &c->frame_memory) == FY_OK && c->frame_memory >= (1u << 20) + 16, v->line,
              "limits.frame_memory: expected a size of at least 1MiB such as 16MiB");
    if ((v = fy_yaml_get(n, "partial_max_age")))
      REQUIRE(is_scalar(v) && fy_parse_duration_ms(v->str, &c->partial_max_age_ms) == FY_OK && c->partial_max_age_ms >= 1000,
              v->line, "limits.partial_max_age: expected a duration such as 24h (at least 1s)");
    if ((v = fy_yaml_get(n, "idle_timeout")))
      REQUIRE(is_scalar(v) && fy_parse_duration_ms(v->str, &c->idle_timeout_ms) == FY_OK &&
              c->idle_timeout_ms > 0, v->line, "limits.idle_timeout: expected a duration such as 60s");
    const struct { const char *key; int *dst; } counts[] = {
        {"max_handshakes", &c->max_handshakes}, {"max_handshakes_per_source", &c->max_handshakes_per_source}};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
      if (!(v = fy_yaml_get(n, counts[k].key))) continue;
      uint64_t m = 0;
      REQUIRE(is_scalar(v) && fy_parse_size(v->str, &m) == FY_OK && m >= 1 && m <= 10000, v->line,
              "limits.%s: expected a number from 1 to 10000", counts[k].key);
      *counts[k].dst = (int)m;
    }
    if ((v = fy_yaml_get(n, "max_connections"))) {
      uint64_t m = 0;
      REQUIRE(is_scalar(v) && fy_parse_size(v->str, &m) == FY_OK && m >= 1 && m <= 10000, v->line,
              "limits.max_connections: expected a number from 1 to 10000");
      c->max_connections = (int)m;
    }
    if ((v = fy_yaml_get(n, "connection_memory")))
      REQUIRE(is_scalar(v) && fy_parse_size(v->str, &c->connection_memory) == FY_OK && c->connection_memory >= (1u << 20) + (256u << 10) &&
                  c->connection_memory <= (1ull << 30),
              v->line, "limits.connection_memory: a size from 1280KiB to 1GiB (it must hold the largest frame, 1 MiB)");
  }

  if ((n = fy_yaml_get(root, "trust"))) {
    REQUIRE(n->kind == FY_YAML_MAP, n->line, "trust: expected a map such as {keys: [release.pub], require_signature: true}");
    bad = fy_yaml_unknown_key(n, trust_keys, &line);
    REQUIRE(!bad, line, "unknown key 'trust.%s' (expected keys, require_signature, allow_downgrade)", bad);
    if ((v = fy_yaml_get(n, "keys"))) {
      REQUIRE(v->kind == FY_YAML_SEQ && v->n <= FY_CFG_MAX_KEYS, v->line,
              "trust.keys: expected a list of at most %d public key files (from `ferry key gen`)", FY_CFG_MAX_KEYS);
      for (size_t i = 0; i < v->n; i++)
        REQUIRE(is_scalar(v->items[i]) && v->items[i]->str[0] &&
                    set_path(c->trust_keys[i], sizeof c->trust_keys[i], cfg_dir, v->items[i]->str),
                v->items[i]->line, "trust.keys: each item is the path of a public key file");
      c->ntrust_keys = v->n;
    }
    if ((v = fy_yaml_get(n, "require_signature")))
      REQUIRE(is_scalar(v) && fy_parse_bool(v->str, &c->require_signature) == FY_OK, v->line,
              "trust.require_signature: expected true or false");
    if ((v = fy_yaml_get(n, "allow_downgrade")))
      REQUIRE(is_scalar(v) && fy_parse_bool(v->str, &c->allow_downgrade) == FY_OK, v->line,
              "trust.allow_downgrade: expected true or false");
    REQUIRE(!c->require_signature || c->ntrust_keys > 0, n->line,
            "trust.require_signature is true but trust.keys lists no key: no release could be installed");
  }
cleanup:
  free(dircopy);
  fy_yaml_free(root);
  free(text);
  return ret;
}

int fy_config_contained(const fy_agent_config *c, int is_root) {
  return c->nwrapper == 0 && (c->isolation == FY_ISOLATION_CHROOT || (c->isolation == FY_ISOLATION_AUTO && is_root));
}
