/* Launch preparation (see launch.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launch.h"
#include "ferry/elf.h"
#include "ferry/wire.h"
#include "ferry/fsutil.h"
#include "ferry/text.h"

/* Catches the wrong architecture before exec so the error says what the file is. */
static int check_elf(const fy_facts *f, const char *host_path, const char *shown, char *err, size_t errlen) {
  uint8_t h[FY_ELF_HEADER];
  int fd = open(host_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fy_text_fmt(err, errlen, "cannot execute %s: %s", shown, strerror(errno));
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
  fy_text_fmt(err, errlen, "exec format error: %s is %s, this node runs %s", shown, desc,
           fy_platform_format(&f->platform, plat, sizeof plat));
  return FY_EEXEC;
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
  char dir[1024];
  while (*path) {
    size_t n = strcspn(path, ":");
    if (n < sizeof dir) {
      memcpy(dir, path, n);
      dir[n] = '\0';
      char host[4400];
      struct stat st;
      if (fy_path_fmt(host, sizeof host, "%s%s/%s", rootfs, dir, prog) == FY_OK && stat(host, &st) == 0 &&
          S_ISREG(st.st_mode)) {
        snprintf(out, len, "%s/%s", dir, prog);
        return 1;
      }
    }
    path += n;
    if (*path == ':') path++;
  }
  return 0;
}

/* "uid[:gid]" or a name from the rootfs's /etc/passwd (never the host's). */
static int resolve_user(const char *rootfs, const char *user, unsigned *uid, unsigned *gid) {
  char name[256], grp[256] = "";
  snprintf(name, sizeof name, "%s", user);
  char *colon = strchr(name, ':');
  if (colon) {
    *colon = '\0';
    snprintf(grp, sizeof grp, "%s", colon + 1);
  }
  char *end;
  unsigned long v = strtoul(name, &end, 10);
  int found = 0;
  if (*name && !*end) {
    *uid = (unsigned)v;
    *gid = (unsigned)v;
    found = 1;
  } else {
    char path[4200], *text = NULL;
    size_t len;
    if (fy_path_fmt(path, sizeof path, "%s/etc/passwd", rootfs) == FY_OK && fy_file_read(path, 1 << 20, &text, &len) == FY_OK) {
      char *save = NULL;
      for (char *line = strtok_r(text, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
        char *f[4] = {0};
        char *s = line;
        for (int i = 0; i < 4 && s; i++) {
          f[i] = s;
          s = strchr(s, ':');
          if (s) *s++ = '\0';
        }
        if (f[0] && f[2] && f[3] && strcmp(f[0], name) == 0) {
          *uid = (unsigned)strtoul(f[2], NULL, 10);
          *gid = (unsigned)strtoul(f[3], NULL, 10);
          found = 1;
        }
      }
      free(text);
    }
  }
  if (found && grp[0]) {
    v = strtoul(grp, &end, 10);
    if (*end) return 0; /* group names: numeric only for now */
    *gid = (unsigned)v;
  }
  return found;
}

static char *subst_rootfs(const char *arg, const char *rootfs) {
  const char *p = strstr(arg, "{rootfs}");
  if (!p) return strdup(arg);
  size_t n = strlen(arg) - 8 + strlen(rootfs) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%.*s%s%s", (int)(p - arg), arg, rootfs, p + 8);
  return s;
}

const char *fy_launch_mode_name(fy_launch_mode m) {
  return m == FY_LAUNCH_WRAPPER ? "through exec_wrapper" : m == FY_LAUNCH_CHROOT ? "chroot + mount/PID namespaces" : "no isolation";
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

/* argv[0..]: what starts the program in each mode (the image's own arguments follow). */
static int launcher(const fy_launch_in *in, fy_launch_plan *p, const char *host_prog, const char *workdir, int have_user,
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
  } else if (p->mode == FY_LAUNCH_CHROOT) {
    if (!in->self_exe || !in->self_exe[0]) {
      fy_text_fmt(err, errlen, "cannot find ferryd's own binary for the chroot helper");
      return FY_EEXEC;
    }
    char num[32];
    p->argv[p->nargv++] = strdup(in->self_exe);
    p->argv[p->nargv++] = strdup("__exec");
    p->argv[p->nargv++] = strdup(in->rootfs);
    p->argv[p->nargv++] = strdup(workdir);
    snprintf(num, sizeof num, "%d", have_user ? (int)p->uid : -1);
    p->argv[p->nargv++] = strdup(num);
    snprintf(num, sizeof num, "%d", have_user ? (int)p->gid : -1);
    p->argv[p->nargv++] = strdup(num);
    p->argv[p->nargv++] = strdup("--");
    p->argv[p->nargv++] = strdup(p->prog);
  } else {
    p->argv[p->nargv++] = strdup(host_prog);
  }
  return FY_OK;
}

/* The image's Env, a PATH when it has none, and what ferry tells every workload. */
static void environment(const fy_launch_in *in, fy_launch_plan *p, const json_t *jenv) {
  size_t i;
  json_t *v;
  int have_path = 0;
  json_array_foreach(jenv, i, v) {
    if (!json_is_string(v)) continue;
    have_path |= strncmp(json_string_value(v), "PATH=", 5) == 0;
    p->env[p->nenv++] = strdup(json_string_value(v));
  }
  if (!have_path) p->env[p->nenv++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  char fa[160];
  fy_text_fmt(fa, sizeof fa, "FERRY_APP=%s", in->app);
  p->env[p->nenv++] = strdup(fa);
  fy_text_fmt(fa, sizeof fa, "FERRY_RELEASE=%s", in->release);
  p->env[p->nenv++] = strdup(fa);
  fy_text_fmt(fa, sizeof fa, "FERRY_NODE=%s", in->node);
  p->env[p->nenv++] = strdup(fa);
}

int fy_launch_plan_make(const fy_launch_in *in, fy_launch_plan *p, char *err, size_t errlen) {
  memset(p, 0, sizeof *p);
  err[0] = '\0';
  fy_run_meta meta;
  int rc = fy_run_meta_decode(in->run, &meta, err, errlen);
  if (rc != FY_OK) return FY_EEXEC;
  const json_t *jargs = meta.argv, *jenv = meta.env;
  const char *workdir = meta.workdir, *user = meta.user;
  size_t nargs = meta.nargv;
  if (nargs == 0 || !json_is_string(json_array_get(jargs, 0))) {
    fy_text_fmt(err, errlen, "the image config has no Entrypoint or Cmd");
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
  rc = check_elf(in->facts, host_prog, p->prog, err, errlen);
  if (rc != FY_OK) return rc;
  p->mode = in->cfg->nwrapper > 0 ? FY_LAUNCH_WRAPPER
          : in->cfg->isolation == FY_ISOLATION_CHROOT || (in->cfg->isolation == FY_ISOLATION_AUTO && in->is_root) ? FY_LAUNCH_CHROOT
          : FY_LAUNCH_PLAIN;
  int have_user = user && user[0] && resolve_user(in->rootfs, user, &p->uid, &p->gid);
  if (user && user[0] && !have_user) {
    fy_text_fmt(err, errlen, "User '%s' is not in the image's /etc/passwd", user);
    return FY_EEXEC;
  }
  p->set_ids = have_user && p->mode != FY_LAUNCH_CHROOT && in->is_root;
  if (p->mode == FY_LAUNCH_CHROOT) p->cwd[0] = '\0'; /* the helper enters the workdir inside the root */
  p->argv = calloc(in->cfg->nwrapper + nargs + 16, sizeof *p->argv);
  p->env = calloc(json_array_size(jenv) + 5, sizeof *p->env);
  if (!p->argv || !p->env) return FY_ENOMEM;
  if ((rc = launcher(in, p, host_prog, workdir, have_user, err, errlen)) != FY_OK) return rc;
  for (size_t i = 1; i < nargs; i++) {
    const char *s = json_string_value(json_array_get(jargs, i));
    p->argv[p->nargv++] = strdup(s ? s : "");
  }
  environment(in, p, jenv);
  for (size_t k = 0; k < p->nargv; k++)
    if (!p->argv[k]) return FY_ENOMEM;
  for (size_t k = 0; k < p->nenv; k++)
    if (!p->env[k]) return FY_ENOMEM;
  return FY_OK;
}
