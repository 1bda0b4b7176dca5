/* The runtime helper (see exec_helper.h). Runs as a short-lived process of its own: errors go to
 * stderr (the app's log) and end it with status 125. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec_helper.h"
#include "syscall_filter.h"
#include "ferry/fsutil.h"

extern char **environ;

#define MAX_GROUPS 64
#define MAX_BINDS 32

typedef struct spec {
  const char *rootfs, *workdir, *hostname;
  long uid, gid;
  gid_t groups[MAX_GROUPS];
  size_t ngroups;
  unsigned long long caps;
  int seccomp;
  const json_t *cgroups;
  const json_t *binds;  /* [{"src","dst","device"}]: volumes and granted device nodes */
  const char *secrets;  /* the release's secrets directory on the host, or NULL */
  long join;
  char **env;           /* the workload's environment (the helper itself runs with a fixed one) */
  void *filter;         /* the seccomp filter, built before the fork that makes the workload */
} spec;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "ferryd: %s\n", msg);
  _exit(125);
}

static int parse_spec(const char *text, json_t **keep, spec *s) {
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  memset(s, 0, sizeof *s);
  s->uid = s->gid = -1;
  if (!json_is_object(j)) return -1;
  *keep = j;
  s->rootfs = json_string_value(json_object_get(j, "rootfs"));
  s->workdir = json_string_value(json_object_get(j, "workdir"));
  s->hostname = json_string_value(json_object_get(j, "hostname"));
  const char *caps = json_string_value(json_object_get(j, "caps"));
  s->caps = caps ? strtoull(caps, NULL, 16) : 0;
  s->seccomp = json_is_true(json_object_get(j, "seccomp"));
  s->cgroups = json_object_get(j, "cgroups");
  s->binds = json_object_get(j, "binds");
  s->secrets = json_string_value(json_object_get(j, "secrets"));
  if (json_array_size(s->binds) > MAX_BINDS) return -1;
  json_t *v;
  if (json_is_integer(v = json_object_get(j, "uid"))) s->uid = (long)json_integer_value(v);
  if (json_is_integer(v = json_object_get(j, "gid"))) s->gid = (long)json_integer_value(v);
  if (json_is_integer(v = json_object_get(j, "join"))) s->join = (long)json_integer_value(v);
  size_t i;
  json_array_foreach(json_object_get(j, "groups"), i, v) {
    if (s->ngroups < MAX_GROUPS && json_is_integer(v)) s->groups[s->ngroups++] = (gid_t)json_integer_value(v);
  }
  const json_t *env = json_object_get(j, "env");
  s->env = calloc(json_array_size(env) + 1, sizeof *s->env);
  if (!s->env) return -1;
  size_t ne = 0;
  json_array_foreach(env, i, v) {
    if (json_is_string(v)) s->env[ne++] = (char *)json_string_value(v); /* borrowed from the spec, kept to exec */
  }
  if (!s->workdir || s->workdir[0] != '/') s->workdir = "/";
  if (s->uid < -1 || s->uid > 0x7fffffff || s->gid < -1 || s->gid > 0x7fffffff) return -1;
  return s->join ? 0 : (s->rootfs && s->rootfs[0] == '/' ? 0 : -1);
}

