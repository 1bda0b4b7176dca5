/* Replays a corpus through a fuzz target without libFuzzer (ordinary CI, any compiler):
 * every file named on the command line, or every file in the directories named. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

/* 1 when the input ran, 0 when it could not be read (which fails the replay). */
static int one(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open\n", path);
    return 0;
  }
  static uint8_t buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  int tail = fgetc(f);
  fclose(f);
  if (tail != EOF) {
    fprintf(stderr, "%s: larger than the replay's %zu-byte buffer\n", path, sizeof buf);
    return 0;
  }
  uint8_t *copy = malloc(n ? n : 1); /* exact-size buffer so ASan sees overreads */
  memcpy(copy, buf, n);
  LLVMFuzzerTestOneInput(copy, n);
  free(copy);
  return 1;
}

/* A missing corpus, an unreadable input or an empty corpus fails: a replay that ran nothing
 * would pass without testing the target. */
int main(int argc, char **argv) {
  int count = 0, bad = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "%s: no such corpus\n", argv[i]);
      bad++;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (one(argv[i])) count++;
      else bad++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d) {
      fprintf(stderr, "%s: cannot open the corpus\n", argv[i]);
      bad++;
      continue;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char p[4096];
      if (snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name) >= (int)sizeof p) {
        bad++;
        continue;
      }
      if (one(p)) count++;
      else bad++;
    }
    closedir(d);
  }
  if (count == 0 && bad == 0) {
    fprintf(stderr, "no input replayed\n");
    bad = 1;
  }
  printf("replayed %d inputs: %d passed, %d failed\n", count, count, bad);
  return bad ? 1 : 0;
}
