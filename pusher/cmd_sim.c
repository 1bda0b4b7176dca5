/* ferry sim up|down|ls: emulated boards on this machine. A board is the static ferryd for the
 * board's platform, run under qemu-<arch> -cpu <the board's model> (natively for amd64), on
 * loopback, with an identity from the local fleet CA and an exec_wrapper so that the workloads
 * it receives run under the same emulation. State: $FERRY_HOME/sim/<name>/. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "elfcheck.h"
#include "ferry/board.h"
#include "ferry/fsutil.h"
#include "ferry/yaml.h"
#include "pki.h"

static void home(char *out, size_t len) { fy_cli_home(NULL, out, len); }

static int read_pid(const char *dir) {
  char path[4200], *text = NULL;
  size_t len;
  snprintf(path, sizeof path, "%s/pid", dir);
  if (fy_file_read(path, 64, &text, &len) != FY_OK) return 0;
  long pid = 0;
  int rc = fy_parse_long(text, 2, 1L << 22, &pid);
  free(text);
  return rc == FY_OK && kill((pid_t)pid, 0) == 0 ? (int)pid : 0;
}

static int agent_for(const fy_platform *p, char *out, size_t len) {
  static const struct { const char *arch, *preset; } m[] = {{"arm64", "aarch64"}, {"arm", "armhf"}, {"amd64", "host"}};
  for (size_t i = 0; i < 3; i++) {
    if (strcmp(p->arch, m[i].arch) != 0) continue;
    char rel[128];
    snprintf(rel, sizeof rel, "agents/ferryd-%s", m[i].preset);
    if (fy_cli_data_path(rel, out, len)) return 1;
    snprintf(rel, sizeof rel, "build/%s/bin/ferryd", m[i].preset);
    if (fy_cli_data_path(rel, out, len)) return 1;
  }
  return 0;
}

/* Long on purpose: bringing up one emulated board is a fixed sequence (identity, config, emulator,
 * start, wait for its readiness line, record it) that only makes sense in order. */
static int sim_up(int argc, char **argv) {
  static const struct option opts[] = {{"board", required_argument, 0, 'b'}, {"port", required_argument, 0, 'p'},
                                       {"agent", required_argument, 0, 'a'}, {0, 0, 0, 0}};
  const char *board_name = "generic-arm64", *agent = NULL;
  int port = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'b') board_name = optarg;
    else if (c == 'p') {
      long v;
      if (fy_parse_long(optarg, 0, 65535, &v) != FY_OK) { fy_cli_err("--port: 0-65535"); return 2; }
      port = (int)v;
    }
    else if (c == 'a') agent = optarg;
    else return 2;
  }
  if (argc - optind != 1 || !fy_pki_valid_name(argv[optind])) {
    fy_cli_err("usage: ferry sim up NAME [--board rpi4] [--port N] [--agent FERRYD]  (NAME: a-z, 0-9, '-')");
    return 2;
  }
  const char *name = argv[optind];
  fy_board *boards = NULL;
  size_t nb = 0;
  char err[600], h[4096], dir[4300], ca[4400], path[4500], agent_path[4096];
  if (fy_board_load_builtin(&boards, &nb, err, sizeof err) != FY_OK) { fy_cli_err("%s", err); return 1; }
  const fy_board *b = fy_board_find(boards, nb, board_name);
  if (!b) {
    fy_cli_err("unknown board '%s' (see boards/)", board_name);
    free(boards);
    return 2;
  }
  fy_platform p = b->platforms[0], native;
  fy_platform_native(&native);
  int emulated = !fy_platform_equal(&p, &native);
  const char *q = fy_platform_qemu(&p);
  if (!agent) {
    if (!agent_for(&p, agent_path, sizeof agent_path)) {
      char ps[FY_PLATFORM_STR];
      fy_cli_err("no ferryd for %s here: build it (cmake --preset aarch64 && cmake --build --preset aarch64) or pass --agent",
                 fy_platform_format(&p, ps, sizeof ps));
      free(boards);
      return 1;
    }
    agent = agent_path;
  }
  home(h, sizeof h);
  snprintf(dir, sizeof dir, "%s/sim/%s", h, name);
  snprintf(ca, sizeof ca, "%s/ca", h);
  if (read_pid(dir)) {
    fy_cli_err("%s is already running (ferry sim down %s)", name, name);
    free(boards);
    return 1;
  }
  snprintf(path, sizeof path, "%s/ca.pem", ca);
  struct stat st;
  if (stat(path, &st) != 0 && fy_pki_ca_init(ca, 3650, 0, err, sizeof err) != FY_OK) { fy_cli_err("%s", err); free(boards); return 1; }
  snprintf(path, sizeof path, "%s/identity/cert.pem", h);
  if (stat(path, &st) != 0) {
    snprintf(path, sizeof path, "%s/identity", h);
    if (fy_pki_issue(ca, "laptop", FY_ROLE_PUSHER, path, 825, 0, err, sizeof err) != FY_OK) { fy_cli_err("%s", err); free(boards); return 1; }
  }
  snprintf(path, sizeof path, "%s/identity", dir);
  if (fy_mkdirs(dir, 0700) != FY_OK || fy_pki_issue(ca, name, FY_ROLE_AGENT, path, 825, 0, err, sizeof err) != FY_OK) {
    fy_cli_err("%s", err);
    free(boards);
    return 1;
  }
  char cfg[2048];
  int off = snprintf(cfg, sizeof cfg - 512, "# ferry sim: board %s%s\nname: %s\nlisten: 127.0.0.1:%d\nstate_dir: %s/state\nidentity: %s/identity\nboard: %s\nlabels: {ferry.dev/emulated: \"%s\"}\n",
                     b->name, emulated ? " under qemu-user" : "", name, port, dir, dir, b->name, emulated ? "true" : "false");
  if (off < 0 || (size_t)off >= sizeof cfg - 512) { fy_cli_err("the sim's paths are too long: %s", dir); free(boards); return 1; }
  if (emulated)
    snprintf(cfg + off, sizeof cfg - (size_t)off, "runtime:\n  exec_wrapper: [%s%s%s, -L, \"{rootfs}\"]\n", q,
             b->qemu_cpu[0] ? ", -cpu, " : "", b->qemu_cpu);
  snprintf(path, sizeof path, "%s/ferryd.yaml", dir);
  if (fy_file_write_atomic(path, cfg, strlen(cfg), 0644) != FY_OK) { fy_cli_err("cannot write %s", path); free(boards); return 1; }
  char log[4400];
  snprintf(log, sizeof log, "%s/ferryd.log", dir);
  unlink(log);
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644), nul = open("/dev/null", O_RDONLY);
    if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || (nul >= 0 && dup2(nul, 0) < 0)) _exit(127);
    if (emulated) {
      if (b->qemu_cpu[0]) execlp(q, q, "-cpu", b->qemu_cpu, agent, "--config", path, (char *)NULL);
      else execlp(q, q, agent, "--config", path, (char *)NULL);
    } else {
      execl(agent, agent, "--config", path, (char *)NULL);
    }
    fprintf(stderr, "ferry sim: cannot start %s: %s\n", emulated ? q : agent, strerror(errno));
    _exit(127);
  }
  char pidtext[32], *text = NULL;
  snprintf(pidtext, sizeof pidtext, "%d\n", (int)pid);
  snprintf(path, sizeof path, "%s/pid", dir);
  if (fy_file_write_atomic(path, pidtext, strlen(pidtext), 0644) != FY_OK) fy_cli_err("cannot write %s", path);
  size_t len;
  for (int i = 0; i < 600; i++) {
    if (fy_file_read(log, 1 << 20, &text, &len) == FY_OK) {
      char *l = strstr(text, "listening on ");
      if (l) {
        char *end = strchr(l, '\n');
        if (end) *end = '\0';
        printf("%s: %s\n", name, l);
        char *sp = strchr(l + 13, ' ');
        if (sp) *sp = '\0';
        printf("  ferry status --to %s@%s\n", name, l + 13);
        free(text);
        free(boards);
        return 0;
      }
      free(text);
      text = NULL;
    }
    if (kill(pid, 0) != 0) break;
    usleep(50000);
  }
  fy_cli_err("%s did not start; see %s", name, log);
  free(boards);
  return 1;
}