/* Moves this process into each of the app's cgroups (they were made and limited by ferryd). */
static void join_cgroups(const spec *s) {
  size_t i;
  const json_t *v;
  json_array_foreach(s->cgroups, i, v) {
    char path[4200], pid[24];
    if (!json_is_string(v)) continue;
    snprintf(path, sizeof path, "%s/cgroup.procs", json_string_value(v));
    int n = snprintf(pid, sizeof pid, "%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || write(fd, pid, (size_t)n) != n) die("cannot join the cgroup %s: %s", json_string_value(v), strerror(errno));
    close(fd);
  }
}

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

void fy_close_inherited(int cloexec_only) {
  if (syscall(SYS_close_range, 3U, ~0U, cloexec_only ? CLOSE_RANGE_CLOEXEC : 0U) == 0) return;
  /* before Linux 5.11 (5.9 without the flag): one descriptor at a time */
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (int fd = 3; fd < max; fd++) {
    if (cloexec_only) {
      int fl = fcntl(fd, F_GETFD);
      if (fl >= 0) (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    } else {
      (void)close(fd);
    }
  }
}

/* --- the root ------------------------------------------------------------------------------ */

static void xmount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  if (mount(src, dst, type, flags, data) != 0) die("cannot mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

/* A directory in the new root (after pivot_root every path resolves inside it). */
static void ensure_dir(const char *path, mode_t mode) {
  if (mkdir(path, mode) != 0 && errno != EEXIST) die("cannot create %s: %s", path, strerror(errno));
}

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/* A detached copy of a host path's mount (Linux 5.2), taken before the old root goes away and
 * attached in the new root later (move_tree). -1 when the host has no such path. */
static int clone_tree(const char *path, int recursive) {
  return (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | O_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
}

#define RO_FILE (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
#define RO_DEVICE (MS_RDONLY | MS_NOSUID | MS_NOEXEC) /* a device node still reads and writes; its inode cannot be changed */

/* Attaches a cloned tree onto path in the new root (a file created when missing), then makes it
 * ro_flags (0: as it came). */
static int move_tree(int tree, const char *path, int is_file, unsigned long ro_flags) {
  if (is_file) {
    int t = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0644);
    if (t < 0) t = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (t < 0) return -1;
    close(t);
  }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) != 0) return -1;
  close(tree);
  if (ro_flags && mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | ro_flags, NULL) != 0) return -1;
  return 0;
}

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
struct fy_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

/* Makes every mount of a cloned tree read-only (Linux 5.12), the submounts too. */
static int tree_read_only(int tree) {
  struct fy_mount_attr a = {.attr_set = 0x1 /* RDONLY */ | 0x2 /* NOSUID */ | 0x4 /* NODEV */ | 0x8 /* NOEXEC */};
  return (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a);
}

/* Read-only or hidden parts of /proc and /sys, as Docker's default spec has them. */
static void mask_paths(void) {
  static const char *const ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  static const char *const masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                       "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                       "/sys/firmware", "/sys/devices/virtual/powercap"};
  for (size_t i = 0; i < sizeof ro / sizeof ro[0]; i++) {
    if (mount(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL) != 0) continue; /* not on this kernel */
    if (mount(NULL, ro[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
      die("cannot make %s read-only: %s", ro[i], strerror(errno));
  }
  for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
    struct stat st;
    if (lstat(masked[i], &st) != 0) continue;
    int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", masked[i], "tmpfs", MS_RDONLY, "size=0")
                                 : mount("/dev/null", masked[i], NULL, MS_BIND, NULL);
    if (rc == 0 && !S_ISDIR(st.st_mode)) rc = mount(NULL, masked[i], NULL, MS_BIND | MS_REMOUNT | RO_DEVICE, NULL);
    if (rc != 0) die("cannot hide %s: %s", masked[i], strerror(errno));
  }
}

/* mkdir -p of path's parents (and of path itself unless leaf_is_file), inside the new root. */
static void ensure_parents(const char *path, int leaf_is_file) {
  char p[4096];
  snprintf(p, sizeof p, "%s", path);
  for (char *c = p + 1; *c; c++)
    if (*c == '/') {
      *c = '\0';
      ensure_dir(p, 0755);
      *c = '/';
    }
  if (!leaf_is_file) ensure_dir(p, 0755);
}

/* The release's secrets, read from the host before its root goes away, written to a read-only
 * tmpfs at /run/secrets afterwards (never to the release's disk), each readable by the app's
 * user alone. */
#define MAX_SECRETS 64
#define SECRET_MAX (256 * 1024)
typedef struct secret { char name[40]; char *data; size_t len; } secret;

static size_t read_secrets(const char *dir, secret *out) {
  DIR *d = dir ? opendir(dir) : NULL;
  size_t n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) && n < MAX_SECRETS) {
    if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof out[n].name) continue;
    int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SECRET_MAX) {
      if (fd >= 0) close(fd);
      continue;
    }
    out[n].data = malloc((size_t)st.st_size + 1);
    ssize_t r = out[n].data ? read(fd, out[n].data, (size_t)st.st_size) : -1;
    close(fd);
    if (r != st.st_size) die("cannot read secret %s", e->d_name);
    out[n].len = (size_t)r;
    snprintf(out[n].name, sizeof out[n].name, "%.39s", e->d_name);
    n++;
  }
  if (d) closedir(d);
  return n;
}

