/* ferry test: each variant of an image, unpacked with the agent's safe unpacker into a temp
 * rootfs and started: natively for the host's platform, under qemu-user with -L ROOTFS (and the
 * board's -cpu) for the others. Needs neither root nor binfmt_misc. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "elfcheck.h"
#include "ferry/clock.h"
#include "ferry/board.h"
#include "ferry/text.h"
#include "ferry/fsutil.h"
#include "ferry/unpack.h"
#include "ferry/yaml.h"
#include "layout.h"

static int test_timeout_s = 120;
static FILE *progress; /* stdout, or stderr under --json */

struct result {
  char platform[FY_PLATFORM_STR];
  char how[160];
  int ok, exit_code;
  double secs;
  char error[512];
};

static int run_variant(const fy_layout *l, fy_variant *v, char **cmd, size_t ncmd, const fy_board *boards, size_t nboards,
                       const fy_platform *native_acc, size_t nnative, const char *label, struct result *res) {
  char root[4096], err[1024];
  int rc, conv;
  snprintf(root, sizeof root, "%s/ferry-test-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(root)) {
    snprintf(res->error, sizeof res->error, "mkdtemp: %s", strerror(errno));
    return 1;
  }
  if ((rc = fy_layout_prepare(l, v, &conv, NULL, err, sizeof err)) != FY_OK) {
    fy_text_fmt(res->error, sizeof res->error, "%s", err);
    goto out;
  }
  int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  fy_unpack_opts o = {.max_bytes = 8ull << 30, .window_log_max = 27};
  fy_unpack_stats st = {0};
  for (size_t i = 0; i < v->m.nlayers && rootfd >= 0; i++) {
    char path[4200];
    fy_layout_blob_path(l, &v->m.layers[i].digest, path, sizeof path);
    if ((rc = fy_unpack_layer(rootfd, path, v->m.layers[i].kind, &o, &st, err, sizeof err)) != FY_OK) {
      fy_text_fmt(res->error, sizeof res->error, "unpack: %s", err);
      close(rootfd);
      goto out;
    }
  }
  if (rootfd >= 0) close(rootfd);

  /* The command: after --, else the image's test label (from ferry.yaml's test.command). */
  char *argv_img[64];
  size_t nimg = 0;
  json_t *tj = NULL;
  if (ncmd == 0 && v->cfg.test) {
    tj = json_loads(v->cfg.test, 0, NULL);
    size_t i;
    json_t *s;
    json_array_foreach(tj, i, s) if (nimg < 63 && json_is_string(s)) argv_img[nimg++] = (char *)json_string_value(s);
    cmd = argv_img;
    ncmd = nimg;
  }
  if (ncmd == 0) {
    snprintf(res->error, sizeof res->error, "no test command: give one after --, or test.command in ferry.yaml");
    json_decref(tj);
    goto out;
  }
  char prog[4400];
  snprintf(prog, sizeof prog, "%s%s%s", root, cmd[0][0] == '/' ? "" : "/", cmd[0]);
  const char *argv[80];
  size_t n = 0;
  char qemu_path[4096], cpu[64] = "";
  int native = fy_platform_rank(native_acc, nnative, &v->desc.platform) >= 0;
  if (!native) {
    const char *q = fy_platform_qemu(&v->desc.platform);
    if (!q || !fy_find_in_path(q, qemu_path, sizeof qemu_path)) {
      snprintf(res->error, sizeof res->error, "%s is not installed: apt-get install qemu-user (see 'ferry doctor')", q ? q : "qemu-user for this platform");
      json_decref(tj);
      goto out;
    }
    argv[n++] = qemu_path;
    argv[n++] = "-L";
    argv[n++] = root;
    const fy_board *b = v->cfg.board ? fy_board_find(boards, nboards, v->cfg.board) : NULL;
    if (b && b->qemu_cpu[0]) {
      snprintf(cpu, sizeof cpu, "%s", b->qemu_cpu);
      argv[n++] = "-cpu";
      argv[n++] = cpu;
    }
    snprintf(res->how, sizeof res->how, "%s%s%s", q, cpu[0] ? " -cpu " : "", cpu);
  } else {
    snprintf(res->how, sizeof res->how, "native");
  }
  argv[n++] = prog;
  for (size_t i = 1; i < ncmd && n < 78; i++) argv[n++] = cmd[i];
  argv[n] = NULL;
  char envroot[4200];
  snprintf(envroot, sizeof envroot, "FERRY_ROOTFS=%s", root);
  double t0 = (fy_mono_ms() / 1e3);
  int pfd[2];
  if (pipe(pfd) != 0) goto out;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pfd[1], 1);
    dup2(pfd[1], 2);
    close(pfd[0]);
    close(pfd[1]);
    char wd[4400];
    snprintf(wd, sizeof wd, "%s%s", root, v->cfg.workdir ? v->cfg.workdir : "/");
    if (chdir(wd) != 0 && chdir(root) != 0) _exit(126);
    for (size_t i = 0; i < v->cfg.nenv; i++) putenv(v->cfg.env[i]);
    putenv(envroot);
    execv(argv[0], (char *const *)argv);
    char what[128];
    fy_elf_describe(argv[0], what, sizeof what);
    fprintf(stderr, "cannot execute %s: %s%s%s\n", cmd[0], strerror(errno), what[0] ? "; it is " : "", what);
    _exit(errno == ENOEXEC ? 126 : 127);
  }
  close(pfd[1]);
  /* A test that does not end in time fails (a service started without a test mode, say). */
  pid_t watchdog = fork();
  if (watchdog == 0) {
    sleep((unsigned)test_timeout_s);
    kill(pid, SIGKILL);
    _exit(0);
  }
  FILE *out = fdopen(pfd[0], "r");
  char line[1024];
  while (out && fgets(line, sizeof line, out)) fprintf(progress, "[%s] | %s", label, line);
  if (out) fclose(out);
  int status = 0;
  waitpid(pid, &status, 0);
  if (watchdog > 0) {
    kill(watchdog, SIGKILL);
    waitpid(watchdog, NULL, 0);
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
    snprintf(res->error, sizeof res->error, "did not finish within %d s (--timeout); is the test command one that exits?", test_timeout_s);
  res->secs = (fy_mono_ms() / 1e3) - t0;
  res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  res->ok = res->exit_code == 0;
  if (!res->ok && !res->error[0]) snprintf(res->error, sizeof res->error, "exit code %d", res->exit_code);
  json_decref(tj);
out:
  {
    if (fy_remove_path(root) != FY_OK) fprintf(stderr, "ferry: cannot remove %s\n", root);
  }
  return res->ok ? 0 : 1;
}

