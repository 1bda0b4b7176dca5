/* Launch preparation (see launch.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launch.h"
#include "ferry/elf.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"
#include "ferry/wire.h"

#define ETC_FILE_MAX (1u << 20) /* /etc/passwd and /etc/group: larger is not an image's */
#define MAX_GROUPS 64

/* Catches the wrong architecture before exec so the error says what the file is. The program is
 * opened inside the root, so a symlink to /dev/zero or a FIFO cannot hang the agent. */
static int check_elf(const fy_facts *f, const char *rootfs, const char *prog, char *err, size_t errlen) {
  uint8_t h[FY_ELF_HEADER];
  int fd = fy_open_in_root(rootfs, prog, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    fy_text_fmt(err, errlen, "cannot execute %s: %s", prog, fd >= 0 || errno == EINVAL ? "not a regular file" : strerror(errno));
    if (fd >= 0) close(fd);
    return FY_EEXEC;
  }
  ssize_t n = read(fd, h, sizeof h);
  close(fd);
  fy_platform p;
  char desc[64];
  int rc = fy_elf_header_platform(h, n > 0 ? (size_t)n : 0, &p, desc, sizeof desc);
  if (rc == FY_EINVAL) return FY_OK; /* scripts: the kernel decides */
  for (size_t k = 0; rc == FY_OK && k < f->naccepts; k++)
    if (strcmp(f->accepts[k].arch, p.arch) == 0) return FY_OK;
  char plat[FY_PLATFORM_STR];
  fy_text_fmt(err, errlen, "exec format error: %s is %s, this node runs %s", prog, desc,
              fy_platform_format(&f->platform, plat, sizeof plat));
  return FY_EEXEC;
}

static int is_file_in_root(const char *rootfs, const char *path) {
  int fd = fy_open_in_root(rootfs, path, O_PATH);
  struct stat st;
  int ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (fd >= 0) close(fd);
  return ok;
}

/* Finds prog (no '/') in the image's PATH inside rootfs. */
static int resolve_prog(const char *rootfs, const char *prog, const json_t *env, char *out, size_t len) {
  if (strchr(prog, '/')) {
    snprintf(out, len, "%s%s", prog[0] == '/' ? "" : "/", prog);
    return 1;
  }
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t i;
  json_t *v;
  json_array_foreach(env, i, v) {
    if (json_is_string(v) && strncmp(json_string_value(v), "PATH=", 5) == 0) path = json_string_value(v) + 5;
  }
  while (*path) {
    size_t n = strcspn(path, ":");
    char cand[4400];
    if (n < 1024 && fy_path_fmt(cand, sizeof cand, "%.*s/%s", (int)n, path, prog) == FY_OK && is_file_in_root(rootfs, cand))
      return fy_path_fmt(out, len, "%s", cand) == FY_OK;
    path += n;
    if (*path == ':') path++;
  }
  return 0;
}

/* --- User, as Docker and runc read it ------------------------------------------------------ */

typedef struct user_info {
  unsigned uid, gid;
  unsigned groups[MAX_GROUPS];
  size_t ngroups;
  char home[1024];
} user_info;

/* Splits a passwd/group line into at most n fields (in place). */
static size_t fields(char *line, char **f, size_t n) {
  size_t k = 0;
  while (k < n) {
    f[k++] = line;
    char *c = strchr(line, ':');
    if (!c) break;
    *c = '\0';
    line = c + 1;
  }
  return k;
}

static int parse_id(const char *s, unsigned *out) {
  char *end;
  if (!*s || *s == '-' || *s == '+') return 0;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (*end || errno || v > 0x7fffffff) return 0;
  *out = (unsigned)v;
  return 1;
}

/* "" (root), "uid", "name", "uid:gid", "name:group", looked up in the image's own /etc/passwd and
 * /etc/group (never the host's). A numeric user missing from passwd gets gid 0; supplementary
 * groups are those of /etc/group that list the user's name. */