static void mount_secrets(const spec *s, secret *sec, size_t n) {
  if (!s->secrets) return;
  ensure_parents("/run/secrets", 0);
  xmount("tmpfs", "/run/secrets", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=20m");
  for (size_t i = 0; i < n; i++) {
    char path[4200];
    snprintf(path, sizeof path, "/run/secrets/%.40s", sec[i].name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
    if (fd < 0 || write(fd, sec[i].data, sec[i].len) != (ssize_t)sec[i].len) die("cannot write %s: %s", path, strerror(errno));
    if (fchown(fd, (uid_t)(s->uid >= 0 ? s->uid : 0), (gid_t)(s->gid >= 0 ? s->gid : 0)) != 0) die("cannot chown %s", path);
    close(fd);
    memset(sec[i].data, 0, sec[i].len);
    free(sec[i].data);
  }
  xmount(NULL, "/run/secrets", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=20m");
}

/* Makes the release root this namespace's root, with the environment an image expects. */
static void enter_root(const spec *s) {
  static const char *const devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
  int devtree[6], etctree[3], systree, bindtree[MAX_BINDS];
  char path[4300];
  size_t nbinds = json_array_size(s->binds);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("cannot make mounts private: %s", strerror(errno));
  xmount(s->rootfs, s->rootfs, NULL, MS_BIND | MS_REC, NULL); /* pivot_root needs a mount point */
  /* Device nodes the app makes (MKNOD is in the default set, as in Docker) open nowhere: every
   * writable mount is nodev; the nodes of /dev are bind mounts of their own. */
  xmount(NULL, s->rootfs, NULL, MS_BIND | MS_REMOUNT | MS_NODEV | MS_NOSUID, NULL);
  /* What comes from the host, as detached copies that survive the old root's removal. */
  for (size_t i = 0; i < 6; i++) {
    snprintf(path, sizeof path, "/dev/%s", devs[i]);
    if ((devtree[i] = clone_tree(path, 0)) < 0) die("cannot take %s from the host: %s (ferryd needs Linux 5.2 or later)", path, strerror(errno));
  }
  static const char *const etc[] = {"/etc/resolv.conf", "/etc/hosts", "/etc/hostname"};
  etctree[0] = clone_tree("/etc/resolv.conf", 0);
  etctree[1] = clone_tree("/etc/hosts", 0);
  snprintf(path, sizeof path, "%s/../hostname", s->rootfs);
  etctree[2] = clone_tree(path, 0);
  systree = clone_tree("/sys", 1);
  for (size_t i = 0; i < nbinds; i++) { /* volumes and device nodes, taken from the host before it goes */
    const json_t *b = json_array_get(s->binds, i);
    const char *src = json_string_value(json_object_get(b, "src"));
    if (!src || (bindtree[i] = clone_tree(src, 0)) < 0) die("cannot take %s for the app: %s", src ? src : "?", strerror(errno));
    struct stat bst; /* what was taken is what was checked: a device node, or a directory */
    int device = json_is_true(json_object_get(b, "device"));
    if (fstat(bindtree[i], &bst) != 0 || (device ? !(S_ISCHR(bst.st_mode) || S_ISBLK(bst.st_mode)) : !S_ISDIR(bst.st_mode)))
      die("%s is not a %s", src, device ? "device node" : "directory");
  }
  static secret sec[MAX_SECRETS];
  size_t nsec = read_secrets(s->secrets, sec);
  if (chdir(s->rootfs) != 0) die("cannot enter %s: %s", s->rootfs, strerror(errno));
  if (syscall(SYS_pivot_root, ".", ".") != 0) die("pivot_root into %s: %s", s->rootfs, strerror(errno));
  if (umount2(".", MNT_DETACH) != 0) die("cannot detach the old root: %s", strerror(errno));
  if (chdir("/") != 0) die("chdir /: %s", strerror(errno));
  /* From here every path, symlinks in the image included, resolves inside the release root. */
  ensure_dir("/proc", 0555);
  xmount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  ensure_dir("/dev", 0755);
  xmount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=755,size=65536k");
  for (size_t i = 0; i < 6; i++) {
    snprintf(path, sizeof path, "/dev/%s", devs[i]);
    if (move_tree(devtree[i], path, 1, RO_DEVICE) != 0) die("cannot provide %s: %s", path, strerror(errno));
  }
  ensure_dir("/dev/pts", 0755);
  xmount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
  ensure_dir("/dev/shm", 01777);
  xmount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
  ensure_dir("/dev/mqueue", 0755);
  static const char *const links[][2] = {{"pts/ptmx", "/dev/ptmx"}, {"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
                                         {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (symlink(links[i][0], links[i][1]) != 0) die("cannot link %s: %s", links[i][1], strerror(errno));
  ensure_dir("/sys", 0555);
  if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
    /* Without a network namespace of its own some kernels refuse a new sysfs: the host's, read-only. */
    if (systree < 0 || tree_read_only(systree) != 0 || move_tree(systree, "/sys", 0, 0) != 0)
      die("cannot provide a read-only /sys: %s", strerror(errno));
  } else if (systree >= 0) {
    close(systree);
  }
  ensure_dir("/tmp", 01777);
  xmount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  ensure_dir("/etc", 0755);
  for (size_t i = 0; i < 3; i++) {
    if (etctree[i] < 0) continue;
    if (move_tree(etctree[i], etc[i], 1, RO_FILE) != 0) fprintf(stderr, "ferryd: cannot provide %s: %s\n", etc[i], strerror(errno));
  }
  for (size_t i = 0; i < nbinds; i++) {
    const json_t *b = json_array_get(s->binds, i);
    const char *dst = json_string_value(json_object_get(b, "dst"));
    int device = json_is_true(json_object_get(b, "device"));
    if (!dst || dst[0] != '/') die("a bind without its path in the app");
    ensure_parents(dst, device); /* inside the root: the image's symlinks resolve inside it too */
    if (move_tree(bindtree[i], dst, device, device ? RO_DEVICE : MS_NOSUID | MS_NODEV) != 0)
      die("cannot mount %s for the app: %s", dst, strerror(errno));
  }
  mount_secrets(s, sec, nsec);
  mask_paths();
  if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) != 0) die("sethostname: %s", strerror(errno));
}

/* --- the workload's identity ---------------------------------------------------------------- */

/* Creates the working directory when the image lacks it (as runc does), then enters it. */
static void enter_workdir(const char *wd) {
  if (chdir(wd) == 0) return;
  char p[4096];
  snprintf(p, sizeof p, "%s", wd);
  for (char *c = p + 1; *c; c++)
    if (*c == '/') {
      *c = '\0';
      (void)mkdir(p, 0755);
      *c = '/';
    }
  (void)mkdir(p, 0755);
  if (chdir(wd) != 0) die("cannot enter the working directory %s: %s", wd, strerror(errno));
}

/* User, groups, capabilities, no_new_privs and the filter; the last step before exec. */
static void drop_privileges(spec *s) {
  for (int c = 0; c <= 63; c++) {
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0) break; /* past the kernel's last capability */
    if (!((s->caps >> c) & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) die("cannot drop capability %d: %s", c, strerror(errno));
  }
  if (s->gid >= 0) {
    if (setgroups(s->ngroups, s->groups) != 0) die("setgroups: %s", strerror(errno));
    if (setresgid((gid_t)s->gid, (gid_t)s->gid, (gid_t)s->gid) != 0) die("setgid %ld: %s", s->gid, strerror(errno));
  }
  if (s->uid >= 0 && setresuid((uid_t)s->uid, (uid_t)s->uid, (uid_t)s->uid) != 0) die("setuid %ld: %s", s->uid, strerror(errno));
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  if (s->uid <= 0) { /* root keeps the set; any other user has none (the kernel cleared them at setuid) */
    d[0].effective = d[0].permitted = (uint32_t)s->caps;
    d[1].effective = d[1].permitted = (uint32_t)(s->caps >> 32);
  }
  if (syscall(SYS_capset, &h, d) != 0) die("capset: %s", strerror(errno));
  (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs: %s", strerror(errno));
  int rc;
  if (s->filter && (rc = fy_seccomp_install(s->filter)) != 0) die("cannot load the seccomp filter: %s", strerror(-rc));
}

/* The filter, built while nothing of the app can see this process. */
static void build_filter(spec *s) {
  int err = 0;
  if (s->seccomp && !(s->filter = fy_seccomp_build(s->caps, &err))) die("cannot build the seccomp filter: %s", strerror(-err));
}

static void exec_prog(spec *s, char **argv) __attribute__((noreturn));
static void exec_prog(spec *s, char **argv) {
  sigset_t none;
  sigemptyset(&none);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  enter_workdir(s->workdir);
  fy_close_inherited(0);
  drop_privileges(s);
  (void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* again: a change of ids cleared it */
  environ = s->env;
  execvp(argv[0], argv); /* PATH: the image's */
  fprintf(stderr, "ferryd: cannot execute %s: %s\n", argv[0], strerror(errno));
  _exit(errno == ENOEXEC || errno == EACCES ? 126 : 127);
}

/* --- signals and exits ---------------------------------------------------------------------- */

/* Waits for child while forwarding every signal this process receives to it; returns its wait
 * status. With reap_all (PID 1), every other child that ends is reaped too. */
static int forward_until_exit(pid_t child, int reap_all) {
  sigset_t all;
  sigfillset(&all);
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      int status;
      pid_t r;
      while ((r = waitpid(reap_all ? -1 : child, &status, WNOHANG)) > 0)
        if (r == child) return status;
      continue;
    }
    kill(child, sig);
  }
}

/* Ends this process the way the workload ended. */
static void exit_like(int status) __attribute__((noreturn));
static void exit_like(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125); /* no atexit work (LSan) in a helper */
}

/* The PID-1 shim: the root, then the workload; forwards signals, reaps, reports the status. */
static void shim(spec *s, char **argv, int report) __attribute__((noreturn));
static void shim(spec *s, char **argv, int report) {
  if (setsid() < 0) die("setsid: %s", strerror(errno)); /* kill(0, ...) in the app reaches no further */
  enter_root(s);
  build_filter(s);
  pid_t w = fork();
  if (w < 0) die("fork: %s", strerror(errno));
  if (w == 0) {
    close(report);
    exec_prog(s, argv);
  }
  int status = forward_until_exit(w, 1);
  if (write(report, &status, sizeof status) != (ssize_t)sizeof status) _exit(125);
  _exit(0); /* leaving PID 1 ends whatever else still runs in the namespace */
}

/* The first child of pid (the shim of a helper). */
static pid_t child_of(pid_t parent) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)parent, (int)parent);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
      buf[n] = '\0';
      char *end;
      errno = 0;
      long pid = strtol(buf, &end, 10);
      if (!errno && end != buf && pid > 0 && pid <= 0x7fffffff) return (pid_t)pid;
    }
  }
  return 0;
}

