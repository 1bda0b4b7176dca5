/* The runtime's pure parts: capability names and sets, resources, stop signals (runspec.h), the
 * run.json fields that carry them, and resource limits through cgroups (agent/cgroup.c) against
 * a fake cgroup tree: a cgroup v2 unified hierarchy (which this build machine, mounting only v1,
 * cannot show for real), a v1 hierarchy, a hybrid of both, and none. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "applog.h"
#include "cgroup.h"
#include "check.h"
#include "ferry/fsutil.h"
#include "ferry/oci.h"
#include "ferry/runspec.h"
#include "ferry/unpack.h"
#include "ferry/wire.h"
#include "ferry/yaml.h"

static char base[256];

static void put(const char *rel, const char *text) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", base, rel);
  char *slash = strrchr(p, '/');
  *slash = '\0';
  if (fy_mkdirs(p, 0755) != FY_OK) abort();
  *slash = '/';
  if (fy_file_write_atomic(p, text, strlen(text), 0644) != FY_OK) abort();
}

static const char *get(const char *rel) {
  static char buf[256];
  char p[600], *t = NULL;
  size_t n;
  snprintf(p, sizeof p, "%s/%s", base, rel);
  buf[0] = '\0';
  if (fy_file_read(p, sizeof buf - 1, &t, &n) == FY_OK) snprintf(buf, sizeof buf, "%s", t);
  free(t);
  return buf;
}

static void test_runspec(void) {
  int c;
  CHECK_INT(fy_cap_parse("CAP_NET_ADMIN", &c), FY_OK);
  CHECK_INT(c, 12);
  CHECK_INT(fy_cap_parse("net_raw", &c), FY_OK);
  CHECK_INT(c, 13);
  CHECK_INT(fy_cap_parse("ALL", &c), FY_OK);
  CHECK_INT(c, -2);
  CHECK_INT(fy_cap_parse("CAP_FLY", &c), FY_EINVAL);
  char names[600];
  fy_caps_format(FY_CAPS_DEFAULT, names, sizeof names);
  CHECK_STR(names, "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETGID,SETUID,SETPCAP,NET_BIND_SERVICE,NET_RAW,SYS_CHROOT,MKNOD,"
                   "AUDIT_WRITE,SETFCAP");
  fy_runspec r = {0};
  char err[300];
  json_t *j = json_loads("{\"add\":[\"NET_ADMIN\",\"SYS_TIME\"],\"drop\":[\"NET_RAW\",\"MKNOD\"]}", 0, NULL);
  CHECK_INT(fy_caps_from_json(j, &r, err, sizeof err), FY_OK);
  json_decref(j);
  CHECK(fy_runspec_caps(&r) == ((FY_CAPS_DEFAULT | (1ULL << 12) | (1ULL << 25)) & ~((1ULL << 13) | (1ULL << 27))));
  memset(&r, 0, sizeof r);
  j = json_loads("{\"drop\":[\"ALL\"],\"add\":[\"NET_BIND_SERVICE\"]}", 0, NULL);
  CHECK_INT(fy_caps_from_json(j, &r, err, sizeof err), FY_OK);
  json_decref(j);
  CHECK(fy_runspec_caps(&r) == (1ULL << 10)); /* drop everything, keep what is added */
  j = json_loads("{\"add\":[\"CAP_FLY\"]}", 0, NULL);
  CHECK_INT(fy_caps_from_json(j, &r, err, sizeof err), FY_EINVAL);
  CHECK_CONTAINS(err, "unknown capability 'CAP_FLY'");
  json_decref(j);
  j = json_loads("{\"keep\":[]}", 0, NULL);
  CHECK_INT(fy_caps_from_json(j, &r, err, sizeof err), FY_EINVAL);
  CHECK_CONTAINS(err, "unknown key 'keep'");
  json_decref(j);

  memset(&r, 0, sizeof r);
  j = json_loads("{\"memory\":\"64MiB\",\"cpus\":\"0.5\",\"pids\":100}", 0, NULL);
  CHECK_INT(fy_resources_from_json(j, &r, err, sizeof err), FY_OK);
  json_decref(j);
  CHECK(r.memory == 64 << 20 && r.cpu_milli == 500 && r.pids == 100);
  static const char *const bad[] = {"{\"memory\":\"1KiB\"}", "{\"memory\":\"lots\"}", "{\"cpus\":\"0.001\"}", "{\"cpus\":\"-1\"}",
                                    "{\"pids\":0}", "{\"pids\":99999999999}", "{\"swap\":1}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    j = json_loads(bad[i], 0, NULL);
    if (fy_resources_from_json(j, &r, err, sizeof err) != FY_EINVAL) fprintf(stderr, "accepted %s\n", bad[i]);
    CHECK_INT(fy_resources_from_json(j, &r, err, sizeof err), FY_EINVAL);
    json_decref(j);
  }
  int sig;
  CHECK(fy_signal_parse("SIGQUIT", &sig) == FY_OK && sig == 3);
  CHECK(fy_signal_parse("term", &sig) == FY_OK && sig == 15);
  CHECK(fy_signal_parse("10", &sig) == FY_OK && sig == 10);
  CHECK_INT(fy_signal_parse("SIGSTOP", &sig), FY_EINVAL);
  CHECK_INT(fy_signal_parse("99", &sig), FY_EINVAL);
  CHECK_INT(fy_signal_parse("SIGNOPE", &sig), FY_EINVAL);

  /* run.json carries them; what an older release lacks reads as the defaults */
  json_t *run = json_loads("{\"argv\":[\"/a\"],\"blobs\":[],\"health\":[\"/bin/sh\",\"-c\",\"true\"],\"health_text\":\"true\","
                           "\"stop_signal\":3,\"stop_timeout_ms\":2500,\"caps\":{\"add\":[\"NET_ADMIN\"]},"
                           "\"resources\":{\"memory\":67108864,\"cpu_milli\":250}}", 0, NULL);
  fy_run_meta m;
  CHECK_INT(fy_run_meta_decode(run, &m, err, sizeof err), FY_OK);
  CHECK(m.nhealth == 3 && m.stop_signal == 3 && m.stop_timeout_ms == 2500 && m.spec.memory == 64 << 20 && m.spec.cpu_milli == 250);
  CHECK_STR(m.health_text, "true");
  json_t *again = fy_run_meta_encode(&m);
  fy_run_meta m2;
  CHECK_INT(fy_run_meta_decode(again, &m2, err, sizeof err), FY_OK);
  CHECK(m2.spec.cap_add == m.spec.cap_add && m2.stop_timeout_ms == 2500 && m2.spec.memory == m.spec.memory);
  json_decref(again);
  json_decref(run);
  run = json_loads("{\"argv\":[\"/a\"],\"blobs\":[],\"stop_signal\":99}", 0, NULL);
  CHECK(fy_run_meta_decode(run, &m, err, sizeof err) != FY_OK);
  json_decref(run);
  run = json_loads("{\"argv\":[\"/a\"],\"blobs\":[]}", 0, NULL);
  CHECK_INT(fy_run_meta_decode(run, &m, err, sizeof err), FY_OK);
  CHECK(m.stop_signal == 0 && m.stop_timeout_ms == -1 && m.nhealth == 0 && fy_runspec_caps(&m.spec) == FY_CAPS_DEFAULT);
  json_decref(run);
}

