/* For the fuzz targets whose code under test reads a file: writes the input to a private temp
 * file (one per process) and returns its path. */
#ifndef FERRY_FUZZ_FILE_H
#define FERRY_FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline const char *fuzz_dir(void) {
  static char dir[256];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "%s/ferry-fuzz-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) abort();
  }
  return dir;
}

static inline const char *fuzz_file(const char *name, const uint8_t *p, size_t n) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (n && fwrite(p, 1, n, f) != n) abort();
  fclose(f);
  return path;
}

#endif