/* Runs argv inside the app that helper `join` started (the health command). */
static int join_main(spec *s, char **argv) {
  /* The app is ready once its shim has made the root and forked the workload: before that its
   * mount namespace may still have the host's root, which a health command must never get. */
  pid_t sh = 0;
  for (int i = 0; i < 200; i++) { /* at most 10 s: the health check's own time limit */
    sh = child_of((pid_t)s->join);
    if (sh > 0 && child_of(sh) > 0) break;
    sh = 0;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (sh <= 0) die("the app's process %ld is not running", s->join);
  char rootlink[64];
  struct stat hostroot, approot;
  snprintf(rootlink, sizeof rootlink, "/proc/%d/root/", (int)sh);
  if (stat("/", &hostroot) != 0 || stat(rootlink, &approot) != 0 ||
      (hostroot.st_dev == approot.st_dev && hostroot.st_ino == approot.st_ino))
    die("process %d has not entered its release root", (int)sh);
  /* Nothing inside the app may ptrace what enters it, before or after the fork. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) die("cannot make the health command undumpable: %s", strerror(errno));
  static const char *const kinds[] = {"ipc", "uts", "pid", "mnt"};
  int fds[4];
  for (int i = 0; i < 4; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)sh, kinds[i]);
    if ((fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) die("cannot open %s: %s", path, strerror(errno));
  }
  /* A recycled pid could name a process of the host: the namespaces must not be ours. */
  struct stat mine, theirs;
  if (stat("/proc/self/ns/mnt", &mine) != 0 || fstat(fds[3], &theirs) != 0 || mine.st_ino == theirs.st_ino)
    die("process %d is not a contained app", (int)sh);
  build_filter(s);
  join_cgroups(s);
  for (int i = 0; i < 4; i++) {
    if (setns(fds[i], 0) != 0) die("cannot enter the app's %s namespace: %s", kinds[i], strerror(errno));
    close(fds[i]);
  }
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);
  pid_t c = fork();
  if (c < 0) die("fork: %s", strerror(errno));
  if (c == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (chdir("/") != 0) _exit(125);
    exec_prog(s, argv);
  }
  exit_like(forward_until_exit(c, 0));
}

