/* A deliberately broken ferryd for the upgrade tests: it passes the agent's pre-flight checks
 * (--version, --check-config) and then, run for real, never answers (BROKEN_MODE=hang, the
 * default) or exits at once (any other mode). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--version") == 0) {
      printf("ferryd 0.0-broken\n");
      return 0;
    }
    if (strcmp(argv[i], "--check-config") == 0) return 0;
  }
  fprintf(stderr, "broken ferryd: started, and will not answer\n");
#ifdef BROKEN_EXIT
  return 3;
#else
  for (;;) pause();
#endif
}
