/* The default system-call filter of a contained app: the same allow list as Docker's default
 * seccomp profile (everything else fails with EPERM), including its conditional rules (clone
 * without namespace flags, clone3 answering ENOSYS so libc falls back to clone, personality's
 * harmless values, no AF_VSOCK sockets) and the calls it allows only to holders of a capability
 * (mount and unshare with SYS_ADMIN, ptrace with SYS_PTRACE, kernel modules with SYS_MODULE...). */
#ifndef FERRY_AGENT_SYSCALL_FILTER_H
#define FERRY_AGENT_SYSCALL_FILTER_H

#include <stdint.h>

/* Builds the filter for a workload keeping the capability set caps (NULL and *err = -errno on
 * failure). Built before the fork that makes the workload, so nothing is allocated in the
 * window where it runs unfiltered. */
void *fy_seccomp_build(uint64_t caps, int *err);
/* Loads a built filter into the calling thread (no_new_privs must be set first). 0 or -errno. */
int fy_seccomp_install(void *filter);

#endif