int fy_exec_helper_main(int argc, char **argv) {
  json_t *keep = NULL;
  spec s;
  if (argc < 5 || strcmp(argv[3], "--") != 0 || parse_spec(argv[2], &keep, &s) != 0) {
    fprintf(stderr, "ferryd __exec: bad arguments\n");
    return 125;
  }
  char **prog = argv + 4;
  struct rlimit no_core = {0, 0};
  (void)setrlimit(RLIMIT_CORE, &no_core); /* the helper re-raises the workload's signal: no core of its own */
  (void)setsid(); /* its own session, not ferryd's process group (spawned detached, it already leads one) */
  if (s.join && isatty(0)) (void)ioctl(0, TIOCSCTTY, 0); /* ferry exec -t: the pty is the command's terminal */
  if (s.join) return join_main(&s, prog);
  join_cgroups(&s);
  if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC) != 0)
    die("cannot create the app's namespaces: %s (the kernel needs CONFIG_NAMESPACES; or set runtime.isolation: none)", strerror(errno));
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) die("pipe: %s", strerror(errno));
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL); /* nothing is lost between here and the wait */
  pid_t sh = fork();
  if (sh < 0) die("fork: %s", strerror(errno));
  if (sh == 0) {
    /* The helper killed: the namespace goes too. (getppid() is 0 in the new namespace, so the
     * window before this call cannot be checked that way; ferryd kills the helper only after
     * it has started.) */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(pfd[0]);
    shim(&s, prog, pfd[1]);
  }
  close(pfd[1]);
  int shim_status = forward_until_exit(sh, 0), status;
  if (read(pfd[0], &status, sizeof status) != (ssize_t)sizeof status) status = shim_status; /* the shim's own error */
  exit_like(status);
}
