/* The system's OpenSSH client, run as a child process; see ssh.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ssh.h"

#define SSH_OUT_MAX (1u << 20)
#define SSH_MAX_WORDS 32

int fy_ssh_parse(const char *spec, fy_ssh *s, char *err, size_t errlen) {
  memset(s, 0, sizeof s[0]);
  const char *at = strrchr(spec, '@'), *hostpart = at ? at + 1 : spec;
  char host[256] = "";
  const char *port = NULL;
  if (hostpart[0] == '[') {
    const char *close = strchr(hostpart, ']');
    if (!close || (size_t)(close - hostpart - 1) >= sizeof host) goto bad;
    memcpy(host, hostpart + 1, (size_t)(close - hostpart - 1));
    if (close[1] == ':') port = close + 2;
    else if (close[1]) goto bad;
  } else {
    const char *colon = strchr(hostpart, ':');
    size_t hl = colon ? (size_t)(colon - hostpart) : strlen(hostpart);
    if (hl >= sizeof host) goto bad;
    memcpy(host, hostpart, hl);
    host[hl] = '\0';
    if (colon) port = colon + 1;
  }
  if (!host[0] || strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:_") != strlen(host)) goto bad;
  if (at && (at == spec || (size_t)(at - spec) > 64 ||
             strspn(spec, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != (size_t)(at - spec)))
    goto bad;
  if (port) {
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 1 || p > 65535) goto bad;
    snprintf(s->port, sizeof s->port, "%ld", p);
  }
  snprintf(s->host, sizeof s->host, "%s", host);
  if (at) snprintf(s->dest, sizeof s->dest, "%.*s@%s", (int)(at - spec), spec, host);
  else snprintf(s->dest, sizeof s->dest, "%s", host);
  return FY_OK;
bad:
  snprintf(err, errlen, "'%s' is not USER@HOST[:PORT] (the SSH login of the device)", spec);
  return FY_EINVAL;
}

int fy_sh_quote(const char *s, char *buf, size_t len) {
  size_t o = 0;
  if (len < 3) return FY_ETOOBIG;
  buf[o++] = '\'';
  for (; *s; s++) {
    if (*s == '\'') {
      if (o + 5 >= len) return FY_ETOOBIG;
      memcpy(buf + o, "'\\''", 4);
      o += 4;
    } else {
      if (o + 2 >= len) return FY_ETOOBIG;
      buf[o++] = *s;
    }
  }
  buf[o++] = '\'';
  buf[o] = '\0';
  return FY_OK;
}

static void append(char **buf, size_t *len, const char *p, size_t n) {
  if (*len + n > SSH_OUT_MAX) n = SSH_OUT_MAX - *len;
  char *nb = realloc(*buf, *len + n + 1);
  if (!nb) return;
  memcpy(nb + *len, p, n);
  *len += n;
  nb[*len] = '\0';
  *buf = nb;
}

/* Long on purpose: process plumbing in one place (argv, three pipes, fork/exec, a poll loop with
 * the deadline, reaping); split, the file descriptors would have to be passed around. */
