/* The test workload: prints its architecture (uname -m) and an Env value from the image
 * config (and a line on stderr), then stays up, printing "usr1 from ARCH" on stdout and on stderr
 * at each SIGUSR1 (or exits with FAIL_WITH when that is set, or with 5 on the node named
 * by FAIL_ON_NODE or the machine named by FAIL_ON_ARCH, for rollback and canary tests). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

/* A small non-negative number from the environment, or dflt when unset or malformed. */
static int env_num(const char *s, int dflt) {
  char *end;
  long v = s ? strtol(s, &end, 10) : -1;
  return s && *s && !*end && v >= 0 && v <= 255 ? (int)v : dflt;
}
static volatile sig_atomic_t usr1;
static void on_term(int s) { (void)s; stop = 1; }

/* With a volume named data (FERRY_VOLUME_DATA): counts its starts in data/count, for the tests
 * that show a volume outlives releases, rollbacks and agent upgrades. */
static void count_start(void) {
  const char *dir = getenv("FERRY_VOLUME_DATA");
  char path[4096], tmp[4100];
  long n = 0;
  if (!dir) return;
  snprintf(path, sizeof path, "%s/count", dir);
  snprintf(tmp, sizeof tmp, "%s/count.tmp", dir);
  FILE *f = fopen(path, "r");
  if (f) {
    if (fscanf(f, "%ld", &n) != 1) n = 0;
    fclose(f);
  }
  f = fopen(tmp, "w");
  if (!f || fprintf(f, "%ld\n", n + 1) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
    printf("count: cannot write %s\n", path);
  } else {
    printf("count %ld\n", n + 1);
  }
  fflush(stdout);
}
static void on_usr1(int s) { (void)s; usr1 = 1; }

int main(int argc, char **argv) {
  struct utsname u;
  uname(&u);
  const char *greeting = getenv("GREETING");
  printf("hello from %s, GREETING=%s, VERSION=%s\n", u.machine, greeting ? greeting : "(unset)",
         getenv("VERSION") ? getenv("VERSION") : "?");
  fflush(stdout);
  fprintf(stderr, "stderr from %s\n", u.machine);
  if (argc > 1 && strcmp(argv[1], "--once") == 0) return 0; /* for `ferry test -- /app --once` */
  if (argc > 1 && strcmp(argv[1], "--health") == 0) { /* a health check: sick while SICK_FILE exists */
    const char *sick = getenv("SICK_FILE");
    return sick && access(sick, F_OK) == 0 ? 1 : 0;
  }
  const char *fail = getenv("FAIL_WITH");
  if (fail) {
    count_start();
    return env_num(fail, 1);
  }
  const char *bad_node = getenv("FAIL_ON_NODE"), *node = getenv("FERRY_NODE"); /* a release bad on one node */
  if (bad_node && node && strcmp(bad_node, node) == 0) return 5;
  const char *bad_arch = getenv("FAIL_ON_ARCH"); /* a release bad on one architecture (uname -m) */
  if (bad_arch && strcmp(bad_arch, u.machine) == 0) return 5;
  const char *after = getenv("EXIT_AFTER"); /* crash later, for the restart tests */
  if (after) {
    sleep((unsigned)env_num(after, 1));
    return 7;
  }
  count_start();
  const char *sdir = getenv("FERRY_SECRETS_DIR"); /* a secret's size, never its value */
  if (sdir) {
    char sp[4096];
    snprintf(sp, sizeof sp, "%s/token", sdir);
    FILE *sf = fopen(sp, "r");
    long sn = 0;
    while (sf && fgetc(sf) != EOF) sn++;
    if (sf) fclose(sf);
    printf(sf ? "secret token: %ld bytes\n" : "secret token: not readable\n", sn);
    fflush(stdout);
  }
  signal(SIGTERM, on_term);
  signal(SIGUSR1, on_usr1);
  while (!stop) {
    pause();
    if (usr1) {
      usr1 = 0;
      printf("usr1 from %s\n", u.machine);
      fflush(stdout);
      fprintf(stderr, "usr1 on stderr from %s\n", u.machine);
    }
  }
  printf("stopping\n");
  return 0;
}
