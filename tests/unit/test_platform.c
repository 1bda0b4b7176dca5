/* Platform names and matching, table-driven (docs/platforms.md). */
#include "check.h"
#include "ferry/board.h"
#include "ferry/cpulevel.h"
#include "ferry/platform.h"

static const struct {
  const char *in, *out;
} norm[] = {
    {"aarch64", "linux/arm64"},
    {"arm64", "linux/arm64"},
    {"arm64/v8", "linux/arm64"},
    {"linux/arm64/v8", "linux/arm64"},
    {"linux/aarch64/v8.0", "linux/arm64"},
    {"linux/arm64/8", "linux/arm64"},
    {"linux/arm64/v9.0", "linux/arm64/v9"},
    {"linux/arm64/9", "linux/arm64/v9"},
    {"linux/arm64/v8.2", "linux/arm64/v8.2"},
    {"x86_64", "linux/amd64"},
    {"x86-64", "linux/amd64"},
    {"amd64", "linux/amd64"},
    {"linux/amd64/v1", "linux/amd64"},
    {"linux/amd64/v3", "linux/amd64/v3"},
    {"X86_64", "linux/amd64"},
    {"i686", "linux/386"},
    {"i386", "linux/386"},
    {"armhf", "linux/arm/v7"},
    {"armv7l", "linux/arm/v7"},
    {"armel", "linux/arm/v6"},
    {"armv6l", "linux/arm/v6"},
    {"armv8l", "linux/arm/v8"},
    {"armv5tel", "linux/arm/v5"},
    {"linux/arm", "linux/arm/v7"},
    {"linux/arm/7", "linux/arm/v7"},
    {"linux/arm/6", "linux/arm/v6"},
    {"linux/arm/v6", "linux/arm/v6"},
    {"macos/arm64", "darwin/arm64"},
    {"linux/riscv64", "linux/riscv64"},
};