int fy_ssh_run(const fy_ssh *s, const char *script, const char *stdin_path, int timeout_s, fy_ssh_result *r) {
  char *words[SSH_MAX_WORDS + 16], *cmdcopy = NULL, timeout_opt[48];
  size_t nw = 0;
  memset(r, 0, sizeof *r);
  r->exit_code = -1;
  const char *env = getenv("FERRY_SSH_COMMAND");
  if (env && *env) {
    cmdcopy = strdup(env);
    if (!cmdcopy) return FY_ENOMEM;
    for (char *save = NULL, *w = strtok_r(cmdcopy, " \t", &save); w && nw < SSH_MAX_WORDS; w = strtok_r(NULL, " \t", &save))
      words[nw++] = w;
  }
  if (nw == 0) words[nw++] = "ssh";
  snprintf(timeout_opt, sizeof timeout_opt, "ConnectTimeout=%d", timeout_s < 10 ? timeout_s : 10);
  words[nw++] = "-o";
  words[nw++] = "BatchMode=yes";
  words[nw++] = "-o";
  words[nw++] = timeout_opt;
  if (s->port[0]) {
    words[nw++] = "-p";
    words[nw++] = (char *)s->port;
  }
  words[nw++] = "--";
  words[nw++] = (char *)s->dest;
  /* ssh joins its arguments into one remote command line for the login shell: quote once. */
  size_t qlen = strlen(script) * 4 + 16;
  char *q = malloc(qlen + 8), *cmd = malloc(qlen + 16);
  if (!q || !cmd || fy_sh_quote(script, q, qlen) != FY_OK) {
    free(q);
    free(cmd);
    free(cmdcopy);
    return FY_ENOMEM;
  }
  snprintf(cmd, qlen + 16, "sh -c %s", q);
  free(q);
  words[nw++] = cmd;
  words[nw] = NULL;

  int outp[2], errp[2];
  if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
    free(cmd);
    free(cmdcopy);
    return FY_EIO;
  }
  int in = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    free(cmd);
    free(cmdcopy);
    close(outp[0]); close(outp[1]); close(errp[0]); close(errp[1]);
    return fy_err_from_errno(errno);
  }
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in, 0);
    dup2(outp[1], 1);
    dup2(errp[1], 2);
    setpgid(0, 0); /* a timeout kills ssh and whatever it started */
    execvp(words[0], words);
    fprintf(stderr, "ferry: cannot run %s: %s\n", words[0], strerror(errno));
    _exit(127);
  }
  close(in);
  close(outp[1]);
  close(errp[1]);
  free(cmd);
  if (pid < 0) {
    free(cmdcopy);
    close(outp[0]);
    close(errp[0]);
    return FY_EIO;
  }
  size_t olen = 0, elen = 0;
  struct pollfd pf[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
  time_t deadline = time(NULL) + timeout_s;
  int open_fds = 2, timed_out = 0;
  while (open_fds > 0) {
    int left = (int)(deadline - time(NULL));
    if (left <= 0) {
      timed_out = 1;
      break;
    }
    int n = poll(pf, 2, left * 1000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int i = 0; i < 2; i++) {
      if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      ssize_t k = read(pf[i].fd, buf, sizeof buf);
      if (k > 0) append(i ? &r->err : &r->out, i ? &elen : &olen, buf, (size_t)k);
      else {
        close(pf[i].fd);
        pf[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (int i = 0; i < 2; i++)
    if (pf[i].fd >= 0) close(pf[i].fd);
  if (timed_out) kill(-pid, SIGKILL);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  free(cmdcopy);
  if (!r->out) r->out = strdup("");
  if (!r->err) r->err = strdup("");
  if (timed_out) return FY_ETIMEDOUT;
  r->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
  if (r->exit_code == 127 && r->err && strstr(r->err, "ferry: cannot run")) return FY_ENOENT;
  return FY_OK;
}

void fy_ssh_result_free(fy_ssh_result *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

void fy_ssh_explain(const fy_ssh *s, const fy_ssh_result *r, char *buf, size_t len) {
  const char *e = r->err ? r->err : "";
  char last[300] = "";
  /* ssh's last line says it best */
  const char *end = e + strlen(e);
  while (end > e && (end[-1] == '\n' || end[-1] == '\r')) end--;
  const char *start = end;
  while (start > e && start[-1] != '\n') start--;
  snprintf(last, sizeof last, "%.*s", (int)(end - start), start);
  if (strstr(e, "Permission denied") || strstr(e, "Too many authentication failures"))
    snprintf(buf, len, "SSH authentication refused by %s (%s): ferry logs in without a password prompt; add your key "
             "with ssh-copy-id %s, or name one with FERRY_SSH_COMMAND='ssh -i KEY'", s->dest, last, s->dest);
  else if (strstr(e, "Host key verification failed") || strstr(e, "REMOTE HOST IDENTIFICATION HAS CHANGED"))
    snprintf(buf, len, "%s: the device's host key is unknown or changed (%s); check it, then connect once with ssh %s",
             s->dest, last, s->dest);
  else if (strstr(e, "Connection refused") || strstr(e, "timed out") || strstr(e, "Could not resolve") ||
           strstr(e, "No route to host") || strstr(e, "Network is unreachable"))
    snprintf(buf, len, "cannot reach %s%s%s over SSH: %s", s->host, s->port[0] ? ":" : "", s->port, last);
  else
    snprintf(buf, len, "ssh %s failed: %s", s->dest, last[0] ? last : "(no message)");
}
