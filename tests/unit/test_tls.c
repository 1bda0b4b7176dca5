/* TLS over in-memory buffers (Mbed TLS ssl_helpers style): real handshakes between a real agent
 * and a real pusher configuration, plus each negative case of the foundation issue. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ferry/fsutil.h"
#include "ferry/msg.h"
#include "ferry/session.h"
#include "ferry/tls.h"
#include "ferry/mbedtls_compat.h"
#include "pki.h"

static char dir[256];

static fy_tls_conf *load(const char *id, fy_tls_role role) {
  char path[512], err[512];
  fy_tls_conf *c = NULL;
  snprintf(path, sizeof path, "%s/%s", dir, id);
  int rc = fy_identity_load(path, role, &c, err, sizeof err);
  if (rc != FY_OK) fprintf(stderr, "load %s: %s\n", id, err);
  return c;
}

/* Moves bytes both ways until neither side makes progress. Returns the sides' results. */
static void pump(fy_tls *srv, fy_tls *cli, int *rs, int *rc) {
  *rs = *rc = FY_EAGAIN;
  for (int round = 0; round < 50; round++) {
    size_t n;
    const uint8_t *p;
    int moved = 0;
    if (*rc == FY_EAGAIN || *rc == FY_OK) *rc = fy_tls_handshake(cli);
    p = fy_tls_out(cli, &n);
    if (n) {
      if (fy_tls_feed(srv, p, n) != FY_OK) break;
      fy_tls_out_consume(cli, n);
      moved = 1;
    }
    if (*rs == FY_EAGAIN || *rs == FY_OK) *rs = fy_tls_handshake(srv);
    p = fy_tls_out(srv, &n);
    if (n) {
      if (fy_tls_feed(cli, p, n) != FY_OK) break;
      fy_tls_out_consume(srv, n);
      moved = 1;
    }
    if (!moved && *rs != FY_EAGAIN && *rc != FY_EAGAIN) break;
    if (!moved && round > 3) {
      if (*rc == FY_EAGAIN) *rc = fy_tls_handshake(cli);
      if (*rs == FY_EAGAIN) *rs = fy_tls_handshake(srv);
      if (*rs != FY_EAGAIN && *rc != FY_EAGAIN) break;
      if (round > 10) break;
    }
  }
}

static void test_good_handshake(const char *want_version) {
  fy_tls_conf *a = load("agent", FY_TLS_AGENT), *p = load("pusher", FY_TLS_PUSHER);
  fy_tls *srv = NULL, *cli = NULL;
  int rs, rc;
  CHECK(a && p);
  CHECK_STR(fy_tls_conf_name(a), "node-1");
  CHECK_INT(fy_tls_new(&srv, a, NULL), FY_OK);
  CHECK_INT(fy_tls_new(&cli, p, "node-1"), FY_OK);
  pump(srv, cli, &rs, &rc);
  CHECK_INT(rs, FY_OK);
  CHECK_INT(rc, FY_OK);
  CHECK_STR(fy_tls_peer_name(srv), "laptop");
  CHECK_STR(fy_tls_peer_name(cli), "node-1");
  /* mbedTLS 3.6 on both sides agrees on TLS 1.3; 2.28 (or FERRY_TLS_MAX=1.2) on 1.2. */
  CHECK_STR(fy_tls_version(cli), want_version);
  CHECK_STR(fy_tls_version(srv), want_version);
  CHECK_STR(fy_tls_suite(cli), strcmp(want_version, "TLSv1.3") == 0 ? "TLS1-3-CHACHA20-POLY1305-SHA256"
                                                                    : "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256");

  /* Application data both ways. */
  uint8_t buf[64];
  size_t got, n;
  const uint8_t *out;
  CHECK_INT(fy_tls_write(cli, (const uint8_t *)"ping", 4), FY_OK);
  out = fy_tls_out(cli, &n);
  CHECK_INT(fy_tls_feed(srv, out, n), FY_OK);
  fy_tls_out_consume(cli, n);
  CHECK_INT(fy_tls_read(srv, buf, sizeof buf, &got), FY_OK);
  CHECK_INT(got, 4);
  CHECK(memcmp(buf, "ping", 4) == 0);
  CHECK_INT(fy_tls_read(srv, buf, sizeof buf, &got), FY_EAGAIN);
  fy_tls_free(srv);
  fy_tls_free(cli);
  fy_tls_conf_free(a);
  fy_tls_conf_free(p);
}

