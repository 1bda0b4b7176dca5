/* ferry install-agent / uninstall-agent: a device becomes a ferry node over the SSH access the
 * user already has (the system's OpenSSH client, ssh.h).
 *
 * install: probe the device (its userland platform from the ELF header of /bin/sh, systemd,
 * free space) -> pick the static ferryd for that platform -> issue the node's identity from the
 * local fleet CA -> one tar over SSH into a staging directory on the device -> the new binary
 * must answer --version there -> stop the old agent, move the files into place -> systemd unit
 * (enabled, started) or a direct start -> `ferry status` must reach it -> fleet file.
 * Nothing is moved into place before the checks pass; a failure removes the staging directory.
 *
 * On the device (PREFIX is "" without --prefix):
 *   PREFIX/usr/local/lib/ferry/ferryd        the agent (an upgrade keeps ferryd.prev beside it)
 *   PREFIX/etc/ferry/ferryd.yaml             its config; kept when it exists (--reconfigure)
 *   PREFIX/etc/ferry/identity/               ca.pem, cert.pem, key.pem (0600); kept likewise
 *   PREFIX/var/lib/ferry                     state_dir
 *   PREFIX/etc/systemd/system/ferryd.service with systemd as PID 1 and no --prefix
 *   PREFIX/var/log/ferryd.log, PREFIX/run/ferryd.pid   for a direct start */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ask.h"
#include "brokerc.h"
#include "cli.h"
#include "ferry/unpack.h"
#include "ferry/text.h"
#include "ferry/elf.h"
#include "ferry/fsutil.h"
#include "ferry/selector.h"
#include "fleet.h"
#include "pki.h"
#include "ssh.h"
#include "agent_image.h"

extern const char fy_unit_template[];

#define SSH_TIMEOUT_S 120

/* The platforms ferry builds agents for, where each comes from in a build tree, and how the
 * installed share/ferry/agents/ directory names it. */
static const struct {
  const char *platform, *preset, *fallback, *dir;
} agents[] = {
    {"linux/amd64", "amd64", "host", "linux-amd64"}, /* the static build; else the host's (dynamic) */
    {"linux/arm64", "aarch64", NULL, "linux-arm64"},
    {"linux/arm/v7", "armhf", NULL, "linux-arm-v7"},
};

typedef struct install {
  fy_ssh ssh;
  char name[64], labels[1024], fleet[4096], prefix[1024], ca[4096], identity[4096], listen[300], address[300];
  int broker;                /* --broker: listen: none, the fleet file's broker, checked through it */
  fy_fleet fl;               /* with --broker: the fleet file */
  char agent_bin[4096];
  int reconfigure, keep_state, keep_in_fleet;
  uint64_t timeout_ms;
  /* probed */
  fy_platform platform;
  char platform_s[FY_PLATFORM_STR], sh_desc[80];
  int uid, systemd;
} install;

/* The device-side scripts (the files in pusher/device/, embedded at build time). */
extern const char fy_device_common[], fy_device_probe[], fy_device_install[], fy_device_uninstall[];

/* What one ssh session runs: the parameters as shell-quoted FERRY_* assignments, common.sh, then
 * the script. params: "NAME=value" lines (values quoted here). FY_ETOOBIG when it does not fit. */
static int device_script(char *buf, size_t len, const char *const *params, size_t nparams, const char *body) {
  size_t o = 0;
  for (size_t i = 0; i < nparams; i++) {
    const char *eq = strchr(params[i], '=');
    char q[2400];
    if (!eq || fy_sh_quote(eq + 1, q, sizeof q) != FY_OK) return FY_ETOOBIG;
    int n = snprintf(buf + o, len - o, "%.*s=%s\n", (int)(eq - params[i]), params[i], q);
    if (n < 0 || (size_t)n >= len - o) return FY_ETOOBIG;
    o += (size_t)n;
  }
  int n = snprintf(buf + o, len - o, "%s\n%s", fy_device_common, body);
  return n < 0 || (size_t)n >= len - o ? FY_ETOOBIG : FY_OK;
}

static int probe(install *in) {
  char script[16384], err[600], pfx[1100];
  snprintf(pfx, sizeof pfx, "FERRY_PREFIX=%s", in->prefix);
  const char *params[] = {pfx};
  if (device_script(script, sizeof script, params, 1, fy_device_probe) != FY_OK) {
    fy_cli_err("--prefix is too long");
    return 1;
  }
  fy_ssh_result r;
  int rc = fy_ssh_run(&in->ssh, script, NULL, SSH_TIMEOUT_S, &r);
  if (rc != FY_OK) {
    fy_cli_err("%s: %s", in->ssh.dest, rc == FY_ETIMEDOUT ? "SSH did not answer in time" : rc == FY_ENOENT ? "no ssh client (apt install openssh-client)" : fy_strerror(rc));
    return 1;
  }
  if (r.exit_code != 0) {
    if (r.exit_code == 255) fy_ssh_explain(&in->ssh, &r, err, sizeof err);
    else snprintf(err, sizeof err, "probing %s failed (exit %d): %s", in->ssh.dest, r.exit_code, r.err);
    fy_cli_err("%s", err);
    fy_ssh_result_free(&r);
    return 1;
  }
  unsigned char hdr[64];
  size_t nh = 0;
  char uname[64] = "?";
  in->uid = -1;
  for (char *save = NULL, *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "uname=", 6) == 0) snprintf(uname, sizeof uname, "%s", line + 6);
    else if (strncmp(line, "uid=", 4) == 0) in->uid = strcmp(line + 4, "0") == 0 ? 0 : 1; /* root or not */
    else if (strncmp(line, "systemd=", 8) == 0) in->systemd = line[8] == '1';
    else if (strncmp(line, "elf=", 4) == 0)
      for (const char *h = line + 4; h[0] && h[1] && nh < sizeof hdr; h += 2) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1) break;
        hdr[nh++] = (unsigned char)v;
      }
  }
  fy_ssh_result_free(&r);
  rc = fy_elf_header_platform(hdr, nh, &in->platform, in->sh_desc, sizeof in->sh_desc);
  if (rc == FY_EINVAL) {
    fy_cli_err("%s: cannot tell the device's platform: its /bin/sh is not an ELF file (uname -m says %s)", in->ssh.dest, uname);
    return 1;
  }
  if (rc == FY_OK) fy_platform_format(&in->platform, in->platform_s, sizeof in->platform_s);
  else snprintf(in->platform_s, sizeof in->platform_s, "unknown");
  return 0;
}

