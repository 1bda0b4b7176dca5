/* The wire contract (ferry/wire.h, ferry/conv.h): golden JSON for every message, each decoder
 * refusing what a hostile peer could send, and the conversation's phase table from both sides. */
#include <stdlib.h>

#include "check.h"
#include "ferry/conv.h"
#include "ferry/frame.h"
#include "ferry/wire.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static char *dump(json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

static json_t *load(const char *s) {
  json_t *j = json_loads(s, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
  if (!j) abort();
  return j;
}

static void golden(const char *what, json_t *encoded, const char *want) {
  char *got = dump(encoded);
  if (!got || strcmp(got, want) != 0) fprintf(stderr, "%s:\n  got  %s\n  want %s\n", what, got ? got : "(null)", want);
  CHECK_STR(got, want);
  free(got);
}

static void test_plan(void) {
  fy_plan_msg m = {.app = "hello", .manifest = "{}", .manifest_len = 2, .config = "{\"a\":1}", .config_len = 7,
                   .settle_ms = 500, .health_cmd = "true", .health_port = 8080};
  CHECK_INT(fy_digest_parse(D1, &m.manifest_digest), FY_OK);
  golden("plan", fy_plan_encode(&m),
         "{\"app\":\"hello\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{\\\"a\\\":1}\",\"settle_ms\":500,"
         "\"health_cmd\":\"true\",\"health_port\":8080}");
  char err[300];
  fy_plan_msg d;
  json_t *j = load("{\"app\":\"hello\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\"}");
  CHECK_INT(fy_plan_decode(j, &d, err, sizeof err), FY_OK);
  CHECK_STR(d.app, "hello");
  CHECK_INT(d.manifest_len, 2);
  CHECK_INT(d.settle_ms, 3000); /* the defaults */
  CHECK_INT(d.upgrade_timeout_s, 30);
  CHECK(d.health_cmd == NULL && d.health_port == 0 && !d.agent_upgrade);
  json_decref(j);
  static const struct {
    const char *json, *why;
  } bad[] = {
      {"{\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\"}", "'app' is required"},
      {"{\"app\":\"Hello!\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\"}", "app name must be"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"md5:00\",\"config\":\"{}\"}", "not a sha256 digest"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\"}", "'config' is required"},
      {"{\"app\":\"a\",\"manifest\":7,\"manifest_digest\":\"" D1 "\",\"config\":\"{}\"}", "'manifest' is not a string"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\",\"settle_ms\":-1}", "'settle_ms' is -1"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\",\"settle_ms\":600001}", "not within"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\",\"health_port\":70000}", "health_port"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\",\"upgrade_timeout_s\":1}", "upgrade_timeout_s"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\",\"agent_upgrade\":1}", "true or false"},
      {"{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\",\"health_cmd\":\"a\\u0000b\"}", "NUL"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    j = load(bad[i].json);
    err[0] = '\0';
    CHECK(fy_plan_decode(j, &d, err, sizeof err) != FY_OK);
    CHECK_CONTAINS(err, bad[i].why);
    json_decref(j);
  }
  /* a health command past its ceiling */
  char big[FY_HEALTH_CMD_MAX + 1];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  j = load("{\"app\":\"a\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{}\"}");
  json_object_set_new(j, "health_cmd", json_string(big));
  CHECK_INT(fy_plan_decode(j, &d, err, sizeof err), FY_ETOOBIG);
  json_decref(j);

  /* protocol 5: the source the agent pulls from */
  fy_plan_source src = {.registry = "registry.example.com:5000", .repository = "team/app", .authorization = "Bearer t0k", .fallback = 1};
  m.source = &src;
  golden("plan with source", fy_plan_encode(&m),
         "{\"app\":\"hello\",\"manifest\":\"{}\",\"manifest_digest\":\"" D1 "\",\"config\":\"{\\\"a\\\":1}\",\"settle_ms\":500,"
         "\"health_cmd\":\"true\",\"health_port\":8080,\"source\":{\"registry\":\"registry.example.com:5000\",\"repository\":"
         "\"team/app\",\"authorization\":\"Bearer t0k\",\"fallback\":true}}");
  fy_plan_source got;
  j = load("{\"source\":{\"registry\":\"r.io\",\"repository\":\"a/b\"}}");
  CHECK_INT(fy_plan_source_decode(j, &got, err, sizeof err), FY_OK);
  CHECK_STR(got.registry, "r.io");
  CHECK_STR(got.authorization, "");
  CHECK_INT(got.fallback, 0);
  json_decref(j);
  j = load("{}");
  CHECK_INT(fy_plan_source_decode(j, &got, err, sizeof err), FY_ENOENT);
  json_decref(j);
  static const struct {
    const char *json, *why;
  } bad_src[] = {
      {"{\"source\":7}", "not an object"},
      {"{\"source\":{\"repository\":\"a\"}}", "'registry' is required"},
      {"{\"source\":{\"registry\":\"r.io/x\",\"repository\":\"a\"}}", "HOST[:PORT]"},
      {"{\"source\":{\"registry\":\"r.io\\r\\nX: y\",\"repository\":\"a\"}}", "HOST[:PORT]"},
      {"{\"source\":{\"registry\":\"r.io\",\"repository\":\"A B\"}}", "lower-case"},
      {"{\"source\":{\"registry\":\"r.io\",\"repository\":\"a\",\"authorization\":\"Basic x\\r\\nHost: evil\"}}", "control byte"},
      {"{\"source\":{\"registry\":\"r.io\",\"repository\":\"a\",\"fallback\":\"yes\"}}", "true or false"},
  };
  for (size_t i = 0; i < sizeof bad_src / sizeof bad_src[0]; i++) {
    j = load(bad_src[i].json);
    err[0] = '\0';
    CHECK(fy_plan_source_decode(j, &got, err, sizeof err) != FY_OK);
    CHECK_CONTAINS(err, bad_src[i].why);
    json_decref(j);
  }
  j = json_pack("{s:{s:s, s:s}}", "source", "registry", "r.io", "repository", "a");
  char *huge = malloc(FY_SOURCE_AUTH_MAX + 10);
  memset(huge, 'a', FY_SOURCE_AUTH_MAX + 9);
  huge[FY_SOURCE_AUTH_MAX + 9] = '\0';
  json_object_set_new(json_object_get(j, "source"), "authorization", json_string(huge));
  CHECK_INT(fy_plan_source_decode(j, &got, err, sizeof err), FY_ETOOBIG);
  free(huge);
  json_decref(j);
}

static void test_need(void) {
  static fy_need_msg m;
  m.n = 2;
  CHECK_INT(fy_digest_parse(D1, &m.items[0].digest), FY_OK);
  m.items[0].size = 100;
  m.items[0].offset = 40;
  CHECK_INT(fy_digest_parse(D2, &m.items[1].digest), FY_OK);
  m.items[1].size = 7;
  m.skipped = 1;
  golden("need", fy_need_encode(&m),
         "{\"need\":[{\"digest\":\"" D1 "\",\"size\":100,\"offset\":40},{\"digest\":\"" D2 "\",\"size\":7,\"offset\":0}],\"skipped\":1}");
  static fy_need_msg d;
  char err[300];
  json_t *j = load("{\"need\":[{\"digest\":\"" D1 "\",\"size\":100,\"offset\":40}],\"skipped\":2}");
  CHECK_INT(fy_need_decode(j, &d, err, sizeof err), FY_OK);
  CHECK_INT(d.n, 1);
  CHECK_INT(d.items[0].offset, 40);
  CHECK_INT(d.skipped, 2);
  json_decref(j);
  static const struct {
    const char *json, *why;
  } bad[] = {
      {"{\"need\":{}}", "'need' is not a list"},
      {"{\"need\":[{\"digest\":\"" D1 "\",\"size\":10,\"offset\":11}]}", "'offset' is 11, not within 0 to 10"},
      {"{\"need\":[{\"digest\":\"" D1 "\",\"size\":-5,\"offset\":0}]}", "'size' is -5"},
      {"{\"need\":[{\"digest\":\"" D1 "\",\"size\":1,\"offset\":0},{\"digest\":\"" D1 "\",\"size\":1,\"offset\":0}]}", "listed twice"},
      {"{\"need\":[7]}", "entry 0 is not an object"},
      {"{\"need\":[],\"skipped\":100000}", "'skipped'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    j = load(bad[i].json);
    err[0] = '\0';
    CHECK(fy_need_decode(j, &d, err, sizeof err) != FY_OK);
    CHECK_CONTAINS(err, bad[i].why);
    json_decref(j);
  }
  /* more entries than a manifest has layers: refused before any is read */
  j = json_pack("{s:[]}", "need");
  for (int i = 0; i <= FY_OCI_MAX_LAYERS; i++) json_array_append_new(json_object_get(j, "need"), json_object());
  CHECK_INT(fy_need_decode(j, &d, err, sizeof err), FY_ETOOBIG);
  json_decref(j);
}

static void test_blob_begin_and_request(void) {
  fy_blob_begin_msg b = {.offset = 4096};
  CHECK_INT(fy_digest_parse(D2, &b.digest), FY_OK);
  golden("blob-begin", fy_blob_begin_encode(&b), "{\"digest\":\"" D2 "\",\"offset\":4096}");
  char err[300];
  json_t *j = load("{\"digest\":\"" D2 "\",\"offset\":-1}");
  CHECK_INT(fy_blob_begin_decode(j, &b, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "'offset' is -1");
  json_decref(j);
  j = load("{\"offset\":1}");
  CHECK_INT(fy_blob_begin_decode(j, &b, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "'digest' is required");
  json_decref(j);

  fy_request_msg r = {.op = FY_REQ_LOGS, .app = "hello", .tail = 20};
  golden("request logs", fy_request_encode(&r), "{\"op\":\"logs\",\"app\":\"hello\",\"tail\":20}");
  r.op = FY_REQ_ROLLBACK;
  golden("request rollback", fy_request_encode(&r), "{\"op\":\"rollback\",\"app\":\"hello\"}");
  j = load("{\"op\":\"logs\",\"app\":\"hello\"}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_OK);
  CHECK_INT(r.tail, 100);
  json_decref(j);
  j = load("{\"op\":\"format-disk\",\"app\":\"hello\"}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EUNSUPPORTED);
  CHECK_CONTAINS(err, "unknown request 'format-disk'");
  json_decref(j);
  j = load("{\"op\":\"logs\",\"app\":\"../etc\"}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EPROTO);
  json_decref(j);
  j = load("{\"op\":\"logs\",\"app\":\"hello\",\"tail\":1000000}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EPROTO);
  json_decref(j);
  /* protocol 3: the lifecycle verbs */
  r = (fy_request_msg){.op = FY_REQ_REMOVE, .app = "hello", .purge = 1};
  golden("request remove", fy_request_encode(&r), "{\"op\":\"remove\",\"app\":\"hello\",\"purge\":true}");
  r = (fy_request_msg){.op = FY_REQ_STOP, .app = "hello", .purge = 1};
  golden("request stop", fy_request_encode(&r), "{\"op\":\"stop\",\"app\":\"hello\"}");
  j = load("{\"op\":\"restart\",\"app\":\"hello\"}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_OK);
  CHECK_INT(r.op, FY_REQ_RESTART);
  CHECK_INT(r.purge, 0);
  json_decref(j);
  j = load("{\"op\":\"remove\",\"app\":\"hello\",\"purge\":\"yes\"}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "'purge' is not true or false");
  json_decref(j);
  j = load("{\"op\":\"\",\"app\":\"hello\"}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EUNSUPPORTED);
  json_decref(j);
  /* protocol 4: logs --follow and its filters, exec */
  r = (fy_request_msg){.op = FY_REQ_LOGS, .app = "hello", .tail = 5, .follow = 1, .timestamps = 1, .since_s = 600,
                       .stream = FY_LOG_STDERR};
  golden("request logs -f", fy_request_encode(&r),
         "{\"op\":\"logs\",\"app\":\"hello\",\"tail\":5,\"follow\":true,\"timestamps\":true,\"since_s\":600,\"stream\":\"stderr\"}");
  j = load("{\"op\":\"logs\",\"app\":\"hello\",\"stream\":\"both\"}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "'stream' is 'both'");
  json_decref(j);
  j = load("{\"op\":\"logs\",\"app\":\"hello\",\"since_s\":4294967297}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EPROTO); /* past 2^32 (and 400 days) */
  json_decref(j);
  const char *argv[] = {"sh", "-c", "echo hi"};
  r = (fy_request_msg){.op = FY_REQ_EXEC, .app = "hello", .argc = 3, .tty = 1, .input = 1, .rows = 24, .cols = 80};
  memcpy(r.argv, argv, sizeof argv);
  golden("request exec", fy_request_encode(&r),
         "{\"op\":\"exec\",\"app\":\"hello\",\"argv\":[\"sh\",\"-c\",\"echo hi\"],\"tty\":true,\"stdin\":true,\"rows\":24,\"cols\":80}");
  j = load("{\"op\":\"exec\",\"app\":\"hello\",\"argv\":[\"cat\",\"/x\"],\"stdin\":true}");
  CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_OK);
  CHECK_INT(r.argc, 2);
  CHECK_STR(r.argv[1], "/x");
  CHECK_INT(r.input, 1);
  CHECK(!fy_request_is_lifecycle(r.op));
  json_decref(j);
  static const char *const bad_exec[] = {
      "{\"op\":\"exec\",\"app\":\"hello\"}",                          /* no argv */
      "{\"op\":\"exec\",\"app\":\"hello\",\"argv\":[]}",             /* empty */
      "{\"op\":\"exec\",\"app\":\"hello\",\"argv\":[\"a\",1]}",       /* not a string */
      "{\"op\":\"exec\",\"app\":\"hello\",\"argv\":[\"a\\u0000b\"]}",  /* a NUL inside */
      "{\"op\":\"exec\",\"app\":\"hello\",\"argv\":[\"a\"],\"rows\":100000}",
  };
  for (size_t i = 0; i < sizeof bad_exec / sizeof bad_exec[0]; i++) {
    j = load(bad_exec[i]);
    CHECK_INT(fy_request_decode(j, &r, err, sizeof err), FY_EPROTO);
    json_decref(j);
  }
  /* 257 arguments: one too many */
  json_t *many = json_pack("{s:s, s:s, s:[]}", "op", "exec", "app", "hello", "argv");
  for (int i = 0; i < FY_EXEC_ARGS_MAX + 1; i++) json_array_append_new(json_object_get(many, "argv"), json_string("x"));
  CHECK_INT(fy_request_decode(many, &r, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "more than 256 entries");
  json_decref(many);
  CHECK(fy_request_is_lifecycle(FY_REQ_STOP) && fy_request_is_lifecycle(FY_REQ_REMOVE) && !fy_request_is_lifecycle(FY_REQ_LOGS));
  /* what makes two pushes the same: the options digest moves with the health command and port only */
  fy_plan_msg pa = {.app = "hello", .settle_ms = 1000, .health_cmd = "true"}, pb = pa;
  char da[FY_DIGEST_STR], db[FY_DIGEST_STR];
  pb.settle_ms = 9000;
  pb.force = 1;
  fy_plan_options_digest(&pa, da);
  fy_plan_options_digest(&pb, db);
  CHECK(strcmp(da, db) == 0);
  pb.health_port = 8080;
  fy_plan_options_digest(&pb, db);
  CHECK(strcmp(da, db) != 0);
  pb = pa;
  pb.health_cmd = "false";
  fy_plan_options_digest(&pb, db);
  CHECK(strcmp(da, db) != 0);
}

static void test_result_and_progress(void) {
  fy_result_msg m = {.result = FY_RESULT_ROLLED_BACK, .app = "hello", .code = FY_EUNHEALTHY, .message = "exited",
                     .release = "r2", .bytes_received = 10, .blobs_received = 1, .has_exit_code = 1, .exit_code = 3,
                     .log_tail = "bye\n"};
  char want[600];
  snprintf(want, sizeof want,
           "{\"result\":\"rolled-back\",\"app\":\"hello\",\"code\":%d,\"name\":\"%s\",\"message\":\"exited\",\"release\":\"r2\","
           "\"bytes_received\":10,\"blobs_received\":1,\"blobs_skipped\":0,\"exit_code\":3,\"log_tail\":\"bye\\n\"}",
           FY_EUNHEALTHY, fy_err_name(FY_EUNHEALTHY));
  golden("result", fy_result_encode(&m), want);
  char err[300];
  fy_result_msg d;
  json_t *j = load(want);
  CHECK_INT(fy_result_decode(j, &d, err, sizeof err), FY_OK);
  CHECK_INT(d.result, FY_RESULT_ROLLED_BACK);
  CHECK_INT(d.code, FY_EUNHEALTHY);
  CHECK(d.has_exit_code && d.exit_code == 3);
  CHECK_STR(d.log_tail, "bye\n");
  CHECK_STR(d.previous, "");
  json_decref(j);
  /* what v0.1.0 agents send for a manual rollback still reads */
  j = load("{\"result\":\"rolled-back\",\"app\":\"hello\",\"release\":\"r1\",\"previous\":\"r2\",\"code\":0,\"message\":\"\"}");
  CHECK_INT(fy_result_decode(j, &d, err, sizeof err), FY_OK);
  CHECK_STR(d.previous, "r2");
  json_decref(j);
  j = load("{\"result\":\"exploded\"}");
  CHECK_INT(fy_result_decode(j, &d, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "'exploded' is not a result");
  json_decref(j);
  j = load("{\"result\":\"failed\",\"code\":5}");
  CHECK_INT(fy_result_decode(j, &d, err, sizeof err), FY_EPROTO);
  json_decref(j);
  j = json_pack("{s:s, s:s%}", "result", "failed", "log_tail", "x", (size_t)1);
  char *big = calloc(1, FY_LOG_TAIL_MAX + 2);
  memset(big, 'x', FY_LOG_TAIL_MAX + 1);
  json_object_set_new(j, "log_tail", json_string(big));
  CHECK_INT(fy_result_decode(j, &d, err, sizeof err), FY_ETOOBIG);
  free(big);
  json_decref(j);

  fy_progress_msg p = {.app = "hello", .step = FY_STEP_UNPACKING, .total = 100};
  golden("progress", fy_progress_encode(&p), "{\"app\":\"hello\",\"step\":\"unpacking\",\"done\":0,\"total\":100}");
  p = (fy_progress_msg){.app = "hello", .step = FY_STEP_HEALTH};
  golden("progress without counts", fy_progress_encode(&p), "{\"app\":\"hello\",\"step\":\"health-check\"}");
  j = load("{\"app\":\"hello\",\"step\":\"settling\",\"done\":5,\"total\":4}");
  CHECK_INT(fy_progress_decode(j, &p, err, sizeof err), FY_EPROTO);
  json_decref(j);
  j = load("{\"app\":\"hello\",\"step\":\"dancing\"}");
  CHECK_INT(fy_progress_decode(j, &p, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "'dancing' is not a step");
  json_decref(j);
}

static void test_run_meta(void) {
  json_t *argv = json_pack("[s,s]", "/app", "-v"), *env = json_pack("[s]", "A=1"), *blobs = json_pack("[s]", D1);
  fy_run_meta m = {.argv = argv, .env = env, .workdir = NULL, .user = "svc", .blobs = blobs, .manifest = D1, .version = 7};
  golden("run.json", fy_run_meta_encode(&m),
         "{\"argv\":[\"/app\",\"-v\"],\"env\":[\"A=1\"],\"workdir\":\"/\",\"user\":\"svc\",\"blobs\":[\"" D1 "\"],\"manifest\":\"" D1
         "\",\"version\":7}");
  json_decref(argv);
  json_decref(env);
  json_decref(blobs);
  char err[300];
  fy_run_meta d;
  json_t *j = load("{\"argv\":[\"/app\"],\"blobs\":[],\"workdir\":\"relative\"}");
  CHECK_INT(fy_run_meta_decode(j, &d, err, sizeof err), FY_OK);
  CHECK_STR(d.workdir, "/");
  CHECK_INT(d.nenv, 0);
  CHECK_INT(d.version, 0);
  json_decref(j);
  j = load("{\"argv\":[\"/app\"]}"); /* no blobs: the GC could not tell what it needs */
  CHECK_INT(fy_run_meta_decode(j, &d, err, sizeof err), FY_EPROTO);
  CHECK_CONTAINS(err, "'blobs' is not a list");
  json_decref(j);
  j = load("{\"argv\":[\"/app\"],\"blobs\":[\"nope\"]}");
  CHECK_INT(fy_run_meta_decode(j, &d, err, sizeof err), FY_EPROTO);
  json_decref(j);
  j = load("{\"argv\":[1],\"blobs\":[]}");
  CHECK_INT(fy_run_meta_decode(j, &d, err, sizeof err), FY_EPROTO);
  json_decref(j);
}

static void test_facts(void) {
  json_t *labels = json_pack("{s:s}", "site", "kitchen"), *apps = json_array();
  fy_facts_msg m = {.proto = 2, .name = "pi", .agent_version = "0.2.0", .board = "rpi4", .labels = labels, .free_bytes = 5,
                    .uptime_s = 9, .apps = apps, .agent_digest = D1};
  CHECK_INT(fy_platform_parse("linux/arm64", &m.platform), FY_OK);
  CHECK_INT(fy_platform_parse("linux/arm/v7", &m.accepts[1]), FY_OK);
  m.accepts[0] = m.platform;
  m.naccepts = 2;
  golden("facts", fy_facts_encode(&m),
         "{\"proto\":2,\"name\":\"pi\",\"agent_version\":\"0.2.0\",\"platform\":\"linux/arm64\",\"accepts\":[\"linux/arm64\","
         "\"linux/arm/v7\"],\"labels\":{\"site\":\"kitchen\"},\"board\":\"rpi4\",\"free_bytes\":5,\"uptime_s\":9,\"apps\":[],"
         "\"agent_digest\":\"" D1 "\"}");
  json_decref(labels);
  json_decref(apps);
  char err[300];
  fy_facts_msg d;
  /* what a v0.1.0 agent sends: board null, no agent_digest before the upgrade work, apps with names */
  json_t *j = load("{\"proto\":1,\"name\":\"old\",\"agent_version\":\"0.1.0\",\"platform\":\"linux/amd64\","
                   "\"accepts\":[\"linux/amd64\",\"linux/386\"],\"labels\":{},\"board\":null,\"free_bytes\":1,\"uptime_s\":2,"
                   "\"apps\":[{\"name\":\"hello\",\"release\":\"r1\",\"previous\":\"\",\"state\":\"running\",\"restarts\":0}]}");
  CHECK_INT(fy_facts_decode(j, &d, err, sizeof err), FY_OK);
  CHECK_INT(d.naccepts, 2);
  CHECK_STR(d.board, "");
  CHECK_STR(d.agent_digest, "");
  json_decref(j);
  j = load("{\"platform\":\"linux/arm64\"}"); /* no accepts: a node runs at least its own platform */
  CHECK_INT(fy_facts_decode(j, &d, err, sizeof err), FY_OK);
  CHECK_INT(d.naccepts, 1);
  json_decref(j);
  static const struct {
    const char *json, *why;
  } bad[] = {
      {"{}", "'platform' is required"},
      {"{\"platform\":\"a/b/c/d/e\"}", "is not a platform"},
      {"{\"platform\":\"linux/arm64\",\"accepts\":[7]}", "accepts entry 0"},
      {"{\"platform\":\"linux/arm64\",\"labels\":[]}", "'labels' is not a map"},
      {"{\"platform\":\"linux/arm64\",\"labels\":{\"a\":1}}", "label 'a'"},
      {"{\"platform\":\"linux/arm64\",\"apps\":[{\"release\":\"r\"}]}", "'name' is required"},
      {"{\"platform\":\"linux/arm64\",\"free_bytes\":-1}", "'free_bytes' is -1"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    j = load(bad[i].json);
    err[0] = '\0';
    CHECK(fy_facts_decode(j, &d, err, sizeof err) != FY_OK);
    CHECK_CONTAINS(err, bad[i].why);
    json_decref(j);
  }
}

static void test_app_names(void) {
  CHECK(fy_app_valid_name("hello-svc_2.0"));
  CHECK(!fy_app_valid_name(""));
  CHECK(!fy_app_valid_name(".hidden"));
  CHECK(!fy_app_valid_name("-x"));
  CHECK(!fy_app_valid_name("a/b"));
  CHECK(!fy_app_valid_name("UPPER"));
  CHECK(!fy_app_valid_name("0123456789012345678901234567890123456789012345678901234567890123")); /* 64 */
}

/* Both sides walk the same table; each side's receive is the other's send. */
static void walk(const uint8_t *types, const int *from_pusher, size_t n, int expect_ok_until) {
  fy_conv agent, pusher;
  fy_conv_init(&agent, FY_SIDE_AGENT);
  fy_conv_init(&pusher, FY_SIDE_PUSHER);
  for (size_t i = 0; i < n; i++) {
    int a = from_pusher[i] ? fy_conv_recv(&agent, types[i]) : fy_conv_send(&agent, types[i]);
    int p = from_pusher[i] ? fy_conv_send(&pusher, types[i]) : fy_conv_recv(&pusher, types[i]);
    int want = (int)i < expect_ok_until ? FY_OK : FY_EPROTO;
    CHECK_INT(a, want);
    CHECK_INT(p, want);
    if (want != FY_OK) return;
  }
}

static void test_conversation(void) {
  static const uint8_t deploy[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_PLAN, FY_FT_REPLY, FY_FT_BLOB_BEGIN, FY_FT_BLOB,
                                   FY_FT_BLOB, FY_FT_BLOB_BEGIN, FY_FT_BLOB, FY_FT_COMMIT, FY_FT_PROGRESS, FY_FT_PROGRESS,
                                   FY_FT_RESULT};
  static const int deploy_dir[] = {1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0};
  walk(deploy, deploy_dir, sizeof deploy, (int)sizeof deploy);
  /* protocol 5: progress while the agent pulls, before its need list */
  static const uint8_t pull[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_PLAN, FY_FT_PROGRESS, FY_FT_PROGRESS, FY_FT_REPLY, FY_FT_COMMIT,
                                 FY_FT_RESULT};
  static const int pull_dir[] = {1, 0, 1, 0, 0, 0, 1, 0};
  walk(pull, pull_dir, sizeof pull, (int)sizeof pull);
  static const uint8_t logs[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_REQUEST, FY_FT_REPLY, FY_FT_REQUEST, FY_FT_RESULT};
  static const int logs_dir[] = {1, 0, 1, 0, 1, 0};
  walk(logs, logs_dir, sizeof logs, (int)sizeof logs);
  /* protocol 4: exec's output and input, then its result; logs -f: output only */
  static const uint8_t exec[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_REQUEST, FY_FT_OUTPUT, FY_FT_INPUT, FY_FT_OUTPUT,
                                 FY_FT_INPUT, FY_FT_RESULT};
  static const int exec_dir[] = {1, 0, 1, 0, 1, 0, 1, 0};
  walk(exec, exec_dir, sizeof exec, (int)sizeof exec);
  /* output never goes to the agent, input never comes from it, and neither outside a request */
  static const uint8_t out_up[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_REQUEST, FY_FT_OUTPUT};
  static const int out_up_dir[] = {1, 0, 1, 1};
  walk(out_up, out_up_dir, sizeof out_up, 3);
  static const uint8_t in_down[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_REQUEST, FY_FT_INPUT};
  static const int in_down_dir[] = {1, 0, 1, 0};
  walk(in_down, in_down_dir, sizeof in_down, 3);
  static const uint8_t in_ready[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_INPUT};
  static const int in_ready_dir[] = {1, 0, 1};
  walk(in_ready, in_ready_dir, sizeof in_ready, 2);

  fy_conv c;
  static const struct {
    uint8_t before[4];
    size_t n;
    uint8_t type;
    const char *why;
  } bad[] = {
      {{0}, 0, FY_FT_PLAN, "unexpected plan message from the pusher (the conversation is before hello)"},
      {{FY_FT_HELLO}, 1, FY_FT_HELLO, "unexpected hello message"},
      {{FY_FT_HELLO}, 1, FY_FT_BLOB, "unexpected blob message"},
      {{0}, 0, FY_FT_COMMIT, "before hello"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fy_conv_init(&c, FY_SIDE_AGENT);
    for (size_t k = 0; k < bad[i].n; k++) CHECK_INT(fy_conv_recv(&c, bad[i].before[k]), FY_OK);
    CHECK_INT(fy_conv_recv(&c, bad[i].type), FY_EPROTO);
    CHECK_CONTAINS(c.why, bad[i].why);
  }
  /* blob data after commit, and a second plan, refused on the agent's side */
  fy_conv_init(&c, FY_SIDE_AGENT);
  static const uint8_t upto_commit[] = {FY_FT_HELLO, FY_FT_FACTS, FY_FT_PLAN, FY_FT_REPLY, FY_FT_COMMIT};
  static const int upto_dir[] = {1, 0, 1, 0, 1};
  for (size_t k = 0; k < sizeof upto_commit; k++)
    CHECK_INT(upto_dir[k] ? fy_conv_recv(&c, upto_commit[k]) : fy_conv_send(&c, upto_commit[k]), FY_OK);
  CHECK_INT(fy_conv_recv(&c, FY_FT_BLOB), FY_EPROTO);
  CHECK_CONTAINS(c.why, "(the conversation is committed)");
  CHECK_INT(fy_conv_recv(&c, FY_FT_PLAN), FY_EPROTO);
  /* the agent may not send a result before the commit, nor progress during a transfer */
  fy_conv_init(&c, FY_SIDE_AGENT);
  CHECK_INT(fy_conv_recv(&c, FY_FT_HELLO), FY_OK);
  CHECK_INT(fy_conv_send(&c, FY_FT_FACTS), FY_OK);
  CHECK_INT(fy_conv_recv(&c, FY_FT_PLAN), FY_OK);
  CHECK_INT(fy_conv_send(&c, FY_FT_REPLY), FY_OK);
  CHECK_INT(fy_conv_send(&c, FY_FT_PROGRESS), FY_EPROTO);
  CHECK_INT(fy_conv_send(&c, FY_FT_RESULT), FY_EPROTO);
  /* an error ends the conversation from any phase, either way */
  CHECK_INT(fy_conv_send(&c, FY_FT_ERROR), FY_OK);
  CHECK_INT(c.phase, FY_CONV_DONE);
  CHECK_INT(fy_conv_recv(&c, FY_FT_BLOB), FY_EPROTO);
  /* unknown types */
  fy_conv_init(&c, FY_SIDE_PUSHER);
  CHECK_INT(fy_conv_recv(&c, 200), FY_EPROTO);
}

int main(void) {
  test_plan();
  test_need();
  test_blob_begin_and_request();
  test_result_and_progress();
  test_run_meta();
  test_facts();
  test_app_names();
  test_conversation();
  return check_done("test_wire");
}