static void expect_fail_as(const char *agent_id, const char *pusher_id, fy_tls_role client_role, const char *expect_name,
                           int want_srv, int want_cli, const char *cli_msg) {
  fy_tls_conf *a = load(agent_id, FY_TLS_AGENT), *p = load(pusher_id, client_role);
  fy_tls *srv = NULL, *cli = NULL;
  int rs, rc;
  CHECK(a && p);
  if (!a || !p) return;
  CHECK_INT(fy_tls_new(&srv, a, NULL), FY_OK);
  CHECK_INT(fy_tls_new(&cli, p, expect_name), FY_OK);
  pump(srv, cli, &rs, &rc);
  /* A TLS 1.3 client has finished before the agent checks its certificate: the refusal is
   * what its first read gets. */
  if (rc == FY_OK && strcmp(fy_tls_version(cli), "TLSv1.3") == 0) {
    size_t got0;
    uint8_t b0[16];
    rc = fy_tls_read(cli, b0, sizeof b0, &got0);
  }
  if (want_srv) CHECK_INT(rs, want_srv);
  CHECK_INT(rc, want_cli);
  if (cli_msg) CHECK_CONTAINS(fy_tls_errmsg(cli), cli_msg);
  /* No application data crosses a failed handshake. */
  size_t got;
  uint8_t buf[16];
  CHECK(fy_tls_read(srv, buf, sizeof buf, &got) != FY_OK);
  fy_tls_free(srv);
  fy_tls_free(cli);
  fy_tls_conf_free(a);
  fy_tls_conf_free(p);
}

static void expect_fail(const char *agent_id, const char *pusher_id, const char *expect_name, int want_srv, int want_cli,
                        const char *cli_msg) {
  expect_fail_as(agent_id, pusher_id, FY_TLS_PUSHER, expect_name, want_srv, want_cli, cli_msg);
}

static void test_negatives(void) {
  /* The pusher names another node: refused by the pusher. */
  expect_fail("agent", "pusher", "node-2", 0, FY_ENAME, "expected name");
  /* An agent's identity used as a pusher: the agent refuses the role. */
  expect_fail("agent", "agent-as-pusher", NULL, FY_EROLE, FY_EROLE, "wrong role");
  /* A pusher's identity cannot even be loaded as an agent's. */
  {
    char path[512], err[512];
    fy_tls_conf *c = NULL;
    snprintf(path, sizeof path, "%s/pusher-as-agent", dir);
    CHECK_INT(fy_identity_load(path, FY_TLS_AGENT, &c, err, sizeof err), FY_ECONFIG);
    CHECK_CONTAINS(err, "not an agent certificate");
    CHECK(c == NULL);
  }
  /* A broker's certificate posing as an agent: the pusher refuses the role (a broker of the
   * fleet must not receive plans and their secrets). */
  expect_fail("broker", "pusher", NULL, 0, FY_EROLE, NULL); /* the agent side sees only an alert (encrypted in TLS 1.3) */
  /* A node's certificate posing as the broker (it has serverAuth): the broker's client refuses
   * it (only --role broker, OU=broker, serves as one). */
  expect_fail_as("agent", "agent", FY_TLS_BROKER, "node-1", 0, FY_EROLE, "broker role");
  /* An agent's identity authenticates to a broker (clientAuth); a pusher's can too; one without
   * clientAuth (an agent certificate from before brokers) is refused at load, with the fix. */
  {
    char path[512], err[512];
    fy_tls_conf *c = NULL;
    snprintf(path, sizeof path, "%s/agent", dir);
    CHECK_INT(fy_identity_load(path, FY_TLS_BROKER, &c, err, sizeof err), FY_OK);
    fy_tls_conf_free(c);
    c = NULL;
    snprintf(path, sizeof path, "%s/broker", dir);
    CHECK_INT(fy_identity_load(path, FY_TLS_BROKER, &c, err, sizeof err), FY_ECONFIG);
    CHECK_CONTAINS(err, "no clientAuth");
  }
  /* A pusher of another fleet: both sides refuse. */
  expect_fail("agent", "stranger", NULL, 0, FY_ECERT, NULL);
  /* Expired and not-yet-valid pusher certificates. */
  expect_fail("agent", "expired", NULL, FY_ECERT, FY_ECERT, NULL);
  expect_fail("agent", "future", NULL, FY_ECERT, FY_ECERT, NULL);
}