static const char *const bad[] = {"", "/", "linux/", "linux//v7", "a/b/c/d", "linux/ARM 64",
                                  "linux/arm64/v8;rm", "linux/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};

static void test_normalize(void) {
  for (size_t i = 0; i < sizeof norm / sizeof norm[0]; i++) {
    fy_platform p;
    char buf[FY_PLATFORM_STR];
    int rc = fy_platform_parse(norm[i].in, &p);
    CHECK_INT(rc, FY_OK);
    if (rc == FY_OK) CHECK_STR(fy_platform_format(&p, buf, sizeof buf), norm[i].out);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fy_platform p;
    CHECK_INT(fy_platform_parse(bad[i], &p), FY_EINVAL);
  }
  fy_platform f;
  char buf[FY_PLATFORM_STR];
  CHECK_INT(fy_platform_from_fields("linux", "arm", "v7", &f), FY_OK);
  CHECK_STR(fy_platform_format(&f, buf, sizeof buf), "linux/arm/v7");
  CHECK_INT(fy_platform_from_fields("linux", "arm64", "v8", &f), FY_OK);
  CHECK_STR(fy_platform_format(&f, buf, sizeof buf), "linux/arm64");
}

/* device, flags, then the accepted list, best first, joined by spaces */
static const struct {
  const char *dev;
  unsigned flags;
  const char *list;
} accept_table[] = {
    {"linux/amd64", 0, "linux/amd64 linux/386"},
    {"linux/amd64/v2", 0, "linux/amd64/v2 linux/amd64 linux/386"},
    {"linux/amd64/v3", 0, "linux/amd64/v3 linux/amd64/v2 linux/amd64 linux/386"},
    {"linux/arm64", 0, "linux/arm64 linux/arm/v8 linux/arm/v7 linux/arm/v6 linux/arm/v5"},
    {"linux/arm64", FY_PLATFORM_NO_AARCH32, "linux/arm64"},
    {"linux/arm64/v8.2", 0, "linux/arm64/v8.2 linux/arm64/v8.1 linux/arm64 linux/arm/v8 linux/arm/v7 linux/arm/v6 linux/arm/v5"},
    {"linux/arm64/v9", 0, "linux/arm64/v9 linux/arm64/v8.5 linux/arm64/v8.4 linux/arm64/v8.3 linux/arm64/v8.2 linux/arm64/v8.1 linux/arm64 linux/arm/v8 linux/arm/v7 linux/arm/v6 linux/arm/v5"},
    {"linux/arm/v8", 0, "linux/arm/v8 linux/arm/v7 linux/arm/v6 linux/arm/v5"},
    {"linux/arm/v7", 0, "linux/arm/v7 linux/arm/v6 linux/arm/v5"},
    {"linux/arm/v6", 0, "linux/arm/v6 linux/arm/v5"},
    {"linux/386", 0, "linux/386"},
    {"linux/riscv64", 0, "linux/riscv64"},
};

static void test_fallback_order(void) {
  for (size_t i = 0; i < sizeof accept_table / sizeof accept_table[0]; i++) {
    fy_platform dev, out[FY_PLATFORM_ACCEPT_MAX];
    char joined[1024] = "", buf[FY_PLATFORM_STR];
    CHECK_INT(fy_platform_parse(accept_table[i].dev, &dev), FY_OK);
    size_t n = fy_platform_accepts(&dev, accept_table[i].flags, out, FY_PLATFORM_ACCEPT_MAX);
    size_t used = 0;
    int fits = 1;
    for (size_t k = 0; k < n && fits; k++) {
      int w = snprintf(joined + used, sizeof joined - used, "%s%s", k ? " " : "", fy_platform_format(&out[k], buf, sizeof buf));
      fits = w >= 0 && (size_t)w < sizeof joined - used;
      if (fits) used += (size_t)w;
    }
    CHECK(fits);
    CHECK_STR(joined, accept_table[i].list);
  }
}

static int takes(const char *dev_s, const char *img_s) {
  fy_platform dev, img, out[FY_PLATFORM_ACCEPT_MAX];
  if (fy_platform_parse(dev_s, &dev) || fy_platform_parse(img_s, &img)) return -2;
  size_t n = fy_platform_accepts(&dev, 0, out, FY_PLATFORM_ACCEPT_MAX);
  return fy_platform_rank(out, n, &img);
}

static void test_consequences(void) {
  /* The consequences docs/platforms.md spells out, one test each. */
  CHECK_INT(takes("linux/arm64", "linux/arm64/v8.1"), -1);
  CHECK_INT(takes("linux/arm64", "linux/arm64/v9"), -1);
  CHECK_INT(takes("linux/arm/v6", "linux/arm"), -1);
  CHECK_INT(takes("linux/amd64", "linux/amd64/v2"), -1);
  CHECK_INT(takes("linux/arm64", "linux/arm64/v8"), 0);
  CHECK_INT(takes("linux/arm64", "linux/arm"), 2);
  CHECK_INT(takes("linux/arm/v7", "linux/arm64"), -1);
  CHECK_INT(takes("linux/amd64", "linux/arm64"), -1);
  CHECK_INT(takes("linux/amd64/v3", "linux/386"), 3);
  CHECK_INT(takes("linux/arm64", "windows/arm64"), -1);
}

static void test_builtin_boards(void) {
  size_t n = 0;
  fy_board boards[32];
  const char *want[] = {"rpi3", "rpi4", "rpi5", "graviton2", "graviton3", "generic-arm64",
                        "generic-armhf", "generic-amd64"};
  while (fy_board_builtin[n].file) {
    if (n == sizeof boards / sizeof boards[0]) {
      fprintf(stderr, "more built-in boards than the test's table holds (%zu)\n", n);
      CHECK(0);
      break;
    }
    char err[256] = "";
    int rc = fy_board_parse(fy_board_builtin[n].text, strlen(fy_board_builtin[n].text), &boards[n], err, sizeof err);
    if (rc != FY_OK) fprintf(stderr, "%s: %s\n", fy_board_builtin[n].file, err);
    CHECK_INT(rc, FY_OK);
    n++;
  }
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    int found = 0;
    for (size_t i = 0; i < n; i++) found |= strcmp(boards[i].name, want[w]) == 0;
    CHECK(found);
  }
  fy_platform arm64, armv7, amd64;
  CHECK_INT(fy_platform_parse("linux/arm64", &arm64), FY_OK);
  CHECK_INT(fy_platform_parse("linux/arm/v7", &armv7), FY_OK);
  CHECK_INT(fy_platform_parse("linux/amd64", &amd64), FY_OK);
  fy_board_probe pi4 = {.dt_model = "Raspberry Pi 4 Model B Rev 1.4", .midr = 0x410fd083};
  fy_board_probe g2 = {.dmi_vendor = "Amazon EC2", .dmi_product = "m6g.large", .midr = 0x413fd0c1};
  fy_board_probe g3 = {.dmi_vendor = "Amazon EC2", .dmi_product = "c7g.large", .midr = 0x411fd401};
  fy_board_probe altra = {.dmi_vendor = "Ampere", .midr = 0x413fd0c1};
  fy_board_probe none = {0};
  int i;
  CHECK((i = fy_board_match(boards, n, &pi4, &arm64)) >= 0 && strcmp(boards[i].name, "rpi4") == 0);
  /* a 32-bit Raspberry Pi OS on a Pi 4 is still a Pi 4 */
  CHECK((i = fy_board_match(boards, n, &pi4, &armv7)) >= 0 && strcmp(boards[i].name, "rpi4") == 0);
  CHECK((i = fy_board_match(boards, n, &g2, &arm64)) >= 0 && strcmp(boards[i].name, "graviton2") == 0);
  CHECK((i = fy_board_match(boards, n, &g3, &arm64)) >= 0 && strcmp(boards[i].name, "graviton3") == 0);
  CHECK((i = fy_board_match(boards, n, &altra, &arm64)) >= 0 && strcmp(boards[i].name, "generic-arm64") == 0);
  CHECK((i = fy_board_match(boards, n, &none, &amd64)) >= 0 && strcmp(boards[i].name, "generic-amd64") == 0);
  CHECK((i = fy_board_match(boards, n, &none, &armv7)) >= 0 && strcmp(boards[i].name, "generic-armhf") == 0);

  fy_board b;
  char err[256];
  const char *broken = "name: x\nplatforms: [linux/arm64]\ncpu:\n  mcpu: a\n  speed: 3\n";
  CHECK_INT(fy_board_parse(broken, strlen(broken), &b, err, sizeof err), FY_ECONFIG);
  CHECK_CONTAINS(err, "line 5");
  CHECK_CONTAINS(err, "cpu.speed");
}

