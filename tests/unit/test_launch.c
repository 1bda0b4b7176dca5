/* The exec plan (agent/launch.c): from run.json, the node's config and the image's files, what
 * ferryd spawns in each isolation mode, and the errors a person sees when it cannot. A temporary
 * rootfs holds the image's files; nothing is started. */
#include <stdlib.h>
#include <sys/stat.h>
#include <jansson.h>
#include <unistd.h>

#include "check.h"
#include "launch.h"
#include "ferry/fsutil.h"
#include "ferry/unpack.h"

static char root[256];

static void put(const char *rel, const char *text, mode_t mode) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", root, rel);
  char *slash = strrchr(p, '/');
  *slash = '\0';
  if (fy_mkdirs(p, 0755) != FY_OK) abort();
  *slash = '/';
  if (fy_file_write_atomic(p, text, strlen(text), mode) != FY_OK) abort();
}

static int has(char **v, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i], s) == 0) return 1;
  return 0;
}

static fy_agent_config cfg;
static fy_facts facts;

static int plan(const char *run_text, int is_root, fy_launch_plan *p, char *err, size_t errlen) {
  json_t *run = json_loads(run_text, 0, NULL);
  if (!run) abort();
  fy_launch_in in = {.run = run, .rootfs = root, .app = "hello", .release = "r1", .node = "pi", .cfg = &cfg,
                     .facts = &facts, .is_root = is_root, .self_exe = "/usr/sbin/ferryd"};
  int rc = fy_launch_plan_make(&in, p, err, errlen);
  json_decref(run);
  return rc;
}