/* The image's health command: Docker's Healthcheck in both forms, or the label (shell form). */
static void test_healthcheck(void) {
  static const struct { const char *cfg, *text, *argv0; size_t n; } cases[] = {
      {"{\"os\":\"linux\",\"architecture\":\"amd64\",\"config\":{\"Healthcheck\":{\"Test\":[\"CMD\",\"/probe\",\"health\",\"-v\"]}}}",
       "/probe health -v", "/probe", 3},
      {"{\"os\":\"linux\",\"architecture\":\"amd64\",\"config\":{\"Healthcheck\":{\"Test\":[\"CMD-SHELL\",\"test -f /x\"]}}}",
       "test -f /x", "/bin/sh", 3},
      {"{\"os\":\"linux\",\"architecture\":\"amd64\",\"config\":{\"Labels\":{\"dev.ferry.health_cmd\":\"true\"}}}", "true",
       "/bin/sh", 3},
      {"{\"os\":\"linux\",\"architecture\":\"amd64\",\"config\":{\"Healthcheck\":{\"Test\":[\"NONE\"]},"
       "\"Labels\":{\"dev.ferry.health_cmd\":\"true\"}}}",
       NULL, NULL, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fy_image_config c;
    char err[200];
    CHECK_INT(fy_oci_config_parse(cases[i].cfg, strlen(cases[i].cfg), &c, err, sizeof err), FY_OK);
    CHECK_INT(c.nhealth_argv, cases[i].n);
    if (cases[i].text) {
      CHECK_STR(c.health_cmd, cases[i].text);
      CHECK_STR(c.health_argv[0], cases[i].argv0);
    } else {
      CHECK(c.health_cmd == NULL);
    }
    fy_oci_config_free(&c);
  }
}

static void test_cgroups(void) {
  char mi[2048];
  fy_cgroup_sys s;
  fy_cgroup_app a;
  fy_runspec r = {.memory = 64 << 20, .cpu_milli = 500, .pids = 64};

  /* device rules: v1's devices controller, the runtime's own nodes and the granted one last */
  put("dv/ferry/cam/devices.deny", "");
  put("dv/ferry/cam/devices.allow", "");
  snprintf(mi, sizeof mi, "35 30 0:32 / %s/dv rw,relatime - cgroup cgroup rw,devices\n", base);
  fy_cgroup_detect(mi, &s);
  CHECK(s.v1_devices[0] != '\0');
  memset(&a, 0, sizeof a);
  const char *granted[] = {"/dev/null"};
  fy_cgroup_devices(&s, "cam", granted, 1, &a);
  CHECK_STR(a.not_enforced, "");
  CHECK_INT(a.ndirs, 1);
  CHECK_STR(get("dv/ferry/cam/devices.deny"), "a");
  CHECK(strncmp(get("dv/ferry/cam/devices.allow"), "c 1:3 rwm", 9) == 0); /* each write replaces the fake file's text */
  /* without it: said, not silently dropped */
  memset(&s, 0, sizeof s);
  memset(&a, 0, sizeof a);
  fy_cgroup_devices(&s, "cam", granted, 1, &a);
  CHECK(strstr(a.not_enforced, "device rules: no v1 devices controller") != NULL);

  /* cgroup v2 only (Raspberry Pi OS bookworm, Debian 12 with systemd) */
  put("v2/cgroup.controllers", "cpuset cpu io memory pids\n");
  put("v2/cgroup.subtree_control", "");
  /* what the kernel creates in a real cgroupfs (the code never creates control files) */
  put("v2/ferry/cgroup.subtree_control", "");
  put("v2/ferry/web/memory.max", "");
  put("v2/ferry/web/cpu.max", "");
  put("v2/ferry/web/pids.max", "");
  snprintf(mi, sizeof mi, "30 23 0:26 / %s/v2 rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", base);
  fy_cgroup_detect(mi, &s);
  CHECK(s.v2_has[FY_CG_MEMORY] && s.v2_has[FY_CG_CPU] && s.v2_has[FY_CG_PIDS]);
  fy_cgroup_prepare(&s, "web", &r, &a);
  CHECK_STR(a.not_enforced, "");
  CHECK_INT(a.ndirs, 1); /* one directory in the unified tree */
  CHECK_STR(get("v2/ferry/web/memory.max"), "67108864");
  CHECK_STR(get("v2/ferry/web/cpu.max"), "50000 100000");
  CHECK_STR(get("v2/ferry/web/pids.max"), "64");
  CHECK(strstr(get("v2/cgroup.subtree_control"), "+pids") != NULL); /* the last controller written (a real cgroupfs keeps all) */
  put("v2/ferry/web/memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n");
  CHECK_INT(fy_cgroup_oom_kills(&a), 2);

  /* cgroup v1 only (this build machine) */
  snprintf(mi, sizeof mi,
           "32 31 0:29 / %s/v1/cpu rw,relatime - cgroup cgroup rw,cpu\n"
           "35 31 0:32 / %s/v1/memory rw,relatime - cgroup cgroup rw,memory\n"
           "39 31 0:36 / %s/v1/pids rw,relatime - cgroup cgroup rw,pids\n",
           base, base, base);
  for (const char *d = "cpu"; d; d = strcmp(d, "cpu") == 0 ? "memory" : strcmp(d, "memory") == 0 ? "pids" : NULL) {
    char p[64];
    snprintf(p, sizeof p, "v1/%s/x", d);
    put(p, "");
  }
  fy_cgroup_detect(mi, &s);
  CHECK(!s.v2[0] && s.v1[FY_CG_MEMORY][0] && s.v1[FY_CG_CPU][0] && s.v1[FY_CG_PIDS][0]);
  /* the files a real v1 hierarchy has (a fake tree needs them made; the kernel makes them) */
  put("v1/memory/ferry/web/memory.limit_in_bytes", "");
  put("v1/cpu/ferry/web/cpu.cfs_period_us", "");
  put("v1/cpu/ferry/web/cpu.cfs_quota_us", "");
  put("v1/pids/ferry/web/pids.max", "");
  fy_cgroup_prepare(&s, "web", &r, &a);
  CHECK_STR(a.not_enforced, "");
  CHECK_INT(a.ndirs, 3);
  CHECK_STR(get("v1/memory/ferry/web/memory.limit_in_bytes"), "67108864");
  CHECK_STR(get("v1/cpu/ferry/web/cpu.cfs_quota_us"), "50000");
  CHECK_STR(get("v1/cpu/ferry/web/cpu.cfs_period_us"), "100000");
  CHECK_STR(get("v1/pids/ferry/web/pids.max"), "64");
  put("v1/memory/ferry/web/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
  CHECK_INT(fy_cgroup_oom_kills(&a), 1);

  /* hybrid: v2 mounted with no controllers (systemd's), v1 has them: v1 is used */
  put("hy/unified/cgroup.controllers", "\n");
  snprintf(mi, sizeof mi,
           "31 23 0:28 / %s/hy/unified rw - cgroup2 cgroup2 rw\n35 31 0:32 / %s/v1/memory rw,relatime - cgroup cgroup rw,memory\n",
           base, base);
  fy_cgroup_detect(mi, &s);
  CHECK(s.v2[0] && !s.v2_has[FY_CG_MEMORY] && s.v1[FY_CG_MEMORY][0]);
  fy_runspec mem = {.memory = 32 << 20};
  fy_cgroup_prepare(&s, "web", &mem, &a);
  CHECK_STR(a.not_enforced, "");
  CHECK_STR(get("v1/memory/ferry/web/memory.limit_in_bytes"), "33554432");

  /* no memory controller (a Raspberry Pi without cgroup_enable=memory): said, with the fix */
  snprintf(mi, sizeof mi, "32 31 0:29 / %s/v1/cpu rw,relatime - cgroup cgroup rw,cpu\n", base);
  fy_cgroup_detect(mi, &s);
  fy_cgroup_prepare(&s, "web", &r, &a);
  CHECK_CONTAINS(a.not_enforced, "memory: the kernel offers no memory cgroup (on a Raspberry Pi add cgroup_enable=memory");
  CHECK_CONTAINS(a.not_enforced, "pids: the kernel offers no cgroup controller for it");
  CHECK_INT(a.ndirs, 1); /* cpu still is */
  /* no limits asked: nothing made */
  fy_runspec none = {0};
  fy_cgroup_prepare(&s, "idle", &none, &a);
  CHECK(a.ndirs == 0 && !a.not_enforced[0]);
}

/* The resolver that stands in for openat2 where it is missing (qemu-user, old kernels): every
 * symlink resolves inside the root, ".." stops at it, a FIFO opens without blocking. */
static void test_walk(void) {
  char root[400], p[600];
  snprintf(root, sizeof root, "%s/wroot", base);
  put("wroot/etc/passwd", "inside\n");
  put("wroot/usr/lib/x", "x\n");
  put("outside", "host\n");
  snprintf(p, sizeof p, "%s/usr/lib", root);
  static const char *const links[][2] = {{"/usr/lib", "lib"}, {"../../../../../etc/passwd", "climb"}, {"/etc", "etclink"},
                                         {"loop2", "loop1"}, {"loop1", "loop2"}, {"../../outside", "usr/up"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", root, links[i][1]);
    CHECK(symlink(links[i][0], p) == 0);
  }
  snprintf(p, sizeof p, "%s/fifo", root);
  CHECK(mkfifo(p, 0644) == 0);
  int rfd = open(root, O_PATH | O_DIRECTORY);
  char buf[16];
  static const char *const reads[][2] = {{"lib/x", "x"}, {"climb", "inside"}, {"etclink/passwd", "inside"},
                                         {"/usr/../../../etc/passwd", "inside"}, {"usr/up", ""}};
  for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
    int fd = fy_walk_in_root(rfd, reads[i][0], O_RDONLY, 0);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    buf[n > 0 ? n - 1 : 0] = '\0';
    if (fd >= 0) close(fd);
    if (strcmp(buf, reads[i][1]) != 0) fprintf(stderr, "walk %s: '%s'\n", reads[i][0], buf);
    CHECK_STR(buf, reads[i][1]); /* usr/up -> ROOT/outside, which is not there: never the host's */
  }
  errno = 0;
  CHECK(fy_walk_in_root(rfd, "loop1/x", O_RDONLY, 0) < 0 && errno == ELOOP);
  int ff = fy_walk_in_root(rfd, "fifo", O_RDONLY, 0); /* returns at once */
  struct stat st;
  CHECK(ff >= 0 && fstat(ff, &st) == 0 && S_ISFIFO(st.st_mode));
  if (ff >= 0) close(ff);
  int d = fy_walk_in_root(rfd, "lib/new/deeper", O_PATH | O_DIRECTORY, 1);
  CHECK(d >= 0);
  if (d >= 0) close(d);
  snprintf(p, sizeof p, "%s/usr/lib/new/deeper", root);
  CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
  close(rfd);
  /* and the same answers through fy_file_read_in_root (openat2 here) */
  char *t = NULL;
  size_t n;
  CHECK_INT(fy_file_read_in_root(root, "/etclink/../etc/passwd", 100, &t, &n), FY_OK);
  CHECK_STR(t, "inside\n");
  free(t);
  CHECK_INT(fy_file_read_in_root(root, "fifo", 100, &t, &n), FY_EINVAL);
}

/* Every code in the table travels: a peer's code past FY__ERR_MIN would read as EPEER. */
static void test_codes(void) {
  CHECK_STR(fy_err_name(FY__ERR_MIN), "EPOLICY");
  CHECK_STR(fy_err_name(FY__ERR_MIN - 1), "EUNKNOWN");
  uint64_t v;
  CHECK(fy_parse_u64("9223372036854775807", 0, FY_VERSION_MAX, &v) == FY_OK && v == FY_VERSION_MAX);
  CHECK(fy_parse_u64("3000000000\n", 0, FY_VERSION_MAX, &v) == FY_OK && v == 3000000000ULL); /* past 2^31 on armhf too */
  CHECK_INT(fy_parse_u64("9223372036854775808", 0, FY_VERSION_MAX, &v), FY_EINVAL);
  CHECK_INT(fy_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), FY_EINVAL);
  CHECK_INT(fy_parse_u64("-1", 0, FY_VERSION_MAX, &v), FY_EINVAL);
  CHECK_INT(fy_parse_u64("", 0, FY_VERSION_MAX, &v), FY_EINVAL);
  CHECK_INT(fy_parse_u64("12abc", 0, FY_VERSION_MAX, &v), FY_EINVAL);
  CHECK_INT(fy_parse_u64("0", 1, FY_VERSION_MAX, &v), FY_EINVAL);
}

/* Log records: the format, reading it back, the filters, and text that is not text. */
static void test_applog(void) {
  char rec[FY_LOG_RECORD_MAX], out[FY_LOG_RECORD_MAX + 1];
  size_t n = fy_applog_format(rec, 1764871426123ull, 'E', "disk full", 9);
  rec[n] = 0;
  CHECK_STR(rec, "2025-12-04T18:03:46.123Z E disk full\n");
  fy_logline l;
  CHECK_INT(fy_applog_parse(rec, n, &l), 1);
  CHECK_INT(l.stream, 'E');
  CHECK_INT(l.len, 9);
  fy_log_query all = {.tail = 10}, err_only = {.tail = 10, .stream = FY_LOG_STDERR}, out_only = {.tail = 10, .stream = FY_LOG_STDOUT};
  CHECK(fy_applog_wants(&all, &l, NULL) && fy_applog_wants(&err_only, &l, NULL) && !fy_applog_wants(&out_only, &l, NULL));
  CHECK(fy_applog_wants(&all, &l, "2025-12-04T18:03:46.000Z") && !fy_applog_wants(&all, &l, "2025-12-04T18:03:47.000Z"));
  out[fy_applog_render(&l, 1, out)] = 0;
  CHECK_STR(out, "2025-12-04T18:03:46.123Z disk full\n");
  out[fy_applog_render(&l, 0, out)] = 0;
  CHECK_STR(out, "disk full\n");
  /* a line an older agent wrote: stdout, no time (left out by --since) */
  CHECK_INT(fy_applog_parse("plain old line\n", 15, &l), 0);
  CHECK(l.stream == 'O' && !l.ts && l.len == 14);
  CHECK(fy_applog_wants(&out_only, &l, NULL) && !fy_applog_wants(&all, &l, "2000-01-01T00:00:00.000Z"));
  /* a record with an empty text, and ones that only look like records */
  n = fy_applog_format(rec, 0, 'O', "", 0);
  CHECK_INT(fy_applog_parse(rec, n, &l), 1);
  CHECK_INT(l.len, 0);
  CHECK_INT(fy_applog_parse("2025-12-04T18:03:46.123Z X nope", 31, &l), 0);
  CHECK_INT(fy_applog_parse("2025-12-04T18:03:46.123Z", 24, &l), 0);
  /* bytes that are not UTF-8 (a lone continuation, an overlong '/', a surrogate, past U+10FFFF,
   * a cut sequence, NUL) become '?'; real UTF-8 and escapes stay */
  const char bad[] = "a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xf4\x90\x80\x80" "e\xe2\x82" "f\x00" "g \xc3\xa9 \x1b[1m";
  n = fy_applog_format(rec, 0, 'O', bad, sizeof bad - 1);
  rec[n] = 0;
  CHECK_STR(rec + FY_LOG_TS_LEN + 3, "a?b??c???d????e??f?g \xc3\xa9 \x1b[1m\n");
}

/* Volumes and devices as images declare them: clean paths, the runtime's own places refused. */
static void test_mounts(void) {
  fy_mounts m;
  char err[300];
  json_t *j = json_loads("{\"data\": \"/var/lib/app\", \"cache-2\": \"/srv/cache\"}", 0, NULL);
  CHECK_INT(fy_volumes_from_json(j, &m, err, sizeof err), FY_OK);
  CHECK_INT(m.nvolumes, 2);
  json_decref(j);
  char env[64];
  fy_volume_env_name("cache-2", env, sizeof env);
  CHECK_STR(env, "FERRY_VOLUME_CACHE_2");
  static const char *const bad_volumes[] = {
      "{\"data\": \"relative\"}", "{\"data\": \"/\"}", "{\"data\": \"/var/../etc\"}", "{\"data\": \"/var//lib\"}",
      "{\"data\": \"/var/lib/\"}", "{\"data\": \"/proc/x\"}", "{\"data\": \"/dev\"}", "{\"data\": \"/run/secrets/k\"}",
      "{\"Data\": \"/x\"}", "{\"\": \"/x\"}", "{\"a\": \"/x\", \"b\": \"/x\"}", "{\"data\": 5}", "[\"/x\"]",
      "{\"data\": \"/a/./b\"}", "{\"data\": \"/a\\nb\"}", "{\"my-data\": \"/a\", \"my_data\": \"/b\"}"};
  for (size_t i = 0; i < sizeof bad_volumes / sizeof bad_volumes[0]; i++) {
    j = json_loads(bad_volumes[i], 0, NULL);
    CHECK(j != NULL);
    int rc = fy_volumes_from_json(j, &m, err, sizeof err);
    if (rc != FY_EINVAL) fprintf(stderr, "accepted volumes %s\n", bad_volumes[i]);
    CHECK_INT(rc, FY_EINVAL);
    json_decref(j);
  }
  /* /procfoo is not /proc; /devices is not /dev */
  j = json_loads("{\"a\": \"/procfoo\", \"b\": \"/devices\"}", 0, NULL);
  CHECK_INT(fy_volumes_from_json(j, &m, err, sizeof err), FY_OK);
  json_decref(j);
  j = json_loads("[\"/dev/i2c-1\", \"/dev/v4l/video0\"]", 0, NULL);
  CHECK_INT(fy_devices_from_json(j, &m, err, sizeof err), FY_OK);
  CHECK_INT(m.ndevices, 2);
  json_decref(j);
  static const char *const bad_devices[] = {"[\"/etc/passwd\"]", "[\"/dev\"]", "[\"/dev/../etc/shadow\"]", "[\"dev/x\"]", "{\"a\": 1}", "[1]"};
  for (size_t i = 0; i < sizeof bad_devices / sizeof bad_devices[0]; i++) {
    j = json_loads(bad_devices[i], 0, NULL);
    CHECK_INT(fy_devices_from_json(j, &m, err, sizeof err), FY_EINVAL);
    json_decref(j);
  }
  /* 17 volumes: one too many */
  j = json_object();
  for (int i = 0; i < FY_VOLUMES_MAX + 1; i++) {
    char k[8], v[16];
    snprintf(k, sizeof k, "v%d", i);
    snprintf(v, sizeof v, "/v%d", i);
    json_object_set_new(j, k, json_string(v));
  }
  CHECK_INT(fy_volumes_from_json(j, &m, err, sizeof err), FY_EINVAL);
  json_decref(j);
}

int main(void) {
  snprintf(base, sizeof base, "%s/ferry-runtime.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(base)) return 1;
  test_codes();
  test_applog();
  test_mounts();
  test_healthcheck();
  test_runspec();
  test_cgroups();
  test_walk();
  if (fy_remove_path(base) != FY_OK) return 1;
  return check_done("test_runtime");
}
