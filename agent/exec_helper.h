/* The chroot helper: ferryd re-executed as `ferryd __exec ROOTFS WORKDIR UID GID -- PROG ARGS...`
 * enters new mount and PID namespaces and the release root, drops to the image's user, and execs
 * the workload as PID 1 of its namespace, forwarding SIGTERM/SIGINT and reporting its status. */
#ifndef FERRY_AGENT_EXEC_HELPER_H
#define FERRY_AGENT_EXEC_HELPER_H

/* Does not return on success; 125 for its own errors, 126/127 when the program cannot run. */
int fy_exec_helper_main(int argc, char **argv);

#endif
