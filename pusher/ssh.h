/* Running commands on a device through the system's OpenSSH client (no SSH library): what
 * install-agent and uninstall-agent use. The client is `ssh`, or the words of
 * $FERRY_SSH_COMMAND (like GIT_SSH_COMMAND: "ssh -F ./ssh_config -i key"); it runs in batch mode
 * (no password prompts) with a connect timeout, and ~/.ssh/config applies as usual. */
#ifndef FERRY_PUSHER_SSH_H
#define FERRY_PUSHER_SSH_H

#include <stddef.h>

#include "ferry/error.h"

typedef struct fy_ssh {
  char dest[512];     /* USER@HOST or HOST */
  char host[256];     /* HOST alone (for the agent's address) */
  char port[8];       /* "" = ssh's default */
} fy_ssh;

/* USER@HOST[:PORT] or HOST[:PORT] ([v6]:PORT too). FY_EINVAL with a reason. */
int fy_ssh_parse(const char *spec, fy_ssh *s, char *err, size_t errlen) FY_WUR;

/* Single-quotes s for a POSIX shell into buf. FY_ETOOBIG when it does not fit. */
int fy_sh_quote(const char *s, char *buf, size_t len) FY_WUR;

typedef struct fy_ssh_result {
  int exit_code;      /* the remote command's, 255 for ssh's own failures, -1 if ssh did not run */
  char *out, *err;    /* captured stdout and stderr (NUL-terminated, at most 1 MiB each) */
} fy_ssh_result;

/* Runs `sh -c SCRIPT` on the device; stdin from stdin_path (NULL: /dev/null). Returns FY_OK when
 * ssh ran (look at r->exit_code), or an error when it could not be started or timed out. */
int fy_ssh_run(const fy_ssh *s, const char *script, const char *stdin_path, int timeout_s, fy_ssh_result *r) FY_WUR;
void fy_ssh_result_free(fy_ssh_result *r);

/* For an exit code of 255: what went wrong, in words a user acts on. */
void fy_ssh_explain(const fy_ssh *s, const fy_ssh_result *r, char *buf, size_t len);

#endif
