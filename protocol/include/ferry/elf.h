/* What an ELF header says about the platform a binary is for (ELF gABI: e_ident class and data at
 * 4 and 5, e_machine at 18, e_flags at 36 for ELF32). Pure. */
#ifndef FERRY_ELF_H
#define FERRY_ELF_H

#include <stddef.h>

#include "ferry/error.h"
#include "ferry/platform.h"

#define FY_ELF_HEADER 52 /* bytes needed: an ELF32 header (ELF64 needs only the first 20 here) */

/* From the first n bytes of a file: FY_OK with the platform (linux/amd64, linux/arm64,
 * linux/arm/v7 for hard-float 32-bit ARM, linux/arm/v5 for soft-float, linux/386,
 * linux/riscv64, ...) and desc ("an AArch64 ELF"); FY_EINVAL for a non-ELF; FY_EUNSUPPORTED
 * for an ELF of a machine ferry does not know (desc then names the number). */
int fy_elf_header_platform(const unsigned char *h, size_t n, fy_platform *out, char *desc, size_t desclen) FY_WUR;

#endif