static int resolve_user(const char *rootfs, const char *spec, user_info *u, char *err, size_t errlen) {
  char name[256], grp[256] = "";
  memset(u, 0, sizeof *u);
  snprintf(u->home, sizeof u->home, "/");
  snprintf(name, sizeof name, "%s", spec);
  char *colon = strchr(name, ':');
  if (colon) {
    *colon = '\0';
    snprintf(grp, sizeof grp, "%s", colon + 1);
  }
  if (!name[0]) snprintf(name, sizeof name, "0");
  char *text = NULL, *save = NULL;
  size_t len;
  int rc = fy_file_read_in_root(rootfs, "/etc/passwd", ETC_FILE_MAX, &text, &len);
  if (rc != FY_OK && rc != FY_ENOENT) {
    fy_text_fmt(err, errlen, "cannot read the image's /etc/passwd: %s", rc == FY_EINVAL ? "not a regular file" : fy_strerror(rc));
    return FY_EEXEC;
  }
  int numeric = parse_id(name, &u->uid), found = 0;
  char user_name[256] = "";
  for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !found; line = strtok_r(NULL, "\n", &save)) {
    char *f[7];
    unsigned id, gid;
    if (fields(line, f, 7) < 7 || !parse_id(f[2], &id) || !parse_id(f[3], &gid)) continue;
    if (numeric ? id == u->uid : strcmp(f[0], name) == 0) {
      u->uid = id;
      u->gid = gid;
      snprintf(user_name, sizeof user_name, "%s", f[0]);
      snprintf(u->home, sizeof u->home, "%s", f[5][0] ? f[5] : "/");
      found = 1;
    }
  }
  free(text);
  if (!found && !numeric) {
    fy_text_fmt(err, errlen, "User '%s' is not in the image's /etc/passwd", spec);
    return FY_EEXEC;
  }
  int group_numeric = grp[0] && parse_id(grp, &u->gid), group_found = !grp[0] || group_numeric;
  text = NULL;
  rc = fy_file_read_in_root(rootfs, "/etc/group", ETC_FILE_MAX, &text, &len);
  if (rc != FY_OK && rc != FY_ENOENT) {
    fy_text_fmt(err, errlen, "cannot read the image's /etc/group: %s", rc == FY_EINVAL ? "not a regular file" : fy_strerror(rc));
    return FY_EEXEC;
  }
  for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
    char *f[4];
    unsigned gid;
    if (fields(line, f, 4) < 4 || !parse_id(f[2], &gid)) continue;
    if (grp[0] && !group_numeric && strcmp(f[0], grp) == 0) {
      u->gid = gid;
      group_found = 1;
    }
    if (!user_name[0]) continue;
    for (char *m = f[3], *e; m && *m; m = e ? e + 1 : NULL) {
      e = strchr(m, ',');
      size_t ml = e ? (size_t)(e - m) : strlen(m);
      if (ml == strlen(user_name) && strncmp(m, user_name, ml) == 0 && u->ngroups < MAX_GROUPS) u->groups[u->ngroups++] = gid;
    }
  }
  free(text);
  if (!group_found) {
    fy_text_fmt(err, errlen, "group '%s' of User '%s' is not in the image's /etc/group", grp, spec);
    return FY_EEXEC;
  }
  return FY_OK;
}

/* --- the plan ------------------------------------------------------------------------------ */

static char *subst_rootfs(const char *arg, const char *rootfs) {
  const char *p = strstr(arg, "{rootfs}");
  if (!p) return strdup(arg);
  size_t n = strlen(arg) - 8 + strlen(rootfs) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%.*s%s%s", (int)(p - arg), arg, rootfs, p + 8);
  return s;
}

const char *fy_launch_mode_name(fy_launch_mode m) {
  return m == FY_LAUNCH_WRAPPER ? "through exec_wrapper"
       : m == FY_LAUNCH_CONTAIN ? "contained: namespaces, pivot_root, capabilities, seccomp"
                                : "no isolation";
}

void fy_launch_plan_free(fy_launch_plan *p) {
  if (!p) return;
  for (size_t k = 0; p->argv && k < p->nargv; k++) free(p->argv[k]);
  for (size_t k = 0; p->env && k < p->nenv; k++) free(p->env[k]);
  free(p->argv);
  free(p->env);
  p->argv = p->env = NULL;
  p->nargv = p->nenv = 0;
}

