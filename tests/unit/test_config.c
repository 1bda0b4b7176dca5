/* ferryd's config: the documented example loads; each malformed file is refused with the file,
 * the line and what was expected. Also the YAML loader's bounds. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "ferry/yaml.h"

static char dir[256];

static int load_text(const char *text, fy_agent_config *c, char *err, size_t errlen, char *path, size_t plen) {
  snprintf(path, plen, "%s/ferryd.yaml", dir);
  FILE *f = fopen(path, "w");
  if (!f) return -100;
  fputs(text, f);
  fclose(f);
  return fy_config_load(path, c, err, errlen);
}

static void test_design_example(void) {
  static const char text[] =
      "name: pi-kitchen\n"
      "listen: 0.0.0.0:7433\n"
      "state_dir: /var/lib/ferry\n"
      "identity: /etc/ferry/identity            # ca.pem, cert.pem, key.pem\n"
      "labels: {site: kitchen}\n"
      "runtime:\n"
      "  isolation: auto                        # auto | chroot | none\n"
      "  exec_wrapper: []                       # e.g. [qemu-aarch64, -L, \"{rootfs}\"]\n"
      "limits:\n"
      "  max_release_bytes: 2GiB\n"
      "  zstd_window_log_max: 27\n";
  fy_agent_config c;
  char err[512] = "", path[512];
  CHECK_INT(load_text(text, &c, err, sizeof err, path, sizeof path), FY_OK);
  CHECK_STR(c.name, "pi-kitchen");
  CHECK_STR(c.listen_host, "0.0.0.0");
  CHECK_INT(c.listen_port, 7433);
  CHECK_STR(c.state_dir, "/var/lib/ferry");
  CHECK_INT(c.nlabels, 1);
  CHECK_STR(c.label_keys[0], "site");
  CHECK_STR(c.label_vals[0], "kitchen");
  CHECK_INT(c.isolation, FY_ISOLATION_AUTO);
  CHECK_INT(c.max_release_bytes, 2ull << 30);
  CHECK_INT(c.zstd_window_log_max, 27);

  static const char wrapper[] =
      "name: emu\nstate_dir: st\nruntime:\n  exec_wrapper: [qemu-aarch64, -L, \"{rootfs}\"]\n"
      "limits: {idle_timeout: 500ms, handshake_timeout: 2s, max_connections: 8}\n";
  CHECK_INT(load_text(wrapper, &c, err, sizeof err, path, sizeof path), FY_OK);
  CHECK_INT(c.nwrapper, 3);
  CHECK_STR(c.exec_wrapper[2], "{rootfs}");
  CHECK_INT(c.idle_timeout_ms, 500);
  CHECK_INT(c.handshake_timeout_ms, 2000);
  CHECK_INT(c.max_connections, 8);
  char want[512];
  snprintf(want, sizeof want, "%s/st", dir); /* relative to the file's directory */
  CHECK_STR(c.state_dir, want);
}

static const struct {
  const char *text;
  const char *line;   /* ":N:" expected in the message */
  const char *what;   /* and this */
} bad[] = {
    {"name: a\nlisten: 0.0.0.0:7433\ncolour: blue\n", ":3:", "unknown key 'colour'"},
    {"name: a\nlisten: nowhere\n", ":2:", "expected HOST:PORT"},
    {"name: a\nlisten: 0.0.0.0:99999\n", ":2:", "expected HOST:PORT"},
    {"listen: 0.0.0.0:7433\n", ":1:", "'name' is required"},
    {"name: a\nruntime:\n  isolation: jail\n", ":3:", "expected auto, chroot or none"},
    {"name: a\nruntime:\n  exec_wrapper: qemu\n", ":3:", "expected a list"},
    {"name: a\nlimits:\n  max_release_bytes: lots\n", ":3:", "expected a size"},
    {"name: a\nlimits:\n  zstd_window_log_max: 40\n", ":3:", "from 10 to 31"},
    {"name: a\nlimits:\n  speed: 3\n", ":3:", "unknown key 'limits.speed'"},
    {"name: a\nlabels: [x, y]\n", ":2:", "expected a map"},
    {"name: a\nlabels:\n  'bad key!': x\n", ":3:", "not a valid label key"},
    {"name: a\nlabels: {site: \"two words\"}\n", ":2:", "labels.site"},
    {"name: a\nlisten: [1\n", ":3:", "while parsing a flow sequence"}, /* YAML syntax error */
    {"name: a\nname: b\n", ":2:", "duplicate key"},
    {"- just\n- a list\n", ":1:", "expected a map"},
    {"name: &x a\nlisten: *x\n", ":2:", "aliases"},
};

static void test_bad_configs(void) {
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fy_agent_config c;
    char err[512] = "", path[512];
    int rc = load_text(bad[i].text, &c, err, sizeof err, path, sizeof path);
    CHECK_INT(rc, FY_ECONFIG);
    CHECK_CONTAINS(err, path);
    CHECK_CONTAINS(err, bad[i].line);
    CHECK_CONTAINS(err, bad[i].what);
  }
  fy_agent_config c;
  char err[512];
  CHECK_INT(fy_config_load("/nonexistent/ferryd.yaml", &c, err, sizeof err), FY_ENOENT);
  CHECK_CONTAINS(err, "/nonexistent/ferryd.yaml");
}

static void test_yaml_bounds(void) {
  /* Deep nesting is refused, not recursed into without end. */
  char deep[400];
  size_t n = 0;
  for (int i = 0; i < 100; i++) deep[n++] = '[';
  for (int i = 0; i < 100; i++) deep[n++] = ']';
  deep[n] = '\0';
  fy_ynode *root = NULL;
  char err[256];
  CHECK_INT(fy_yaml_load(deep, n, &root, err, sizeof err), FY_ETOOBIG);
  CHECK(root == NULL);
  uint64_t v;
  CHECK_INT(fy_parse_size("2GiB", &v), FY_OK);
  CHECK_INT(v, 2ull << 30);
  CHECK_INT(fy_parse_size("99999999999999999999", &v), FY_EINVAL);
  CHECK_INT(fy_parse_size("20000000TiB", &v), FY_EINVAL);
  CHECK_INT(fy_parse_size("-1", &v), FY_EINVAL);
  CHECK_INT(fy_parse_duration_ms("1500ms", &v), FY_OK);
  CHECK_INT(v, 1500);
  CHECK_INT(fy_parse_duration_ms("2m", &v), FY_OK);
  CHECK_INT(v, 120000);
  CHECK_INT(fy_parse_duration_ms("soon", &v), FY_EINVAL);
  long l;
  CHECK_INT(fy_parse_long("8080", 1, 65535, &l), FY_OK);
  CHECK_INT(l, 8080);
  CHECK_INT(fy_parse_long("0x10", 1, 65535, &l), FY_EINVAL);
  CHECK_INT(fy_parse_long("70000", 1, 65535, &l), FY_EINVAL);
  CHECK_INT(fy_parse_long("99999999999999999999999", 1, 65535, &l), FY_EINVAL);
  CHECK_INT(fy_parse_long("", 1, 65535, &l), FY_EINVAL);
  CHECK_INT(fy_parse_long("12\n", 1, 65535, &l), FY_OK); /* pid files end in a newline */
  CHECK_INT(fy_yaml_load("", 0, &root, err, sizeof err), FY_OK);
  CHECK(root && root->kind == FY_YAML_MAP && root->n == 0);
  fy_yaml_free(root);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s/ferry-cfg-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) return 1;
  test_design_example();
  test_bad_configs();
  test_yaml_bounds();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) return 1;
  return check_done("test_config");
}