/* Where this machine keeps a ferryd for a platform: an installed share/ferry/agents/DIR/ferryd
 * (or lib/ferry/agents), or this build tree's build/PRESET/bin/ferryd. */
int fy_agent_binary_for(const char *platform, char *out, size_t len) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  char *bindir = dirname(exe);
  for (size_t i = 0; i < sizeof agents / sizeof agents[0]; i++) {
    if (strcmp(agents[i].platform, platform) != 0) continue;
    char cand[4][4300];
    struct stat st;
    snprintf(cand[0], sizeof cand[0], "%s/../lib/ferry/agents/%s/ferryd", bindir, agents[i].dir);
    snprintf(cand[1], sizeof cand[1], "%s/../share/ferry/agents/%s/ferryd", bindir, agents[i].dir);
    snprintf(cand[2], sizeof cand[2], "%s/../../%s/bin/ferryd", bindir, agents[i].preset);
    snprintf(cand[3], sizeof cand[3], "%s/../../%s/bin/ferryd", bindir, agents[i].fallback ? agents[i].fallback : agents[i].preset);
    for (int k = 0; k < 4; k++)
      if (stat(cand[k], &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
        if (!realpath(cand[k], out)) snprintf(out, len, "%s", cand[k]);
        return 1;
      }
  }
  return 0;
}

size_t fy_agent_platforms(const char **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < sizeof agents / sizeof agents[0] && n < max; i++) out[n++] = agents[i].platform;
  return n;
}

/* The ferryd for the probed platform: --agent-binary, or fy_agent_binary_for. */
static int find_agent(install *in) {
  char offered[256] = "", path[4096];
  int want = -1;
  for (size_t i = 0; i < sizeof agents / sizeof agents[0]; i++) {
    if (fy_agent_binary_for(agents[i].platform, path, sizeof path)) {
      snprintf(offered + strlen(offered), sizeof offered - strlen(offered), "%s%s", offered[0] ? ", " : "", agents[i].platform);
      if (strcmp(agents[i].platform, in->platform_s) == 0 && !in->agent_bin[0]) snprintf(in->agent_bin, sizeof in->agent_bin, "%s", path);
    }
    if (strcmp(agents[i].platform, in->platform_s) == 0) want = (int)i;
  }
  if (in->agent_bin[0]) return 0;
  if (want < 0)
    fy_cli_err("%s runs %s (its /bin/sh is %s): ferry has no agent for it; agents here: %s", in->ssh.dest, in->platform_s,
               in->sh_desc, offered[0] ? offered : "none (build one: cmake --preset aarch64 && cmake --build --preset aarch64)");
  else
    fy_cli_err("%s runs %s, but no ferryd for it is here (agents here: %s): build it with cmake --preset %s && cmake "
               "--build --preset %s, install the ferryd package for it, or pass --agent-binary FILE",
               in->ssh.dest, in->platform_s, offered[0] ? offered : "none", agents[want].preset, agents[want].preset);
  return 1;
}

static int run_cmd(char *const argv[]) {
  pid_t pid = fork();
  if (pid == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) < 0) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int replace_all(const char *in, const char *key, const char *val, char *out, size_t len) {
  size_t o = 0, kl = strlen(key), vl = strlen(val);
  for (const char *p = in; *p;) {
    if (strncmp(p, key, kl) == 0) {
      if (o + vl >= len) return FY_ETOOBIG;
      memcpy(out + o, val, vl);
      o += vl;
      p += kl;
    } else {
      if (o + 1 >= len) return FY_ETOOBIG;
      out[o++] = *p++;
    }
  }
  out[o] = '\0';
  return FY_OK;
}