/* The helper's instructions (exec_helper.h); env is the workload's environment. */
static char *helper_spec(const fy_launch_in *in, const fy_launch_plan *p, const user_info *u, const char *workdir,
                         char **env, size_t nenv) {
  char caps[32];
  snprintf(caps, sizeof caps, "0x%" PRIx64, p->caps);
  json_t *groups = json_array(), *cgroups = json_array();
  for (size_t i = 0; i < u->ngroups; i++) json_array_append_new(groups, json_integer(u->groups[i]));
  for (size_t i = 0; i < in->ncgroups; i++) json_array_append_new(cgroups, json_string(in->cgroups[i]));
  json_t *jenv = json_array();
  for (size_t i = 0; i < nenv; i++) json_array_append_new(jenv, json_string(env[i]));
  json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:o, s:s, s:s, s:b, s:o, s:o}", "rootfs", in->rootfs, "workdir", workdir, "uid",
                        (json_int_t)u->uid, "gid", (json_int_t)u->gid, "groups", groups, "hostname", in->node, "caps", caps,
                        "seccomp", 1, "cgroups", cgroups, "env", jenv);
  if (j && in->join_pid) json_object_set_new(j, "join", json_integer(in->join_pid));
  json_t *binds = json_array();
  char src[4400];
  for (size_t k = 0; binds && !in->join_pid && k < p->mounts.nvolumes; k++) {
    fy_text_fmt(src, sizeof src, "%s/volumes/%s", in->app_dir ? in->app_dir : "", p->mounts.volumes[k].name);
    json_array_append_new(binds, json_pack("{s:s, s:s, s:b}", "src", src, "dst", p->mounts.volumes[k].path, "device", 0));
  }
  for (size_t k = 0; binds && !in->join_pid && k < p->mounts.ndevices; k++)
    json_array_append_new(binds, json_pack("{s:s, s:s, s:b}", "src", p->device_src[k], "dst", p->mounts.devices[k], "device", 1));
  if (j && binds && json_array_size(binds)) json_object_set(j, "binds", binds);
  json_decref(binds);
  char sdir[4400];
  struct stat sst;
  fy_text_fmt(sdir, sizeof sdir, "%s/../secrets", in->rootfs);
  if (j && !in->join_pid && lstat(sdir, &sst) == 0 && S_ISDIR(sst.st_mode)) json_object_set_new(j, "secrets", json_string(sdir));
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

/* argv[0..]: what starts the program in each mode (the image's own arguments follow). */
static int launcher(const fy_launch_in *in, fy_launch_plan *p, const char *host_prog, const char *workdir, const user_info *u,
                    char *err, size_t errlen) {
  const fy_agent_config *cfg = in->cfg;
  if (p->mode == FY_LAUNCH_WRAPPER) {
    char w0[4096];
    if (!fy_find_in_path(cfg->exec_wrapper[0], w0, sizeof w0)) {
      fy_text_fmt(err, errlen, "exec_wrapper '%s' not found in PATH", cfg->exec_wrapper[0]);
      return FY_EEXEC;
    }
    p->argv[p->nargv++] = strdup(w0);
    for (size_t i = 1; i < cfg->nwrapper; i++) p->argv[p->nargv++] = subst_rootfs(cfg->exec_wrapper[i], in->rootfs);
    p->argv[p->nargv++] = strdup(host_prog);
  } else if (p->mode == FY_LAUNCH_CONTAIN) {
    if (!in->self_exe || !in->self_exe[0]) {
      fy_text_fmt(err, errlen, "cannot find ferryd's own binary for the runtime helper");
      return FY_EEXEC;
    }
    p->argv[p->nargv++] = strdup(in->self_exe);
    p->argv[p->nargv++] = strdup("__exec");
    p->argv[p->nargv++] = helper_spec(in, p, u, workdir, p->env, p->nenv);
    p->argv[p->nargv++] = strdup("--");
    p->argv[p->nargv++] = strdup(p->prog);
  } else {
    p->argv[p->nargv++] = strdup(host_prog);
  }
  return FY_OK;
}

static int env_has(const json_t *jenv, const char *key) {
  size_t i, kl = strlen(key);
  json_t *v;
  json_array_foreach(jenv, i, v) {
    const char *s = json_string_value(v);
    if (s && strncmp(s, key, kl) == 0 && s[kl] == '=') return 1;
  }
  return 0;
}

