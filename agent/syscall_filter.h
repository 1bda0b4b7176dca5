/* The default system-call filter of a contained app: the same allow list as Docker's default
 * seccomp profile (everything else fails with EPERM), including its conditional rules (clone
 * without namespace flags, clone3 answering ENOSYS so libc falls back to clone, personality's
 * harmless values, no AF_VSOCK sockets) and the calls it allows only to holders of a capability
 * (mount and unshare with SYS_ADMIN, ptrace with SYS_PTRACE, kernel modules with SYS_MODULE...). */
#ifndef FERRY_AGENT_SYSCALL_FILTER_H
#define FERRY_AGENT_SYSCALL_FILTER_H

#include <stdint.h>

/* Loads the filter into the calling thread (no_new_privs must be set, or the caller hold
 * CAP_SYS_ADMIN). caps: the capability set the workload keeps. 0, or -errno. */
int fy_seccomp_load(uint64_t caps);

#endif
