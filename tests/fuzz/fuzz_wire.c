/* libFuzzer target: every decoder of the wire contract (ferry/wire.h) on arbitrary JSON, with the
 * property that what decodes also survives encode -> decode unchanged in its fields; and the
 * conversation (ferry/conv.h) walked with arbitrary frame types and directions; and the 64-bit
 * version parser. */
#include <stdlib.h>
#include <string.h>

#include "ferry/conv.h"
#include "ferry/wire.h"
#include "ferry/yaml.h"
#include <stdio.h>

#define SAME(cond) \
  do {             \
    if (!(cond)) abort(); \
  } while (0)

static void round_trips(const json_t *j) {
  char err[300];
  fy_plan_msg pm, pm2;
  if (fy_plan_decode(j, &pm, err, sizeof err) == FY_OK) {
    json_t *e = fy_plan_encode(&pm);
    SAME(e && fy_plan_decode(e, &pm2, err, sizeof err) == FY_OK);
    SAME(strcmp(pm.app, pm2.app) == 0 && pm.manifest_len == pm2.manifest_len && pm.settle_ms == pm2.settle_ms &&
         pm.health_port == pm2.health_port && fy_digest_equal(&pm.manifest_digest, &pm2.manifest_digest));
    json_decref(e);
  }
  static fy_need_msg nm, nm2; /* 12 KiB each: off the fuzzer's stack */
  if (fy_need_decode(j, &nm, err, sizeof err) == FY_OK) {
    json_t *e = fy_need_encode(&nm);
    SAME(e && fy_need_decode(e, &nm2, err, sizeof err) == FY_OK && nm.n == nm2.n && nm.skipped == nm2.skipped);
    for (size_t i = 0; i < nm.n; i++) SAME(nm.items[i].offset == nm2.items[i].offset && nm.items[i].offset <= nm.items[i].size);
    json_decref(e);
  }
  fy_blob_begin_msg bm, bm2;
  if (fy_blob_begin_decode(j, &bm, err, sizeof err) == FY_OK) {
    json_t *e = fy_blob_begin_encode(&bm);
    SAME(e && fy_blob_begin_decode(e, &bm2, err, sizeof err) == FY_OK && bm.offset == bm2.offset);
    json_decref(e);
  }
  fy_result_msg rm, rm2;
  if (fy_result_decode(j, &rm, err, sizeof err) == FY_OK) {
    json_t *e = fy_result_encode(&rm);
    SAME(e && fy_result_decode(e, &rm2, err, sizeof err) == FY_OK && rm.result == rm2.result && rm.code == rm2.code &&
         strcmp(rm.message, rm2.message) == 0 && rm.has_exit_code == rm2.has_exit_code);
    json_decref(e);
  }
  fy_request_msg qm, qm2;
  if (fy_request_decode(j, &qm, err, sizeof err) == FY_OK) {
    json_t *e = fy_request_encode(&qm);
    SAME(e && fy_request_decode(e, &qm2, err, sizeof err) == FY_OK && qm.op == qm2.op && strcmp(qm.app, qm2.app) == 0);
    json_decref(e);
  }
  fy_progress_msg gm, gm2;
  if (fy_progress_decode(j, &gm, err, sizeof err) == FY_OK) {
    json_t *e = fy_progress_encode(&gm);
    SAME(e && fy_progress_decode(e, &gm2, err, sizeof err) == FY_OK && gm.step == gm2.step && gm.total == gm2.total);
    json_decref(e);
  }
  fy_facts_msg fm, fm2;
  if (fy_facts_decode(j, &fm, err, sizeof err) == FY_OK && fm.labels && fm.apps) {
    json_t *e = fy_facts_encode(&fm);
    SAME(e && fy_facts_decode(e, &fm2, err, sizeof err) == FY_OK && fm.naccepts == fm2.naccepts && fm.free_bytes == fm2.free_bytes);
    json_decref(e);
  }
  fy_run_meta rr, rr2;
  if (fy_run_meta_decode(j, &rr, err, sizeof err) == FY_OK) {
    json_t *e = rr.env ? fy_run_meta_encode(&rr) : NULL; /* the agent always writes env */
    if (e) {
      SAME(fy_run_meta_decode(e, &rr2, err, sizeof err) == FY_OK && rr.nargv == rr2.nargv && rr.version == rr2.version);
      json_decref(e);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {
  json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, NULL);
  if (j) {
    round_trips(j);
    json_decref(j);
  }
  /* the same bytes as a version number (a counter file, --version): what parses prints back the
   * same, within 0..2^63-1, on every architecture */
  char text[40];
  if (n < sizeof text) {
    memcpy(text, p, n);
    text[n] = '\0';
    uint64_t v, w;
    if (fy_parse_u64(text, 0, FY_VERSION_MAX, &v) == FY_OK) {
      char again[32];
      snprintf(again, sizeof again, "%llu", (unsigned long long)v);
      SAME(v <= FY_VERSION_MAX && fy_parse_u64(again, 0, FY_VERSION_MAX, &w) == FY_OK && v == w);
    }
  }
  /* the same bytes as a conversation: each byte a frame type, its top bit the direction */
  fy_conv a;
  fy_conv_init(&a, FY_SIDE_AGENT);
  for (size_t i = 0; i < n && i < 256; i++) {
    uint8_t t = p[i] & 0x7f;
    int rc = (p[i] & 0x80) ? fy_conv_send(&a, t) : fy_conv_recv(&a, t);
    SAME(rc == FY_OK || rc == FY_EPROTO);
    SAME(a.phase <= FY_CONV_DONE);
  }
  return 0;
}