static void test_native(void) {
  fy_platform p;
  char buf[FY_PLATFORM_STR];
  fy_platform_native(&p);
  printf("native platform: %s\n", fy_platform_format(&p, buf, sizeof buf));
  CHECK_STR(p.os, "linux");
}

/* AT_HWCAP / AT_HWCAP2 as the boards' kernels report them (the features line of /proc/cpuinfo:
 * rpi3 and rpi4 "fp asimd evtstrm crc32 cpuid"; rpi5 adds aes pmull sha1 sha2 atomics fphp
 * asimdhp asimdrdm lrcpc dcpop asimddp; graviton2 adds ssbs to that; graviton3 has all of
 * hwcap's bits 0-28 but sb, plus paca pacg, and dcpodp svei8mm svebf16 i8mm bf16 dgh rng). */
static void test_arm64_levels(void) {
  static const struct { const char *board; uint64_t hw, hw2; int level; } rec[] = {
      {"rpi3", 0x887, 0, 0},
      {"rpi4", 0x887, 0, 0},
      {"rpi5", 0x119fff, 0, 2},
      {"graviton2", 0x10119fff, 0, 2},
      {"graviton3", 0xdfffffff, 0x1f201, 4},
  };
  for (size_t i = 0; i < sizeof rec / sizeof rec[0]; i++) {
    int l = fy_arm64_level(rec[i].hw, rec[i].hw2);
    if (l != rec[i].level) fprintf(stderr, "%s: level v8.%d, want v8.%d\n", rec[i].board, l, rec[i].level);
    CHECK_INT(l, rec[i].level);
  }
  /* A level needs every level below it: v8.3's features without v8.2's dcpop stay v8.1. */
  CHECK_INT(fy_arm64_level((0x119fffull & ~(1ull << 16)) | (1ull << 13) | (1ull << 14) | (1ull << 30), 0), 1);
  CHECK_INT(fy_arm64_level(0, 0), 0);
  CHECK_INT(fy_arm64_level(~0ull, ~0ull), 5);

  /* The level leads the accepted list, before linux/arm64, and a v8.2 node takes a graviton2
   * variant over a generic one. */
  fy_platform dev, acc[FY_PLATFORM_ACCEPT_MAX], g2, base;
  CHECK_INT(fy_platform_parse("linux/arm64/v8.2", &dev), FY_OK);
  size_t n = fy_platform_accepts(&dev, FY_PLATFORM_NO_AARCH32, acc, FY_PLATFORM_ACCEPT_MAX);
  CHECK_INT(n, 3);
  char b[FY_PLATFORM_STR];
  CHECK_STR(fy_platform_format(&acc[0], b, sizeof b), "linux/arm64/v8.2");
  CHECK_STR(fy_platform_format(&acc[1], b, sizeof b), "linux/arm64/v8.1");
  CHECK_STR(fy_platform_format(&acc[2], b, sizeof b), "linux/arm64");
  CHECK_INT(fy_platform_parse("linux/arm64/v8.2", &g2), FY_OK);
  CHECK_INT(fy_platform_parse("linux/arm64", &base), FY_OK);
  CHECK(fy_platform_rank(acc, n, &g2) < fy_platform_rank(acc, n, &base));
  /* An rpi4 (v8.0) does not take it. */
  CHECK_INT(fy_platform_parse("linux/arm64", &dev), FY_OK);
  n = fy_platform_accepts(&dev, 0, acc, FY_PLATFORM_ACCEPT_MAX);
  CHECK_INT(fy_platform_rank(acc, n, &g2), -1);
}

