/* The runtime helper: ferryd re-executed as `ferryd __exec SPEC -- PROG ARGS...`, where SPEC is a
 * JSON object written by launch.c:
 *   {"rootfs","workdir","uid","gid","groups":[..],"hostname","caps":"0x..","seccomp":bool,
 *    "cgroups":[dir..],"env":["K=V"..],"join"?:pid}
 * The helper itself runs with PATH alone; "env" is the workload's environment (the image's Env
 * never reaches the helper, a dynamically linked root process on the host).
 *
 * Without "join" it starts an app the way an OCI runtime's default spec does: it joins the app's
 * cgroups, enters new mount, PID, UTS and IPC namespaces (host network), and forks a PID-1 shim
 * there. The shim makes the release root the root (pivot_root, private propagation) with /proc,
 * a /dev tmpfs (null zero full random urandom tty, ptmx + pts, shm, fd links), /sys read-only, a
 * /tmp tmpfs and the node's resolv.conf, hosts and hostname, hides what Docker hides in /proc and
 * /sys, sets the hostname, and forks the workload: the image's user and groups, the capability
 * set (bounding set too), no_new_privs, the seccomp filter, then exec. The shim forwards every
 * signal to the workload and reaps orphans; the helper forwards every signal to the shim and ends
 * the way the workload ended (its exit status, or the same signal).
 *
 * With "join": PID it runs PROG inside the namespaces and root of the app that helper PID started
 * (the health command), with the same user, capabilities and filter.
 *
 * Killing the helper (SIGKILL) ends everything in the app's PID namespace. */
#ifndef FERRY_AGENT_EXEC_HELPER_H
#define FERRY_AGENT_EXEC_HELPER_H

/* Descriptors 3 and up: closed (cloexec_only 0: the workload gets stdin, stdout and stderr only),
 * or marked close-on-exec (1: what ferryd inherited from whoever started it never reaches a
 * workload it spawns). */
void fy_close_inherited(int cloexec_only);

/* Does not return on success; 125 for its own errors, 126/127 when the program cannot run. */
int fy_exec_helper_main(int argc, char **argv);

#endif
