/* The default system-call filter (see seccomp.h), through libseccomp. The lists are data: one
 * string per call, resolved by libseccomp for each architecture in the filter (a call a kernel
 * or an architecture lacks is skipped). */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/socket.h>

#include "syscall_filter.h"

/* Allowed to every workload. */
static const char *const allowed =
    "accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime "
    "clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep "
    "clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create "
    "epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 "
    "execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir "
    "fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork "
    "fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex "
    "futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 "
    "getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority "
    "getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid "
    "getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch "
    "inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents "
    "io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 "
    "lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 "
    "madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap "
    "mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend "
    "mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap "
    "name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal "
    "pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 "
    "prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink "
    "readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename "
    "renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo "
    "rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity "
    "sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler "
    "sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam "
    "sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send "
    "sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 "
    "setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid "
    "setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area "
    "set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 "
    "sigprocmask sigreturn socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync "
    "sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime "
    "timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 "
    "timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat "
    "utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev "
    "process_vm_readv process_vm_writev ptrace "
    /* architecture-specific ones (each name exists only where it means something) */
    "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls arch_prctl modify_ldt";

/* Allowed to holders of one capability (bit number in capabilities(7)). */
static const struct { int cap; const char *calls; } by_cap[] = {
    {2 /* DAC_READ_SEARCH */, "open_by_handle_at"},
    {21 /* SYS_ADMIN */, "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
                         "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
                         "sethostname setns syslog umount umount2 unshare"},
    {22 /* SYS_BOOT */, "reboot"},
    {18 /* SYS_CHROOT */, "chroot"},
    {16 /* SYS_MODULE */, "delete_module init_module finit_module"},
    {20 /* SYS_PACCT */, "acct"},
    {19 /* SYS_PTRACE */, "kcmp pidfd_getfd process_madvise"},
    {17 /* SYS_RAWIO */, "iopl ioperm"},
    {25 /* SYS_TIME */, "settimeofday stime clock_settime clock_settime64"},
    {26 /* SYS_TTY_CONFIG */, "vhangup"},
    {23 /* SYS_NICE */, "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"},
    {34 /* SYSLOG */, "syslog"},
    {39 /* BPF */, "bpf"},
    {38 /* PERFMON */, "perf_event_open"},
};

/* Adds an ALLOW rule for each space-separated name. */
static int allow_list(scmp_filter_ctx ctx, const char *list) {
  char name[48];
  const char *p = list;
  while (*p) {
    size_t n = 0;
    while (*p == ' ') p++;
    while (p[n] && p[n] != ' ') n++;
    if (n == 0) break;
    if (n < sizeof name) {
      for (size_t i = 0; i < n; i++) name[i] = p[i];
      name[n] = '\0';
      int nr = seccomp_syscall_resolve_name(name);
      if (nr != __NR_SCMP_ERROR) {
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc < 0 && rc != -EEXIST && rc != -EDOM && rc != -EINVAL) return rc;
      }
    }
    p += n;
  }
  return 0;
}

void *fy_seccomp_build(uint64_t caps, int *err) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (!ctx) {
    *err = -ENOMEM;
    return NULL;
  }
  int rc = 0;
#if defined(__x86_64__)
  rc = seccomp_arch_add(ctx, SCMP_ARCH_X86); /* 32-bit programs on a 64-bit board */
  if (rc == 0 || rc == -EEXIST) rc = seccomp_arch_add(ctx, SCMP_ARCH_X32);
#elif defined(__aarch64__)
  rc = seccomp_arch_add(ctx, SCMP_ARCH_ARM);
#endif
  if (rc < 0 && rc != -EEXIST) goto out;
  if ((rc = allow_list(ctx, allowed)) < 0) goto out;
  for (size_t i = 0; i < sizeof by_cap / sizeof by_cap[0]; i++)
    if ((caps >> by_cap[i].cap) & 1)
      if ((rc = allow_list(ctx, by_cap[i].calls)) < 0) goto out;
  int has_admin = (caps >> 21) & 1;
  if (!has_admin) {
    /* clone without any namespace flag; clone3 says "not implemented" so libc uses clone */
    const uint64_t ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                              CLONE_NEWCGROUP;
    if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags, 0))) < 0) goto out;
    if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0 && rc != -EDOM) goto out;
  }
  /* Sockets of every family but AF_ALG (38, kernel crypto) and AF_VSOCK (40, the hypervisor);
   * socketcall (32-bit x86's multiplexer, which hides the family) and io_uring (which can make
   * sockets too) are not allowed at all, as in Docker's current profile. */
  if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_LT, AF_ALG))) < 0 ||
      (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_ALG + 1))) < 0 ||
      (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_GT, AF_VSOCK))) < 0)
    goto out;
  static const uint64_t personalities[] = {0, 8, 0x20000, 0x20008, 0xffffffffu};
  for (size_t i = 0; i < sizeof personalities / sizeof personalities[0]; i++)
    if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(personality), 1, SCMP_A0(SCMP_CMP_EQ, personalities[i]))) < 0) goto out;
  return ctx;
out:
  seccomp_release(ctx);
  *err = rc < 0 ? rc : -EINVAL;
  return NULL;
}

int fy_seccomp_install(void *filter) {
  int rc = seccomp_load((scmp_filter_ctx)filter);
  seccomp_release((scmp_filter_ctx)filter);
  return rc;
}