/* The image's Env, then what Docker adds when the image has none (PATH, HOME, HOSTNAME), and
 * what ferry tells every workload. */
static void environment(const fy_launch_in *in, fy_launch_plan *p, const json_t *jenv, const user_info *u) {
  size_t i;
  json_t *v;
  json_array_foreach(jenv, i, v) {
    if (json_is_string(v)) p->env[p->nenv++] = strdup(json_string_value(v));
  }
  char fa[1200];
  if (!env_has(jenv, "PATH")) p->env[p->nenv++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (p->mode == FY_LAUNCH_CONTAIN && !env_has(jenv, "HOME")) {
    fy_text_fmt(fa, sizeof fa, "HOME=%s", u->home);
    p->env[p->nenv++] = strdup(fa);
  }
  if (p->mode == FY_LAUNCH_CONTAIN && !env_has(jenv, "HOSTNAME")) {
    fy_text_fmt(fa, sizeof fa, "HOSTNAME=%s", in->node);
    p->env[p->nenv++] = strdup(fa);
  }
  fy_text_fmt(fa, sizeof fa, "FERRY_APP=%s", in->app);
  p->env[p->nenv++] = strdup(fa);
  fy_text_fmt(fa, sizeof fa, "FERRY_RELEASE=%s", in->release);
  p->env[p->nenv++] = strdup(fa);
  fy_text_fmt(fa, sizeof fa, "FERRY_NODE=%s", in->node);
  p->env[p->nenv++] = strdup(fa);
  char sdir[4400];
  struct stat sst;
  fy_text_fmt(sdir, sizeof sdir, "%s/../secrets", in->rootfs);
  if (lstat(sdir, &sst) == 0 && S_ISDIR(sst.st_mode)) { /* the release's secrets: a tmpfs when contained */
    if (p->mode == FY_LAUNCH_CONTAIN) fy_text_fmt(fa, sizeof fa, "FERRY_SECRETS_DIR=/run/secrets");
    else fy_text_fmt(fa, sizeof fa, "FERRY_SECRETS_DIR=%s", sdir);
    p->env[p->nenv++] = strdup(fa);
  }
  for (size_t k = 0; k < p->mounts.nvolumes; k++) { /* where each volume is, as the app sees it */
    char key[64];
    fy_volume_env_name(p->mounts.volumes[k].name, key, sizeof key);
    if (p->mode == FY_LAUNCH_CONTAIN) fy_text_fmt(fa, sizeof fa, "%s=%s", key, p->mounts.volumes[k].path);
    else fy_text_fmt(fa, sizeof fa, "%s=%s/volumes/%s", key, in->app_dir ? in->app_dir : ".", p->mounts.volumes[k].name);
    p->env[p->nenv++] = strdup(fa);
  }
}

int fy_launch_plan_make(const fy_launch_in *in, fy_launch_plan *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  err[0] = '\0';
  fy_run_meta meta;
  int rc = fy_run_meta_decode(in->run, &meta, err, errlen);
  if (rc != FY_OK) return FY_EEXEC;
  const json_t *jargs = in->argv_override ? in->argv_override : meta.argv, *jenv = meta.env;
  p->mounts = meta.mounts;
  for (size_t k = 0; k < p->mounts.ndevices; k++) { /* the node's config may have changed since the deploy */
    const char *dev = p->mounts.devices[k];
    int allowed = 0;
    for (size_t i = 0; i < in->cfg->ndevices && !allowed; i++) allowed = strcmp(in->cfg->devices[i], dev) == 0;
    char real[4096];
    struct stat dst;
    if (!allowed) {
      fy_text_fmt(err, errlen, "the app needs the device %s, which this node no longer allows (devices: in its agent config)", dev);
      return FY_EEXEC;
    }
    if (!realpath(dev, real) || strncmp(real, "/dev/", 5) != 0 || strlen(real) >= FY_APP_PATH_MAX || stat(real, &dst) != 0 ||
        !(S_ISCHR(dst.st_mode) || S_ISBLK(dst.st_mode))) {
      fy_text_fmt(err, errlen, "the app needs the device %s, which is not a device node under /dev on this node", dev);
      return FY_EEXEC;
    }
    memcpy(p->device_src[k], real, strlen(real) + 1); /* shorter than FY_APP_PATH_MAX: checked above */
  }
  const char *workdir = meta.workdir, *user = meta.user;
  size_t nargs = json_array_size(jargs);
  p->caps = fy_runspec_caps(&meta.spec);
  p->stop_signal = meta.stop_signal ? meta.stop_signal : 15;
  p->stop_timeout_ms = meta.stop_timeout_ms > 0 ? (uint64_t)meta.stop_timeout_ms : FY_STOP_TIMEOUT_DEFAULT_MS;
  if (nargs == 0 || !json_is_string(json_array_get(jargs, 0))) {
    fy_text_fmt(err, errlen, in->argv_override ? "the health command is empty" : "the image config has no Entrypoint or Cmd");
    return FY_EEXEC;
  }
  const char *arg0 = json_string_value(json_array_get(jargs, 0));
  if (!resolve_prog(in->rootfs, arg0, jenv, p->prog, sizeof p->prog)) {
    fy_text_fmt(err, errlen, "cannot execute %s: not found in the image's PATH", arg0);
    return FY_EEXEC;
  }
  char host_prog[8600];
  if (fy_path_fmt(host_prog, sizeof host_prog, "%s%s", in->rootfs, p->prog) != FY_OK ||
      fy_path_fmt(p->cwd, sizeof p->cwd, "%s%s", in->rootfs, workdir) != FY_OK) {
    fy_text_fmt(err, errlen, "cannot execute %s: the path is too long", p->prog);
    return FY_EEXEC;
  }
  if ((rc = check_elf(in->facts, in->rootfs, p->prog, err, errlen)) != FY_OK) return rc;
  p->mode = in->cfg->nwrapper > 0 ? FY_LAUNCH_WRAPPER : fy_config_contained(in->cfg, in->is_root) ? FY_LAUNCH_CONTAIN : FY_LAUNCH_PLAIN;
  user_info u;
  if ((p->mode == FY_LAUNCH_CONTAIN || (user && user[0])) && (rc = resolve_user(in->rootfs, user ? user : "", &u, err, errlen)) != FY_OK)
    return rc;
  if (p->mode != FY_LAUNCH_CONTAIN && !(user && user[0])) memset(&u, 0, sizeof u);
  p->uid = u.uid;
  p->gid = u.gid;
  p->set_ids = user && user[0] && p->mode != FY_LAUNCH_CONTAIN && in->is_root;
  if (p->mode == FY_LAUNCH_CONTAIN) p->cwd[0] = '\0'; /* the helper enters (or creates) the workdir inside the root */
  p->argv = calloc(in->cfg->nwrapper + nargs + 16, sizeof *p->argv);
  p->env = calloc(json_array_size(jenv) + 9 + FY_VOLUMES_MAX, sizeof *p->env);
  if (!p->argv || !p->env) return FY_ENOMEM;
  environment(in, p, jenv, &u);
  for (size_t k = 0; k < p->nenv; k++)
    if (!p->env[k]) return FY_ENOMEM;
  if ((rc = launcher(in, p, host_prog, workdir, &u, err, errlen)) != FY_OK) return rc;
  for (size_t i = 1; i < nargs; i++) {
    const char *s = json_string_value(json_array_get(jargs, i));
    p->argv[p->nargv++] = strdup(s ? s : "");
  }
  if (p->mode == FY_LAUNCH_CONTAIN) {
    /* The image's environment travels in the spec and reaches only the workload: the helper, a
     * dynamically linked ferryd running as root on the host, must never see LD_PRELOAD and the
     * like from an image. It runs with this one line. */
    for (size_t k = 0; k < p->nenv; k++) free(p->env[k]);
    p->nenv = 0;
    p->env[p->nenv++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  }
  for (size_t k = 0; k < p->nargv; k++)
    if (!p->argv[k]) return FY_ENOMEM;
  for (size_t k = 0; k < p->nenv; k++)
    if (!p->env[k]) return FY_ENOMEM;
  return FY_OK;
}
