/* ELF header -> platform; see elf.h. */
#include <stdio.h>
#include <string.h>

#include "ferry/elf.h"

static const struct {
  unsigned machine;
  int cls;
  const char *arch, *desc;
} kinds[] = {
    {62, 2, "amd64", "an x86-64 ELF"},     {3, 1, "386", "an i386 ELF"},        {183, 2, "arm64", "an AArch64 ELF"},
    {40, 1, "arm", "a 32-bit ARM ELF"},    {243, 2, "riscv64", "a RISC-V 64 ELF"}, {21, 2, "ppc64le", "a POWER ELF"},
    {22, 2, "s390x", "an s390x ELF"},      {258, 2, "loong64", "a LoongArch ELF"},
};

int fy_elf_header_platform(const unsigned char *h, size_t n, fy_platform *out, char *desc, size_t desclen) {
  if (n < 20 || memcmp(h, "\177ELF", 4) != 0 || (h[4] != 1 && h[4] != 2) || (h[5] != 1 && h[5] != 2)) {
    snprintf(desc, desclen, "not an ELF file");
    return FY_EINVAL;
  }
  int le = h[5] == 1;
  unsigned machine = le ? (unsigned)(h[18] | h[19] << 8) : (unsigned)(h[18] << 8 | h[19]);
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (kinds[i].machine != machine || kinds[i].cls != h[4]) continue;
    const char *variant = NULL;
    if (machine == 40) { /* EF_ARM_ABI_FLOAT_HARD (0x400) in e_flags: armhf (v7 in Debian) */
      if (n < 40) return FY_EINVAL;
      unsigned long flags = le ? (unsigned long)h[36] | (unsigned long)h[37] << 8 | (unsigned long)h[38] << 16 | (unsigned long)h[39] << 24
                               : (unsigned long)h[39] | (unsigned long)h[38] << 8 | (unsigned long)h[37] << 16 | (unsigned long)h[36] << 24;
      variant = flags & 0x400 ? "v7" : "v5";
    }
    snprintf(desc, desclen, "%s%s", kinds[i].desc, variant && variant[1] == '5' ? " (soft-float ABI)" : "");
    return fy_platform_from_fields("linux", kinds[i].arch, variant, out);
  }
  snprintf(desc, desclen, "an ELF for machine %u (%d-bit)", machine, h[4] == 2 ? 64 : 32);
  return FY_EUNSUPPORTED;
}
