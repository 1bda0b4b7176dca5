/* The exec plan (agent/launch.c): from run.json, the node's config and the image's files, what
 * ferryd spawns in each isolation mode, and the errors a person sees when it cannot. A temporary
 * rootfs holds the image's files; nothing is started. */
#include <stdlib.h>
#include <sys/stat.h>
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

  /* chroot (auto, as root): the helper with root, workdir, ids and the program inside */
  cfg.isolation = FY_ISOLATION_AUTO;
  CHECK_INT(plan("{\"blobs\":[],\"argv\":[\"/bin/app\",\"x\"],\"user\":\"1000:5\"}", 1, &p, err, sizeof err), FY_OK);
  CHECK_INT(p.mode, FY_LAUNCH_CHROOT);
  const char *helper[] = {"/usr/sbin/ferryd", "__exec", root, "/", "1000", "5", "--", "/bin/app", "x"};
  CHECK_INT(p.nargv, 9);
  for (size_t i = 0; i < 9 && i < p.nargv; i++) CHECK_STR(p.argv[i], helper[i]);
  CHECK_STR(p.cwd, "");
  CHECK(!p.set_ids); /* the helper drops to the user inside the root */
  CHECK_STR(fy_launch_mode_name(p.mode), "chroot + mount/PID namespaces");
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
