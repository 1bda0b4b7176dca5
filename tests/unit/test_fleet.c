/* Taking a node out of a fleet file (ferry uninstall-agent --fleet): a text edit that keeps
 * comments and everything else, on real files in a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fleet.h"

static char dir[] = "/tmp/ferry-test-fleet.XXXXXX";

/* Writes `text`, removes `name`, returns the result code; the file's new text into out. */
static int remove_from(const char *text, const char *name, char *out, size_t outlen, char *err, size_t errlen) {
  char path[256];
  snprintf(path, sizeof path, "%s/fleet.yaml", dir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  fclose(f);
  err[0] = 0;
  int rc = fy_fleet_remove_node(path, name, err, errlen);
  f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(out, 1, outlen - 1, f);
  out[n] = 0;
  fclose(f);
  return rc;
}

int main(void) {
  char out[4096], err[600];
  if (!mkdtemp(dir)) return 1;

  /* Block lists everywhere; the removed node is the first one. */
  const char *block = "# the lab\n"
                      "nodes:\n"
                      "  - name: pi-lab\n"
                      "    address: 127.0.0.1:7000\n"
                      "    labels: {site: lab}\n"
                      "  # a second node\n"
                      "  - {name: other, address: \"127.0.0.1:1\"}\n"
                      "groups:\n"
                      "  lab: [pi-lab, other]\n"
                      "  solo:\n"
                      "    - pi-lab\n"
                      "    - other\n";
  CHECK_INT(remove_from(block, "pi-lab", out, sizeof out, err, sizeof err), FY_OK);
  CHECK_STR(out, "# the lab\n"
                 "nodes:\n"
                 "  # a second node\n"
                 "  - {name: other, address: \"127.0.0.1:1\"}\n"
                 "groups:\n"
                 "  lab: [other]\n"
                 "  solo:\n"
                 "    - other\n");

  /* The last node, followed by the groups key. */
  CHECK_INT(remove_from(block, "other", out, sizeof out, err, sizeof err), FY_OK);
  CHECK(strstr(out, "other") == NULL);
  CHECK(strstr(out, "  lab: [pi-lab]\n") != NULL);
  CHECK(strstr(out, "    - pi-lab\n") != NULL);
  CHECK(strstr(out, "# a second node") != NULL);

  /* A block group whose only member goes is left as an empty list. */
  const char *solo = "nodes:\n"
                     "  - {name: a, address: \"127.0.0.1:1\"}\n"
                     "  - {name: b, address: \"127.0.0.1:2\"}\n"
                     "groups:\n"
                     "  solo:   # just a\n"
                     "    - a\n"
                     "  both: [a, b]\n";
  CHECK_INT(remove_from(solo, "a", out, sizeof out, err, sizeof err), FY_OK);
  CHECK_STR(out, "nodes:\n"
                 "  - {name: b, address: \"127.0.0.1:2\"}\n"
                 "groups:\n"
                 "  solo: []   # just a\n"
                 "  both: [b]\n");

  /* A node the file does not list: an error, the file untouched. */
  CHECK_INT(remove_from(block, "nobody", out, sizeof out, err, sizeof err), FY_ENOENT);
  CHECK_STR(out, block);
  CHECK(strstr(err, "does not list nobody") != NULL);

  /* nodes: as one flow list: refused, untouched. */
  const char *flow = "nodes: [{name: a, address: \"127.0.0.1:1\"}, {name: b, address: \"127.0.0.1:2\"}]\n";
  CHECK_INT(remove_from(flow, "a", out, sizeof out, err, sizeof err), FY_ECONFIG);
  CHECK_STR(out, flow);
  CHECK(strstr(err, "flow list; remove a by hand") != NULL);

  /* A flow group over several lines cannot be edited line by line: the file is put back. */
  const char *multi = "nodes:\n"
                      "  - {name: a, address: \"127.0.0.1:1\"}\n"
                      "  - {name: b, address: \"127.0.0.1:2\"}\n"
                      "groups:\n"
                      "  g: [b,\n"
                      "      a]\n";
  CHECK_INT(remove_from(multi, "a", out, sizeof out, err, sizeof err), FY_ECONFIG);
  CHECK_STR(out, multi);
  CHECK(strstr(err, "remove it by hand") != NULL);

  char path[256];
  snprintf(path, sizeof path, "%s/fleet.yaml", dir);
  unlink(path);
  rmdir(dir);
  printf("%d passed, %d failed\n", check_passed, check_failed);
  return check_failed || !check_passed;
}
