/* libFuzzer target: a layer (uncompressed tar) unpacked into a temp root by the real unpacker,
 * both ways of resolving paths (openat2 and the O_NOFOLLOW walk). The invariant checked beyond
 * "no crash": nothing appears outside the root. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "ferry/unpack.h"
#include "fuzz_file.h"

static size_t count_entries(const char *dir) {
  size_t n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  if (!d) return 0;
  while ((e = readdir(d)) != NULL) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  const char *layer = fuzz_file("layer.tar", p, n); /* fuzz_dir holds layer.tar and root/ only */
  char root[600], err[600];
  snprintf(root, sizeof root, "%s/root", fuzz_dir());
  for (int walk = 0; walk < 2; walk++) {
    int dfd = open(fuzz_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) abort();
    if (fy_remove_tree(dfd, "root") != FY_OK) abort();
    if (mkdir(root, 0755) != 0) abort();
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0) abort();
    fy_unpack_opts o = {.max_bytes = 4u << 20, .window_log_max = 20, .force_walk = walk};
    fy_unpack_stats st = {0};
    int rc = fy_unpack_layer(rfd, layer, FY_KIND_LAYER_TAR, &o, &st, err, sizeof err);
    (void)rc;
    close(rfd);
    if (count_entries(fuzz_dir()) != 2) abort(); /* something escaped the root */
    close(dfd);
  }
  return 0;
}