/* The unit with this install's paths. */
static int render_unit(const char *prefix, char *out, size_t len) {
  char a[8192], b[8192], p[4][1200];
  snprintf(p[0], sizeof p[0], "%s/usr/local/lib/ferry/ferryd", prefix);
  snprintf(p[1], sizeof p[1], "%s/etc/ferry/ferryd.yaml", prefix);
  snprintf(p[2], sizeof p[2], "%s/var/lib/ferry", prefix);
  snprintf(p[3], sizeof p[3], "%s/usr/local/lib/ferry", prefix);
  if (replace_all(fy_unit_template, "@FERRYD@", p[0], a, sizeof a) != FY_OK ||
      replace_all(a, "@CONFIG@", p[1], b, sizeof b) != FY_OK || replace_all(b, "@STATE_DIR@", p[2], a, sizeof a) != FY_OK)
    return FY_ETOOBIG;
  return replace_all(a, "@BIN_DIR@", p[3], out, len);
}

/* Local staging: ferryd, ferryd.yaml, identity/, ferryd.service, packed as one tar. */
static int stage(install *in, const char *dir, char *tarpath, size_t tplen) {
  char path[4300], err[600], text[8192];
  int rc;
  snprintf(path, sizeof path, "%s/files", dir);
  if (fy_mkdirs(path, 0700) != FY_OK) return 1;
  char *bin = NULL;
  size_t blen;
  if ((rc = fy_file_read(in->agent_bin, 256u << 20, &bin, &blen)) != FY_OK) {
    fy_cli_err("%s: %s", in->agent_bin, fy_strerror(rc));
    return 1;
  }
  snprintf(path, sizeof path, "%s/files/ferryd", dir);
  rc = fy_file_write_atomic(path, bin, blen, 0755);
  free(bin);
  if (rc != FY_OK) return 1;
  snprintf(path, sizeof path, "%s/files/identity", dir);
  if (fy_pki_issue(in->ca, in->name, FY_ROLE_AGENT, path, 825, 0, err, sizeof err) != FY_OK) {
    fy_cli_err("issuing the node's identity from %s: %s", in->ca, err);
    return 1;
  }
  char lab[4000] = "";
  char state[1200], ident[1200];
  snprintf(state, sizeof state, "%s/var/lib/ferry", in->prefix);
  snprintf(ident, sizeof ident, "%s/etc/ferry/identity", in->prefix);
  if (in->labels[0]) snprintf(lab, sizeof lab, "labels: {%s}\n", in->labels);
  if (in->broker) {
    size_t l = strlen(lab);
    snprintf(lab + l, sizeof lab - l, "broker:\n  url: mqtts://%s:%d\n  topic_prefix: %s\n", in->fl.broker_host, in->fl.broker_port,
             in->fl.topic_prefix);
    if (in->fl.broker_ca[0]) { /* the broker's CA goes with the identity (public: no secret in it) */
      char *pem = NULL;
      size_t pl = 0;
      if ((rc = fy_file_read(in->fl.broker_ca, 1u << 20, &pem, &pl)) != FY_OK) {
        fy_cli_err("broker.ca: cannot read %s: %s", in->fl.broker_ca, fy_strerror(rc));
        return 1;
      }
      snprintf(path, sizeof path, "%s/files/identity/broker-ca.pem", dir);
      rc = fy_file_write_atomic(path, pem, pl, 0644);
      free(pem);
      if (rc != FY_OK) return 1;
      l = strlen(lab);
      snprintf(lab + l, sizeof lab - l, "  ca: %s/broker-ca.pem\n", ident);
    }
  }
  snprintf(text, sizeof text,
           "# Written by ferry install-agent (kept by later runs; --reconfigure rewrites it).\n"
           "# Every key: docs/device-layout.md in the ferry repository.\n"
           "name: %s\nlisten: %s\nstate_dir: %s\nidentity: %s\n%s",
           in->name, in->listen, state, ident, lab);
  snprintf(path, sizeof path, "%s/files/ferryd.yaml", dir);
  if (fy_file_write_atomic(path, text, strlen(text), 0644) != FY_OK) return 1;
  if (render_unit(in->prefix, text, sizeof text) != FY_OK) return 1;
  snprintf(path, sizeof path, "%s/files/ferryd.service", dir);
  if (fy_file_write_atomic(path, text, strlen(text), 0644) != FY_OK) return 1;
  snprintf(tarpath, tplen, "%s/agent.tar", dir);
  snprintf(path, sizeof path, "%s/files", dir);
  char *const argv[] = {"tar", "-C", path, "-cf", tarpath, ".", NULL};
  if (run_cmd(argv) != 0) {
    fy_cli_err("cannot pack the agent's files with tar");
    return 1;
  }
  return 0;
}

