/* The chroot helper (see exec_helper.h). */
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec_helper.h"
#include "ferry/fsutil.h"
#include "ferry/yaml.h"

/* The chroot helper, run as `ferryd __exec ROOTFS WORKDIR UID GID -- PROG ARGS...`: new mount
 * and PID namespaces, the workload as PID 1 of its namespace inside the release root. */
int fy_exec_helper_main(int argc, char **argv) {
  if (argc < 8 || strcmp(argv[6], "--") != 0) {
    fprintf(stderr, "ferryd __exec: bad arguments\n");
    return 125;
  }
  const char *rootfs = argv[2], *workdir = argv[3];
  long uid, gid;
  if (fy_parse_long(argv[4], -1, 0x7fffffff, &uid) != FY_OK || fy_parse_long(argv[5], -1, 0x7fffffff, &gid) != FY_OK) {
    fprintf(stderr, "ferryd __exec: bad uid/gid\n");
    return 125;
  }
  if (unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) {
    fprintf(stderr, "ferryd: cannot create namespaces (%s); running with chroot only\n", strerror(errno));
  } else {
    (void)mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
  }
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "ferryd: fork: %s\n", strerror(errno));
    return 125;
  }
  if (child == 0) prctl(PR_SET_PDEATHSIG, SIGKILL); /* the helper killed: the workload goes too */
  if (child > 0) {
    /* Forward termination to the workload and report its status as ours. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
      int status;
      pid_t r = waitpid(child, &status, WNOHANG);
      if (r == child) {
        if (WIFSIGNALED(status)) {
          signal(WTERMSIG(status), SIG_DFL);
          sigprocmask(SIG_UNBLOCK, &set, NULL);
          raise(WTERMSIG(status));
        }
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125); /* no atexit work (LSan) in a helper */
      }
      struct timespec ts = {0, 50 * 1000 * 1000};
      siginfo_t si;
      if (sigtimedwait(&set, &si, &ts) > 0) kill(child, si.si_signo);
    }
  }
  if (chroot(rootfs) != 0 || chdir(workdir) != 0) {
    if (chdir("/") != 0) {}
    fprintf(stderr, "ferryd: cannot enter %s (%s)\n", rootfs, strerror(errno));
    _exit(125);
  }
  if (gid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0)) {
    fprintf(stderr, "ferryd: setgid %ld: %s\n", gid, strerror(errno));
    _exit(125);
  }
  if (uid >= 0 && setuid((uid_t)uid) != 0) {
    fprintf(stderr, "ferryd: setuid %ld: %s\n", uid, strerror(errno));
    _exit(125);
  }
  execv(argv[7], argv + 7);
  fprintf(stderr, "ferryd: cannot execute %s: %s\n", argv[7], strerror(errno));
  _exit(errno == ENOEXEC ? 126 : 127);
}
