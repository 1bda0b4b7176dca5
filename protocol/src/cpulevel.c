/* Architecture levels (docs/platforms.md, "CPU levels").
 *
 * arm64: Linux's AT_HWCAP/AT_HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h), checked for the
 * features each Armv8.x extension makes mandatory (Arm ARM, "Armv8.x architecture extensions"):
 *   v8.1  atomics (LSE), crc32, asimdrdm
 *   v8.2  dcpop (DC CVAP)
 *   v8.3  jscvt, fcma, lrcpc, paca (pointer authentication)
 *   v8.4  dit, uscat, ilrcpc, flagm
 *   v8.5  sb, flagm2, frint
 * A level counts only when every level below it does too.
 *
 * x86-64: the psABI levels (x86-64-psABI, "Micro-architecture levels"), as containerd's
 * cpuinfo does:
 *   v2  cmpxchg16b, lahf/sahf, popcnt, sse3, sse4.1, sse4.2, ssse3
 *   v3  avx, avx2, bmi1, bmi2, f16c, fma, lzcnt, movbe, osxsave, and the OS saves XMM and YMM
 *   v4  avx512f, avx512bw, avx512cd, avx512dq, avx512vl, and the OS saves opmask and ZMM */
#include "ferry/cpulevel.h"

#define HWCAP_CRC32 (1ull << 7)
#define HWCAP_ATOMICS (1ull << 8)
#define HWCAP_ASIMDRDM (1ull << 12)
#define HWCAP_JSCVT (1ull << 13)
#define HWCAP_FCMA (1ull << 14)
#define HWCAP_LRCPC (1ull << 15)
#define HWCAP_DCPOP (1ull << 16)
#define HWCAP_DIT (1ull << 24)
#define HWCAP_USCAT (1ull << 25)
#define HWCAP_ILRCPC (1ull << 26)
#define HWCAP_FLAGM (1ull << 27)
#define HWCAP_SB (1ull << 29)
#define HWCAP_PACA (1ull << 30)
#define HWCAP2_FLAGM2 (1ull << 7)
#define HWCAP2_FRINT (1ull << 8)

int fy_arm64_level(uint64_t hwcap, uint64_t hwcap2) {
  static const struct { uint64_t hw, hw2; } need[] = {
      {HWCAP_ATOMICS | HWCAP_CRC32 | HWCAP_ASIMDRDM, 0},
      {HWCAP_DCPOP, 0},
      {HWCAP_JSCVT | HWCAP_FCMA | HWCAP_LRCPC | HWCAP_PACA, 0},
      {HWCAP_DIT | HWCAP_USCAT | HWCAP_ILRCPC | HWCAP_FLAGM, 0},
      {HWCAP_SB, HWCAP2_FLAGM2 | HWCAP2_FRINT},
  };
  int level = 0;
  for (unsigned i = 0; i < sizeof need / sizeof need[0]; i++) {
    if ((hwcap & need[i].hw) != need[i].hw || (hwcap2 & need[i].hw2) != need[i].hw2) break;
    level = (int)i + 1;
  }
  return level;
}

#define BIT(n) (1u << (n))

int fy_amd64_level(const fy_x86_cpuid *c) {
  const uint32_t v2_l1 = BIT(0) /* sse3 */ | BIT(9) /* ssse3 */ | BIT(13) /* cx16 */ | BIT(19) /* sse4.1 */ |
                         BIT(20) /* sse4.2 */ | BIT(23) /* popcnt */;
  const uint32_t v2_e1 = BIT(0); /* lahf_lm */
  const uint32_t v3_l1 = BIT(12) /* fma */ | BIT(22) /* movbe */ | BIT(27) /* osxsave */ | BIT(28) /* avx */ |
                         BIT(29) /* f16c */;
  const uint32_t v3_l7 = BIT(3) /* bmi1 */ | BIT(5) /* avx2 */ | BIT(8) /* bmi2 */;
  const uint32_t v3_e1 = BIT(5); /* abm: lzcnt */
  const uint64_t v3_xcr0 = 0x6;  /* XMM, YMM */
  const uint32_t v4_l7 = BIT(16) /* avx512f */ | BIT(17) /* avx512dq */ | BIT(28) /* avx512cd */ |
                         BIT(30) /* avx512bw */ | BIT(31) /* avx512vl */;
  const uint64_t v4_xcr0 = 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
  if ((c->l1_ecx & v2_l1) != v2_l1 || (c->e1_ecx & v2_e1) != v2_e1) return 1;
  if ((c->l1_ecx & v3_l1) != v3_l1 || (c->l7_ebx & v3_l7) != v3_l7 || (c->e1_ecx & v3_e1) != v3_e1 ||
      (c->xcr0 & v3_xcr0) != v3_xcr0)
    return 2;
  if ((c->l7_ebx & v4_l7) != v4_l7 || (c->xcr0 & v4_xcr0) != v4_xcr0) return 3;
  return 4;
}