/* cpuid as recorded: a Nehalem (v2) and a Haswell (v3); v4 adds AVX-512 to the Haswell. */
static void test_amd64_levels(void) {
  fy_x86_cpuid nehalem = {.l1_ecx = 0x0098e3bd, .l7_ebx = 0, .e1_ecx = 0x1, .xcr0 = 0};
  fy_x86_cpuid haswell = {.l1_ecx = 0x7ffafbff, .l7_ebx = 0x000027ab, .e1_ecx = 0x21, .xcr0 = 0x7};
  fy_x86_cpuid skx = haswell;
  skx.l7_ebx |= 0xd0030000u;
  skx.xcr0 = 0xe7;
  CHECK_INT(fy_amd64_level(&nehalem), 2);
  CHECK_INT(fy_amd64_level(&haswell), 3);
  CHECK_INT(fy_amd64_level(&skx), 4);
  /* The same Haswell whose OS does not save YMM state cannot use AVX: v2. */
  fy_x86_cpuid noymm = haswell;
  noymm.xcr0 = 0x3;
  CHECK_INT(fy_amd64_level(&noymm), 2);
  /* AVX-512 without the OS saving ZMM: v3. */
  fy_x86_cpuid nozmm = skx;
  nozmm.xcr0 = 0x7;
  CHECK_INT(fy_amd64_level(&nozmm), 3);
  fy_x86_cpuid none = {0};
  CHECK_INT(fy_amd64_level(&none), 1);
  /* A v3 node takes linux/amd64/v3 first, then v2, then the baseline. */
  fy_platform dev, acc[FY_PLATFORM_ACCEPT_MAX];
  char b[FY_PLATFORM_STR];
  CHECK_INT(fy_platform_parse("linux/amd64/v3", &dev), FY_OK);
  size_t n = fy_platform_accepts(&dev, 0, acc, FY_PLATFORM_ACCEPT_MAX);
  CHECK(n >= 3);
  CHECK_STR(fy_platform_format(&acc[0], b, sizeof b), "linux/amd64/v3");
  CHECK_STR(fy_platform_format(&acc[1], b, sizeof b), "linux/amd64/v2");
  CHECK_STR(fy_platform_format(&acc[2], b, sizeof b), "linux/amd64");
}

int main(void) {
  test_arm64_levels();
  test_amd64_levels();
  test_normalize();
  test_fallback_order();
  test_consequences();
  test_builtin_boards();
  test_native();
  return check_done("test_platform");
}