static int remote_install(install *in, const char *tarpath, char *mode, size_t modelen) {
  char script[16384], err[2400], pfx[1100], need[48], reconf[32], sysd[32];
  struct stat st;
  long need_kb = stat(tarpath, &st) == 0 ? (long)(st.st_size / 1024) * 2 + 1024 : 8192;
  snprintf(pfx, sizeof pfx, "FERRY_PREFIX=%s", in->prefix);
  snprintf(need, sizeof need, "FERRY_NEED_KB=%ld", need_kb);
  snprintf(reconf, sizeof reconf, "FERRY_RECONFIGURE=%d", in->reconfigure ? 1 : 0);
  snprintf(sysd, sizeof sysd, "FERRY_SYSTEMD=%d", in->systemd && !in->prefix[0]);
  const char *params[] = {pfx, need, reconf, sysd};
  if (device_script(script, sizeof script, params, 4, fy_device_install) != FY_OK) {
    fy_cli_err("--prefix is too long");
    return 1;
  }
  const char *wrapped = script;
  char *sudo = NULL;
  if (in->uid != 0 && !in->prefix[0]) { /* ferryd runs as root: through sudo, without a prompt */
    size_t ql = strlen(script) * 4 + 64;
    sudo = malloc(ql + 32);
    char *q = malloc(ql);
    if (!sudo || !q || fy_sh_quote(script, q, ql) != FY_OK) { free(sudo); free(q); return 1; }
    snprintf(sudo, ql + 32, "sudo -n sh -c %s", q);
    free(q);
    wrapped = sudo;
  }
  fy_ssh_result r;
  int rc = fy_ssh_run(&in->ssh, wrapped, tarpath, SSH_TIMEOUT_S, &r);
  free(sudo);
  if (rc != FY_OK) {
    fy_cli_err("%s: %s", in->ssh.dest, rc == FY_ETIMEDOUT ? "the install did not finish in time" : fy_strerror(rc));
    return 1;
  }
  if (r.exit_code != 0) {
    if (r.exit_code == 255) fy_ssh_explain(&in->ssh, &r, err, sizeof err);
    else {
      /* our own lines (ferry-agent: ...) say what went wrong; else the last line */
      const char *m = strstr(r.err, "ferry-agent: ");
      char said[2048];
      size_t o = 0;
      /* our own lines, without their prefix; indented after the first */
      for (const char *q = m ? m + 13 : r.err; *q && o + 4 < sizeof said; q++) {
        if (q[0] == '\n' && strncmp(q + 1, "ferry-agent: ", 13) == 0) {
          said[o++] = '\n';
          said[o++] = ' ';
          said[o++] = ' ';
          q += 13;
          continue;
        }
        said[o++] = *q;
      }
      said[o] = '\0';
      fy_text_fmt(err, sizeof err, "%s: %s%s", in->ssh.dest, said,
               in->uid != 0 && strstr(r.err, "sudo") ? " (ferryd runs as root: log in as root, or allow sudo without a password)" : "");
      size_t l = strlen(err);
      while (l > 0 && err[l - 1] == '\n') err[--l] = '\0';
    }
    if (r.exit_code == 6) fy_cli_err("%s", err); /* the script said what it undid */
    else fy_cli_err("%s; nothing was installed", err);
    fy_ssh_result_free(&r);
    return 1;
  }
  const char *mline = strstr(r.out, "mode=");
  snprintf(mode, modelen, "%s", mline ? mline : "");
  char *nl = strchr(mode, '\n');
  if (nl) *nl = '\0';
  fy_ssh_result_free(&r);
  return 0;
}

/* `ferry status` must reach the node under its name: a few tries while it starts. */
/* --broker: the node's signed status on the broker, online (it connected with its new identity). */
static int check_broker(install *in, char *platform, size_t plen) {
  fy_tls_conf *tls = NULL;
  if (fy_cli_load_broker_tls(in->identity[0] ? in->identity : NULL, &in->fl, &tls) != FY_OK) return 1;
  fy_broker_node nd;
  char err[700] = "";
  int ok = 0, rc = FY_OK;
  time_t end = time(NULL) + 60;
  fprintf(stderr, "%s: waiting for %s's signed status on the broker %s:%d (at most 60 s)\n", in->ssh.dest, in->name, in->fl.broker_host,
          in->fl.broker_port);
  for (int attempt = 0; !ok && rc != FY_EPOLICY && rc != FY_ECERT && time(NULL) < end; attempt++) {
    if (attempt) sleep(1);
    memset(&nd, 0, sizeof nd);
    snprintf(nd.name, sizeof nd.name, "%s", in->name);
    if ((rc = fy_broker_read_statuses(&in->fl, tls, &nd, 1, 10000, 0, err, sizeof err)) == FY_OK) {
      if (nd.verified && json_is_true(json_object_get(nd.status, "online"))) {
        ok = 1;
        snprintf(platform, plen, "%s", fy_msg_str(nd.status, "platform", 63) ? fy_msg_str(nd.status, "platform", 63) : "?");
      } else {
        fy_text_fmt(err, sizeof err, "%s", !nd.seen ? "no status from it on the broker yet" : !nd.verified ? nd.why : "its status says offline");
      }
    }
    fy_broker_nodes_free(&nd, 1);
  }
  fy_tls_conf_free(tls);
  if (!ok)
    fy_cli_err("ferryd is installed and running on %s, but it is not online on the broker %s:%d: %s (can the device reach the "
               "broker? its log: %s/var/log/ferryd.log or journalctl -u ferryd)", in->ssh.dest, in->fl.broker_host, in->fl.broker_port,
               err, in->prefix);
  return ok ? 0 : 1;
}

