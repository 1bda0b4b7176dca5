/* CPU architecture levels, from what the kernel and the CPU say (docs/platforms.md has the
 * tables and their sources). Pure functions over recorded values: the agent reads AT_HWCAP,
 * AT_HWCAP2 and cpuid, the unit tests feed values recorded on real boards. */
#ifndef FERRY_CPULEVEL_H
#define FERRY_CPULEVEL_H

#include <stdint.h>

/* The Armv8 level the HWCAP bits show: 0 for v8.0, 1..5 for v8.1..v8.5 (the highest one whose
 * features, and those of every level below it, are all present). */
int fy_arm64_level(uint64_t hwcap, uint64_t hwcap2);

/* What cpuid and XGETBV report that the x86-64 levels need. */
typedef struct fy_x86_cpuid {
  uint32_t l1_ecx;      /* leaf 1, ECX */
  uint32_t l7_ebx;      /* leaf 7 subleaf 0, EBX */
  uint32_t e1_ecx;      /* leaf 0x80000001, ECX */
  uint64_t xcr0;        /* XGETBV(0); 0 when OSXSAVE is off */
} fy_x86_cpuid;

/* The x86-64 psABI level: 1 (baseline), 2, 3 or 4, as containerd computes it. */
int fy_amd64_level(const fy_x86_cpuid *c);

#endif
