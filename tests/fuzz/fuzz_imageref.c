/* libFuzzer target: image names (skopeo's transports, docker references, REF -> app name). */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "ferry/imageref.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1), err[256], app[64], buf[700];
  if (!s) return 0;
  memcpy(s, p, n);
  s[n] = '\0';
  fy_image_name in;
  if (fy_image_name_parse(s, &in, err, sizeof err) == FY_OK && in.transport == FY_IMG_DOCKER) {
    fy_docker_ref again;
    fy_docker_ref_format(&in.docker, buf, sizeof buf);
    /* what it prints parses back to the same reference */
    if (fy_docker_ref_parse(buf, &again, err, sizeof err) != FY_OK || strcmp(again.repo, in.docker.repo) != 0) __builtin_trap();
  }
  (void)fy_ref_repository_name(s, app, sizeof app);
  free(s);
  return 0;
}