static int check_status(install *in, char *platform, size_t plen) {
  if (in->broker) return check_broker(in, platform, plen);
  fy_tls_conf *tls = NULL;
  if (fy_cli_load_identity(in->identity[0] ? in->identity : NULL, &tls) != FY_OK) return 1;
  fy_target t;
  char spec[400], err[300];
  snprintf(spec, sizeof spec, "%s@%s", in->name, in->address);
  if (fy_target_parse(spec, &t, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    fy_tls_conf_free(tls);
    return 1;
  }
  int ok = 0;
  char last[600] = "";
  for (int attempt = 0; attempt < 10 && !ok; attempt++) {
    if (attempt) sleep(1);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fy_ask ask;
    memset(&ask, 0, sizeof ask);
    fy_ask_batch b = {.loop = &loop, .tls = tls, .timeout_ms = in->timeout_ms, .op = "status"};
    fy_ask_batch_start(&b, &ask, &t, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (ask.err == FY_OK && ask.facts) {
      ok = 1;
      snprintf(platform, plen, "%s", fy_msg_str(ask.facts, "platform", 63) ? fy_msg_str(ask.facts, "platform", 63) : "?");
    } else {
      snprintf(last, sizeof last, "%s", ask.msg);
    }
    fy_ask_batch_free(&b);
  }
  fy_tls_conf_free(tls);
  if (!ok) fy_cli_err("ferryd is installed and running on %s, but ferry status cannot reach %s: %s (a firewall? --address)", in->ssh.dest, spec, last);
  return ok ? 0 : 1;
}

/* Adds the node to the fleet file (creating it), unless it is already listed. */
static int fleet_add(install *in) {
  char *text = NULL, err[600];
  size_t len = 0;
  int rc = fy_file_read(in->fleet, FY_FLEET_MAX_BYTES, &text, &len);
  if (rc != FY_OK && rc != FY_ENOENT) {
    fy_cli_err("%s: %s", in->fleet, fy_strerror(rc));
    return 1;
  }
  if (rc == FY_OK) {
    fy_fleet f;
    if (fy_fleet_load(in->fleet, &f, err, sizeof err) != FY_OK) {
      fy_cli_err("%s (the node was installed; add it to the fleet file by hand)", err);
      free(text);
      return 1;
    }
    int listed = 0;
    for (size_t i = 0; i < f.n; i++) listed |= strcmp(f.targets[i].name, in->name) == 0;
    fy_fleet_free(&f);
    if (listed) {
      printf("fleet: %s already lists %s\n", in->fleet, in->name);
      free(text);
      return 0;
    }
  }
  char entry[2048], addr[400] = "";
  if (in->address[0]) snprintf(addr, sizeof addr, "    address: %s\n", in->address); /* --broker: none, reached through it */
  snprintf(entry, sizeof entry, "  - name: %s\n%s%s%s%s", in->name, addr, in->labels[0] ? "    labels: {" : "", in->labels,
           in->labels[0] ? "}\n" : "");
  /* After the `nodes:` line, else a new `nodes:` section at the end. */
  size_t cap = len + sizeof entry + 16;
  char *out = malloc(cap);
  if (!out) return 1;
  const char *nodes = NULL;
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (strncmp(p, "nodes:", 6) == 0) { nodes = p; break; }
  size_t o = 0;
  /* `nodes:` alone, `nodes: []` or `nodes:  # a comment`: the entry goes under a plain `nodes:` */
  const char *rest = nodes ? nodes + 6 + strspn(nodes + 6, " \t") : NULL;
  if (rest && strncmp(rest, "[]", 2) == 0) rest += 2 + strspn(rest + 2, " \t");
  if (nodes && (*rest == '\n' || *rest == '\0' || *rest == '#')) {
    const char *after = strchrnul(nodes, '\n');
    if (*after) after++;
    size_t head = (size_t)(nodes - text), tail = len - (size_t)(after - text);
    memcpy(out, text, head);
    o = head;
    memcpy(out + o, "nodes:\n", 7);
    o += 7;
    memcpy(out + o, entry, strlen(entry));
    o += strlen(entry);
    memcpy(out + o, after, tail);
    o += tail;
  } else if (nodes) {
    fy_cli_err("%s: `nodes:` is not a block list; add %s (%s) by hand", in->fleet, in->name,
               in->address[0] ? in->address : "through the broker");
    free(out);
    free(text);
    return 1;
  } else {
    if (len) memcpy(out, text, len);
    o = len;
    if (o && out[o - 1] != '\n') out[o++] = '\n';
    int w = snprintf(out + o, cap - o, "nodes:\n%s", entry);
    o += w > 0 && (size_t)w < cap - o ? (size_t)w : 0;
  }
  rc = fy_file_write_atomic(in->fleet, out, o, 0644);
  fy_fleet f;
  if (rc == FY_OK && fy_fleet_load(in->fleet, &f, err, sizeof err) != FY_OK) { /* never leave a broken file */
    if (text) rc = fy_file_write_atomic(in->fleet, text, len, 0644);
    else unlink(in->fleet);
    fy_cli_err("adding %s to %s would break it (%s); add it by hand", in->name, in->fleet, err);
    free(out);
    free(text);
    return 1;
  }
  if (rc == FY_OK) fy_fleet_free(&f);
  free(out);
  free(text);
  if (rc != FY_OK) {
    fy_cli_err("%s: %s", in->fleet, fy_strerror(rc));
    return 1;
  }
  printf("fleet: added %s (%s) to %s\n", in->name, in->address[0] ? in->address : "through the broker", in->fleet);
  return 0;
}

static void install_usage(FILE *f) {
  fprintf(f,
          "usage: ferry install-agent USER@HOST[:PORT] --name NAME [--labels k=v,...] [--fleet FILE] [--prefix DIR]\n"
          "                           [--listen ADDR:PORT] [--address HOST:PORT] [--ca DIR] [--identity DIR]\n"
          "                           [--agent-binary FILE] [--reconfigure] [--broker]\n"
          "Makes a device a ferry node over SSH (the system's ssh; keys and ~/.ssh/config as usual,\n"
          "$FERRY_SSH_COMMAND to change the command): detects the device's userland platform (the ELF\n"
          "header of its /bin/sh), copies the static ferryd for it, a config and an identity issued\n"
          "from the fleet CA (key 0600), installs and starts ferryd.service (or, without systemd,\n"
          "starts ferryd directly), checks that ferry status reaches it, and adds it to the fleet file.\n"
          "Running it again upgrades the agent in place and keeps the config and identity.\n"
          "  --name NAME         the node's name (its certificate's)\n"
          "  --labels k=v,...    labels in the agent's config and the fleet file\n"
          "  --prefix DIR        install under DIR on the device (no systemd unit is enabled)\n"
          "  --listen ADDR:PORT  where ferryd listens (default 0.0.0.0:7433)\n"
          "  --address HOST:PORT how ferry reaches it (default the SSH host and the listen port)\n"
          "  --ca DIR            the fleet CA (default $FERRY_HOME/ca)\n"
          "  --identity DIR      the pusher identity for the status check (default $FERRY_HOME/identity)\n"
          "  --reconfigure       rewrite the config and identity on the device\n"
          "  --broker            a node behind NAT: listen: none and the broker of --fleet FILE in its\n"
          "                      config; checked through the broker (its signed status, online), and\n"
          "                      added to the fleet file without an address\n");
}

static int parse_labels(const char *s, char *out, size_t len) {
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", s);
  out[0] = '\0';
  for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    if (!eq) return 0;
    *eq = '\0';
    if (!fy_label_key_valid(kv) || !fy_label_value_valid(eq + 1)) return 0;
    size_t l = strlen(out);
    snprintf(out + l, len - l, "%s%s: \"%s\"", l ? ", " : "", kv, eq + 1);
  }
  return out[0] != '\0';
}

static int common_opts(int argc, char **argv, install *in, int uninstall) {
  static const struct option opts[] = {
      {"name", required_argument, 0, 'n'},    {"labels", required_argument, 0, 'l'},   {"fleet", required_argument, 0, 'f'},
      {"prefix", required_argument, 0, 'p'},  {"listen", required_argument, 0, 'L'},   {"address", required_argument, 0, 'a'},
      {"ca", required_argument, 0, 'c'},      {"identity", required_argument, 0, 'i'}, {"agent-binary", required_argument, 0, 'b'},
      {"reconfigure", no_argument, 0, 'r'},   {"keep-state", no_argument, 0, 'k'},     {"help", no_argument, 0, 'h'},
      {"keep-in-fleet", no_argument, 0, 'K'}, {"broker", no_argument, 0, 'B'}, {0, 0, 0, 0}};
  int c;
  char err[300];
  memset(in, 0, sizeof *in);
  snprintf(in->listen, sizeof in->listen, "0.0.0.0:7433");
  in->timeout_ms = 5000;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'n': snprintf(in->name, sizeof in->name, "%s", optarg); break;
    case 'l':
      if (!parse_labels(optarg, in->labels, sizeof in->labels)) {
        fy_cli_err("--labels: expected k=v,k2=v2 with Kubernetes label keys and values, got '%s'", optarg);
        return 2;
      }
      break;
    case 'f': snprintf(in->fleet, sizeof in->fleet, "%s", optarg); break;
    case 'p':
      if (optarg[0] != '/' || strlen(optarg) < 2) {
        fy_cli_err("--prefix: expected an absolute directory on the device, got '%s'", optarg);
        return 2;
      }
      snprintf(in->prefix, sizeof in->prefix, "%s", optarg);
      while (strlen(in->prefix) > 1 && in->prefix[strlen(in->prefix) - 1] == '/') in->prefix[strlen(in->prefix) - 1] = '\0';
      break;
    case 'L': snprintf(in->listen, sizeof in->listen, "%s", optarg); break;
    case 'a': snprintf(in->address, sizeof in->address, "%s", optarg); break;
    case 'c': snprintf(in->ca, sizeof in->ca, "%s", optarg); break;
    case 'i': snprintf(in->identity, sizeof in->identity, "%s", optarg); break;
    case 'b': snprintf(in->agent_bin, sizeof in->agent_bin, "%s", optarg); break;
    case 'r': in->reconfigure = 1; break;
    case 'B':
      if (uninstall) { fy_cli_err("--broker goes with install-agent"); return 2; }
      in->broker = 1;
      break;
    case 'k': in->keep_state = 1; break;
    case 'K':
      if (!uninstall) { fy_cli_err("--keep-in-fleet goes with uninstall-agent"); return 2; }
      in->keep_in_fleet = 1;
      break;
    case 'h': return -1;
    default: return 2;
    }
  }
  if (argc - optind != 1) {
    fy_cli_err("expected one device: USER@HOST[:PORT] (see --help)");
    return 2;
  }
  if (fy_ssh_parse(argv[optind], &in->ssh, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    return 2;
  }
  if (!uninstall) {
    if (!in->name[0] || !fy_pki_valid_name(in->name)) {
      fy_cli_err("--name: the node's name is required: 1-63 of a-z, 0-9, '-', '.', starting with a letter or digit");
      return 2;
    }
    if (in->broker) { /* the fleet file's broker: the node opens no port and is reached through it */
      char ferr[600];
      if (!in->fleet[0]) {
        fy_cli_err("--broker takes the broker from the fleet file: give --fleet FILE (with broker: in it)");
        return 2;
      }
      if (fy_fleet_load(in->fleet, &in->fl, ferr, sizeof ferr) != FY_OK) {
        fy_cli_err("--broker: %s", ferr);
        return 2;
      }
      if (!in->fl.broker_host[0]) {
        fy_cli_err("--broker: %s has no broker: (broker: {url: mqtts://HOST:PORT, topic_prefix: ...})", in->fleet);
        fy_fleet_free(&in->fl);
        return 2;
      }
      snprintf(in->listen, sizeof in->listen, "none");
      in->address[0] = '\0';
      if (!in->ca[0]) fy_cli_home("ca", in->ca, sizeof in->ca);
      return 0;
    }
    const char *colon = strrchr(in->listen, ':');
    long port;
    if (!colon || fy_parse_long(colon + 1, 1, 65535, &port) != FY_OK ||
        strspn(in->listen, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:[]") != strlen(in->listen)) {
      fy_cli_err("--listen: expected ADDR:PORT such as 0.0.0.0:7433, got '%s'", in->listen);
      return 2;
    }
    if (!in->address[0]) {
      int v6 = strchr(in->ssh.host, ':') != NULL;
      snprintf(in->address, sizeof in->address, "%s%s%s:%ld", v6 ? "[" : "", in->ssh.host, v6 ? "]" : "", port);
    }
    fy_target t;
    if (fy_target_parse(in->address, &t, err, sizeof err) != FY_OK) {
      fy_cli_err("--address: %s", err);
      return 2;
    }
    if (!in->ca[0]) fy_cli_home("ca", in->ca, sizeof in->ca);
  }
  return 0;
}

/* uninstall-agent --fleet: which node of the file this device is (--name, else the one node
 * whose address is the SSH host). Into in->name; 1 after saying why not. */
static int fleet_node_of(install *in) {
  fy_fleet f;
  char err[600];
  if (fy_fleet_load(in->fleet, &f, err, sizeof err) != FY_OK) {
    fy_cli_err("%s (use --keep-in-fleet to uninstall without touching it)", err);
    return 1;
  }
  size_t found = 0;
  char names[300] = "";
  const int by_name = in->name[0] != 0; /* in->name is filled with the first hit below */
  for (size_t i = 0; i < f.n; i++) {
    int hit = by_name ? strcmp(f.targets[i].name, in->name) == 0 : strcmp(f.targets[i].host, in->ssh.host) == 0;
    if (!hit) continue;
    size_t l = strlen(names);
    snprintf(names + l, sizeof names - l, "%s%s", found ? ", " : "", f.targets[i].name);
    if (!found) snprintf(in->name, sizeof in->name, "%s", f.targets[i].name);
    found++;
  }
  fy_fleet_free(&f);
  if (found == 1) return 0;
  if (found == 0)
    fy_cli_err("%s lists no node %s%s (name it with --name, or --keep-in-fleet)", in->fleet, by_name ? "named " : "at ",
               by_name ? in->name : in->ssh.host);
  else fy_cli_err("%s lists several nodes at %s (%s): say which with --name", in->fleet, in->ssh.host, names);
  return 1;
}

int fy_cmd_install_agent(int argc, char **argv) {
  static install in;
  int rc = common_opts(argc, argv, &in, 0);
  if (rc < 0) { install_usage(stdout); return 0; }
  if (rc) return rc;
  char path[4200];
  struct stat st;
  snprintf(path, sizeof path, "%s/ca-key.pem", in.ca);
  if (stat(path, &st) != 0) {
    fy_cli_err("no fleet CA in %s (create one with ferry ca init %s, or pass --ca DIR)", in.ca, in.ca);
    return 1;
  }
  if (in.agent_bin[0] && stat(in.agent_bin, &st) != 0) {
    fy_cli_err("--agent-binary %s: %s", in.agent_bin, strerror(errno));
    return 1;
  }
  if (in.broker) { /* the laptop's side first: nothing is installed when the broker cannot be read from here */
    fy_tls_conf *btls = NULL;
    char err[700] = "";
    int brc = fy_cli_load_broker_tls(in.identity[0] ? in.identity : NULL, &in.fl, &btls);
    if (brc == FY_OK) brc = fy_broker_read_statuses(&in.fl, btls, NULL, 0, 10000, 0, err, sizeof err);
    fy_tls_conf_free(btls);
    if (brc != FY_OK) {
      if (err[0]) fy_cli_err("%s (nothing was installed)", err);
      fy_fleet_free(&in.fl);
      return 1;
    }
  }
  fprintf(stderr, "%s: probing over SSH\n", in.ssh.dest);
  if (probe(&in)) return 1;
  fprintf(stderr, "%s: userland %s (/bin/sh is %s), %s\n", in.ssh.dest, in.platform_s, in.sh_desc,
          in.prefix[0] ? "installing under the prefix" : in.systemd ? "systemd is PID 1" : "no systemd");
  if (in.agent_bin[0]) {
    unsigned char h[FY_ELF_HEADER];
    FILE *f = fopen(in.agent_bin, "rb");
    size_t n = f ? fread(h, 1, sizeof h, f) : 0;
    if (f) fclose(f);
    fy_platform p;
    char desc[80], ps[FY_PLATFORM_STR];
    if (fy_elf_header_platform(h, n, &p, desc, sizeof desc) != FY_OK || strcmp(fy_platform_format(&p, ps, sizeof ps), in.platform_s) != 0) {
      fy_cli_err("--agent-binary %s is %s, but the device runs %s", in.agent_bin, desc, in.platform_s);
      return 1;
    }
  } else if (find_agent(&in)) {
    return 1;
  }
  char dir[] = "/tmp/ferry-install.XXXXXX", tarpath[4300], mode[200] = "";
  if (!mkdtemp(dir)) {
    fy_cli_err("mkdtemp: %s", strerror(errno));
    return 1;
  }
  int ret = 1;
  if (stage(&in, dir, tarpath, sizeof tarpath)) goto out;
  fprintf(stderr, "%s: copying %s and the node's identity\n", in.ssh.dest, in.agent_bin);
  if (remote_install(&in, tarpath, mode, sizeof mode)) goto out;
  char platform[64] = "";
  if (check_status(&in, platform, sizeof platform)) goto out;
  int upgraded = strstr(mode, "upgrade=1") != NULL, direct = strstr(mode, "mode=direct") != NULL;
  char reach[400];
  if (in.broker) snprintf(reach, sizeof reach, "online on the broker %s:%d (listen: none)", in.fl.broker_host, in.fl.broker_port);
  else snprintf(reach, sizeof reach, "reachable at %s", in.address);
  printf("%s ferryd on %s as %s (%s), %s; %s%s\n", upgraded ? "upgraded" : "installed", in.ssh.dest, in.name, platform, reach,
         direct ? "started directly" : "ferryd.service enabled and started",
         strstr(mode, "conf=kept") ? "; kept its config and identity" : "");
  if (direct && !in.prefix[0])
    printf("  systemd is not PID 1 on the device: ferryd runs until the next reboot. To make it permanent, start\n"
           "  /usr/local/lib/ferry/ferryd --config /etc/ferry/ferryd.yaml from the init system it has\n"
           "  (an /etc/inittab respawn line, an OpenRC or runit service, or @reboot in root's crontab).\n");
  ret = 0;
  if (in.fleet[0] && fleet_add(&in)) ret = 1;
out:;
  if (fy_remove_path(dir) != FY_OK) fy_cli_err("cannot remove %s", dir);
  if (in.broker) fy_fleet_free(&in.fl);
  return ret;
}

int fy_cmd_uninstall_agent(int argc, char **argv) {
  static install in;
  int rc = common_opts(argc, argv, &in, 1);
  if (rc < 0) {
    printf("usage: ferry uninstall-agent USER@HOST[:PORT] [--prefix DIR] [--keep-state]\n"
           "       [--fleet FILE [--name NAME] [--keep-in-fleet]]\n"
           "Stops ferryd and its apps and removes what install-agent installed: the binary, config,\n"
           "identity, unit, log and (unless --keep-state) the state directory with its releases.\n"
           "With --fleet, the node is then taken out of that fleet file and its groups (the node named\n"
           "--name, else the one whose address is on HOST), unless --keep-in-fleet.\n");
    return 0;
  }
  if (rc) return rc;
  if (in.fleet[0] && !in.keep_in_fleet && fleet_node_of(&in)) return 1; /* before anything is removed */
  char script[16384], err[800], pfx[1100], keep[32];
  snprintf(pfx, sizeof pfx, "FERRY_PREFIX=%s", in.prefix);
  snprintf(keep, sizeof keep, "FERRY_KEEP_STATE=%d", in.keep_state ? 1 : 0);
  const char *params[] = {pfx, keep};
  if (device_script(script, sizeof script, params, 2, fy_device_uninstall) != FY_OK) {
    fy_cli_err("--prefix is too long");
    return 1;
  }
  fy_ssh_result r;
  rc = fy_ssh_run(&in.ssh, script, NULL, SSH_TIMEOUT_S, &r);
  if (rc != FY_OK) {
    fy_cli_err("%s: %s", in.ssh.dest, fy_strerror(rc));
    return 1;
  }
  if (r.exit_code != 0) {
    if (r.exit_code == 255) fy_ssh_explain(&in.ssh, &r, err, sizeof err);
    else {
      const char *m = strstr(r.err, "ferry-agent: ");
      snprintf(err, sizeof err, "%s: %s", in.ssh.dest, m ? m + 13 : r.err);
      size_t l = strlen(err);
      while (l > 0 && err[l - 1] == '\n') err[--l] = '\0';
    }
    fy_cli_err("%s", err);
    fy_ssh_result_free(&r);
    return 1;
  }
  fy_ssh_result_free(&r);
  printf("removed ferryd from %s%s%s%s\n", in.ssh.dest, in.prefix[0] ? " (" : "", in.prefix, in.prefix[0] ? ")" : "");
  if (in.fleet[0] && !in.keep_in_fleet) {
    if (fy_fleet_remove_node(in.fleet, in.name, err, sizeof err) != FY_OK) {
      fy_cli_err("%s", err);
      return 1;
    }
    printf("fleet: removed %s from %s\n", in.name, in.fleet);
  }
  return 0;
}