/* Long on purpose: the verb's sequence (options, image, per variant: rootfs, emulator, run, verdict)
 * reads as the user sees it happen. */
int fy_cmd_test(int argc, char **argv) {
  static const struct option opts[] = {{"platform", required_argument, 0, 'p'}, {"json", no_argument, 0, 'j'},
                                       {"timeout", required_argument, 0, 'T'}, {"help", no_argument, 0, 'h'},
                                       FY_CLI_REGISTRY_OPTIONS, {0, 0, 0, 0}};
  fy_platform only[32];
  size_t nonly = 0;
  int json = 0, c;
  optind = 1;
  /* Everything after "--" is the command; getopt must not see it. */
  int dash = -1;
  for (int i = 1; i < argc; i++) if (strcmp(argv[i], "--") == 0) { dash = i; break; }
  int gargc = dash >= 0 ? dash : argc;
  while ((c = getopt_long(gargc, argv, "p:", opts, NULL)) != -1) {
    int r = fy_cli_registry_opt(c, optarg);
    if (r < 0) return 2;
    if (r > 0) continue;
    switch (c) {
    case 'p': {
      char *copy = strdup(optarg), *save = NULL;
      for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (nonly == 32 || fy_platform_parse(t, &only[nonly]) != FY_OK) {
          fy_cli_err("--platform: '%s' is not a platform name (e.g. linux/arm64, aarch64)", t);
          free(copy);
          return 2;
        }
        nonly++;
      }
      free(copy);
      break;
    }
    case 'j': json = 1; break;
    case 'T': {
      long v;
      if (fy_parse_long(optarg, 1, 86400, &v) != FY_OK) { fy_cli_err("--timeout: seconds from 1 to 86400"); return 2; }
      test_timeout_s = (int)v;
      break;
    }
    case 'h':
      printf("usage: ferry test IMAGE [--platform P[,P...]] [--json] [--timeout S] [-- CMD [ARGS...]]\n"
             "Unpacks each variant into a temp rootfs and runs the recipe's test command (or CMD): natively\n"
             "for the host's platform, under qemu-<arch> -L ROOTFS for the others. No root, no binfmt_misc.\n"
             FY_CLI_IMAGE_HELP);
      return 0;
    default: return 2;
    }
  }
  progress = json ? stderr : stdout;
  if (gargc - optind != 1) {
    fy_cli_err("usage: ferry test IMAGE [--platform P] [-- CMD...]");
    return 2;
  }
  char **cmd = dash >= 0 ? argv + dash + 1 : NULL;
  size_t ncmd = dash >= 0 ? (size_t)(argc - dash - 1) : 0;
  fy_layout l;
  char err[1200];
  if (fy_layout_open(&l, argv[optind], err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    return 1;
  }
  fy_variant *vs = NULL;
  size_t nv = 0;
  fy_board *boards = NULL;
  size_t nboards = 0;
  int ret = 1;
  if (fy_layout_variants(&l, &vs, &nv, err, sizeof err) != FY_OK || fy_board_load_builtin(&boards, &nboards, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    goto cleanup;
  }
  fy_platform native, acc[FY_PLATFORM_ACCEPT_MAX];
  fy_platform_native(&native);
  size_t nacc = fy_platform_accepts(&native, FY_PLATFORM_NO_AARCH32, acc, FY_PLATFORM_ACCEPT_MAX);
  struct result *res = calloc(nv + 1, sizeof *res);
  size_t nres = 0;
  double native_secs = 0;
  int any_native = 0, failed = 0;
  /* The native variant first, so that every other one can be compared with it. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < nv; i++) {
      int is_native = fy_platform_rank(acc, 1, &vs[i].desc.platform) == 0;
      if (is_native != (pass == 0)) continue;
      int want = nonly == 0;
      for (size_t k = 0; k < nonly; k++) want |= fy_platform_equal(&only[k], &vs[i].desc.platform);
      if (!want) continue;
      struct result *r = &res[nres++];
      fy_platform_format(&vs[i].desc.platform, r->platform, sizeof r->platform);
      char label[FY_PLATFORM_STR + 40];
      snprintf(label, sizeof label, "%s%s%s", r->platform, vs[i].cfg.board ? " " : "", vs[i].cfg.board ? vs[i].cfg.board : "");
      if (!json) { printf("[%s] testing\n", label); fflush(stdout); }
      run_variant(&l, &vs[i], cmd, ncmd, boards, nboards, acc, nacc, label, r);
      if (is_native && r->ok) { native_secs = r->secs; any_native = 1; }
      failed += !r->ok;
    }
  }
  if (nres == 0) {
    fy_cli_err("no variant of %s matches --platform", argv[optind]);
    free(res);
    goto cleanup;
  }
  if (json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < nres; i++) {
      json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:f}", "platform", res[i].platform, "result", res[i].ok ? "pass" : "fail",
                            "runner", res[i].how, "exit_code", res[i].exit_code, "seconds", res[i].secs);
      if (any_native && native_secs > 0) json_object_set_new(o, "slowdown", json_real(res[i].secs / native_secs));
      json_object_set_new(o, "error", res[i].ok ? json_null() : json_string(res[i].error));
      json_array_append_new(arr, o);
    }
    json_t *out = json_pack("{s:o}", "variants", arr);
    json_dumpf(out, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(out);
  } else {
    printf("\n%-18s %-6s %-5s %9s %9s  %s\n", "PLATFORM", "RESULT", "EXIT", "TIME", "SLOWDOWN", "RUNNER");
    for (size_t i = 0; i < nres; i++) {
      char slow[32] = "-";
      if (any_native && native_secs > 0) snprintf(slow, sizeof slow, "%.1fx", res[i].secs / native_secs);
      printf("%-18s %-6s %-5d %8.3fs %9s  %s\n", res[i].platform, res[i].ok ? "pass" : "FAIL", res[i].exit_code, res[i].secs, slow, res[i].how);
    }
    for (size_t i = 0; i < nres; i++) if (!res[i].ok) fy_cli_err("%s: %s", res[i].platform, res[i].error);
  }
  ret = failed ? 1 : 0;
  free(res);
cleanup:
  free(boards);
  fy_variants_free(vs, nv);
  fy_layout_close(&l);
  return ret;
}