int main(void) {
  snprintf(root, sizeof root, "%s/ferry-launch.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(root)) return 1;
  put("bin/app", "#!/bin/sh\necho hi\n", 0755);    /* a script: the kernel decides, no ELF check */
  put("usr/bin/tool", "#!/bin/sh\n", 0755);
  put("etc/passwd", "root:x:0:0::/root:/bin/sh\nsvc:x:1000:1001::/home/svc:/bin/sh\n", 0644);
  put("etc/group", "root:x:0:\ndialout:x:20:svc\nvideo:x:44:other,svc\nsvc:x:1001:\n", 0644);
  CHECK_INT(fy_platform_parse("linux/amd64", &facts.platform), FY_OK);
  facts.accepts[0] = facts.platform;
  facts.naccepts = 1;
  fy_launch_plan p;
  char err[300], want[600];

  /* no isolation: the program by its host path, the image's args and Env, ferry's variables */
  cfg.isolation = FY_ISOLATION_NONE;
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\",\"-v\"],\"env\":[\"A=1\"],\"workdir\":\"/srv\"}", 0, &p, err, sizeof err), FY_OK);
  snprintf(want, sizeof want, "%s/bin/app", root);
  CHECK_INT(p.mode, FY_LAUNCH_PLAIN);
  CHECK_STR(p.argv[0], want);
  CHECK_STR(p.argv[1], "-v");
  CHECK_INT(p.nargv, 2);
  CHECK(p.argv[2] == NULL);
  snprintf(want, sizeof want, "%s/srv", root);
  CHECK_STR(p.cwd, want);
  CHECK(has(p.env, p.nenv, "A=1"));
  CHECK(has(p.env, p.nenv, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  CHECK(has(p.env, p.nenv, "FERRY_APP=hello") && has(p.env, p.nenv, "FERRY_RELEASE=r1") && has(p.env, p.nenv, "FERRY_NODE=pi"));
  CHECK(!p.set_ids);
  fy_launch_plan_free(&p);

  /* a bare name is looked up in the image's PATH, inside the rootfs; User by name, as root */
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"tool\"],\"env\":[\"PATH=/usr/bin\"],\"user\":\"svc\"}", 1, &p, err, sizeof err), FY_OK);
  CHECK_INT(p.mode, FY_LAUNCH_PLAIN);
  CHECK_STR(p.prog, "/usr/bin/tool");
  CHECK(p.set_ids && p.uid == 1000 && p.gid == 1001);
  fy_launch_plan_free(&p);

  /* contained (auto, as root): the runtime helper with its spec, then the program inside */
  cfg.isolation = FY_ISOLATION_AUTO;
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\",\"x\"],\"user\":\"1000:5\",\"workdir\":\"/srv/new\"}", 1, &p, err, sizeof err), FY_OK);
  CHECK_INT(p.mode, FY_LAUNCH_CONTAIN);
  CHECK_INT(p.nargv, 6);
  CHECK_STR(p.argv[0], "/usr/sbin/ferryd");
  {
    json_t *sp = json_loads(p.argv[2], 0, NULL), *e = json_object_get(sp, "env");
    int home = 0, host = 0;
    size_t i;
    json_t *v;
    json_array_foreach(e, i, v) {
      home |= strcmp(json_string_value(v), "HOME=/home/svc") == 0; /* uid 1000 is svc */
      host |= strcmp(json_string_value(v), "HOSTNAME=pi") == 0;
    }
    CHECK(home && host);
    json_decref(sp);
  }
  CHECK_STR(p.argv[1], "__exec");
  json_t *spec = json_loads(p.argv[2], 0, NULL);
  CHECK(spec != NULL);
  CHECK_STR(json_string_value(json_object_get(spec, "rootfs")), root);
  CHECK_STR(json_string_value(json_object_get(spec, "workdir")), "/srv/new"); /* created inside the root if missing */
  CHECK_INT(json_integer_value(json_object_get(spec, "uid")), 1000);
  CHECK_INT(json_integer_value(json_object_get(spec, "gid")), 5);
  CHECK_STR(json_string_value(json_object_get(spec, "caps")), "0xa80425fb"); /* Docker's default set */
  CHECK(json_is_true(json_object_get(spec, "seccomp")));
  CHECK_STR(json_string_value(json_object_get(spec, "hostname")), "pi");
  json_decref(spec);
  CHECK_STR(p.argv[3], "--");
  CHECK_STR(p.argv[4], "/bin/app");
  CHECK_STR(p.argv[5], "x");
  CHECK_STR(p.cwd, "");
  CHECK(!p.set_ids); /* the helper drops to the user inside the root */
  /* the image's Env reaches the workload through the spec, never the helper (LD_PRELOAD...) */
  CHECK(p.nenv == 1 && has(p.env, p.nenv, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  CHECK_INT(p.stop_signal, 15);
  CHECK_INT(p.stop_timeout_ms, 10000);
  CHECK_STR(fy_launch_mode_name(p.mode), "contained: namespaces, pivot_root, capabilities, seccomp");
  fy_launch_plan_free(&p);

  /* Docker's User rules: a name gives its passwd gid, HOME and the groups that list it; a
   * number not in passwd runs with gid 0; user:group takes a group name */
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"user\":\"svc\"}", 1, &p, err, sizeof err), FY_OK);
  spec = json_loads(p.argv[2], 0, NULL);
  CHECK_INT(json_integer_value(json_object_get(spec, "uid")), 1000);
  CHECK_INT(json_integer_value(json_object_get(spec, "gid")), 1001);
  CHECK_INT(json_array_size(json_object_get(spec, "groups")), 2);
  CHECK_INT(json_integer_value(json_array_get(json_object_get(spec, "groups"), 0)), 20);
  CHECK(strstr(p.argv[2], "\"HOME=/home/svc\"") != NULL);
  json_decref(spec);
  fy_launch_plan_free(&p);
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"user\":\"1234\"}", 1, &p, err, sizeof err), FY_OK);
  spec = json_loads(p.argv[2], 0, NULL);
  CHECK_INT(json_integer_value(json_object_get(spec, "uid")), 1234);
  CHECK_INT(json_integer_value(json_object_get(spec, "gid")), 0);
  json_decref(spec);
  fy_launch_plan_free(&p);
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"user\":\"svc:video\"}", 1, &p, err, sizeof err), FY_OK);
  spec = json_loads(p.argv[2], 0, NULL);
  CHECK_INT(json_integer_value(json_object_get(spec, "gid")), 44);
  json_decref(spec);
  fy_launch_plan_free(&p);
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"user\":\"svc:nogroup-here\"}", 1, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "group 'nogroup-here' of User 'svc:nogroup-here' is not in the image's /etc/group");
  fy_launch_plan_free(&p);
  /* an image's LD_PRELOAD never reaches the helper's own environment */
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"env\":[\"LD_PRELOAD=/evil.so\"]}", 1, &p, err, sizeof err), FY_OK);
  CHECK(!has(p.env, p.nenv, "LD_PRELOAD=/evil.so") && strstr(p.argv[2], "LD_PRELOAD=/evil.so") != NULL);
  fy_launch_plan_free(&p);
  /* the image's stop signal, capabilities and stop timeout */
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"stop_signal\":2,\"stop_timeout_ms\":3000,"
                 "\"caps\":{\"add\":[\"NET_ADMIN\"],\"drop\":[\"NET_RAW\"]}}", 1, &p, err, sizeof err), FY_OK);
  CHECK_INT(p.stop_signal, 2);
  CHECK_INT(p.stop_timeout_ms, 3000);
  CHECK(p.caps == ((0xa80425fbULL | (1ULL << 12)) & ~(1ULL << 13)));
  fy_launch_plan_free(&p);
  /* a FIFO where /etc/passwd should be: refused at once, never waited on */
  char fifo[512];
  snprintf(fifo, sizeof fifo, "%s/etc/passwd", root);
  unlink(fifo);
  CHECK(mkfifo(fifo, 0644) == 0);
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"user\":\"svc\"}", 1, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "cannot read the image's /etc/passwd: not a regular file");
  fy_launch_plan_free(&p);
  unlink(fifo);
  put("etc/passwd", "root:x:0:0::/root:/bin/sh\nsvc:x:1000:1001::/home/svc:/bin/sh\n", 0644);
  /* an entrypoint that is a symlink to /dev/zero resolves inside the root: not the host's device */
  char lnk[512];
  snprintf(lnk, sizeof lnk, "%s/bin/zero", root);
  CHECK(symlink("/dev/zero", lnk) == 0);
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/zero\"]}", 1, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "cannot execute /bin/zero");
  fy_launch_plan_free(&p);

  /* exec_wrapper: its argv with {rootfs} filled in, then the program's host path */
  cfg.nwrapper = 3;
  snprintf(cfg.exec_wrapper[0], sizeof cfg.exec_wrapper[0], "sh");
  snprintf(cfg.exec_wrapper[1], sizeof cfg.exec_wrapper[1], "-L");
  snprintf(cfg.exec_wrapper[2], sizeof cfg.exec_wrapper[2], "{rootfs}");
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"]}", 1, &p, err, sizeof err), FY_OK);
  CHECK_INT(p.mode, FY_LAUNCH_WRAPPER);
  CHECK(p.nargv == 4 && strstr(p.argv[0], "/sh") != NULL);
  CHECK_STR(p.argv[1], "-L");
  CHECK_STR(p.argv[2], root);
  snprintf(want, sizeof want, "%s/bin/app", root);
  CHECK_STR(p.argv[3], want);
  fy_launch_plan_free(&p);
  snprintf(cfg.exec_wrapper[0], sizeof cfg.exec_wrapper[0], "no-such-wrapper-here");
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"]}", 1, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "exec_wrapper 'no-such-wrapper-here' not found in PATH");
  fy_launch_plan_free(&p);
  cfg.nwrapper = 0;

  /* what a person is told */
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[]}", 0, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "no Entrypoint or Cmd");
  fy_launch_plan_free(&p);
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"missing\"]}", 0, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "cannot execute missing: not found in the image's PATH");
  fy_launch_plan_free(&p);
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\"],\"user\":\"nobody-here\"}", 0, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "User 'nobody-here' is not in the image's /etc/passwd");
  fy_launch_plan_free(&p);
  /* an arm64 ELF on an amd64 node: the wrong architecture, said before exec */
  static const unsigned char arm64_elf[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xb7, 0, 1, 0, 0, 0};
  char p64[512];
  snprintf(p64, sizeof p64, "%s/bin/arm", root);
  if (fy_file_write_atomic(p64, arm64_elf, sizeof arm64_elf, 0755) != FY_OK) abort();
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/arm\"]}", 0, &p, err, sizeof err), FY_EEXEC);
  CHECK_CONTAINS(err, "exec format error: /bin/arm is");
  CHECK_CONTAINS(err, "this node runs linux/amd64");
  fy_launch_plan_free(&p);
  fy_launch_plan_free(NULL);

  if (fy_remove_path(root) != FY_OK) return 1;
  return check_done("test_launch");
}
