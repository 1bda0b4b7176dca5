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

/* Loads `text` as a fleet file: the result code, the reason in err. */
static int load_text(const char *text, fy_fleet *fl, char *err, size_t errlen) {
  char path[256];
  snprintf(path, sizeof path, "%s/load.yaml", dir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fputs(text, f);
  fclose(f);
  memset(fl, 0, sizeof *fl);
  return fy_fleet_load(path, fl, err, errlen);
}

/* broker: in a fleet file, and nodes reached only through it. */
static void test_broker(void) {
  fy_fleet fl;
  char err[600];
  CHECK_INT(load_text("broker: {url: \"mqtts://mq.example:9883\", topic_prefix: ferry/site1}\n"
                      "nodes:\n  - {name: pi-1}\n  - {name: pi-2, address: 10.0.0.2}\n",
                      &fl, err, sizeof err),
            FY_OK);
  CHECK(fl.have_broker && strcmp(fl.broker_host, "mq.example") == 0 && fl.broker_port == 9883 && strcmp(fl.topic_prefix, "ferry/site1") == 0);
  CHECK(fl.n == 2 && fl.targets[0].host[0] == '\0' && strcmp(fl.targets[1].host, "10.0.0.2") == 0);
  fy_fleet_free(&fl);
  CHECK_INT(load_text("broker: {url: \"mqtts://mq.example\"}\nnodes:\n  - {name: pi-1}\n", &fl, err, sizeof err), FY_OK);
  CHECK(fl.broker_port == 8883 && strcmp(fl.topic_prefix, "ferry") == 0 && fl.broker_ca[0] == '\0');
  fy_fleet_free(&fl);
  /* broker.ca: a broker whose certificate another CA issued; a relative path is the fleet file's directory's */
  char want[300];
  CHECK_INT(load_text("broker: {url: \"mqtts://iot.example\", ca: certs/amazon.pem}\nnodes:\n  - {name: pi-1}\n", &fl, err, sizeof err), FY_OK);
  snprintf(want, sizeof want, "%s/certs/amazon.pem", dir);
  CHECK(strcmp(fl.broker_ca, want) == 0);
  fy_fleet_free(&fl);
  CHECK_INT(load_text("broker: {url: \"mqtts://iot.example\", ca: /etc/ssl/amazon.pem}\nnodes:\n  - {name: pi-1}\n", &fl, err, sizeof err), FY_OK);
  CHECK(strcmp(fl.broker_ca, "/etc/ssl/amazon.pem") == 0);
  fy_fleet_free(&fl);
  CHECK_INT(load_text("broker: {url: \"mqtts://iot.example\", ca: [a, b]}\nnodes:\n  - {name: pi-1}\n", &fl, err, sizeof err), FY_ECONFIG);
  CHECK(strstr(err, "broker.ca: expected the path of a PEM file"));
  fy_fleet_free(&fl);
  CHECK_INT(load_text("broker: {url: \"mqtts://iot.example\", cafile: x}\nnodes:\n  - {name: pi-1}\n", &fl, err, sizeof err), FY_ECONFIG);
  CHECK(strstr(err, "unknown key 'broker.cafile' (url, topic_prefix, ca)"));
  fy_fleet_free(&fl);
  CHECK_INT(load_text("nodes:\n  - {name: pi-1}\n", &fl, err, sizeof err), FY_ECONFIG);
  CHECK(strstr(err, "needs an address") && strstr(err, "broker"));
  fy_fleet_free(&fl);
  CHECK_INT(load_text("broker: {url: \"mqtt://plain:1883\"}\nnodes:\n  - {name: pi-1}\n", &fl, err, sizeof err), FY_ECONFIG);
  CHECK(strstr(err, "mqtts://") != NULL);
  fy_fleet_free(&fl);
  CHECK_INT(load_text("broker: {url: \"mqtts://h\", topic_prefix: \"ferry/#\"}\nnodes:\n  - {name: pi-1}\n", &fl, err, sizeof err),
            FY_ECONFIG);
  fy_fleet_free(&fl);
  /* a fleet reached through a broker may start empty (install-agent --broker fills it); others may not */
  CHECK_INT(load_text("broker: {url: \"mqtts://h\"}\n", &fl, err, sizeof err), FY_OK);
  CHECK(fl.n == 0);
  fy_fleet_free(&fl);
  CHECK_INT(load_text("broker: {url: \"mqtts://h\"}\nnodes:\n", &fl, err, sizeof err), FY_OK);
  fy_fleet_free(&fl);
  CHECK_INT(load_text("registry: docker://r.example/x\n", &fl, err, sizeof err), FY_ECONFIG);
  CHECK(strstr(err, "'nodes' is a list") != NULL);
  fy_fleet_free(&fl);
}

int main(void) {
  char out[4096], err[600];
  if (!mkdtemp(dir)) return 1;
  test_broker();

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

  /* The example fleet loads, and its settings merge file < group < node. */
  fy_fleet f;
  CHECK_INT(fy_fleet_load(FERRY_SOURCE_DIR "/examples/fleet.yaml", &f, err, sizeof err), FY_OK);
  const json_t *kitchen = NULL, *cloud = NULL;
  for (size_t i = 0; i < f.n; i++) {
    if (strcmp(f.targets[i].name, "pi-kitchen") == 0) kitchen = f.settings[i];
    if (strcmp(f.targets[i].name, "graviton-1") == 0) cloud = f.settings[i];
  }
  CHECK(kitchen && cloud);
  CHECK_STR(json_string_value(json_object_get(json_object_get(kitchen, "env"), "GREETING")), "hello from the kitchen");
  CHECK_STR(json_string_value(json_object_get(json_object_get(kitchen, "env"), "LOG_LEVEL")), "debug");
  CHECK_STR(json_string_value(json_object_get(json_object_get(cloud, "env"), "LOG_LEVEL")), "info");
  const char *tok = json_string_value(json_object_get(json_object_get(cloud, "secrets"), "api-token"));
  CHECK(tok && strstr(tok, "/examples/api-token.txt"));
  fy_fleet_free(&f);
  /* a group in the map form loses a member like a list group does */
  const char *gmap = "nodes:\n"
                     "  - {name: a, address: \"127.0.0.1:1\"}\n"
                     "  - {name: b, address: \"127.0.0.1:2\"}\n"
                     "groups:\n"
                     "  g:\n"
                     "    nodes: [a, b]\n"
                     "    env: {X: \"1\"}\n";
  CHECK_INT(remove_from(gmap, "a", out, sizeof out, err, sizeof err), FY_OK);
  CHECK(strstr(out, "    nodes: [b]\n") != NULL && strstr(out, "env: {X:") != NULL);
  /* settings that are refused where they are written */
  char path[256];
  snprintf(path, sizeof path, "%s/fleet.yaml", dir);
  static const char *const refused[][2] = {
      {"env: {LD_PRELOAD: /x}\nnodes:\n  - {name: a, address: \"127.0.0.1:1\"}\n", "fleet.yaml:1: env LD_PRELOAD cannot be set"},
      {"nodes:\n  - {name: a, address: \"127.0.0.1:1\", env: {FERRY_APP: x}}\n", "env FERRY_APP cannot be set"},
      {"files: {/proc/x: a}\nnodes:\n  - {name: a, address: \"127.0.0.1:1\"}\n", "files: '/proc/x' is not a clean absolute path"},
      {"secrets: {Bad/Name: a}\nnodes:\n  - {name: a, address: \"127.0.0.1:1\"}\n", "is not a secret name"},
      {"nodes:\n  - {name: a, address: \"127.0.0.1:1\"}\ngroups:\n  g: {nodes: [a], colour: red}\n", "unknown key 'colour' in group 'g'"},
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    FILE *fp = fopen(path, "w");
    if (!fp) return 1;
    fputs(refused[i][0], fp);
    fclose(fp);
    CHECK_INT(fy_fleet_load(path, &f, err, sizeof err), FY_ECONFIG);
    if (!strstr(err, refused[i][1])) fprintf(stderr, "refused[%zu]: %s\n", i, err);
    CHECK(strstr(err, refused[i][1]) != NULL);
  }
  unlink(path);
  rmdir(dir);
  printf("%d passed, %d failed\n", check_passed, check_failed);
  return check_failed || !check_passed;
}