static int stop_one(const char *dir, const char *name) {
  int pid = read_pid(dir);
  if (!pid) return 0;
  kill(pid, SIGTERM);
  for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) usleep(50000);
  if (kill(pid, 0) == 0) kill(pid, SIGKILL);
  printf("stopped %s\n", name);
  return 1;
}

int fy_cmd_sim(int argc, char **argv) {
  char h[4096], sim[4200];
  home(h, sizeof h);
  snprintf(sim, sizeof sim, "%s/sim", h);
  if (argc < 2 || strcmp(argv[1], "--help") == 0) {
    printf("usage: ferry sim up NAME [--board rpi4] [--port N]   start an emulated board on loopback\n"
           "       ferry sim down NAME|--all                      stop it (state stays in $FERRY_HOME/sim/NAME)\n"
           "       ferry sim ls                                   list boards\n");
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "up") == 0) return sim_up(argc - 1, argv + 1);
  DIR *d = opendir(sim);
  struct dirent *e;
  if (strcmp(argv[1], "down") == 0) {
    if (argc != 3) { fy_cli_err("usage: ferry sim down NAME|--all"); if (d) closedir(d); return 2; }
    int all = strcmp(argv[2], "--all") == 0, found = 0;
    while (d && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.' || (!all && strcmp(e->d_name, argv[2]) != 0)) continue;
      char dir[4500];
      snprintf(dir, sizeof dir, "%s/%s", sim, e->d_name);
      found += stop_one(dir, e->d_name);
    }
    if (d) closedir(d);
    if (!found && !all) { fy_cli_err("no running board called %s", argv[2]); return 1; }
    return 0;
  }
  if (strcmp(argv[1], "ls") == 0) {
    printf("%-16s %-8s %-8s %s\n", "NAME", "STATE", "PID", "CONFIG");
    while (d && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char dir[4500];
      snprintf(dir, sizeof dir, "%s/%s", sim, e->d_name);
      int pid = read_pid(dir);
      printf("%-16s %-8s %-8d %s/ferryd.yaml\n", e->d_name, pid ? "running" : "stopped", pid, dir);
    }
    if (d) closedir(d);
    return 0;
  }
  if (d) closedir(d);
  fy_cli_err("unknown 'ferry sim %s' (up, down, ls)", argv[1]);
  return 2;
}