static void test_garbage_to_agent(void) {
  fy_tls_conf *a = load("agent", FY_TLS_AGENT);
  fy_tls *srv = NULL;
  CHECK_INT(fy_tls_new(&srv, a, NULL), FY_OK);
  CHECK_INT(fy_tls_feed(srv, (const uint8_t *)"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), FY_OK);
  CHECK_INT(fy_tls_handshake(srv), FY_ETLS);
  CHECK_CONTAINS(fy_tls_errmsg(srv), "not a TLS peer");
  fy_tls_free(srv);
  CHECK_INT(fy_tls_new(&srv, a, NULL), FY_OK);
  uint8_t junk[512];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + 17);
  CHECK_INT(fy_tls_feed(srv, junk, sizeof junk), FY_OK);
  CHECK_INT(fy_tls_handshake(srv), FY_ETLS);
  fy_tls_free(srv);
  fy_tls_conf_free(a);
}

struct got { int frames; int last_type; };
static int on_frame(void *ud, const fy_frame *f) {
  struct got *g = ud;
  g->frames++;
  g->last_type = f->type;
  return FY_OK;
}

/* Both sessions, then a frame header over the ceiling: the agent's session refuses it. */
static void test_session_ceiling(void) {
  fy_tls_conf *a = load("agent", FY_TLS_AGENT), *p = load("pusher", FY_TLS_PUSHER);
  fy_session s, c;
  struct got gs = {0}, gc = {0};
  CHECK_INT(fy_session_init(&s, a, NULL, FY_FRAME_MAX, on_frame, &gs), FY_OK);
  CHECK_INT(fy_session_init(&c, p, NULL, FY_FRAME_MAX, on_frame, &gc), FY_OK);
  int rs = FY_OK, rc = fy_session_recv(&c, NULL, 0);
  for (int i = 0; i < 10 && !(fy_session_ready(&s) && fy_session_ready(&c)); i++) {
    size_t n;
    const uint8_t *o = fy_session_out(&c, &n);
    if (n) { rs = fy_session_recv(&s, o, n); fy_session_out_consume(&c, n); }
    o = fy_session_out(&s, &n);
    if (n) { rc = fy_session_recv(&c, o, n); fy_session_out_consume(&s, n); }
  }
  CHECK_INT(rs, FY_OK);
  CHECK_INT(rc, FY_OK);
  CHECK(fy_session_ready(&s) && fy_session_ready(&c));
  json_t *hello = fy_msg_hello("test", "status", NULL);
  CHECK_INT(fy_msg_send(&c, FY_FT_HELLO, hello), FY_OK);
  json_decref(hello);
  CHECK_INT(fy_tls_write(c.tls, (const uint8_t *)"FY\x05\x00\x7f\xff\xff\xff", 8), FY_OK);
  size_t n;
  const uint8_t *o = fy_session_out(&c, &n);
  CHECK_INT(fy_session_recv(&s, o, n), FY_ETOOBIG);
  CHECK_INT(gs.frames, 1); /* the hello got through, nothing after it */
  CHECK_INT(gs.last_type, FY_FT_HELLO);
  CHECK_INT(fy_session_send(&c, FY_FT_BLOB, 0, "x", FY_FRAME_MAX + 1), FY_ETOOBIG);
  fy_session_free(&s);
  fy_session_free(&c);
  fy_tls_conf_free(a);
  fy_tls_conf_free(p);
}

/* A plain session (ferryd's local socket): frames as they are, ready at once, a pause holds what
 * comes after it, and the ceilings of a TLS session. */
static int pause_first(void *ud, const fy_frame *f) {
  struct got *g = ud;
  g->frames++;
  g->last_type = f->type;
  return g->frames == 1 ? FY_FRAME_PAUSE : FY_OK;
}

static void test_plain_session(void) {
  fy_session s, c;
  struct got gs = {0}, gc = {0};
  CHECK_INT(fy_session_init(&s, NULL, NULL, FY_FRAME_MAX, pause_first, &gs), FY_OK);
  CHECK_INT(fy_session_init(&c, NULL, NULL, FY_FRAME_MAX, on_frame, &gc), FY_OK);
  CHECK(fy_session_ready(&s) && fy_session_ready(&c));
  CHECK(fy_session_became_ready(&s) && !fy_session_became_ready(&s));
  json_t *hello = fy_msg_hello("test", "deploy", "app");
  CHECK_INT(fy_msg_send(&c, FY_FT_HELLO, hello), FY_OK);
  json_decref(hello);
  CHECK_INT(fy_session_send(&c, FY_FT_BLOB, 0, "abc", 3), FY_OK);
  size_t n;
  const uint8_t *o = fy_session_out(&c, &n);
  CHECK(n > 8 && memcmp(o, "FY", 2) == 0); /* the frame itself, in the clear */
  CHECK_INT(fy_session_recv(&s, o, n), FY_OK);
  fy_session_out_consume(&c, n);
  CHECK_INT(gs.frames, 1); /* paused after the hello: the blob waits */
  CHECK(fy_session_paused(&s));
  CHECK_INT(fy_session_resume(&s), FY_OK);
  CHECK_INT(gs.frames, 2);
  CHECK_INT(gs.last_type, FY_FT_BLOB);
  CHECK_INT(fy_session_recv(&s, (const uint8_t *)"FY\x05\x00\x7f\xff\xff\xff", 8), FY_ETOOBIG);
  CHECK_INT(fy_session_send(&c, FY_FT_BLOB, 0, "x", FY_FRAME_MAX + 1), FY_ETOOBIG);
  fy_session_out(&c, &n);
  CHECK_INT(n, 0);
  fy_session_free(&s);
  fy_session_free(&c);
}

/* No application byte before the handshake: a TLS application_data record, and a ferry frame
 * in the clear, both refused by an agent session that has not finished its handshake. */
static void test_no_early_data(void) {
  fy_tls_conf *a = load("agent", FY_TLS_AGENT);
  fy_session s;
  struct got gs = {0};
  static const uint8_t appdata[] = {0x17, 0x03, 0x03, 0x00, 0x10, 'F', 'Y', 1, 0, 0, 0, 0, 2, '{', '}', 0, 0, 0, 0, 0, 0};
  CHECK_INT(fy_session_init(&s, a, NULL, FY_FRAME_MAX, on_frame, &gs), FY_OK);
  CHECK(fy_session_recv(&s, appdata, sizeof appdata) < 0);
  CHECK_INT(gs.frames, 0);
  CHECK(!fy_session_ready(&s));
  fy_session_free(&s);
  static const uint8_t clear[] = {'F', 'Y', 1, 0, 0, 0, 0, 2, '{', '}'};
  CHECK_INT(fy_session_init(&s, a, NULL, FY_FRAME_MAX, on_frame, &gs), FY_OK);
  CHECK(fy_session_recv(&s, clear, sizeof clear) < 0);
  CHECK_INT(gs.frames, 0);
  fy_session_free(&s);
  fy_tls_conf_free(a);
}

/* The RNG in a forked child does not repeat the parent's stream. */
static void test_fork_reseed(void) {
  fy_tls_conf *a = load("agent", FY_TLS_AGENT);
  uint8_t warm[16], mine[32], theirs[32];
  int fds[2];
  CHECK_INT(fy_tls_conf_random(a, warm, sizeof warm), FY_OK);
  CHECK_INT(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    uint8_t r[32] = {0};
    if (fy_tls_conf_random(a, r, sizeof r) != FY_OK) _exit(1);
    _exit(write(fds[1], r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
  }
  CHECK_INT(fy_tls_conf_random(a, mine, sizeof mine), FY_OK);
  CHECK_INT(read(fds[0], theirs, sizeof theirs), (long long)sizeof theirs);
  int st = 1;
  waitpid(pid, &st, 0);
  CHECK_INT(st, 0);
  CHECK(memcmp(mine, theirs, sizeof mine) != 0);
  close(fds[0]);
  close(fds[1]);
  fy_tls_conf_free(a);
}

static void test_negotiate(void) {
  unsigned v = 0;
  json_t *h = json_pack("{s:i,s:i}", "proto_min", 1, "proto_max", 9);
  CHECK_INT(fy_msg_negotiate(h, &v), FY_OK);
  CHECK_INT(v, FY_PROTO_VERSION);
  json_decref(h);
  h = json_pack("{s:i,s:i}", "proto_min", 7, "proto_max", 9);
  CHECK_INT(fy_msg_negotiate(h, &v), FY_EVERSION);
  json_decref(h);
  h = json_pack("{s:s}", "proto_min", "x");
  CHECK_INT(fy_msg_negotiate(h, &v), FY_EPROTO);
  json_decref(h);
}

static void issue(const char *ca, const char *name, fy_role role, const char *out, long offset, int days) {
  char err[512], cap[512], outp[512];
  snprintf(cap, sizeof cap, "%s/%s", dir, ca);
  snprintf(outp, sizeof outp, "%s/%s", dir, out);
  int rc = fy_pki_issue(cap, name, role, outp, days, offset, err, sizeof err);
  if (rc != FY_OK) fprintf(stderr, "issue %s: %s\n", out, err);
  CHECK_INT(rc, FY_OK);
}

int main(void) {
  char err[512], p[512];
  snprintf(dir, sizeof dir, "%s/ferry-tls-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) return 1;
  snprintf(p, sizeof p, "%s/ca", dir);
  CHECK_INT(fy_pki_ca_init(p, 30, 0, err, sizeof err), FY_OK);
  CHECK_INT(fy_pki_ca_init(p, 30, 0, err, sizeof err), FY_EEXIST); /* never replaced silently */
  snprintf(p, sizeof p, "%s/ca2", dir);
  CHECK_INT(fy_pki_ca_init(p, 30, 0, err, sizeof err), FY_OK);
  issue("ca", "node-1", FY_ROLE_AGENT, "agent", 0, 30);
  issue("ca", "laptop", FY_ROLE_PUSHER, "pusher", 0, 30);
  issue("ca", "node-9", FY_ROLE_AGENT, "agent-as-pusher", 0, 30);
  issue("ca", "laptop", FY_ROLE_PUSHER, "pusher-as-agent", 0, 30);
  issue("ca", "node-1", FY_ROLE_BROKER, "broker", 0, 30);
  issue("ca2", "laptop", FY_ROLE_PUSHER, "stranger", 0, 30);
  issue("ca", "laptop", FY_ROLE_PUSHER, "expired", -40L * 86400, 30);
  issue("ca", "laptop", FY_ROLE_PUSHER, "future", 5L * 86400, 30);
  CHECK(fy_pki_issue(p, "Bad Name", FY_ROLE_AGENT, "/nonexistent", 1, 0, err, sizeof err) == FY_EINVAL);

  /* The suite runs in the version this build negotiates, and on mbedTLS 3.6 once more with
   * both sides held to TLS 1.2 (what a 2.28 peer speaks). */
  test_good_handshake(FY_MBEDTLS3 ? "TLSv1.3" : "TLSv1.2");
  test_negatives();
  if (FY_MBEDTLS3) {
    setenv("FERRY_TLS_MAX", "1.2", 1);
    test_good_handshake("TLSv1.2");
    test_negatives();
    unsetenv("FERRY_TLS_MAX");
  }
  test_garbage_to_agent();
  test_session_ceiling();
  test_plain_session();
  test_negotiate();
  test_no_early_data();
  test_fork_reseed();

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
  return check_done("test_tls");
}
