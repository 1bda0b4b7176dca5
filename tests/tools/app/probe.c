/* The runtime test's workload: reports, one "check NAME: VALUE" line each, what an app sees of
 * its environment and what the node lets it do, then serves a port and waits for its stop
 * signal, which it logs before it exits 0. `probe health` is its health command (exec form);
 * `probe hog` allocates memory until the kernel stops it; `probe escape` tries the classic ways
 * out of a container and reports each. Static, so it runs in any image. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void check(const char *name, const char *value) { printf("check %s: %s\n", name, value); }

static void check_call(const char *name, long rc) {
  char v[64];
  snprintf(v, sizeof v, "%s", rc == 0 ? "allowed" : strerror(errno));
  check(name, v);
}

static void status_field(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, field, strlen(field)) == 0 && line[strlen(field)] == ':') {
      char *v = line + strlen(field) + 1;
      while (*v == ' ' || *v == '\t') v++;
      v[strcspn(v, "\n")] = '\0';
      check(field, v);
    }
  }
  if (f) fclose(f);
}

static const char *readable(const char *path) {
  static char buf[256];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return strerror(errno);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) return strerror(errno);
  buf[n] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  return n == 0 ? "(empty)" : buf;
}

static volatile sig_atomic_t stop_sig;
static void on_signal(int s) { stop_sig = s; }

static int escape(void) {
  /* a nested chroot, then the classic climb out of it */
  mkdir("/tmp/jail", 0755);
  int fd = open("/", O_RDONLY);
  int rc = chroot("/tmp/jail");
  if (rc == 0 && fd >= 0 && fchdir(fd) == 0) {
    for (int i = 0; i < 64; i++) (void)chdir("..");
    rc = chroot(".");
  }
  struct stat st;
  const char *marker = getenv("HOST_MARKER"); /* a file on the host, outside the release */
  check("escape.chroot-sees-host", rc == 0 && marker && stat(marker, &st) == 0 ? "yes" : "no");
  /* a block device node, then reading the disk through it */
  int m = mknod("/tmp/sda", S_IFBLK | 0600, makedev(8, 0));
  int dfd = m == 0 ? open("/tmp/sda", O_RDONLY) : -1;
  check("escape.blockdev-read", dfd >= 0 ? "yes" : "no");
  check_call("escape.mount", mount("tmpfs", "/mnt", "tmpfs", 0, NULL));
  int pfd = open("/proc/sys/kernel/domainname", O_WRONLY);
  check("escape.proc-sys-write", pfd >= 0 && write(pfd, "x", 1) == 1 ? "yes" : "no");
  const char *agent = getenv("AGENT_PID"); /* ferryd's pid on the host */
  check_call("escape.kill-agent", kill(agent ? atoi(agent) : 0, SIGTERM));
  check_call("escape.init_module", syscall(SYS_init_module, NULL, 0, ""));
  check_call("escape.ptrace-agent", ptrace(PTRACE_ATTACH, agent ? atoi(agent) : 0, 0, 0));
  check_call("escape.chmod-dev-null", chmod("/dev/null", 0600)); /* the host's inode, bound in */
  int alg = socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0);
  check_call("escape.af-alg", alg >= 0 ? 0 : -1);
  check_call("escape.io_uring", syscall(SYS_io_uring_setup, 1, NULL) >= 0 ? 0 : -1);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && strcmp(argv[1], "health") == 0) {
    /* the health command: who it runs as, and that it sees the app's /tmp */
    struct stat st;
    printf("health: uid=%d gid=%d tmp-marker=%s\n", (int)getuid(), (int)getgid(), stat("/tmp/probe-ready", &st) == 0 ? "yes" : "no");
    return stat("/tmp/probe-ready", &st) == 0 ? 0 : 1;
  }
  if (argc > 1 && strcmp(argv[1], "escapes") == 0) {
    /* what a hostile workload writes for the operator's terminal: a window title, a screen
     * clear, a carriage return over the line, a fake green success, a C1 CSI */
    printf("before\x1b]0;pwned\x07\x1b[2J\rALL NODES DEPLOYED \x1b[32mok\x1b[0m \xc2\x9b" "31m after\n");
    for (;;) pause();
  }
  if (argc > 1 && strcmp(argv[1], "mknod") == 0) {
    /* replaces its own /etc/group by a device node, then exits: ferryd reads that file at the
     * next start and must refuse it, not open the device */
    sleep(2);
    unlink("/etc/group");
    int rc = mknod("/etc/group", S_IFCHR | 0644, makedev(1, 3));
    printf("probe: mknod /etc/group: %s\n", rc == 0 ? "done" : strerror(errno));
    return 1;
  }
  if (argc > 1 && strcmp(argv[1], "hog") == 0) {
    if (getenv("HOG_AFTER")) sleep((unsigned)atoi(getenv("HOG_AFTER"))); /* past the settle time */
    for (size_t total = 0;; total += 1 << 20) {
      char *p = malloc(1 << 20);
      if (!p) return 3;
      memset(p, 1, 1 << 20);
      if (total % (16 << 20) == 0) printf("hog: %zu MiB\n", total >> 20);
    }
  }
  char v[512];
  check("dev-null", access("/dev/null", W_OK) == 0 ? "ok" : strerror(errno));
  unsigned char r[8];
  int ufd = open("/dev/urandom", O_RDONLY);
  check("dev-urandom", ufd >= 0 && read(ufd, r, sizeof r) == sizeof r ? "ok" : strerror(errno));
  if (ufd >= 0) close(ufd);
  ssize_t n = readlink("/proc/self/exe", v, sizeof v - 1);
  v[n > 0 ? n : 0] = '\0';
  check("proc-self-exe", v);
  snprintf(v, sizeof v, "%d", (int)getpid());
  check("pid", v);
  int tfd = open("/tmp/probe-ready", O_WRONLY | O_CREAT, 0644);
  check("tmp", tfd >= 0 ? "ok" : strerror(errno));
  if (tfd >= 0) close(tfd);
  check("resolv.conf", access("/etc/resolv.conf", R_OK) == 0 ? "ok" : strerror(errno));
  check("etc-hostname", readable("/etc/hostname"));
  gethostname(v, sizeof v);
  check("hostname", v);
  gid_t groups[32];
  int ng = getgroups(32, groups);
  size_t off = (size_t)snprintf(v, sizeof v, "uid=%d gid=%d groups=", (int)getuid(), (int)getgid());
  for (int i = 0; i < ng && off < sizeof v; i++) off += (size_t)snprintf(v + off, sizeof v - off, "%s%d", i ? "," : "", (int)groups[i]);
  check("ids", v);
  check("HOME", getenv("HOME") ? getenv("HOME") : "(unset)");
  check("HOSTNAME", getenv("HOSTNAME") ? getenv("HOSTNAME") : "(unset)");
  check("cwd", getcwd(v, sizeof v) ? v : strerror(errno));
  {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    char fds[256] = "";
    size_t fo = 0;
    while (d && (de = readdir(d)) != NULL) {
      if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d)) continue;
      fo += (size_t)snprintf(fds + fo, sizeof fds - fo, "%s%s", fo ? " " : "", de->d_name);
    }
    if (d) closedir(d);
    check("fds", fds); /* stdin, stdout, stderr and nothing else */
  }
  status_field("CapEff");
  status_field("CapBnd");
  status_field("NoNewPrivs");
  status_field("Seccomp");
  check_call("unshare-user", unshare(CLONE_NEWUSER));
  check_call("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
  check_call("userfaultfd", syscall(SYS_userfaultfd, 0) >= 0 ? 0 : -1);
  if (argc > 1 && strcmp(argv[1], "escape") == 0) escape();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGQUIT, &sa, NULL);
  int port = getenv("PORT") ? atoi(getenv("PORT")) : 0;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (port && (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 8) != 0)) printf("listen %d: %s\n", port, strerror(errno));
  check("ready", "yes");
  while (!stop_sig) pause();
  printf("probe: received %s, exiting\n", strsignal(stop_sig));
  return 0;
}
